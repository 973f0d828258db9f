// Slots: each concurrent run gets its own uid and gid (slot i: firstUid + i), so runs cannot
// signal or read each other and NPROC counts per run. When all slots are busy, runs wait in a
// bounded FIFO queue; past its bound they are refused as 'overloaded'.
import { RequestError } from '../protocol/errors.js';
import type { SlotIdentity } from '../run/slot.js';

/** A slot as the pool hands it out: its identity (src/run/slot.ts). */
export type Slot = SlotIdentity;

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
