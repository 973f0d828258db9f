import { describe, expect, it } from 'vitest';
import { slotUsers } from '../../src/run/slot_users.js';
import { SELF, SlotPool } from '../../src/daemon/slots.js';

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

  it('support_every_slot_quarantined_refuses_runs_at_once: waiting and new runs get overloaded, patient ones wait', async () => {
    // Issue 16 item 3: with every slot quarantined, requests hung until their clients gave up.
    const slots = pool(2, 10);
    const a = await slots.acquire();
    const b = await slots.acquire();
    const waiting = slots.acquire(undefined, 1000);
    const patient = slots.acquire(undefined, SELF, true);
    slots.quarantined(a);
    expect(slots.queued).toBe(2); // one slot is still in service: everyone waits
    slots.quarantined(b);
    await expect(waiting).rejects.toMatchObject({ code: 'overloaded', message: expect.stringMatching(/^no slot can take a run: all 2 slots are quarantined/) });
    await expect(slots.acquire(undefined, 1001)).rejects.toMatchObject({ code: 'overloaded' });
    expect(slots.queued).toBe(1);
    // A slot back from quarantine: the patient waiter gets it, and new runs are taken again.
    slots.release(b);
    expect((await patient).index).toBe(b.index);
    const next = slots.acquire(undefined, 1002);
    expect(slots.queued).toBe(1);
    slots.release(a);
    expect((await next).index).toBe(a.index);
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

// The queue shared between callers (uids): fair queueing on release, equal shares of a full queue.
describe('SlotPool between callers', () => {
  const A = 1000;
  const B = 1001;
  const C = 1002;
  /** Settles `promise` into what it resolved with, or the code it was rejected with. */
  const outcome = (promise: Promise<unknown>) => promise.then((slot) => slot, (err: { code: string }) => err.code);

  it('allow_one_caller_filling_an_idle_queue: alone, a caller may take every slot and every place', async () => {
    const slots = pool(2, 3);
    await slots.acquire(undefined, A);
    await slots.acquire(undefined, A);
    const queued = [1, 2, 3].map(() => outcome(slots.acquire(undefined, A)));
    await expect(slots.acquire(undefined, A)).rejects.toMatchObject({
      code: 'overloaded',
      message: expect.stringContaining('3 runs queued, the maximum is 3; the queue is shared fairly and uid 1000 already holds 3'),
    });
    expect(slots.queued).toBe(3);
    slots.close('stop');
    expect(await Promise.all(queued)).toEqual(['shutting_down', 'shutting_down', 'shutting_down']);
  });

  it('deny_one_caller_holding_the_whole_queue_from_another: a newcomer takes the place of the newest run of the caller holding the most', async () => {
    const slots = pool(1, 4);
    const held = await slots.acquire(undefined, A);
    const ofA = [0, 1, 2, 3].map(() => outcome(slots.acquire(undefined, A)));
    const ofB = slots.acquire(undefined, B);
    // A's newest run gave its place up, refused as if the queue had been full when it came.
    expect(await ofA[3]).toBe('overloaded');
    expect(slots.queued).toBe(4);
    // The freed slot goes to B: neither has a run in progress then, but A was served last,
    // although A's runs waited longer.
    slots.release(held);
    expect(await ofB).toBe(held);
    slots.close('stop');
    expect(await Promise.all(ofA.slice(0, 3))).toEqual(['shutting_down', 'shutting_down', 'shutting_down']);
  });

  it('deny_one_caller_holding_the_whole_queue_from_another: names what was refused, and why', async () => {
    const slots = pool(1, 2);
    await slots.acquire(undefined, A);
    void outcome(slots.acquire(undefined, A));
    const pushedOut = slots.acquire(undefined, A);
    void outcome(slots.acquire(undefined, B));
    await expect(pushedOut).rejects.toMatchObject({
      code: 'overloaded',
      message: expect.stringContaining('2 runs queued, the maximum is 2, and uid 1000 held 2 of the places, more than any other caller'),
    });
  });

  it('shares a full queue equally between the callers that want it (within one place)', async () => {
    const slots = pool(1, 6);
    await slots.acquire(undefined, A);
    const runs = { [A]: [] as Array<Promise<unknown>>, [B]: [] as Array<Promise<unknown>>, [C]: [] as Array<Promise<unknown>> };
    for (let i = 0; i < 6; i++) runs[A].push(outcome(slots.acquire(undefined, A)));
    for (let i = 0; i < 6; i++) runs[B].push(outcome(slots.acquire(undefined, B)));
    for (let i = 0; i < 6; i++) runs[C].push(outcome(slots.acquire(undefined, C)));
    expect(slots.queued).toBe(6);
    slots.close('stop');
    const kept = async (of: Array<Promise<unknown>>) => (await Promise.all(of)).filter((code) => code === 'shutting_down').length;
    expect([await kept(runs[A]), await kept(runs[B]), await kept(runs[C])]).toEqual([2, 2, 2]);
  });

  it('hands a freed slot to the waiting caller with the fewest runs in progress, before a caller that waited longer', async () => {
    const slots = pool(2, 10);
    const held = await slots.acquire(undefined, A);
    await slots.acquire(undefined, A);
    const order: string[] = [];
    const wait = (who: number, name: string) => slots.acquire(undefined, who).then((slot) => (order.push(name), slot));
    const a3 = wait(A, 'a3');
    const b1 = wait(B, 'b1');
    slots.release(held);
    expect(await b1).toBe(held);
    expect(order).toEqual(['b1']);
    slots.close('stop');
    await expect(a3).rejects.toMatchObject({ code: 'shutting_down' });
  });

  it('among callers with as many runs in progress, round robin, then the longest waiter; within a caller, FIFO', async () => {
    const slots = pool(1, 10);
    let slot = await slots.acquire(undefined, C);
    const order: string[] = [];
    const wait = (who: number, name: string) => slots.acquire(undefined, who).then((s) => (order.push(name), s));
    const waiting = [wait(B, 'b1'), wait(A, 'a1'), wait(A, 'a2'), wait(B, 'b2')];
    for (let i = 0; i < 4; i++) {
      slots.release(slot);
      slot = await Promise.race(waiting.filter((_, j) => !order.includes(['b1', 'a1', 'a2', 'b2'][j]!)));
    }
    // With one slot neither caller has a run in progress at a turn: they take turns (b1 waited
    // longest, then A was never served, then B was served least recently...).
    expect(order).toEqual(['b1', 'a1', 'b2', 'a2']);
  });

  it('a slot taken out of the pool (quarantined at start) goes to the next waiter when released, charged to nobody before', async () => {
    const slots = pool(2, 10);
    const quarantined = await slots.acquire(undefined, C);
    slots.release(quarantined);
    slots.take(quarantined);
    const other = await slots.acquire(undefined, A);
    const b = slots.acquire(undefined, B);
    const a = slots.acquire(undefined, A);
    slots.release(quarantined);
    expect(await b).toBe(quarantined);
    slots.release(other);
    expect(await a).toBe(other);
    expect(slots.busy).toBe(2);
    expect(slots.queued).toBe(0);
  });
});
