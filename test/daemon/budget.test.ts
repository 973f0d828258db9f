// The byte budget per caller uid and in all (server/budget.ts), without sockets: fake connections
// that hold a number of bytes and record why they were closed.
import { describe, expect, it } from 'vitest';
import { BufferBudget, type BudgetHolder } from '../../src/daemon/server/budget.js';
import type { ConnectionLimits } from '../../src/daemon/server/options.js';

interface Fake extends BudgetHolder {
  bufferedBytes: number;
  queuedBytes: number;
  replyInTransit: boolean;
  closed?: { reason: string; code: string; message: string };
}

function fake(uid: number, bytes: number, replyInTransit = false, queuedBytes = 0): Fake {
  const holder: Fake = {
    caller: { uid },
    bufferedBytes: bytes,
    queuedBytes,
    replyInTransit,
    close(reason, code, message) {
      holder.closed = { reason, code, message };
      holder.bufferedBytes = 0;
    },
  };
  return holder;
}

const limits = (perUid: number, total: number): ConnectionLimits => ({
  max: 1024,
  perUid: 64,
  idleTimeoutMs: 1000,
  frameTimeoutMs: 1000,
  maxBufferedBytes: 1000,
  perUidBufferedBytes: perUid,
  totalBufferedBytes: total,
});

describe('the byte budget', () => {
  // The review's case: many small connections of one uid, and another caller's one connection
  // larger than each of them. Reviewed: that one (the largest connection) was closed.
  it('deny_one_uid_holding_the_budget_in_small_connections_getting_another_callers_closed', () => {
    const hoarder = Array.from({ length: 10 }, () => fake(1, 100));
    const victim = fake(2, 300);
    const budget = new BufferBudget([...hoarder, victim], limits(1200, 1200));
    budget.enforce(victim, 'frame');
    expect(victim.closed).toBeUndefined();
    expect(hoarder.filter((h) => h.closed?.reason === 'buffer_budget')).toHaveLength(1);
    expect(budget.total()).toBeLessThanOrEqual(1200);
    expect(hoarder.find((h) => h.closed)!.closed!.message).toMatch(/connections\.totalBufferedBytes.*uid 1 held the most/);
  });

  it('deny_one_uid_past_its_cap_closing_its_largest_connection_first', () => {
    const small = fake(1, 100);
    const large = fake(1, 500);
    const other = fake(2, 900);
    const budget = new BufferBudget([small, large, other], limits(500, 2000));
    budget.enforce(small, 'frame');
    expect(large.closed).toMatchObject({ reason: 'buffer_uid_limit', code: 'overloaded' });
    expect(large.closed!.message).toMatch(/uid 1 hold 600 bytes.*more than the 500 one caller may \(connections\.perUidBufferedBytes\)/);
    expect(small.closed).toBeUndefined();
    expect(other.closed).toBeUndefined();
  });

  it('allow_a_reply_in_transit_closed_last', () => {
    // uid 1's reply was just written; uid 2 holds its bytes otherwise: uid 2 goes first even if
    // uid 1 holds more in all.
    const reader = fake(1, 700, true);
    const holder = fake(2, 400);
    const budget = new BufferBudget([reader, holder], limits(1000, 1000));
    budget.enforce(reader, 'reply');
    expect(reader.closed).toBeUndefined();
    expect(holder.closed?.reason).toBe('buffer_budget');
    // Replies in transit only: the budget holds all the same.
    const a = fake(1, 700, true);
    const b = fake(2, 400, true);
    new BufferBudget([a, b], limits(1000, 1000)).enforce(b, 'reply');
    expect(a.closed?.reason).toBe('buffer_budget');
    expect(b.closed).toBeUndefined();
  });

  it('support_a_frame_waits_for_queued_requests_to_leave_rather_than_close_anyone', () => {
    // uid 1 holds 400 queued and a frame of 300 past its cap of 600: without its queued requests
    // it fits, so its frame waits; nothing is closed.
    const queuedHere = fake(1, 400, false, 400);
    const frame = fake(1, 300);
    const budget = new BufferBudget([queuedHere, frame], limits(600, 2000));
    expect(budget.enforce(frame, 'frame')).toBe('wait');
    expect(queuedHere.closed).toBeUndefined();
    expect(frame.closed).toBeUndefined();
    // A reply cannot wait, and frames that do not fit even without the queue are closed.
    expect(budget.enforce(frame, 'reply')).toBe('ok');
    expect(queuedHere.closed?.reason).toBe('buffer_uid_limit');
    const a = fake(1, 800, false, 100);
    expect(new BufferBudget([a], limits(600, 2000)).enforce(a, 'frame')).toBe('ok');
    expect(a.closed?.reason).toBe('buffer_uid_limit');
  });

  it('deny_a_queued_request_past_a_cap_and_close_nobody_for_it', () => {
    const mine = fake(1, 300);
    const others = fake(2, 500);
    const budget = new BufferBudget([mine, others], limits(600, 1000));
    expect(budget.refusal(mine, 200)).toBeUndefined();
    expect(budget.refusal(mine, 301)).toMatch(/uid 1 would then hold 601 bytes, more than the 600 one caller may \(connections\.perUidBufferedBytes\)/);
    expect(new BufferBudget([mine, others], limits(1000, 900)).refusal(mine, 101)).toMatch(/901 bytes, more than the daemon's budget of 900 \(connections\.totalBufferedBytes\)/);
    expect(budget.refusal(mine, 701)).toMatch(/connection that would then hold 1001 bytes.*connections\.maxBufferedBytes/);
    expect(mine.closed).toBeUndefined();
    expect(others.closed).toBeUndefined();
  });
});
