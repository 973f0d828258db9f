// AppArmor (and cgroup v2) enforcement, proven in a VM: this host's kernel may have neither
// AppArmor nor cgroup controllers, so scripts/vm/run.sh boots Debian's own kernel under qemu
// (TCG) with this checkout visible read-only, and test/vm/guest-suite.mjs runs real daemons in
// it. One boot per kernel serves every assertion below; the guest writes results.json (and the
// kernel's AppArmor feature set) to a shared folder. The whole suite runs on each kernel of
// test/vm/kernels.ts: Debian 12's 6.1 and Debian 13's 6.12 (AppArmor 4's kernel side), with the
// host's (Debian 12's) apparmor_parser 3.0.8 loading the profiles on both.
//
// When it runs: qemu-system-x86_64 must be installed, we must be root (the host's root is shared
// with the guest as is), and either CODEJAIL_VM_TESTS=1 (CI sets it; then a missing qemu is a
// failure, not a skip) or that kernel's VM cache already exists (scripts/vm/build.sh was run here
// once). Otherwise the suite is skipped with the reason printed.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectDenied } from '../helpers/denial.js';
import { apparmorVariables, checkProfileSyntax, renderAppArmor, writeRendered } from '../../src/setup/apparmor.js';
import { parseConfig } from '../../src/daemon/config.js';
import { discoverCommands } from '../../src/run/commands.js';
import { silentLogger } from '../../src/log.js';
import { findParser } from '../apparmor/parser.js';
import { asked, cachedRelease, hasQemu, kernelTitle, root, runVm, skipReason, VM_KERNELS, type VmKernel } from './kernels.js';

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

const parser = findParser();

const DENIES = ['read_etc_passwd', 'write_outside_rundir', 'exec_usr_bin_true', 'socket_af_inet'];

/**
 * What differs between the kernels in a booted guest, pinned on each (the rest of the suite is the
 * same on both; the feature sets' differences are pinned offline in test/apparmor). landlock: the
 * ABI the daemon reports (all-layers pass). usernsCreate: the sandbox's unshare(CLONE_NEWUSER)
 * with AppArmor the only filesystem/exec/socket layer, and with every layer (seccomp) on.
 */
const KERNEL_DIFFERENCES: Record<VmKernel['name'], { landlock: string; usernsCreate: { apparmorOnly: string; allLayers: string } }> = {
  bookworm: { landlock: 'active (ABI 2)', usernsCreate: { apparmorOnly: 'ALLOWED', allLayers: 'DENIED' } },
  trixie: { landlock: 'active (ABI 6)', usernsCreate: { apparmorOnly: 'ALLOWED', allLayers: 'DENIED' } },
};

for (const kernel of VM_KERNELS) {
  const skipped = skipReason(kernel);
  if (skipped) console.warn(`test/vm (${kernel.name}): SKIPPED, ${skipped}`);
  describe.skipIf(!!skipped)(`in a VM with AppArmor and cgroup v2 (scripts/vm), ${kernelTitle(kernel)}`, () => {
    vmSuite(kernel);
  });
}

function vmSuite(kernel: VmKernel): void {
  let dir: string;
  let guest: GuestResults;
  let console_: string;

  beforeAll(async () => {
    if (asked && !hasQemu) throw new Error('CODEJAIL_VM_TESTS=1 but qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)');
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cj-vm-'));
    // The guest (root over 9p passthrough) writes here; keep it private to root.
    fs.chmodSync(dir, 0o700);
    const started = Date.now();
    const vm = await runVm(kernel, [dir, path.join(root, 'test/vm/guest.sh')]);
    console_ = vm.output;
    const file = path.join(dir, 'results.json');
    if (vm.status !== 0 || !fs.existsSync(file)) {
      throw new Error(`the VM run on ${kernel.name} failed (status ${vm.status}):\n${console_.slice(-6000)}`);
    }
    guest = JSON.parse(fs.readFileSync(file, 'utf8')) as GuestResults;
    console.log(
      `test/vm (${kernel.name}): boot + guest suite took ${((Date.now() - started) / 1000).toFixed(1)}s ` +
        `(suite ${guest.seconds}s inside the guest, kernel ${guest.kernel})\n  ${guest.steps.join('\n  ')}`,
    );
    if (guest.fatal) throw new Error(`the guest suite failed: ${guest.fatal}`);
    // The lock of scripts/vm/run.sh may first wait for another VM suite's boot (the systemd suite,
    // the other kernel): that wait and this boot each stay below run.sh's own 15-minute timeout.
  }, 35 * 60_000);

  afterAll(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  describe(`the kernel booted (${kernel.name})`, () => {
    it('is the one this suite is named after (uname -r in the guest)', () => {
      expect(guest.kernel).toMatch(kernel.release);
      expect(guest.kernel).toBe(cachedRelease(kernel));
    });

    it(`its AppArmor feature set is the one test/apparmor checks offline (${path.basename(kernel.featuresFile)})`, () => {
      // When Debian's kernel update changes it: copy <results>/features over that file (the suite
      // prints where) and review what the new features mean for the profiles.
      expect(fs.readFileSync(path.join(dir, 'features'), 'utf8')).toBe(fs.readFileSync(kernel.featuresFile, 'utf8'));
    });

    it.skipIf(!parser)('apparmor_parser -Q -K accepts every rendered profile against the feature set read from the guest', async () => {
      const rendered = fs.mkdtempSync(path.join(os.tmpdir(), 'cj-vm-profiles-'));
      try {
        const config = parseConfig({});
        const files = renderAppArmor(apparmorVariables(config, discoverCommands(config, silentLogger).values()), config.apparmorProfile);
        await writeRendered(rendered, files);
        const features = path.join(dir, 'features');
        for (const file of files.filter((f) => f.profile)) {
          // -M: kernel and policy features both this kernel's; --kernel-features: the policy's
          // own abi (abi/3.0) compiled for this kernel, as a load on it does.
          expect(() => checkProfileSyntax(rendered, file.name, parser, ['-M', features]), `${file.name} -M`).not.toThrow();
          expect(() => checkProfileSyntax(rendered, file.name, parser, ['--kernel-features', features]), `${file.name} --kernel-features`).not.toThrow();
        }
      } finally {
        fs.rmSync(rendered, { recursive: true, force: true });
      }
    });

    it(`Landlock reports ${KERNEL_DIFFERENCES[kernel.name].landlock}`, () => {
      expect(guest.passes['all-layers']?.layers?.landlock).toBe(KERNEL_DIFFERENCES[kernel.name].landlock);
    });

    // The kernel side of AppArmor 4 can mediate user namespace creation (namespaces/mask
    // userns_create on 6.12), but only for a policy that declares it: the shipped profiles pin
    // abi 3.0, so AppArmor leaves the sandbox's unshare(CLONE_NEWUSER) to seccomp on both kernels.
    it('support_userns_create: AppArmor alone does not refuse a new user namespace (abi 3.0 policy); seccomp does', () => {
      const expected = KERNEL_DIFFERENCES[kernel.name].usernsCreate;
      expect(guest.passes['apparmor-only']?.probes?.userns_create).toBe(expected.apparmorOnly);
      expect(guest.passes['all-layers']?.probes?.userns_create).toBe(expected.allLayers);
      expect(guest.passes.sabotage?.probes?.userns_create).toBe('ALLOWED');
    });
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
}
