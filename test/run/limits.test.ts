import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { DEFAULT_LIMITS, LIMITS, LIMIT_NAMES, limitsSchema } from '../../src/protocol/index.js';
import { DEFAULT_CEILINGS, ceilingViolation } from '../../src/config/ceilings.js';
import { RLIMITS, effectiveLimits, rlimitsFor } from '../../src/run/limits.js';
import { isRoot, runPython } from '../helpers/sandbox.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** The TypeScript sources under these directories of src/, concatenated. */
function sources(dirs: string[], except: string[]): string {
  const texts: string[] = [];
  for (const dir of dirs) {
    for (const entry of fs.readdirSync(path.join(root, 'src', dir), { recursive: true, encoding: 'utf8' })) {
      const file = path.join(dir, entry);
      if (file.endsWith('.ts') && !except.includes(file)) texts.push(fs.readFileSync(path.join(root, 'src', file), 'utf8'));
    }
  }
  return texts.join('\n');
}

// The limits are one table (src/protocol/limits.ts): these pin that every list of them follows
// it, so that a limit cannot be half-added.
describe('limit registry', () => {
  it('the request schema takes every limit of the table, whole where the table says so, and no other', () => {
    expect(Object.keys(limitsSchema.shape)).toEqual(LIMIT_NAMES);
    for (const name of LIMIT_NAMES) {
      expect(limitsSchema.safeParse({ [name]: DEFAULT_LIMITS[name] }).success, name).toBe(true);
      expect(limitsSchema.safeParse({ [name]: DEFAULT_CEILINGS[name] }).success, name).toBe(true);
      expect(limitsSchema.safeParse({ [name]: 2.5 }).success, name).toBe(!LIMITS[name].integer);
      expect(limitsSchema.safeParse({ [name]: -1 }).success, name).toBe(false);
    }
    expect(limitsSchema.safeParse({ NOSUCHLIMIT: 1 }).success).toBe(false);
  });

  it('the defaults are within the ceilings', () => {
    expect(Object.keys(DEFAULT_LIMITS)).toEqual(LIMIT_NAMES);
    expect(Object.keys(DEFAULT_CEILINGS)).toEqual(LIMIT_NAMES);
    expect(ceilingViolation(DEFAULT_LIMITS, DEFAULT_CEILINGS)).toBeUndefined();
  });

  it('every limit is enforced: an rlimit comes from it, or the run reads it', () => {
    const byRlimit = new Set(Object.values(RLIMITS).flatMap((row) => (row.limit ? [row.limit] : [])));
    expect([...byRlimit].sort()).toEqual(LIMIT_NAMES.filter((name) => LIMITS[name].enforcedBy === 'rlimits').sort());
    const runSources = sources(['run', 'layers'], ['run/limits.ts']);
    for (const name of LIMIT_NAMES.filter((n) => LIMITS[n].enforcedBy !== 'rlimits')) {
      expect(new RegExp(`\\.${name}\\b`).test(runSources), `${name} is read in src/run or src/layers`).toBe(true);
    }
  });

  it("the Python client's lists of the daemon's limits are the table's", () => {
    const py = fs.readFileSync(path.join(root, 'clients/python/codejail/jail_code.py'), 'utf8');
    const names = (assignment: string) => [...new RegExp(`^${assignment} = [^\\n]*`, 'm').exec(py)![0].matchAll(/'([A-Z]+)'/g)].map((m) => m[1]);
    expect(names('DAEMON_LIMIT_NAMES')).toEqual(LIMIT_NAMES);
    expect(names('_INTEGER_LIMITS')).toEqual(LIMIT_NAMES.filter((name) => LIMITS[name].integer));
  });

  it.skipIf(!isRoot)('the addon applies every rlimit of the table', async () => {
    // Values no default or inherited limit has, so that each line read back is the one set.
    const distinct = { cpu: [7, 9], as: [3e9, 3e9 + 4096], fsize: [5e6, 6e6], nproc: [41, 42], nofile: [201, 202], core: [0, 0], msgqueue: [0, 4096], memlock: [0, 8192], sigpending: [97, 98], stack: [7 << 20, 9 << 20] } satisfies Record<keyof typeof RLIMITS, [number, number]>;
    const linux: Record<keyof typeof RLIMITS, string> = {
      cpu: 'Max cpu time', as: 'Max address space', fsize: 'Max file size', nproc: 'Max processes', nofile: 'Max open files', core: 'Max core file size',
      msgqueue: 'Max msgqueue size', memlock: 'Max locked memory', sigpending: 'Max pending signals', stack: 'Max stack size',
    };
    const r = await runPython("print(open('/proc/self/limits').read())", { rlimits: distinct });
    expect(r.status, r.stderr).toBe(0);
    for (const [name, [soft, hard]] of Object.entries(distinct)) {
      const line = r.stdout.split('\n').find((l) => l.startsWith(linux[name as keyof typeof RLIMITS]));
      expect(line?.split(/\s{2,}/).slice(1, 3), name).toEqual([String(soft), String(hard)]);
    }
  });
});

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
