import { describe, expect, it } from 'vitest';
import { slotUsers } from '../../src/run/slot.js';
import { SlotPool } from '../../src/daemon/slots.js';

const pool = (count: number, queueMax: number) => new SlotPool(slotUsers({ firstUid: 61000, count }), queueMax);

describe('slotUsers', () => {
  it('gives slot i uid = gid = firstUid + i and an account named by the uid (and the name earlier setups gave it)', () => {
    expect(slotUsers({ firstUid: 61000, count: 2 })).toEqual([
      { index: 0, uid: 61000, gid: 61000, user: 'codejail-61000', legacyUser: 'codejail-s0' },
      { index: 1, uid: 61001, gid: 61001, user: 'codejail-61001', legacyUser: 'codejail-s1' },
    ]);
  });

  it('support_slot_names_per_range: two ranges give no name twice', () => {
    const names = [...slotUsers({ firstUid: 61000, count: 16 }), ...slotUsers({ firstUid: 62000, count: 16 })].map((slot) => slot.user);
    expect(new Set(names).size).toBe(32);
  });
});

describe('SlotPool', () => {
  it('hands out free slots at once, then queues FIFO', async () => {
    const slots = pool(2, 10);
    const a = await slots.acquire();
    const b = await slots.acquire();
    expect([a.uid, b.uid]).toEqual([61000, 61001]);
    const order: number[] = [];
    const waiting = [1, 2, 3].map((n) => slots.acquire().then((s) => (order.push(n), s)));
    expect(slots.queued).toBe(3);
    slots.release(a);
    const first = await waiting[0]!;
    expect(first).toBe(a);
    slots.release(b);
    slots.release(first);
    await Promise.all(waiting);
    expect(order).toEqual([1, 2, 3]);
    expect(slots.busy).toBe(2);
  });

  it('refuses past queueMax with overloaded, naming the numbers', async () => {
    const slots = pool(1, 2);
    await slots.acquire();
    void slots.acquire();
    void slots.acquire();
    await expect(slots.acquire()).rejects.toMatchObject({ code: 'overloaded', message: expect.stringContaining('2 runs queued, the maximum is 2') });
  });

  it('removes a waiter whose signal aborts, and keeps the others in order', async () => {
    const slots = pool(1, 5);
    const held = await slots.acquire();
    const controller = new AbortController();
    const cancelled = slots.acquire(controller.signal);
    const next = slots.acquire();
    controller.abort();
    await expect(cancelled).rejects.toMatchObject({ code: 'cancelled' });
    expect(slots.queued).toBe(1);
    slots.release(held);
    expect(await next).toBe(held);
  });

  it('rejects queued waiters and new runs once closed', async () => {
    const slots = pool(1, 5);
    await slots.acquire();
    const queued = slots.acquire();
    slots.close('stopping');
    await expect(queued).rejects.toMatchObject({ code: 'shutting_down' });
    await expect(slots.acquire()).rejects.toMatchObject({ code: 'shutting_down' });
  });

  it('refuses a double release', async () => {
    const slots = pool(1, 0);
    const s = await slots.acquire();
    slots.release(s);
    expect(() => slots.release(s)).toThrow(/twice/);
  });
});
