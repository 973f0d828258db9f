// The key a held run is made for (src/run/held.ts): a request takes a held run only when its
// key is the same, so the key must hold everything the run's confinement fixed ahead, and the
// caller it was made for.
import { describe, expect, it } from 'vitest';
import { DEFAULT_LIMITS, LIMIT_NAMES, LIMITS } from '../../src/protocol/limits.js';
import { heldRunKey, type HeldRunKey } from '../../src/run/held.js';

const base: HeldRunKey = { caller: 1000, command: 'python', limits: { ...DEFAULT_LIMITS }, resultChannel: false };

describe('heldRunKey', () => {
  it('deny_a_held_run_is_taken_by_another_caller: the caller is in the key (no cross-caller signal)', () => {
    expect(heldRunKey({ ...base, caller: 1001 })).not.toBe(heldRunKey(base));
    expect(heldRunKey({ ...base, caller: undefined })).not.toBe(heldRunKey(base));
  });

  it('deny_a_held_run_is_taken_under_other_limits_its_plan_fixed: each one the confinement sets is in the key', () => {
    const fixed = LIMIT_NAMES.filter((name) => LIMITS[name].enforcedBy !== 'supervise');
    expect(fixed).toEqual(expect.arrayContaining(['CPU', 'VMEM', 'FSIZE', 'NPROC', 'DISK']));
    for (const name of fixed) {
      expect(heldRunKey({ ...base, limits: { ...base.limits, [name]: base.limits[name] + 1 } }), name).not.toBe(heldRunKey(base));
    }
    expect(heldRunKey({ ...base, command: 'other' })).not.toBe(heldRunKey(base));
    expect(heldRunKey({ ...base, resultChannel: true })).not.toBe(heldRunKey(base));
  });

  it('allow_limits_the_daemon_supervises_are_the_requests_own: REALTIME and OUTPUT are not in the key', () => {
    expect(heldRunKey({ ...base, limits: { ...base.limits, REALTIME: 7, OUTPUT: 10 } })).toBe(heldRunKey(base));
  });
});
