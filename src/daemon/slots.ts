// Slots: each concurrent run gets its own uid and gid (slot i: firstUid + i), so runs cannot
// signal or read each other and NPROC counts per run. When all slots are busy, runs wait in a
// bounded queue; past its bound they are refused as 'overloaded'.
//
// The queue is shared fairly between callers (by the uid that asked for the run), so that one
// caller cannot take the slots and the queue from every other:
// - A freed slot goes to the caller with the fewest runs in progress that has a run waiting;
//   among equals, to the one served least recently (round robin: with one slot, callers take
//   turns), then to the longest waiter; within a caller, to its runs in arrival order.
// - A caller may fill the queue while nobody else wants it, but a full queue is shared: a run
//   from a caller holding fewer places than the caller holding the most takes the place of that
//   caller's newest waiting run (refused 'overloaded', as if it had arrived to a full queue),
//   provided the one holding the most keeps at least as many places as the newcomer then holds.
//   Callers wanting more than the queue holds end with equal shares of it (within one place),
//   while the queue's bound, and the memory its runs' payloads hold, stays queueMax.
import { RequestError } from '../protocol/errors.js';
import type { SlotIdentity } from '../run/slot_users.js';

/** A slot as the pool hands it out: its identity (src/run/slot.ts). */
export type Slot = SlotIdentity;

/**
 * Whom a run is for: the uid of the caller that asked for it, or SELF for runs the daemon asks
 * for itself (the self-check), which share the queue as one more caller.
 */
export type CallerKey = number;
export const SELF: CallerKey = -1;

interface Waiter {
  caller: CallerKey;
  /** Waits even while every slot is quarantined (the start-up self-check). */
  patient: boolean;
  /** Arrival order, across callers: the longest waiter goes first among equals. */
  seq: number;
  resolve(slot: Slot): void;
  reject(err: Error): void;
  detach(): void;
}

export class SlotPool {
  private readonly free: Slot[];
  /** Busy slots, each with the caller whose run holds it (undefined: taken out by take()). */
  private readonly busySlots = new Map<Slot, CallerKey | undefined>();
  /** Slots each caller holds: its runs in progress (and slots its runs left in quarantine). */
  private readonly inProgress = new Map<CallerKey, number>();
  /**
   * When each caller was last given a slot (a grant count), while it has runs in progress or
   * waiting; a caller idle again is forgotten and comes back as one never served.
   */
  private readonly lastServed = new Map<CallerKey, number>();
  private grants = 0;
  /** Waiting runs by caller, oldest first; a caller with none has no entry. */
  private readonly waiting = new Map<CallerKey, Waiter[]>();
  private waiterCount = 0;
  private nextSeq = 0;
  private closedReason: string | undefined;
  /** Slots held in quarantine (by index): busy, and no run knows when they come back. */
  private readonly outOfService = new Set<number>();

  constructor(
    slots: Slot[],
    private queueMax: number,
  ) {
    // Reversed so that pop() hands out slot 0 first: predictable in logs and tests.
    this.free = [...slots].reverse();
  }

  get total(): number {
    return this.free.length + this.busySlots.size;
  }

  get busy(): number {
    return this.busySlots.size;
  }

  /** Closed: the daemon is stopping, and no run will be granted a slot again. */
  get closed(): boolean {
    return this.closedReason !== undefined;
  }

  get queued(): number {
    return this.waiterCount;
  }

  get maxQueued(): number {
    return this.queueMax;
  }

  /**
   * Changes the queue bound (SIGHUP). Runs already queued past a lower bound keep their place:
   * only new arrivals are refused (or take the place of a run of a caller holding more).
   */
  setMaxQueued(queueMax: number): void {
    this.queueMax = queueMax;
  }

  /**
   * Resolves with a free slot for `caller`'s run, at once or when its turn comes (see the top of
   * this file). Rejects with 'overloaded' when the queue is full and `caller` already holds as
   * many places as anyone can give up, or later when a caller holding fewer takes its place;
   * with 'cancelled' (leaving the queue) when `signal` aborts first.
   */
  acquire(signal?: AbortSignal, caller: CallerKey = SELF, patient = false, prefer?: (slot: Slot) => number): Promise<Slot> {
    if (this.closedReason !== undefined) return Promise.reject(new RequestError('shutting_down', this.closedReason));
    if (signal?.aborted) return Promise.reject(cancelled(signal));
    if (!patient && this.allOutOfService()) return Promise.reject(this.noSlotCanRun());
    if (this.waiterCount === 0) {
      const slot = this.takeFree(prefer);
      if (slot) {
        this.grant(slot, caller);
        return Promise.resolve(slot);
      }
    }
    if (this.waiterCount >= this.queueMax) {
      const refusal = this.makeRoomFor(caller);
      if (refusal) return Promise.reject(refusal);
    }
    return new Promise<Slot>((resolve, reject) => {
      const onAbort = () => {
        this.remove(waiter);
        reject(cancelled(signal!));
      };
      const waiter: Waiter = {
        caller,
        patient,
        seq: this.nextSeq++,
        resolve,
        reject,
        detach: () => signal?.removeEventListener('abort', onAbort),
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      let own = this.waiting.get(caller);
      if (!own) this.waiting.set(caller, (own = []));
      own.push(waiter);
      this.waiterCount++;
    });
  }

  /**
   * A free slot: the one `prefer` ranks highest (src/daemon/runner.ts: a slot holding the run
   * the request fits, then one holding none, then one holding another: src/run/held.ts), the
   * most recently freed one among equals.
   */
  private takeFree(prefer: ((slot: Slot) => number) | undefined): Slot | undefined {
    if (!prefer || this.free.length < 2) return this.free.pop();
    let best = this.free.length - 1;
    let bestRank = prefer(this.free[best]!);
    for (let i = best - 1; i >= 0; i--) {
      const rank = prefer(this.free[i]!);
      if (rank > bestRank) {
        best = i;
        bestRank = rank;
      }
    }
    return this.free.splice(best, 1)[0];
  }

  /** take() when the slot is free; false (nothing done) when it is not. */
  takeIfFree(slot: Slot): boolean {
    if (!this.free.includes(slot)) return false;
    this.take(slot);
    return true;
  }

  /**
   * Takes a free slot out of the pool as if it were acquired: a slot found dirty at start-up,
   * which its quarantine releases once clean. No caller is charged for it.
   */
  take(slot: Slot): void {
    const at = this.free.indexOf(slot);
    if (at < 0) throw new Error(`slot ${slot.index} is not free`);
    this.free.splice(at, 1);
    this.busySlots.set(slot, undefined);
  }

  /**
   * A busy slot goes into quarantine: it comes back through release() once it is clean. While
   * every slot is in quarantine, no run can start and none is known to: runs waiting for a slot
   * and new ones are refused 'overloaded' at once, rather than wait for a slot that may never
   * come back (only patient ones wait: the start-up self-check).
   */
  quarantined(slot: Slot): void {
    if (!this.busySlots.has(slot)) throw new Error(`slot ${slot.index} is not busy`);
    this.outOfService.add(slot.index);
    if (!this.allOutOfService()) return;
    for (const waiter of [...this.waiting.values()].flat().sort((a, b) => a.seq - b.seq)) {
      if (waiter.patient) continue;
      this.remove(waiter);
      waiter.reject(this.noSlotCanRun());
    }
  }

  private allOutOfService(): boolean {
    return this.total > 0 && this.outOfService.size >= this.total;
  }

  private noSlotCanRun(): RequestError {
    return new RequestError(
      'overloaded',
      `no slot can take a run: all ${this.total} slots are quarantined (processes of their uids survived a kill; see the daemon's log); try again later`,
    );
  }

  /**
   * Gives a slot back: to the next waiter (the caller with the fewest runs in progress, its
   * oldest run), or to the free list.
   */
  release(slot: Slot): void {
    if (!this.busySlots.has(slot)) throw new Error(`slot ${slot.index} released twice`);
    this.outOfService.delete(slot.index);
    const owner = this.busySlots.get(slot);
    if (owner !== undefined) {
      const held = (this.inProgress.get(owner) ?? 1) - 1;
      if (held > 0) this.inProgress.set(owner, held);
      else this.inProgress.delete(owner);
      this.forgetIfIdle(owner);
    }
    this.busySlots.delete(slot);
    const waiter = this.nextWaiter();
    if (waiter) {
      this.remove(waiter);
      this.grant(slot, waiter.caller);
      waiter.resolve(slot);
      return;
    }
    this.free.push(slot);
  }

  /** Refuses new runs and rejects everything queued (daemon stopping). Busy slots drain normally. */
  close(reason: string): void {
    this.closedReason = reason;
    const all = [...this.waiting.values()].flat().sort((a, b) => a.seq - b.seq);
    this.waiting.clear();
    this.waiterCount = 0;
    for (const waiter of all) this.forgetIfIdle(waiter.caller);
    for (const waiter of all) {
      waiter.detach();
      waiter.reject(new RequestError('shutting_down', reason));
    }
  }

  private grant(slot: Slot, caller: CallerKey): void {
    this.busySlots.set(slot, caller);
    this.inProgress.set(caller, (this.inProgress.get(caller) ?? 0) + 1);
    this.lastServed.set(caller, this.grants++);
  }

  /**
   * The oldest run of the waiting caller with the fewest runs in progress; among equals, of the
   * one served least recently, then of the one waiting longest.
   */
  private nextWaiter(): Waiter | undefined {
    let best: { head: Waiter; held: number; served: number } | undefined;
    for (const [caller, own] of this.waiting) {
      const candidate = { head: own[0]!, held: this.inProgress.get(caller) ?? 0, served: this.lastServed.get(caller) ?? -1 };
      if (
        !best ||
        candidate.held < best.held ||
        (candidate.held === best.held && (candidate.served < best.served || (candidate.served === best.served && candidate.head.seq < best.head.seq)))
      ) {
        best = candidate;
      }
    }
    return best?.head;
  }

  private forgetIfIdle(caller: CallerKey): void {
    if (!this.inProgress.has(caller) && !this.waiting.has(caller)) this.lastServed.delete(caller);
  }

  /**
   * The queue is full: pushes out the newest run of the caller holding the most places if it
   * holds at least two more than `caller` (so that it keeps at least as many as `caller` will),
   * and returns undefined; otherwise returns the refusal for `caller`'s run.
   */
  private makeRoomFor(caller: CallerKey): RequestError | undefined {
    const mine = this.waiting.get(caller)?.length ?? 0;
    // Among callers holding the most, the one whose newest run came last gives up that run.
    let most: Waiter[] | undefined;
    for (const own of this.waiting.values()) {
      if (!most || own.length > most.length || (own.length === most.length && own[own.length - 1]!.seq > most[most.length - 1]!.seq)) most = own;
    }
    if (!most || most.length < mine + 2) {
      return new RequestError(
        'overloaded',
        `${this.waiterCount} runs queued, the maximum is ${this.queueMax}; the queue is shared fairly and ${describe(caller)} ` +
          `already holds ${mine} of its places (no caller holds two more to give one up); try again later`,
      );
    }
    const victim = most[most.length - 1]!;
    this.remove(victim);
    victim.reject(
      new RequestError(
        'overloaded',
        `${this.waiterCount + 1} runs queued, the maximum is ${this.queueMax}, and ${describe(victim.caller)} held ${most.length + 1} of the places, ` +
          `more than any other caller: its newest run gave its place to the run of a caller holding fewer; try again later`,
      ),
    );
    return undefined;
  }

  private remove(waiter: Waiter): void {
    const own = this.waiting.get(waiter.caller);
    const at = own ? own.indexOf(waiter) : -1;
    if (at >= 0) {
      own!.splice(at, 1);
      this.waiterCount--;
      if (own!.length === 0) {
        this.waiting.delete(waiter.caller);
        this.forgetIfIdle(waiter.caller);
      }
    }
    waiter.detach();
  }
}

function describe(caller: CallerKey): string {
  return caller === SELF ? "the daemon's self-check" : `uid ${caller}`;
}

function cancelled(signal: AbortSignal): RequestError {
  const reason = signal.reason;
  return reason instanceof RequestError ? reason : new RequestError('cancelled', 'the run was cancelled while queued');
}
