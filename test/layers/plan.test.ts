import { describe, expect, it } from 'vitest';
import { DEFAULT_LIMITS } from '../../src/protocol/index.js';
import type { CommandProfile } from '../../src/run/commands.js';
import type { Layers } from '../../src/layers/index.js';
import { buildPlan } from '../../src/layers/plan.js';

const profile: CommandProfile = {
  name: 'python',
  kind: 'python',
  warm: false,
  preload: [],
  path: '/usr/bin/python3',
  executable: '/usr/bin/python3.11',
  args: ['-E', '-B'],
  env: { PYTHONIOENCODING: 'utf-8', HOME: '/root' },
  execute: ['/usr/bin/python3.11'],
  read: ['/usr/lib/python3.11'],
};
const dir = { id: 'abc', path: '/runs/abc', tmp: '/runs/abc/tmp' };
const slot = { index: 2, uid: 61002, gid: 61002 };
const allLayers: Layers = {
  unsafe: false,
  uid: true,
  rlimits: true,
  landlock: true,
  landlockAbi: 7,
  seccomp: true,
  netns: true,
  apparmor: false,
  // Off, as they were before Layers named them: this file pins the layers above.
  disk: false,
  cgroups: false,
  mntns: false,
  netnsFds: [40, 41, 42, 43],
  kill: 'uid',
  report: {},
  confinement: ['uid', 'rlimits', 'landlock', 'seccomp', 'netns'],
};
const input = { profile, dir, hasCode: true, argv: ['x'], limits: DEFAULT_LIMITS, slot, layers: allLayers, apparmorProfile: 'codejail-sandbox' };

describe('buildPlan', () => {
  it('runs the code file with the request argv, as the slot, with every active layer', () => {
    const plan = buildPlan(input);
    expect(plan.file).toBe('/usr/bin/python3.11');
    expect(plan.argv).toEqual(['/usr/bin/python3', '-E', '-B', 'jailed_code', 'x']);
    expect(plan.cwd).toBe('/runs/abc');
    expect([plan.uid, plan.gid]).toEqual([61002, 61002]);
    expect(plan.netnsFd).toBe(42);
    expect(plan.seccomp).toBe(true);
    expect(plan.landlock).toMatchObject({ readWrite: ['/runs/abc'], readWriteFiles: ['/dev/null'], denyTcp: true, scope: true });
    expect(plan.apparmorProfile).toBeUndefined();
    expect(plan.parentDeathSignal).toBe(true);
    expect(plan.rlimits?.cpu).toEqual([1, 2]);
  });

  it('gives every run oom_score_adj 1000, unsafe ones too (issue 16 item 7)', () => {
    expect(buildPlan(input).oomScoreAdj).toBe(1000);
    expect(buildPlan({ ...input, layers: { ...allLayers, unsafe: true } }).oomScoreAdj).toBe(1000);
  });

  it("joins the slot's own network namespace, and fails closed when the slot has none", () => {
    expect(buildPlan({ ...input, slot: { index: 0, uid: 61000, gid: 61000 } }).netnsFd).toBe(40);
    expect(buildPlan({ ...input, slot: { index: 3, uid: 61003, gid: 61003 } }).netnsFd).toBe(43);
    expect(() => buildPlan({ ...input, slot: { index: 4, uid: 61004, gid: 61004 } })).toThrow(/no network namespace was made for slot 4/);
    expect(buildPlan({ ...input, layers: { ...allLayers, netns: false, netnsFds: undefined } }).netnsFd).toBeUndefined();
  });

  it('builds a clean environment where HOME and TMPDIR always point into the run', () => {
    expect(buildPlan(input).env.sort()).toEqual(
      ['HOME=/runs/abc/tmp', 'LANG=C.UTF-8', 'PATH=/usr/bin:/bin', 'PYTHONIOENCODING=utf-8', 'TMPDIR=/runs/abc/tmp'].sort(),
    );
  });

  it('leaves jailed_code out without code', () => {
    expect(buildPlan({ ...input, hasCode: false, argv: ['doit.py', '1'] }).argv).toEqual(['/usr/bin/python3', '-E', '-B', 'doit.py', '1']);
  });

  it('applies nothing but rlimits in unsafe mode', () => {
    const plan = buildPlan({ ...input, layers: { ...allLayers, unsafe: true, uid: false, landlock: false, seccomp: false, netns: false } });
    expect(plan.uid).toBeUndefined();
    expect(plan.landlock).toBeUndefined();
    expect(plan.seccomp).toBeUndefined();
    expect(plan.netnsFd).toBeUndefined();
    expect(plan.rlimits).toBeDefined();
  });
});
