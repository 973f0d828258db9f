// Each layer's per-run work in a slot (Layer.runHooks), bound to what the layer detected: the
// slot calls whatever runHooks() returns and names no layer, so what a layer does per run is
// pinned here.
import { describe, expect, it, vi } from 'vitest';
import { DEFAULT_LIMITS } from '../../src/protocol/index.js';
import { runHooks, type Layers } from '../../src/layers/index.js';
import type { CgroupTree } from '../../src/layers/cgroup_tree.js';
import type { RunDiskControl } from '../../src/run/rundir.js';

const slot = { index: 2, uid: 61002, gid: 61002 };
const range = { firstUid: 61000, count: 4 };
const base: Layers = {
  unsafe: false, uid: false, rlimits: true, landlock: false, seccomp: false, netns: false, mntns: false, apparmor: false,
  cgroups: false, disk: false, kill: 'process-group', report: {}, confinement: ['rlimits'],
};

function bind(layers: Partial<Layers>, killUidRoundAsync = vi.fn(async () => true)) {
  return { hooks: runHooks({ ...base, ...layers }, { addon: { killUidRoundAsync }, range }), killUidRoundAsync };
}

describe('runHooks', () => {
  it('gives nothing per run in unsafe mode, nor with rlimits alone', () => {
    expect(bind({ unsafe: true, confinement: 'none' }).hooks).toEqual([]);
    expect(bind({}).hooks).toEqual([]);
  });

  it('uid: owns the run directory as the slot and kills by the slot uid, reaping every slot uid', async () => {
    const { hooks, killUidRoundAsync } = bind({ uid: true, kill: 'uid' });
    expect(hooks.map((hook) => hook.name)).toEqual(['uid']);
    const [uid] = hooks;
    expect(uid!.runDir!(slot, DEFAULT_LIMITS)).toEqual({ owner: { uid: 61002, gid: 61002 } });
    await expect(uid!.killRound!(slot)).resolves.toBe(true);
    expect(killUidRoundAsync).toHaveBeenCalledWith(61002, 61000, 4);
    expect(uid!.killScope!(slot)).toBe('uid 61002');
  });

  it('uid: refuses to kill a system uid or the daemon\'s own, before any signal', () => {
    const { hooks, killUidRoundAsync } = bind({ uid: true, kill: 'uid' });
    expect(() => hooks[0]!.killRound!({ index: 0, uid: 0, gid: 0 })).toThrow(/refusing to kill uid 0/);
    expect(() => hooks[0]!.killRound!({ index: 0, uid: 999, gid: 999 })).toThrow(/refusing to kill uid 999/);
    expect(killUidRoundAsync).not.toHaveBeenCalled();
  });

  it('uid: kills by uid without owning when only the kill method says so (as the runner tests set it)', () => {
    const [uid] = bind({ kill: 'uid' }).hooks;
    expect(uid!.runDir).toBeUndefined();
    expect(uid!.killRound).toBeDefined();
  });

  it('cgroups: a leaf per run whose cgroup.procs goes into the plan, its kill round, verdict and release', () => {
    const tree = {
      prepare: vi.fn(() => 77),
      killRound: vi.fn(() => false),
      verdict: vi.fn(() => ({ oomKilled: true, memoryPeakKb: 12 })),
      release: vi.fn(),
    };
    const [cgroups] = bind({ cgroups: true, cgroupTree: tree as unknown as CgroupTree }).hooks;
    expect(cgroups!.name).toBe('cgroups');
    expect(cgroups!.step).toBe('cgroup');
    expect(cgroups!.prepare!(slot, DEFAULT_LIMITS)).toEqual({ cgroupProcsFd: 77 });
    expect(tree.prepare).toHaveBeenCalledWith(slot, DEFAULT_LIMITS);
    expect(cgroups!.killRound!(slot)).toBe(false);
    expect(cgroups!.verdict!(slot)).toEqual({ memory: { oomKilled: true, memoryPeakKb: 12 } });
    cgroups!.release!(slot);
    expect(tree.release).toHaveBeenCalledWith(slot);
  });

  it('disk: the run directory is a tmpfs of the run\'s DISK size', () => {
    const runDisk: RunDiskControl = { mount: () => {}, unmount: async () => {} };
    const [disk] = bind({ disk: true, runDisk }).hooks;
    expect(disk!.runDir!(slot, { ...DEFAULT_LIMITS, DISK: 8192 * 1024 })).toEqual({
      disk: { control: runDisk, size: { sizeBytes: 8192 * 1024, inodes: 2048 } },
    });
  });

  it('calls them in LAYERS order: the uid round before cgroup.kill', () => {
    const tree = { killRound: () => true } as unknown as CgroupTree;
    const runDisk: RunDiskControl = { mount: () => {}, unmount: async () => {} };
    const { hooks } = bind({ uid: true, kill: 'uid', cgroups: true, cgroupTree: tree, disk: true, runDisk });
    expect(hooks.map((hook) => hook.name)).toEqual(['uid', 'cgroups', 'disk']);
  });
});
