// AppArmor (and cgroup v2) enforcement, proven in a VM: this host's kernel may have neither
// AppArmor nor cgroup controllers, so scripts/vm/run.sh boots Debian's own kernel under qemu
// (TCG) with this checkout visible read-only, and test/vm/guest-suite.mjs runs real daemons in
// it. One boot serves every assertion below; the guest writes results.json to a shared folder.
//
// When it runs: qemu-system-x86_64 must be installed, we must be root (the host's root is shared
// with the guest as is), and either CODEJAIL_VM_TESTS=1 (CI sets it; then a missing qemu is a
// failure, not a skip) or the VM cache already exists (scripts/vm/build.sh was run here once).
// Otherwise the suite is skipped with the reason printed.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectDenied } from '../helpers/denial.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const cache = process.env.CODEJAIL_VM_CACHE ?? '/var/cache/codejail-vm';
const hasQemu = spawnSync('sh', ['-c', 'command -v qemu-system-x86_64'], { stdio: 'ignore' }).status === 0;
const asked = process.env.CODEJAIL_VM_TESTS === '1';
const built = fs.existsSync(path.join(cache, 'vmlinuz')) && fs.existsSync(path.join(cache, 'initramfs.cpio.gz'));
const isRoot = process.getuid?.() === 0;
const skipReason = !isRoot
  ? 'not root'
  : asked
    ? undefined
    : !hasQemu
      ? 'qemu-system-x86_64 is not installed'
      : !built
        ? `no VM cache at ${cache} (run scripts/vm/build.sh, or set CODEJAIL_VM_TESTS=1)`
        : undefined;
if (skipReason) console.warn(`test/vm: SKIPPED, ${skipReason}`);

type Probes = Record<string, string>;
interface Pass {
  layers?: Record<string, string>;
  statusLayers?: Record<string, string>;
  confinement?: string[] | 'none';
  probes?: Probes;
  outsideLabel?: string;
  status?: number;
  stderr?: string;
  error?: string;
}
interface GuestResults {
  kernel: string;
  steps: string[];
  setup: string[];
  loadedProfiles: string[];
  startup: { missingProfile?: string };
  passes: Record<string, Pass>;
  cgroups: Record<string, any>;
  seconds: number;
  fatal?: string;
}

/** Boots the VM (scripts/vm/run.sh's own timeout bounds it) and collects its console. */
function runVm(dir: string): Promise<{ status: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(path.join(root, 'scripts/vm/run.sh'), [dir, path.join(root, 'test/vm/guest.sh')], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const chunks: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => chunks.push(c));
    child.stderr.on('data', (c: Buffer) => chunks.push(c));
    child.on('error', reject);
    child.on('close', (status) => resolve({ status, output: Buffer.concat(chunks).toString('utf8') }));
  });
}

const DENIES = ['read_etc_passwd', 'write_outside_rundir', 'exec_usr_bin_true', 'socket_af_inet'];

describe.skipIf(!!skipReason)('in a VM with AppArmor and cgroup v2 (scripts/vm)', () => {
  let dir: string;
  let guest: GuestResults;
  let console_: string;

  beforeAll(async () => {
    if (asked && !hasQemu) throw new Error('CODEJAIL_VM_TESTS=1 but qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)');
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cj-vm-'));
    // The guest (root over 9p passthrough) writes here; keep it private to root.
    fs.chmodSync(dir, 0o700);
    const started = Date.now();
    // Asynchronously: a worker blocked for a minute would miss vitest's own RPC deadlines.
    const vm = await runVm(dir);
    console_ = vm.output;
    const file = path.join(dir, 'results.json');
    if (vm.status !== 0 || !fs.existsSync(file)) {
      throw new Error(`the VM run failed (status ${vm.status}):\n${console_.slice(-6000)}`);
    }
    guest = JSON.parse(fs.readFileSync(file, 'utf8')) as GuestResults;
    console.log(
      `test/vm: boot + guest suite took ${((Date.now() - started) / 1000).toFixed(1)}s ` +
        `(suite ${guest.seconds}s inside the guest, kernel ${guest.kernel})\n  ${guest.steps.join('\n  ')}`,
    );
    if (guest.fatal) throw new Error(`the guest suite failed: ${guest.fatal}`);
  }, 16 * 60_000);

  afterAll(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  describe('AppArmor', () => {
    it('setup installs and loads both profiles in enforce mode', () => {
      expect(guest.setup.join('\n')).toMatch(/loaded AppArmor profile codejail-sandbox/);
      expect(guest.loadedProfiles).toContain('codejail-sandbox (enforce)');
      expect(guest.loadedProfiles).toContain('codejaild (enforce)');
    });

    it('required + profile not loaded stops the daemon at start, naming the profile', () => {
      expect(guest.startup.missingProfile).toMatch(/^LayerError: .*"apparmor" is required.*"codejail-not-loaded" is not loaded \(codejail setup/);
    });

    // The switch for AppArmor alone: 'sabotage' is apparmor-only with AppArmor off too, so a
    // probe DENIED there and ALLOWED here is AppArmor's denial (its allow twin, in one test).
    const sabotaged = () => {
      const p = guest.passes.sabotage!;
      expect(p.error, p.error).toBeUndefined();
      expect(p.confinement).not.toContain('apparmor');
      expect(p.probes?.label).toBe('unconfined');
      return p;
    };

    for (const passName of ['apparmor-only', 'all-layers']) {
      describe(passName, () => {
        const pass = () => {
          const p = guest.passes[passName]!;
          expect(p.error, p.error).toBeUndefined();
          return p;
        };

        it('reports apparmor as active in status and in the result', () => {
          expect(pass().statusLayers?.apparmor).toBe('active (profile codejail-sandbox)');
          expect(pass().confinement).toContain('apparmor');
          expect(pass().status, pass().stderr).toBe(0);
        });

        it('the run is confined by codejail-sandbox in enforce mode', () => {
          // Landlock (all-layers) keeps the sandbox out of /proc/self/attr, so there the label is
          // read from outside while a run sleeps.
          const label = passName === 'apparmor-only' ? pass().probes?.label : pass().outsideLabel;
          expect(label).toBe('codejail-sandbox (enforce)');
        });

        for (const probe of DENIES) {
          if (passName === 'apparmor-only') {
            it(`deny_apparmor_${probe}: refused (EACCES) with AppArmor alone on, allowed with it alone off`, () => {
              expectDenied(pass().probes?.[probe], 'DENIED', 'ALLOWED');
              expect(sabotaged().probes?.[probe], 'with AppArmor off').toBe('ALLOWED');
            });
          } else {
            // Landlock comes before AppArmor in the LSM order and refuses these first (EACCES, before
            // the mntns layer's read-only /var/tmp would answer EROFS): refused, not AppArmor's to claim.
            it(`every layer on refuses ${probe}`, () => {
              expect(pass().probes?.[probe]).toBe('DENIED');
            });
          }
        }

        it('the run directory stays writable', () => {
          expect(pass().probes?.write_rundir).toBe('ALLOWED');
        });
      });
    }

    describe('a daemon confined by the codejaild profile', () => {
      const pass = () => {
        const p = guest.passes['confined-daemon'] as Pass & { daemonLabel?: string; denials?: string[]; exitCode?: number };
        expect(p.error, p.error).toBeUndefined();
        return p;
      };

      it('runs in enforce mode without a single denial of its own, and stops cleanly', () => {
        expect(pass().daemonLabel).toBe('codejaild (enforce)');
        expect(pass().denials).toEqual([]);
        expect(pass().exitCode).toBe(0);
      });

      it('stacks the sandbox profile on its own (no_new_privs forbids a plain transition)', () => {
        expect(pass().outsideLabel).toBe('codejail-sandbox//&codejaild (enforce)');
        expect(pass().confinement).toContain('apparmor');
      });

      // Landlock, seccomp and mntns off here too: the stacked profile is the only layer refusing.
      for (const probe of DENIES) {
        it(`deny_apparmor_${probe} (stacked): refused (EACCES) by the stacked profile alone, allowed without AppArmor`, () => {
          expectDenied(pass().probes?.[probe], 'DENIED', 'ALLOWED');
          expect(sabotaged().probes?.[probe], 'with AppArmor off').toBe('ALLOWED');
        });
      }

      it('keeps $TMPDIR (an unsafe change_profile: no AT_SECURE scrubbing) and the run directory writable', () => {
        expect(pass().probes?.write_rundir).toBe('ALLOWED');
      });
    });
  });

  describe('cgroup v2 (uid layer and rlimits off: only the cgroup can stop these)', () => {
    const on = () => {
      const p = guest.cgroups.cgroups;
      expect(p?.error, p?.error).toBeUndefined();
      return p;
    };
    // The switch for the cgroups layer: the same probes with cgroups off (memory.max included).
    const off = () => {
      const p = guest.cgroups.sabotage;
      expect(p?.error, p?.error).toBeUndefined();
      expect(p.layers.cgroups).toBe('off');
      return p;
    };

    it('the layer is active and named in results', () => {
      expect(guest.cgroups.controllers).toMatch(/\bmemory\b.*\bpids\b/);
      expect(on().layers.cgroups).toMatch(/^active \(\/sys\/fs\/cgroup\/codejail\)/);
      expect(on().memory.confinement).toContain('cgroups');
    });

    it(`deny_cgroup_memory: touching twice memory.max is OOM-killed with a memory verdict; with cgroups off it completes`, () => {
      const m = on().memory;
      expectDenied({ status: m.status, oomKilled: m.oomKilled }, { status: -9, oomKilled: true }, { status: 0, oomKilled: undefined });
      // memory.max is 64 MiB: the peak is near it, never far above.
      expect(m.memoryPeakKb).toBeGreaterThan(32 * 1024);
      expect(m.memoryPeakKb).toBeLessThanOrEqual(66 * 1024);
      expect(off().memory, 'with cgroups off').toMatchObject({ status: 0, stdout: 'touched 128' });
    });

    it('a REALTIME kill through cgroup.kill ends the run promptly', () => {
      const t = on().timeout;
      expect(t.timedOut).toBe(true);
      expect(t.status).toBe(-9);
      // Waiting on the dying main process would add cgroups.ts's 2 s EMPTY_WAIT_MS and then fail
      // the kill; the margin below that absorbs a loaded host slowing the emulated guest.
      expect(t.wallMs).toBeLessThan(3000 + 1900);
    });

    it('deny_cgroup_pids: pids.max (NPROC 8) stops a fork loop; with cgroups off it completes', () => {
      // The interpreter is one of the 8 tasks.
      expectDenied(on().pids.stdout, 'EAGAIN after 7', 'forked 24');
      expect(off().pids.stdout, 'with cgroups off').toBe('forked 24');
    });

    it('deny_cgroup_kill: cgroup.kill ends a setsid()\'d double-forked sleeper, leaving no leaf behind; with cgroups off it survives', () => {
      expect(on().sleeper.pid).toBeGreaterThan(1);
      expectDenied(on().sleeper.aliveAfterRun, false, true);
      expect(on().leftoverLeaves).toEqual([]);
      expect(off().sleeper.aliveAfterRun, 'with cgroups off').toBe(true);
    });
  });
});
