import { describe, expect, it } from 'vitest';
import { Client, CodejailError, DEFAULT_LIMITS, getEffectiveLimits, overrideLimit, setLimit } from '../../src/client/index.js';
import { LimitSettings } from '../../src/client/limits.js';

describe('limit layering', () => {
  it('starts from the original defaults', () => {
    expect(new LimitSettings().effective()).toEqual({
      CPU: 1,
      REALTIME: 1,
      VMEM: 1024 * 1024 * 1024,
      FSIZE: 0,
      NPROC: 15,
      OUTPUT: 1024 * 1024,
      DISK: 64 * 1024 * 1024,
    });
    expect(new LimitSettings().effective()).toEqual(DEFAULT_LIMITS);
  });

  it('applies defaults, then the context overrides, then the explicit limits', () => {
    const limits = new LimitSettings();
    limits.set('CPU', 2);
    limits.set('VMEM', 80_000_000);
    limits.override('CPU', 5, 'slow');
    limits.override('REALTIME', 9, 'slow');
    limits.override('NPROC', 3, 'other');

    expect(limits.effective()).toMatchObject({ CPU: 2, REALTIME: 1, VMEM: 80_000_000, NPROC: 15 });
    expect(limits.effective('slow')).toMatchObject({ CPU: 5, REALTIME: 9, VMEM: 80_000_000, NPROC: 15 });
    expect(limits.effective('other')).toMatchObject({ CPU: 2, REALTIME: 1, NPROC: 3 });
    expect(limits.effective('slow', { REALTIME: 20, FSIZE: 1000 })).toMatchObject({ CPU: 5, REALTIME: 20, FSIZE: 1000 });
  });

  it('ignores an unknown or empty context, like the original', () => {
    const limits = new LimitSettings();
    limits.set('CPU', 2);
    expect(limits.effective('nobody-registered-this')).toEqual({ ...DEFAULT_LIMITS, CPU: 2 });
    expect(limits.effective('')).toEqual({ ...DEFAULT_LIMITS, CPU: 2 });
  });

  it('effective() returns every limit; requested() only those set, so the daemon\'s defaults fill the rest', () => {
    const limits = new LimitSettings();
    limits.override('CPU', 3, 'ctx');
    expect(Object.keys(limits.effective('ctx', { FSIZE: 10 })).sort()).toEqual(Object.keys(DEFAULT_LIMITS).sort());
    expect(limits.requested('ctx', { FSIZE: 10 })).toEqual({ CPU: 3, FSIZE: 10 });
    expect(limits.requested()).toEqual({});
  });

  it('rejects unknown names and bad values, naming them', () => {
    const limits = new LimitSettings();
    expect(() => limits.set('PROXY', 1)).toThrow(/unknown limit 'PROXY'/);
    expect(() => limits.override('cpu', 1, 'ctx')).toThrow(CodejailError);
    expect(() => limits.set('CPU', -1)).toThrow(/CPU/);
    expect(() => limits.set('VMEM', 1.5)).toThrow(/VMEM/);
    expect(() => limits.set('CPU', Number.NaN)).toThrow(/CPU/);
    expect(() => limits.override('CPU', 1, '')).toThrow(/context/);
    expect(() => limits.effective(undefined, { NOPE: 1 })).toThrow(/unknown limit 'NOPE'/);
  });

  it('keeps limits per client, and module functions use one default client', () => {
    const a = new Client({ socketPath: '/nonexistent' });
    const b = new Client({ socketPath: '/nonexistent' });
    a.setLimit('CPU', 7);
    a.overrideLimit('REALTIME', 5, 'ctx');
    expect(a.getEffectiveLimits('ctx')).toMatchObject({ CPU: 7, REALTIME: 5 });
    expect(b.getEffectiveLimits('ctx')).toEqual(DEFAULT_LIMITS);

    setLimit('NPROC', 4);
    overrideLimit('CPU', 3, 'module-ctx');
    expect(getEffectiveLimits()).toMatchObject({ NPROC: 4, CPU: 1 });
    expect(getEffectiveLimits('module-ctx')).toMatchObject({ NPROC: 4, CPU: 3 });
  });
});
