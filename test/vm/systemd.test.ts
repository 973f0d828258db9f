// codejaild under a real systemd: scripts/vm/run.sh --systemd boots Debian's kernel under qemu
// (TCG) with systemd as PID 1 (unified cgroup v2), and test/vm/guest-systemd.mjs, started as a
// unit once the guest is up, installs codejail with `codejail setup --systemd` and drives the
// shipped codejaild.socket/codejaild.service with systemctl. One boot serves every assertion
// below; the guest writes results.json to a shared folder. AppArmor is on in this mode (the
// kernel has it, setup loads the profiles, the layer is "auto"); cgroups are required.
//
// The whole suite runs on each kernel of test/vm/kernels.ts (Debian 12's 6.1, Debian 13's 6.12),
// under the host's systemd (Debian 12's 252) either way.
//
// When it runs: as apparmor.test.ts: root, qemu-system-x86_64, and either CODEJAIL_VM_TESTS=1
// (CI; then a missing qemu or systemd is a failure, not a skip) or that kernel's VM cache.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { asked, cachedRelease, hasQemu, hasSystemd, kernelTitle, root, runVm, skipReason, VM_KERNELS, type VmKernel } from './kernels.js';

/** What guest-systemd.mjs writes: one record per section (see that file), each may hold `error`. */
type Section = Record<string, any> & { error?: string };
interface GuestResults {
  kernel: string;
  uptimeAtStart: number;
  steps: string[];
  seconds: number;
  fatal?: string;
  guest: { cgroupMount: string; lsm: string; ownCgroup: string };
  setup: Section;
  activation: Section;
  cgroups: Section;
  reload: Section;
  restart: Section;
  notify: Section;
  watchdog: Section;
  stop: Section;
  security: Section;
  journal: Section;
  homeInstall: Section;
  uninstall: Section;
}

for (const kernel of VM_KERNELS) {
  const skipped = skipReason(kernel, true);
  if (skipped) console.warn(`test/vm/systemd (${kernel.name}): SKIPPED, ${skipped}`);
  describe.skipIf(!!skipped)(`codejaild under systemd, in a VM (scripts/vm/run.sh --systemd), ${kernelTitle(kernel)}`, () => {
    systemdSuite(kernel);
  });
}

function systemdSuite(kernel: VmKernel): void {
  let dir: string;
  let guest: GuestResults;

  beforeAll(async () => {
    if (asked && !hasQemu) throw new Error('CODEJAIL_VM_TESTS=1 but qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)');
    if (asked && !hasSystemd) throw new Error('CODEJAIL_VM_TESTS=1 but systemd is not installed (apt-get install systemd)');
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cj-vm-systemd-'));
    // The guest (root over 9p passthrough) writes here; keep it private to root.
    fs.chmodSync(dir, 0o700);
    const started = Date.now();
    const vm = await runVm(kernel, ['--systemd', dir, path.join(root, 'test/vm/guest-systemd.sh')]);
    const file = path.join(dir, 'results.json');
    if (!fs.existsSync(file)) throw new Error(`the VM run on ${kernel.name} failed (status ${vm.status}), no results.json:\n${vm.output.slice(-6000)}`);
    guest = JSON.parse(fs.readFileSync(file, 'utf8')) as GuestResults;
    console.log(
      `test/vm/systemd (${kernel.name}): boot + guest suite took ${((Date.now() - started) / 1000).toFixed(1)}s ` +
        `(systemd boot ${guest.uptimeAtStart}s of guest uptime, suite ${guest.seconds}s, kernel ${guest.kernel})\n  ${guest.steps.join('\n  ').slice(0, 20_000)}`,
    );
    if (guest.fatal) throw new Error(`the guest suite failed: ${guest.fatal}`);
    if (vm.status !== 0) throw new Error(`the VM run failed (status ${vm.status}):\n${vm.output.slice(-6000)}`);
    // The lock of scripts/vm/run.sh may first wait for another VM suite's boot: that wait and this
    // boot each stay below run.sh's own 15-minute timeout.
  }, 35 * 60_000);

  afterAll(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  /** A section's record, failing with its own error when it threw. */
  const section = (name: keyof GuestResults): Section => {
    const s = guest[name] as Section;
    expect(s, `no "${name}" section: the guest stopped before it`).toBeDefined();
    expect(s.error, s.error).toBeUndefined();
    return s;
  };

  it(`boots the kernel this suite is named after (uname -r in the guest: ${kernel.name})`, () => {
    expect(guest.kernel).toMatch(kernel.release);
    expect(guest.kernel).toBe(cachedRelease(kernel));
  });

  it('boots with systemd as PID 1 on the unified cgroup v2 hierarchy', () => {
    expect(guest.steps[0]).toMatch(/pid 1 systemd, systemd \d+/);
    expect(guest.guest.cgroupMount).toBe('cgroup2');
    expect(guest.guest.ownCgroup).toBe('0::/system.slice/codejail-vm.service');
  });

  it('codejail setup --systemd installs the units and enables the socket', () => {
    const s = section('setup');
    expect(s.status, s.stderr).toBe(0);
    expect(s.report).toContain('ran systemctl enable --now codejaild.socket (codejaild starts on the first connection)');
    // The guest's node (first on its PATH) running this checkout's daemon.
    expect(s.execStart).toMatch(/^ExecStart=\/\S*node /);
    // Installed from a root-owned copy beneath /opt: the checkout under test may lie anywhere.
    expect(s.execStart.endsWith(' /opt/codejail/dist/daemon/main.js')).toBe(true);
  });

  describe('socket activation', () => {
    it('no daemon runs before the first connection', () => {
      const a = section('activation');
      expect(a.socketActive).toBe('active');
      expect(a.before).toEqual({ ActiveState: 'inactive', MainPID: '0' });
      expect(a.daemonPidsBefore).toEqual([]);
    });

    it('the socket is root:codejail 0660', () => {
      const a = section('activation');
      expect(a.socket).toEqual({ type: 'socket', uid: 0, gid: a.codejailGid, mode: '0660' });
      expect(a.codejailGid).toBeGreaterThan(0);
    });

    it('the first connection (codejail check) starts the daemon on the passed socket and is served', () => {
      const a = section('activation');
      expect(a.check.status, a.check.stderr ?? a.check.stdout).toBe(0);
      expect(a.check.ok).toBe(true);
      expect(a.check.failed).toEqual([]);
      expect(a.after).toMatchObject({ ActiveState: 'active', SubState: 'running', TriggeredBy: 'codejaild.socket' });
      expect(Number(a.after.MainPID)).toBeGreaterThan(1);
      // The daemon served the socket systemd made, not one of its own.
      expect(a.ready?.activated).toBe(true);
    });

    it('jailCode and safeExec through the client are served, with every layer', () => {
      const a = section('activation');
      expect(a.jailCode.status, a.jailCode.stderr).toBe(0);
      expect(a.jailCode.stdout).toBe('42');
      expect(a.jailCode.confinement).toEqual(expect.arrayContaining(['uid', 'landlock', 'seccomp', 'apparmor', 'cgroups']));
      expect(a.safeExec).toEqual({ x: 21, y: 42 });
    });
  });

  describe('Type=notify', () => {
    it('systemctl start returns only after READY=1: activating while the self-check runs, then active', () => {
      const n = section('notify');
      expect(n.stopped).toEqual({ ActiveState: 'inactive' });
      expect(n.start.status, n.start.stderr).toBe(0);
      // Seen while start was waiting: systemd kept the unit activating, and the daemon's own
      // STATUS= said why.
      expect(n.whileStarting).toContain('activating/start: starting: checking layers and running the self-check');
      expect(n.after).toMatchObject({ ActiveState: 'active', SubState: 'running' });
      // Logged before READY=1 was sent, so in the journal by the time start returned.
      expect(n.readyLogged).toBe(true);
      expect(n.execToActiveMs).toBeGreaterThan(0);
    });

    it('systemctl status shows the daemon\'s STATUS=', () => {
      const n = section('notify');
      // A slot may still be cleaning up after the last run (that comes after its reply).
      expect(n.after.StatusText).toMatch(/^serving: [01]\/2 slots busy, 0 queued, \d+ runs done$/);
      expect(n.statusOutput).toMatch(/^\s*Status: "serving: [01]\/2 slots busy, 0 queued, \d+ runs done"$/m);
    });
  });

  it('watchdog: a daemon with a blocked event loop is killed and restarted by systemd, and the next connection is served', () => {
    const w = section('watchdog');
    expect(w.start).toBe(0);
    expect(w.before).toMatchObject({ WatchdogUSec: '8s', ActiveState: 'active', NRestarts: '0' });
    expect(w.kill).toBe(0);
    expect(w.blockedLogged).toBe(true);
    expect(w.after, 'no restarted daemon within 180 s').toBeTruthy();
    expect(w.after).toMatchObject({ ActiveState: 'active' });
    expect(Number(w.after.NRestarts)).toBeGreaterThanOrEqual(1);
    expect(w.after.MainPID).not.toBe(w.before.MainPID);
    expect(w.systemdSaid).toContain('codejaild.service: Watchdog timeout (limit 8s)!');
    expect(w.systemdSaid).toContain("codejaild.service: Failed with result 'watchdog'.");
    expect(w.served).toEqual({ status: 0, stdout: 'served', stderr: '' });
  });

  it('systemctl reload applies a new defaultLimits value to the very next run, without a restart', () => {
    const r = section('reload');
    expect(r.before).toBe('0');
    expect(r.reloadStatus, r.reloadStderr).toBe(0);
    expect(r.after, r.afterStderr).toBe('123456');
    expect(r.pidAfter).toBe(r.pidBefore);
    expect(r.logged.map((l: { msg: string; applied?: string[] }) => [l.msg, l.applied])).toContainEqual(['configuration reloaded', ['defaultLimits']]);
  });

  it('an upgrade in place under load: new files, systemctl restart; every request answered, nothing of the old daemon left, the new build runs', () => {
    const r = section('restart');
    expect(r.restart.status, r.restart.stderr).toBe(0);
    // Its own result, or shutting_down (not run); never connection_lost, and never unavailable:
    // the socket stays with systemd, which queues connections for the new daemon.
    expect(r.wrong).toEqual([]);
    expect(r.codes.unavailable).toBeUndefined();
    expect(r.servedAfter).toBeGreaterThan(0);
    expect(r.marksAfter).toEqual(['build-B']);
    expect(r.status.version).toBe(r.newVersion);
    expect(r.status.pid).not.toBe(r.oldPid);
    expect(r.oldTemplates.length).toBeGreaterThan(0);
    expect(r.oldLeft).toEqual([]);
  });

  it('systemctl stop with runs in flight drains within shutdownGraceMs and exits 0', () => {
    const s = section('stop');
    expect(s.bothRunning).toBe(true);
    expect(s.stop.status, s.stop.stderr).toBe(0);
    // The run that ends within the grace period finishes; the one that would outlast it is cancelled.
    expect(s.short).toEqual({ status: 0, stdout: 'finished', timedOut: false, stderr: '' });
    expect(s.long).toEqual({ error: 'shutting_down: the daemon is stopping' });
    // Exited on its own (status 0, code=exited), not SIGKILLed at TimeoutStopSec=30s: the drain
    // ended at shutdownGraceMs.
    expect(s.after).toEqual({ ActiveState: 'inactive', Result: 'success', ExecMainCode: '1', ExecMainStatus: '0' });
    expect(s.logged).toContain('shutdown grace period over: cancelling the runs still in flight');
    expect(s.daemonPidsAfter).toEqual([]);
    // RemoveOnStop=no: clients keep queueing on the socket for the next start.
    expect(s.socketActive).toBe('active');
    expect(s.socketKept).toBe(true);
  });

  describe('Delegate=yes: the cgroups layer below the service\'s own cgroup', () => {
    it('is active there, as codejail status and codejail check report', () => {
      const c = section('cgroups');
      const expected = 'active (/sys/fs/cgroup/system.slice/codejaild.service/codejail)';
      expect(c.statusLayers.cgroups).toBe(expected);
      expect(section('activation').check.layers.cgroups).toBe(expected);
      expect(c.delegate).toBe('yes');
      // The daemon moved itself into a leaf so that its cgroup may hand controllers down.
      expect(c.daemonCgroup).toBe('0::/system.slice/codejaild.service/daemon');
      expect(c.subtreeControl.split(' ')).toEqual(expect.arrayContaining(['memory', 'pids']));
    });

    it('a run gets its own leaf with memory.max and pids.max, removed after the run', () => {
      const c = section('cgroups');
      expect(c.leavesBefore).toEqual([]);
      expect(c.leafDuringRun).toEqual({ leaf: expect.stringMatching(/^slot-\d+$/), memoryMax: String(1024 ** 3), pidsMax: '8', oomGroup: '1' });
      expect(c.leavesAfter).toEqual([]);
      expect(c.leavesAfterBomb).toEqual([]);
    });

    it('memory.max holds: a memory bomb with no RLIMIT_AS (VMEM 0) is OOM-killed at cgroupMemoryMax', () => {
      const m = section('cgroups').memory;
      expect(m.status, m.stderr).toBe(-9);
      expect(m.oomKilled).toBe(true);
      expect(m.memoryPeakKb).toBeGreaterThan(32 * 1024);
      expect(m.memoryPeakKb).toBeLessThanOrEqual(66 * 1024);
    });

    it('the OOM kill of a run does not stop the service (Delegate=yes: OOMPolicy=continue)', () => {
      const c = section('cgroups');
      expect(c.afterBomb).toEqual({ ActiveState: 'active', MainPID: c.pidBeforeBomb });
    });

    it('forking past NPROC fails', () => {
      // pids.max (read above) and RLIMIT_NPROC are both NPROC here; the cgroup alone is proven in
      // apparmor.test.ts, with the rlimits layer off.
      const c = section('cgroups');
      expect(c.pids.stdout, c.pids.stderr).toBe('EAGAIN after 7');
    });
  });

  it('hardening: systemd-analyze security scores the unit (recorded, see notes)', () => {
    const s = section('security');
    expect(s.status, s.stderr).toBe(0);
    expect(s.overall).toMatch(/Overall exposure level for codejaild\.service: \d+\.\d [A-Z]+/);
    console.log(`test/vm/systemd: systemd-analyze security: ${s.overall}`);
  });

  describe('an install beneath /root, on a node beneath /root (nvm)', () => {
    it('setup --systemd binds both into the unit read-only, home directories an empty tmpfs', () => {
      const h = section('homeInstall');
      expect(h.setup.status, h.setup.stderr).toBe(0);
      const node = h.unit.find((l: string) => l.startsWith('ExecStart='))?.split(' ')[0]?.slice('ExecStart='.length);
      expect(node).toMatch(/^\/root\/\.nvm\/versions\/node\/v[\d.]+\/bin\/node$/);
      expect(h.unit).toEqual([`ExecStart=${node} /root/codejail/dist/daemon/main.js`, 'ProtectHome=tmpfs', `BindReadOnlyPaths=/root/codejail ${node}`, 'PrivateTmp=yes']);
      expect(h.report).toContain(`codejaild.service: ProtectHome=tmpfs and BindReadOnlyPaths=/root/codejail ${node} (what it runs is beneath a home directory)`);
    });

    it('the socket-activated daemon runs from there and serves warm and cold runs', () => {
      const h = section('homeInstall');
      expect(h.check.status, h.check.stderr ?? h.check.stdout).toBe(0);
      expect(h.check.failed).toEqual([]);
      expect(h.daemon.exe).toMatch(/^\/root\/\.nvm\/versions\/node\/v[\d.]+\/bin\/node$/);
      expect(h.daemon.cmdline.slice(1)).toEqual(['/root/codejail/dist/daemon/main.js']);
      expect(h.runs).toEqual([
        { warm: true, status: 0, stdout: '42', stderr: '' },
        { warm: true, safeExec: { x: 21, y: 42 } },
        { warm: false, status: 0, stdout: '42', stderr: '' },
        { warm: false, safeExec: { x: 21, y: 42 } },
      ]);
    });

    it('the same install beneath /tmp is refused at setup, naming the path, and the units stay as they were', () => {
      const h = section('homeInstall');
      expect(h.fromTmp.status).not.toBe(0);
      expect(h.fromTmp.stderr.join('\n')).toContain('codejaild.service cannot run /tmp/codejail: it is beneath /tmp, which PrivateTmp=yes replaces');
      expect(h.unitAfterTmp[0]).toMatch(/ \/root\/codejail\/dist\/daemon\/main\.js$/);
    });
  });

  it('the daemon\'s logs reach the journal as JSON, one object per line', () => {
    const j = section('journal');
    expect(j.daemonLines).toBeGreaterThan(10);
    expect(j.notJson).toEqual([]);
    // journalctl -u codejaild also shows systemd's own plain-text lines about the unit; those are
    // the only lines that are not JSON.
    expect(j.unitNotJson.length).toBeGreaterThan(0);
    expect(j.unitNotJsonNotPid1).toEqual([]);
  });

  describe('uninstall', () => {
    it('setup --uninstall refuses while the daemon runs, naming it', () => {
      const u = section('uninstall');
      expect(u.activeBefore).toBe('active');
      expect(u.refused.status).not.toBe(0);
      expect(u.refused.stderr.join('\n')).toMatch(/refused: a daemon runs/);
    });

    it('then removes the units, the loaded profiles, the slot accounts and the run base it made, and keeps the configuration', () => {
      const u = section('uninstall');
      expect(u.uninstall.status, u.uninstall.stderr).toBe(0);
      expect(u.slotAccountsBefore).toBe(2);
      expect(u.profilesBefore).toBeGreaterThan(0);
      expect(u.unitFiles).toEqual([]);
      expect(u.unitsKnown).toBe('');
      expect(u.profilesLoaded).toEqual([]);
      expect(u.apparmorFiles).toEqual([]);
      expect(u.slotAccountsAfter).toBe(0);
      expect(u.runBaseLeft).toBe(false);
      expect(u.configKept).toBe(true);
      expect(u.daemonPids).toEqual([]);
    });
  });
}
