import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { parseConfig } from '../../src/daemon/config.js';
import { CgroupError, type CgroupTree } from '../../src/layers/cgroup_tree.js';
import { detectLayers } from '../../src/layers/index.js';
import { hiddenDirs } from '../../src/run/hidden_dirs.js';
import { silentLogger, type Logger } from '../../src/log.js';

const fakeAddon = (over: Record<string, unknown> = {}) =>
  ({ landlockAbi: () => 7, seccompSupported: () => true, createNamespace: () => 42, closeFd: vi.fn(), ...over }) as never;
const passwd = 'root:x:0:0::/root:/bin/sh\ncodejail-61000:x:61000:61000::/nonexistent:/usr/sbin/nologin\n';
// cgroups off: the real CgroupTree would create directories under this host's /sys/fs/cgroup;
// disk off: its probe makes the run base (tested below with a temporary one).
const config = (layers: Record<string, string> = {}) =>
  parseConfig({ layers: { apparmor: 'off', cgroups: 'off', disk: 'off', ...layers } });

describe('detectLayers', () => {
  it('reports every available layer as active and lists them as the confinement', () => {
    const layers = detectLayers(config(), { addon: fakeAddon(), log: silentLogger, unsafe: false, isRoot: true, passwd });
    expect(layers.report).toMatchObject({ rlimits: 'active', landlock: 'active (ABI 7)', seccomp: 'active', apparmor: 'off', kill: 'uid sweep' });
    expect(layers.report.netns).toMatch(/^active/);
    expect(layers.confinement).toEqual(['uid', 'rlimits', 'landlock', 'seccomp', 'netns', 'mntns']);
    expect(layers.netnsFds).toEqual(Array(16).fill(42));
    expect(layers.report.netns).toBe('active (one empty namespace per slot, 16 in all)');
    expect(layers.mntnsFd).toBe(42);
    expect(layers.report.mntns).toBe('active (one shared namespace; empty: /run /tmp /var/tmp /dev/shm /home /root)');
  });

  it('warns loudly when the uid layer is off (code would run as root)', () => {
    const warnings: string[] = [];
    const log: Logger = { ...silentLogger, warn: (msg: string) => void warnings.push(msg) };
    const layers = detectLayers(config({ uid: 'off' }), { addon: fakeAddon(), log, unsafe: false, isRoot: true, passwd });
    expect(layers.uid).toBe(false);
    expect(warnings.some((w) => w.startsWith('THE UID LAYER IS OFF: sandboxed code runs AS ROOT'))).toBe(true);
  });

  it('disk: shares the run base (bind-mounting it onto itself unless it is a mount point) before making the mount namespace', () => {
    const runBase = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'cj-layers-')));
    try {
      const calls: string[] = [];
      const addon = fakeAddon({
        shareRunBase: (base: string, bindFirst: boolean) => calls.push(`share ${base} ${bindFirst}`),
        createNamespace: (kind: string) => (calls.push(`namespace ${kind}`), 42),
      });
      const layers = detectLayers(parseConfig({ runBase, layers: { apparmor: 'off', cgroups: 'off' } }), {
        addon,
        log: silentLogger,
        unsafe: false,
        isRoot: true,
        passwd,
      });
      // The disk layer before the mount namespace, whose copy of runBase must be the shared mount.
      expect(calls.slice(0, 3)).toEqual([`share ${runBase} true`, 'namespace mnt', 'namespace net']);
      expect(layers.disk).toBe(true);
      expect(layers.runBaseBound).toBe(runBase);
      expect(layers.report.disk).toMatch(/^active \(a tmpfs per run directory/);
      expect(layers.confinement).toContain('disk');
    } finally {
      fs.rmSync(runBase, { recursive: true, force: true });
    }
  });

  it('support_failed_start_releases_what_earlier_layers_made: the run base bind mount and the mount namespace', async () => {
    const runBase = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'cj-layers-')));
    try {
      const closeFd = vi.fn();
      const unmountRunDisk = vi.fn(async () => undefined);
      const addon = fakeAddon({
        shareRunBase: () => undefined,
        unmountRunDisk,
        closeFd,
        createNamespace: (kind: string) => {
          if (kind === 'net') throw new Error('unshare: ENOSPC');
          return 7;
        },
      });
      expect(() =>
        detectLayers(parseConfig({ runBase, layers: { apparmor: 'off', cgroups: 'off' } }), { addon, log: silentLogger, unsafe: false, isRoot: true, passwd }),
      ).toThrow(/layer "netns" is required but unavailable: unshare: ENOSPC/);
      expect(closeFd).toHaveBeenCalledWith(7);
      expect(unmountRunDisk).toHaveBeenCalledWith(runBase);
    } finally {
      fs.rmSync(runBase, { recursive: true, force: true });
    }
  });

  it('never hides the directory that holds the run base', () => {
    expect(hiddenDirs('/tmp/codejail/runs')).toEqual({ hide: ['/run', '/var/tmp', '/dev/shm', '/home', '/root'], kept: ['/tmp'] });
    expect(hiddenDirs('/var/lib/codejail/runs').kept).toEqual([]);
    expect(hiddenDirs('/tmpfoo/runs').kept).toEqual([]);
  });

  it('closes the mount namespace when the network namespace then fails', () => {
    const closeFd = vi.fn();
    const createNamespace = (kind: string) => {
      if (kind === 'net') throw new Error('unshare: EPERM');
      return 7;
    };
    expect(() =>
      detectLayers(config(), { addon: fakeAddon({ createNamespace, closeFd }), log: silentLogger, unsafe: false, isRoot: true, passwd }),
    ).toThrow(/netns/);
    expect(closeFd).toHaveBeenCalledWith(7);
  });

  it('makes one network namespace per slot, and closes every one made when one fails', () => {
    let made = 0;
    const closeFd = vi.fn();
    const createNamespace = (kind: string) => {
      if (kind === 'mnt') return 7;
      if (made === 3) throw new Error('unshare: ENOSPC');
      return 100 + made++;
    };
    const slots = { slots: { firstUid: 61000, count: 5 } };
    const cfg = (netns: string) => parseConfig({ ...slots, layers: { apparmor: 'off', cgroups: 'off', disk: 'off', uid: 'off', netns } });
    // auto: reported absent, the three made are closed, the mount namespace stays.
    const layers = detectLayers(cfg('auto'), { addon: fakeAddon({ createNamespace, closeFd }), log: silentLogger, unsafe: false, isRoot: true, passwd });
    expect(layers.netns).toBe(false);
    expect(layers.netnsFds).toBeUndefined();
    expect(layers.report.netns).toBe('absent (auto): unshare: ENOSPC');
    expect(closeFd.mock.calls.map(([fd]) => fd).sort()).toEqual([100, 101, 102]);
    // required: start-up stops, and the mount namespace is closed too.
    made = 0;
    closeFd.mockClear();
    expect(() =>
      detectLayers(cfg('required'), { addon: fakeAddon({ createNamespace, closeFd }), log: silentLogger, unsafe: false, isRoot: true, passwd }),
    ).toThrow(/layer "netns" is required but unavailable: unshare: ENOSPC/);
    expect(closeFd.mock.calls.map(([fd]) => fd).sort()).toEqual([100, 101, 102, 7]);
    // All made: one distinct namespace per slot, in slot order.
    made = 0;
    const ok = detectLayers(cfg('required'), {
      addon: fakeAddon({ createNamespace: (kind: string) => (kind === 'mnt' ? 7 : 100 + made++) }),
      log: silentLogger,
      unsafe: false,
      isRoot: true,
      passwd,
    });
    expect(ok.netnsFds).toEqual([100, 101, 102, 103, 104]);
  });

  it('fails closed when a required layer is missing, naming it and why', () => {
    expect(() =>
      detectLayers(config(), { addon: fakeAddon({ landlockAbi: () => 0 }), log: silentLogger, unsafe: false, isRoot: true, passwd }),
    ).toThrow(/layer "landlock" is required but unavailable: the kernel has no Landlock/);
  });

  it('reports a missing auto layer as absent and carries on', () => {
    const layers = detectLayers(config({ seccomp: 'auto' }), {
      addon: fakeAddon({ seccompSupported: () => false }),
      log: silentLogger,
      unsafe: false,
      isRoot: true,
      passwd,
    });
    expect(layers.seccomp).toBe(false);
    expect(layers.report.seccomp).toMatch(/^absent \(auto\)/);
    expect(layers.confinement).not.toContain('seccomp');
  });

  it('refuses a slot uid that belongs to another account, whatever the mode', () => {
    expect(() =>
      detectLayers(config({ uid: 'auto' }), { addon: fakeAddon(), log: silentLogger, unsafe: false, isRoot: true, passwd: 'bob:x:61003:100::/home/bob:/bin/sh\n' }),
    ).toThrow(/slot uid 61003 belongs to the account "bob"/);
  });

  it('allow_slot_uid_names: accepts codejail-<uid>, and codejail-s<i> for slot i only (the name earlier setups gave it)', () => {
    const probe = (passwdText: string) =>
      detectLayers(config(), { addon: fakeAddon(), log: silentLogger, unsafe: false, isRoot: true, passwd: passwdText }).report.uid;
    expect(probe('codejail-61000:x:61000:61000::/:/x\ncodejail-s1:x:61001:61001::/:/x\n')).toBe('active (16 slots from uid 61000; 14 have no passwd entry, see codejail setup)');
    // codejail-s0 at uid 61001 is slot 0 of a range starting there, not slot 1 of this one.
    expect(() => probe('codejail-s0:x:61001:61001::/:/x\n')).toThrow(/slot uid 61001 belongs to the account "codejail-s0", not "codejail-61001"/);
    expect(() => probe('codejail-61002:x:61001:61001::/:/x\n')).toThrow(/slot uid 61001 belongs to the account "codejail-61002"/);
  });

  it('applies rlimits only, loudly, when unsafe or not root', () => {
    const warn = vi.fn();
    const log: Logger = { ...silentLogger, warn };
    const layers = detectLayers(config(), { addon: fakeAddon(), log, unsafe: false, isRoot: false });
    expect(layers.unsafe).toBe(true);
    expect(layers.confinement).toBe('none');
    expect(layers.report.rlimits).toBe('active');
    expect(layers.report.landlock).toMatch(/^off \(unsafe: the daemon is not running as root\)/);
    expect(warn).toHaveBeenCalledWith(expect.stringContaining('UNSAFE MODE'), expect.anything());
  });

  it('stops start-up when AppArmor is required but absent or the profile is not loaded', () => {
    // This host either has no AppArmor at all, or not this made-up profile: both must fail closed.
    const cfg = parseConfig({ layers: { apparmor: 'required', cgroups: 'off' }, apparmorProfile: 'codejail-test-not-loaded' });
    expect(() => detectLayers(cfg, { addon: fakeAddon(), log: silentLogger, unsafe: false, isRoot: true, passwd })).toThrow(
      /layer "apparmor" is required but unavailable: .*(AppArmor is not enabled in this kernel|"codejail-test-not-loaded" is not loaded)/,
    );
  });

  it('cgroups: required fails closed with the reason; active adds the layer and cgroup.kill', () => {
    const unusable = () => {
      throw new CgroupError('the memory and pids controllers are not available in /sys/fs/cgroup');
    };
    expect(() =>
      detectLayers(config({ cgroups: 'required' }), { addon: fakeAddon(), log: silentLogger, unsafe: false, isRoot: true, passwd, openCgroups: unusable }),
    ).toThrow(/layer "cgroups" is required but unavailable: the memory and pids controllers are not available/);
    const tree = { root: '/sys/fs/cgroup/codejail' } as CgroupTree;
    const layers = detectLayers(config({ cgroups: 'auto' }), { addon: fakeAddon(), log: silentLogger, unsafe: false, isRoot: true, passwd, openCgroups: () => tree });
    expect(layers.cgroupTree).toBe(tree);
    expect(layers.report.cgroups).toBe('active (/sys/fs/cgroup/codejail)');
    expect(layers.report.kill).toBe('uid sweep + cgroup.kill');
    expect(layers.confinement).toContain('cgroups');
  });
});

describe('the uid layer needs its capabilities', () => {
  it('names the capabilities missing from the effective set', async () => {
    const { missingCapabilities } = await import('../../src/layers/uid.js');
    const wanted = [
      ['CAP_KILL', 5],
      ['CAP_SETUID', 7],
    ] as const;
    // Every capability, then all but CAP_KILL (bit 5).
    expect(missingCapabilities(wanted, 'Name:\tnode\nCapEff:\t000001ffffffffff\n')).toEqual([]);
    expect(missingCapabilities(wanted, `CapEff:\t${(0x1ffffffffffn & ~(1n << 5n)).toString(16).padStart(16, '0')}\n`)).toEqual(['CAP_KILL']);
    expect(missingCapabilities(wanted, 'CapEff:\t0000000000000000\n')).toEqual(['CAP_KILL', 'CAP_SETUID']);
  });
});
