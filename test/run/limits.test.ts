import { describe, expect, it } from 'vitest';
import { DEFAULT_LIMITS } from '../../src/protocol/index.js';
import { DEFAULT_CEILINGS, ceilingViolation } from '../../src/config/ceilings.js';
import { effectiveLimits, rlimitsFor } from '../../src/run/limits.js';

describe('effectiveLimits', () => {
  it('overlays the request on the defaults', () => {
    expect(effectiveLimits(DEFAULT_LIMITS, { CPU: 2, VMEM: 80_000_000 }, DEFAULT_CEILINGS)).toEqual({
      ...DEFAULT_LIMITS,
      CPU: 2,
      VMEM: 80_000_000,
    });
  });

  it('refuses a limit above its ceiling, naming limit, value and ceiling', () => {
    expect(() => effectiveLimits(DEFAULT_LIMITS, { CPU: 100 }, DEFAULT_CEILINGS)).toThrow(
      expect.objectContaining({ code: 'limit_exceeds_ceiling', message: 'CPU 100 exceeds the ceiling of 60' }),
    );
  });

  it('refuses 0 (unlimited) where a nonzero ceiling exists', () => {
    expect(() => effectiveLimits(DEFAULT_LIMITS, { REALTIME: 0 }, DEFAULT_CEILINGS)).toThrow(/REALTIME 0 \(unlimited\).*300/);
    expect(() => effectiveLimits(DEFAULT_LIMITS, { NPROC: 0 }, DEFAULT_CEILINGS)).toThrow(/NPROC/);
  });

  it('allows 0 where the ceiling is 0 (no ceiling), and FSIZE 0 always', () => {
    expect(effectiveLimits(DEFAULT_LIMITS, { VMEM: 0 }, DEFAULT_CEILINGS).VMEM).toBe(0);
    expect(effectiveLimits(DEFAULT_LIMITS, { VMEM: 10 ** 12 }, DEFAULT_CEILINGS).VMEM).toBe(10 ** 12);
    expect(effectiveLimits(DEFAULT_LIMITS, { FSIZE: 0 }, DEFAULT_CEILINGS).FSIZE).toBe(0);
    expect(ceilingViolation({ ...DEFAULT_LIMITS, FSIZE: 2 ** 31 }, DEFAULT_CEILINGS)).toMatch(/FSIZE/);
  });
});

describe('rlimitsFor', () => {
  it('gives CPU a hard limit one second above the soft one, rounding up', () => {
    expect(rlimitsFor({ ...DEFAULT_LIMITS, CPU: 1 }).cpu).toEqual([1, 2]);
    expect(rlimitsFor({ ...DEFAULT_LIMITS, CPU: 0.5 }).cpu).toEqual([1, 2]);
  });

  it('omits disabled limits but always sets FSIZE (0 = no file may be written) and core 0', () => {
    const r = rlimitsFor({ ...DEFAULT_LIMITS, CPU: 0, VMEM: 0, NPROC: 0, FSIZE: 0 });
    expect(r.cpu).toBeUndefined();
    expect(r.as).toBeUndefined();
    expect(r.nproc).toBeUndefined();
    expect(r.fsize).toEqual([0, 0]);
    expect(r.core).toEqual([0, 0]);
  });

  it("bounds the stack's hard limit at its soft one, 8 MiB (issue 16 item 12)", () => {
    expect(rlimitsFor(DEFAULT_LIMITS).stack).toEqual([8 * 1024 * 1024, 8 * 1024 * 1024]);
  });

  it('sets VMEM as RLIMIT_AS and NPROC', () => {
    const r = rlimitsFor({ ...DEFAULT_LIMITS, VMEM: 80_000_000, NPROC: 1 });
    expect(r.as).toEqual([80_000_000, 80_000_000]);
    expect(r.nproc).toEqual([1, 1]);
  });
});
