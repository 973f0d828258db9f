// The bytes callers hold in the daemon, accounted per caller uid: frames in progress, replies not
// read yet, and requests waiting in the run queue. One uid may hold connections.perUidBufferedBytes
// and all together connections.totalBufferedBytes. Growth past a cap closes connections of the
// uid that holds the most (its largest first), never of a caller holding a little: a caller
// cannot get another's connection closed by spreading its bytes over many connections. A queued
// request is refused rather than admitted past a cap: nobody is closed to make room for it; and a
// frame that finds the room taken by queued requests waits for them to start (its connection is
// not read meanwhile) rather than close anyone.
import type { ErrorCode } from '../../protocol/index.js';
import type { ConnectionClose } from '../metrics.js';
import type { ConnectionLimits } from './options.js';

/** What the budget needs of a connection (a Connection). */
export interface BudgetHolder {
  readonly caller: { readonly uid: number };
  /** Bytes it holds: frame in progress, unread replies, queued requests (0 once closed). */
  readonly bufferedBytes: number;
  /** Of those, the bytes of its requests waiting in the run queue. */
  readonly queuedBytes: number;
  /**
   * A reply was just written and the kernel is still draining it to the reader: it goes last,
   * so that a reader that reads is not closed for the moment its reply is in transit.
   */
  readonly replyInTransit: boolean;
  close(reason: ConnectionClose, code: ErrorCode, message: string): void;
}

export class BufferBudget {
  constructor(
    private readonly holders: Iterable<BudgetHolder>,
    private readonly limits: ConnectionLimits,
  ) {}

  /** Bytes all connections hold. */
  total(): number {
    let total = 0;
    for (const holder of this.holders) total += holder.bufferedBytes;
    return total;
  }

  /** Bytes the connections of `uid` hold together. */
  ofUid(uid: number): number {
    let held = 0;
    for (const holder of this.holders) if (holder.caller.uid === uid) held += holder.bufferedBytes;
    return held;
  }

  /**
   * Called when what `grown` holds grew (a chunk of a frame, a reply): closes connections of its
   * uid while the uid holds more than its cap, then of the uid holding the most while all hold
   * more than the budget. The excess is one chunk or one reply at most, so a few are closed.
   * Returns 'wait' instead when a frame grew past a cap that queued requests fill: without them
   * the frames and replies fit, and the queued requests leave as their runs start. The frame's
   * connection is then not read until they do (past the cap by that one chunk meanwhile).
   */
  enforce(grown: BudgetHolder, growth: 'frame' | 'reply'): 'ok' | 'wait' {
    const { perUidBufferedBytes: cap, totalBufferedBytes: budget } = this.limits;
    const uid = grown.caller.uid;
    let held = this.ofUid(uid);
    if (held > cap && growth === 'frame' && held - this.queued((h) => h.caller.uid === uid) <= cap) return 'wait';
    while (held > cap) {
      const victim = largest([...this.holders].filter((h) => h.caller.uid === uid));
      if (!victim) break;
      const bytes = victim.bufferedBytes;
      victim.close(
        'buffer_uid_limit',
        'overloaded',
        `the connections of uid ${uid} hold ${held} bytes (unfinished frames, unread replies and queued requests), more than the ${cap} one caller may (connections.perUidBufferedBytes), and this one held the most of them (${bytes} bytes)`,
      );
      held -= bytes;
    }
    let total = this.total();
    if (total > budget && growth === 'frame' && total - this.queued(() => true) <= budget) return 'wait';
    while (total > budget) {
      const victim = this.largestOfTheLargestUid();
      if (!victim) break;
      const bytes = victim.bufferedBytes;
      victim.close(
        'buffer_budget',
        'overloaded',
        `the daemon's connections hold more than its budget of ${budget} bytes (connections.totalBufferedBytes); uid ${victim.caller.uid} held the most of them, and this connection the most of its (${bytes} bytes of unfinished frames, unread replies and queued requests)`,
      );
      total -= bytes;
    }
    return 'ok';
  }

  /** Bytes of queued requests of the connections `which` picks. */
  private queued(which: (holder: BudgetHolder) => boolean): number {
    let bytes = 0;
    for (const holder of this.holders) if (holder.bufferedBytes > 0 && which(holder)) bytes += holder.queuedBytes;
    return bytes;
  }

  /**
   * Whether `holder` may hold `bytes` more for a request waiting in the run queue: undefined if
   * so, else why not (which cap, and its config key).
   */
  refusal(holder: BudgetHolder, bytes: number): string | undefined {
    const { maxBufferedBytes, perUidBufferedBytes, totalBufferedBytes } = this.limits;
    const what = `the request's ${bytes} bytes (code, stdin, files and argv) would wait in the run queue`;
    const own = holder.bufferedBytes + bytes;
    if (own > maxBufferedBytes) {
      return `${what} on a connection that would then hold ${own} bytes, more than the ${maxBufferedBytes} one may (connections.maxBufferedBytes); try again once its runs started`;
    }
    const uid = holder.caller.uid;
    const ofUid = this.ofUid(uid) + bytes;
    if (ofUid > perUidBufferedBytes) {
      return `${what} while the connections of uid ${uid} would then hold ${ofUid} bytes, more than the ${perUidBufferedBytes} one caller may (connections.perUidBufferedBytes); try again once its runs started`;
    }
    const total = this.total() + bytes;
    if (total > totalBufferedBytes) {
      return `${what} while all connections would then hold ${total} bytes, more than the daemon's budget of ${totalBufferedBytes} (connections.totalBufferedBytes); try again later`;
    }
    return undefined;
  }

  /**
   * The largest connection of the uid holding the most. Replies in transit count last: first
   * among the bytes held otherwise, and only when those are all gone among every byte.
   */
  private largestOfTheLargestUid(): BudgetHolder | undefined {
    for (const settledOnly of [true, false]) {
      const perUid = new Map<number, number>();
      for (const holder of this.holders) {
        if (settledOnly && holder.replyInTransit) continue;
        perUid.set(holder.caller.uid, (perUid.get(holder.caller.uid) ?? 0) + holder.bufferedBytes);
      }
      let uid: number | undefined;
      let most = 0;
      for (const [candidate, held] of perUid) {
        if (held > most) {
          most = held;
          uid = candidate;
        }
      }
      if (uid === undefined) continue;
      const victim = largest([...this.holders].filter((h) => h.caller.uid === uid && !(settledOnly && h.replyInTransit)));
      if (victim) return victim;
    }
    return undefined;
  }
}

/** The holder with the most bytes, one whose reply is in transit only when no other holds any. */
function largest(holders: BudgetHolder[]): BudgetHolder | undefined {
  let best: BudgetHolder | undefined;
  for (const holder of holders) {
    if (holder.bufferedBytes === 0) continue;
    if (!best || rank(holder) > rank(best)) best = holder;
  }
  return best;
}

function rank(holder: BudgetHolder): number {
  // Bytes are below 2 ** 52: settled connections rank above any in transit.
  return holder.replyInTransit ? holder.bufferedBytes : 2 ** 52 + holder.bufferedBytes;
}
