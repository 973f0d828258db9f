// Slots: each concurrent run gets its own uid and gid (slot i: firstUid + i), so runs cannot
// signal or read each other and NPROC counts per run. When all slots are busy, runs wait in a
// bounded FIFO queue; past its bound they are refused as 'overloaded'.
import { RequestError } from '../protocol/errors.js';

export interface Slot {
  index: number;
  uid: number;
  gid: number;
}

export interface SlotRange {
  firstUid: number;
  count: number;
}

export interface SlotUser extends Slot {
  /** The name `codejail setup` gives the slot's user and group: codejail-<uid>. */
  user: string;
  /**
   * The name earlier setups gave slot i of any range, codejail-s<i>. Still accepted for the same
   * uid (existing installs keep working), but no longer created: it made a second range's slot 0
   * collide with the first range's.
   */
  legacyUser: string;
}

/**
 * The slots of a range with their account names. Named by uid, not by index, so that daemons
 * with different slot ranges can share a host (their ranges must not overlap: the names cannot
 * tell two daemons' use of one uid apart).
 */
export function slotUsers(range: SlotRange): SlotUser[] {
  return Array.from({ length: range.count }, (_, index) => {
    const uid = range.firstUid + index;
    return { index, uid, gid: uid, user: `codejail-${uid}`, legacyUser: `codejail-s${index}` };
  });
}

interface Waiter {
  resolve(slot: Slot): void;
  reject(err: Error): void;
  detach(): void;
}

export class SlotPool {
  private readonly free: Slot[];
  private readonly busySlots = new Set<Slot>();
  private readonly waiters: Waiter[] = [];
  private closedReason: string | undefined;

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

  get queued(): number {
    return this.waiters.length;
  }

  get maxQueued(): number {
    return this.queueMax;
  }

  /**
   * Changes the queue bound (SIGHUP). Runs already queued past a lower bound keep their place:
   * only new arrivals are refused.
   */
  setMaxQueued(queueMax: number): void {
    this.queueMax = queueMax;
  }

  /**
   * Resolves with a free slot, at once or in FIFO order. Rejects with 'overloaded' when the
   * queue is full, and with 'cancelled' (leaving the queue) when `signal` aborts first.
   */
  acquire(signal?: AbortSignal): Promise<Slot> {
    if (this.closedReason !== undefined) return Promise.reject(new RequestError('shutting_down', this.closedReason));
    if (signal?.aborted) return Promise.reject(cancelled(signal));
    if (this.waiters.length === 0) {
      const slot = this.free.pop();
      if (slot) {
        this.busySlots.add(slot);
        return Promise.resolve(slot);
      }
    }
    if (this.waiters.length >= this.queueMax) {
      return Promise.reject(
        new RequestError('overloaded', `${this.waiters.length} runs queued, the maximum is ${this.queueMax}; try again later`),
      );
    }
    return new Promise<Slot>((resolve, reject) => {
      const onAbort = () => {
        this.remove(waiter);
        reject(cancelled(signal!));
      };
      const waiter: Waiter = {
        resolve,
        reject,
        detach: () => signal?.removeEventListener('abort', onAbort),
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(waiter);
    });
  }

  /**
   * Takes a free slot out of the pool as if it were acquired: a slot found dirty at start-up,
   * which its quarantine releases once clean.
   */
  take(slot: Slot): void {
    const at = this.free.indexOf(slot);
    if (at < 0) throw new Error(`slot ${slot.index} is not free`);
    this.free.splice(at, 1);
    this.busySlots.add(slot);
  }

  /** Gives a slot back: to the longest waiter, or to the free list. */
  release(slot: Slot): void {
    if (!this.busySlots.has(slot)) throw new Error(`slot ${slot.index} released twice`);
    const waiter = this.waiters.shift();
    if (waiter) {
      waiter.detach();
      waiter.resolve(slot);
      return;
    }
    this.busySlots.delete(slot);
    this.free.push(slot);
  }

  /** Refuses new runs and rejects everything queued (daemon stopping). Busy slots drain normally. */
  close(reason: string): void {
    this.closedReason = reason;
    for (const waiter of this.waiters.splice(0)) {
      waiter.detach();
      waiter.reject(new RequestError('shutting_down', reason));
    }
  }

  private remove(waiter: Waiter): void {
    const at = this.waiters.indexOf(waiter);
    if (at >= 0) this.waiters.splice(at, 1);
    waiter.detach();
  }
}

function cancelled(signal: AbortSignal): RequestError {
  const reason = signal.reason;
  return reason instanceof RequestError ? reason : new RequestError('cancelled', 'the run was cancelled while queued');
}
