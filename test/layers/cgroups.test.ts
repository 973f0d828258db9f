// CgroupTree against a fake cgroup2 tree made of plain files: what it checks, what it writes
// into a run's leaf, and how it reads the verdict. The real kernel behaviour (OOM kill, pids.max,
// cgroup.kill) is proven in the VM suite, test/vm.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { CgroupError, CgroupTree, findCgroup2Mount } from '../../src/layers/cgroup_tree.js';
import { DEFAULT_LIMITS } from '../../src/protocol/index.js';

let mount: string;
beforeEach(() => {
  mount = fs.mkdtempSync(path.join(os.tmpdir(), 'cj-cgroup-'));
  fs.writeFileSync(path.join(mount, 'cgroup.controllers'), 'cpuset cpu io memory pids\n');
  fs.writeFileSync(path.join(mount, 'cgroup.subtree_control'), '');
});
afterEach(() => fs.rmSync(mount, { recursive: true, force: true }));

/** What the kernel would create in a new cgroup directory. */
function fakeKernelFiles(dir: string): void {
  for (const f of ['cgroup.kill', 'cgroup.procs', 'cgroup.subtree_control', 'memory.max', 'memory.swap.max', 'memory.oom.group', 'pids.max']) {
    fs.writeFileSync(path.join(dir, f), '');
  }
  fs.writeFileSync(path.join(dir, 'cgroup.events'), 'populated 0\nfrozen 0\n');
}

describe('CgroupTree', () => {
  it('finds the unified mount in mountinfo, also in a hybrid layout', () => {
    const info =
      '30 24 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755\n' +
      '31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw\n' +
      '32 30 0:28 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory\n';
    expect(findCgroup2Mount(info)).toBe('/sys/fs/cgroup/unified');
    expect(findCgroup2Mount('32 30 0:28 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n')).toBeUndefined();
  });

  it('refuses a hierarchy without the memory or pids controller, saying which', () => {
    fs.writeFileSync(path.join(mount, 'cgroup.controllers'), 'cpu io\n');
    expect(() => CgroupTree.open({ mount, ownCgroup: '/', memoryMax: 0 })).toThrow(CgroupError);
    expect(() => CgroupTree.open({ mount, ownCgroup: '/', memoryMax: 0 })).toThrow(/memory and pids controllers are not available/);
  });

  it('enables memory and pids for its children and writes the run limits into a fresh leaf', () => {
    // The kernel would populate codejail/ on mkdir; here it is made up front.
    fs.mkdirSync(path.join(mount, 'codejail'));
    fakeKernelFiles(path.join(mount, 'codejail'));
    const tree = CgroupTree.open({ mount, ownCgroup: '/', memoryMax: 64 << 20 });
    expect(fs.readFileSync(path.join(mount, 'cgroup.subtree_control'), 'utf8')).toBe('+memory +pids');
    expect(fs.readFileSync(path.join(mount, 'codejail/cgroup.subtree_control'), 'utf8')).toBe('+memory +pids');

    // prepare() makes the leaf itself, so in a plain directory the kernel's cgroup.procs is
    // missing and the final open fails; the limits written before that are what we check.
    expect(() => tree.prepare({ index: 0 }, { ...DEFAULT_LIMITS, VMEM: 0, NPROC: 15 })).toThrow(/ENOENT.*cgroup\.procs/);
    const leaf = tree.leaf({ index: 0 });
    const read = (f: string) => fs.readFileSync(path.join(leaf, f), 'utf8');
    expect(read('memory.max')).toBe(String(64 << 20));
    expect(read('pids.max')).toBe('15');
    expect(read('memory.oom.group')).toBe('1');
  });

  it('uses VMEM as memory.max when set, and "max" when neither VMEM nor the config bounds it', () => {
    fs.mkdirSync(path.join(mount, 'codejail'));
    fakeKernelFiles(path.join(mount, 'codejail'));
    const tree = CgroupTree.open({ mount, ownCgroup: '/', memoryMax: 0 });
    expect(() => tree.prepare({ index: 1 }, { ...DEFAULT_LIMITS, VMEM: 100_000_000, NPROC: 0 })).toThrow();
    expect(fs.readFileSync(path.join(tree.leaf({ index: 1 }), 'memory.max'), 'utf8')).toBe('100000000');
    expect(fs.readFileSync(path.join(tree.leaf({ index: 1 }), 'pids.max'), 'utf8')).toBe('max');
    expect(() => tree.prepare({ index: 2 }, { ...DEFAULT_LIMITS, VMEM: 0 })).toThrow();
    expect(fs.readFileSync(path.join(tree.leaf({ index: 2 }), 'memory.max'), 'utf8')).toBe('max');
  });

  it('reads the OOM verdict and the peak from the leaf', () => {
    fs.mkdirSync(path.join(mount, 'codejail'));
    fakeKernelFiles(path.join(mount, 'codejail'));
    const tree = CgroupTree.open({ mount, ownCgroup: '/', memoryMax: 0 });
    const leaf = tree.leaf({ index: 3 });
    fs.mkdirSync(leaf);
    fakeKernelFiles(leaf);
    fs.writeFileSync(path.join(leaf, 'memory.events'), 'low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\n');
    fs.writeFileSync(path.join(leaf, 'memory.peak'), String(64 << 20));
    expect(tree.verdict({ index: 3 })).toEqual({ oomKilled: true, memoryPeakKb: 65536 });
    fs.writeFileSync(path.join(leaf, 'memory.events'), 'oom 0\noom_kill 0\n');
    expect(tree.verdict({ index: 3 }).oomKilled).toBe(false);
    // release() kills (writes cgroup.kill), sees populated 0, and removes the leaf... which a
    // plain directory with files in it refuses: the error surfaces rather than being swallowed.
    expect(() => tree.release({ index: 3 })).toThrow(/ENOTEMPTY/);
    expect(fs.readFileSync(path.join(leaf, 'cgroup.kill'), 'utf8')).toBe('1');
  });

  it('kills in rounds that never wait: a populated leaf is reported, not waited for', () => {
    fs.mkdirSync(path.join(mount, 'codejail'));
    fakeKernelFiles(path.join(mount, 'codejail'));
    const tree = CgroupTree.open({ mount, ownCgroup: '/', memoryMax: 0 });
    expect(tree.killRound({ index: 5 })).toBe(true); // no leaf: nothing to kill
    const leaf = tree.leaf({ index: 5 });
    fs.mkdirSync(leaf);
    fakeKernelFiles(leaf);
    fs.writeFileSync(path.join(leaf, 'cgroup.events'), 'populated 1\nfrozen 0\n');
    // Waiting would mean looking again: each round reads cgroup.events once (counted, not timed:
    // a time bound on a loaded 2-core runner is a guess).
    const reads = vi.spyOn(fs, 'readFileSync');
    const eventReads = () => reads.mock.calls.filter(([file]) => String(file).endsWith('cgroup.events')).length;
    try {
      expect(tree.killRound({ index: 5 })).toBe(false);
      expect(eventReads()).toBe(1);
      expect(() => tree.release({ index: 5 })).toThrow(/still has processes after cgroup\.kill/);
      expect(eventReads()).toBe(2);
    } finally {
      reads.mockRestore();
    }
    fs.writeFileSync(path.join(leaf, 'cgroup.events'), 'populated 0\nfrozen 0\n');
    expect(tree.killRound({ index: 5 })).toBe(true);
  });
});
