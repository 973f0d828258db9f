// The systemd suite that runs INSIDE the test VM booted with systemd as PID 1
// (test/vm/guest-systemd.sh starts it; test/vm/systemd.test.ts boots the VM and asserts on what
// this writes). Plain Node against the compiled dist/, no vitest: the guest is software-emulated.
//
// It installs codejail as a site would (`codejail setup --systemd`, the shipped units, one
// config file) and then drives the real codejaild.service through systemctl, one section each:
//   activation  no daemon until the first connection, which is served; the socket's owner/mode
//   cgroups     Delegate=yes: the cgroups layer under the service's own cgroup, per-run leaves
//               with memory.max/pids.max, a memory bomb OOM-killed, a fork loop stopped
//   reload      systemctl reload applies a new defaultLimits value to the next run
//   uninstall   setup --uninstall: refused while the daemon runs, then the units, profiles, slot
//               accounts and run base it made are gone, the configuration kept
//   restart     an upgrade in place under load: new files over the install, systemctl restart:
//               every request answered (its own result, or shutting_down), the new build runs
//   notify      systemctl start returns only once the daemon said READY=1; STATUS= is shown
//   stop        systemctl stop with two runs in flight: one finishes, one is cancelled at
//               shutdownGraceMs, and the daemon exits 0 before systemd's own stop timeout
//   watchdog    a daemon whose event loop is blocked (test-only SIGUSR2 switch) is killed and
//               restarted by systemd, and the next connection is served
//   journal     every line the daemon logged reaches the journal as one JSON object
//   security    systemd-analyze security's exposure score for the hardened unit
//   homeInstall a copy of this install beneath /root run by a node beneath /root (as nvm puts
//               it): setup --systemd binds both into the units, and the socket-activated daemon
//               serves warm and cold runs from there; a copy beneath /tmp is refused at setup
// Each section records what it saw (or its error) in <results>/results.json, rewritten after every
// section so that a VM that dies half-way still tells how far it got.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';

const results = process.argv[2];
if (!results) throw new Error('usage: guest-systemd.mjs RESULTS_DIR');
const repo = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
const dist = (p) => path.join(repo, 'dist', p);
const { Client } = await import(dist('client/index.js'));

const CONFIG_FILE = '/etc/codejail/config.json';
/** Where the daemon's test switches are copied for the watchdog section. */
const TEST_HOOKS = '/etc/codejail/daemon_test_hooks.mjs';
const SOCKET = '/run/codejail/codejail.sock';
const UNIT = 'codejaild.service';
const DROP_IN_DIR = '/etc/systemd/system/codejaild.service.d';
const MEMORY_MAX = 64 * 1024 * 1024;
const NPROC = 8;
const GRACE_MS = 10_000;
// What a site would write: production layers (cgroups required rather than auto, so that a
// missing delegation fails the start), two slots to keep the emulated guest's work small, and
// time limits that fit an emulated guest on a loaded host (Python alone may take a second).
const CONFIG = {
  slots: { firstUid: 61000, count: 2 },
  defaultLimits: { CPU: 20, REALTIME: 120 },
  layers: { cgroups: 'required' },
  cgroupMemoryMax: MEMORY_MAX,
  shutdownGraceMs: GRACE_MS,
};

const started = performance.now();
const out = {
  kernel: fs.readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim(),
  // How long the guest took to get here: kernel, systemd's boot, and this script's start.
  uptimeAtStart: Number(fs.readFileSync('/proc/uptime', 'utf8').split(' ')[0]),
  steps: [],
};
const elapsed = () => Math.round(performance.now() - started) / 1000;
const step = (msg) => {
  out.steps.push(`${elapsed()}s ${msg}`);
  console.log(`[guest ${elapsed()}s] ${msg}`);
};
const save = () => {
  out.seconds = elapsed();
  fs.writeFileSync(path.join(results, 'results.json'), JSON.stringify(out, null, 2));
};

/** Runs a program to its end: { status, stdout, stderr, ms }. Never throws on a failed status. */

/** Until no slot of the daemon is busy (a run's clean-up comes after its reply), 10 s at most. */
async function idle(client) {
  for (let i = 0; i < 200 && (await client.status()).slots.busy > 0; i++) await sleep(50);
}

function run(file, args, { timeout = 240_000 } = {}) {
  const t = performance.now();
  return new Promise((resolve) => {
    execFile(file, args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, timeout }, (err, stdout, stderr) => {
      const status = err ? (typeof err.code === 'number' ? err.code : `${err.code ?? err.signal ?? err.message}`) : 0;
      resolve({ status, stdout, stderr, ms: Math.round(performance.now() - t) });
    });
  });
}
const systemctl = (...args) => run('systemctl', args);
const cli = (...args) => run(process.execPath, [dist('cli/main.js'), ...args]);

/**
 * Copies what an installed package holds to `dest`, owned by root: the shipped directories and
 * the production dependencies (package-lock.json's entries not marked dev). setup --systemd
 * refuses an install another user could change, and the checkout under test may lie anywhere.
 */
function installCopy(dest) {
  const lock = JSON.parse(fs.readFileSync(path.join(repo, 'package-lock.json'), 'utf8'));
  const modules = Object.entries(lock.packages)
    .filter(([dir, entry]) => dir.startsWith('node_modules/') && !entry.dev && !dir.includes('/node_modules/', 'node_modules/'.length))
    .map(([dir]) => dir)
    .filter((dir) => fs.existsSync(path.join(repo, dir)));
  for (const entry of ['package.json', 'dist', 'build/Release', 'python', 'systemd', 'apparmor', ...modules]) {
    fs.cpSync(path.join(repo, entry), path.join(dest, entry), { recursive: true });
  }
}

/** The install the units run: a root-owned copy beneath /opt (installCopy). */
const INSTALL = '/opt/codejail';

/** `systemctl show` as an object. */
async function show(unit, props) {
  const r = await systemctl('show', unit, `--property=${props.join(',')}`);
  const o = {};
  for (const line of r.stdout.split('\n')) {
    const i = line.indexOf('=');
    if (i > 0) o[line.slice(0, i)] = line.slice(i + 1);
  }
  return o;
}

/** Polls `cond` (async) every `everyMs` until it returns a truthy value or `limitMs` passes. */
async function waitFor(cond, limitMs, everyMs = 250) {
  const end = performance.now() + limitMs;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (performance.now() > end) return v;
    await sleep(everyMs);
  }
}

/** The journal up to now: written first (--sync), so that nothing logged before is missing. */
async function journal(...args) {
  await run('journalctl', ['--sync']);
  return (await run('journalctl', ['--no-pager', ...args])).stdout;
}

/** The daemon's own log lines (its processes only, not PID 1's lines about the unit) as objects. */
async function daemonLog(...match) {
  const text = await journal('-o', 'cat', `_SYSTEMD_UNIT=${UNIT}`, ...match);
  return text
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => {
      try {
        return JSON.parse(l);
      } catch {
        return { unparsed: l };
      }
    });
}

function daemonPids() {
  return fs
    .readdirSync('/proc')
    .filter((p) => /^\d+$/.test(p))
    .filter((p) => {
      try {
        return fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').includes('dist/daemon/main.js');
      } catch {
        return false;
      }
    })
    .map(Number);
}

async function section(name, fn) {
  const result = {};
  out[name] = result;
  const t = performance.now();
  try {
    await fn(result);
  } catch (err) {
    result.error = String(err?.stack ?? err);
  }
  result.ms = Math.round(performance.now() - t);
  step(`${name}: ${JSON.stringify(result).slice(0, 1500)}`);
  save();
}

async function withClient(fn) {
  const client = new Client({ socketPath: SOCKET });
  try {
    return await fn(client);
  } finally {
    await client.close();
  }
}

/** The service's delegated cgroup directory, where the daemon puts codejail/slot-N leaves. */
async function serviceCgroup() {
  const { ControlGroup } = await show(UNIT, ['ControlGroup']);
  return path.join('/sys/fs/cgroup', ControlGroup);
}

function leaves(base) {
  const dir = path.join(base, 'codejail');
  return fs.existsSync(dir) ? fs.readdirSync(dir).filter((e) => e.startsWith('slot-')) : [];
}

const readTrim = (file) => {
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch (err) {
    return `(${err.code})`;
  }
};

const FORK_LOOP = `
import os, time
n = 0
try:
    for _ in range(${NPROC * 3}):
        pid = os.fork()
        if pid == 0:
            time.sleep(60)
            os._exit(0)
        n += 1
    print('forked', n, flush=True)
except BlockingIOError:
    print('EAGAIN after', n, flush=True)
time.sleep(3)  # the suite reads the leaf meanwhile
`;

const MEMORY_BOMB = `
chunks = []
while True:
    chunks.append(bytearray(1 << 20))  # zero-filled: every page is touched
`;

const PRINT_FSIZE = 'import resource\nprint(resource.getrlimit(resource.RLIMIT_FSIZE)[0])\n';

try {
  step(`kernel ${out.kernel}, pid 1 ${readTrim('/proc/1/comm')}, ${(await run('systemctl', ['--version'])).stdout.split('\n')[0]}`);
  out.guest = {
    cgroupMount: (await run('findmnt', ['-n', '-o', 'FSTYPE', '/sys/fs/cgroup'])).stdout.trim(),
    lsm: readTrim('/sys/kernel/security/lsm'),
    ownCgroup: readTrim('/proc/self/cgroup'),
  };

  await section('setup', async (r) => {
    fs.mkdirSync(path.dirname(CONFIG_FILE), { recursive: true });
    fs.writeFileSync(CONFIG_FILE, JSON.stringify(CONFIG, null, 2));
    installCopy(INSTALL);
    const s = await run(process.execPath, [path.join(INSTALL, 'dist/cli/main.js'), 'setup', '--systemd']);
    r.status = s.status;
    r.report = s.stdout.trim().split('\n');
    r.stderr = s.stderr.slice(-3000);
    r.execStart = readTrim(`/etc/systemd/system/${UNIT}`)
      .split('\n')
      .find((l) => l.startsWith('ExecStart='));
  });

  await section('activation', async (r) => {
    r.socketActive = (await systemctl('is-active', 'codejaild.socket')).stdout.trim();
    r.before = await show(UNIT, ['ActiveState', 'MainPID']);
    r.daemonPidsBefore = daemonPids();
    const st = fs.statSync(SOCKET);
    r.socket = { type: st.isSocket() ? 'socket' : 'other', uid: st.uid, gid: st.gid, mode: (st.mode & 0o7777).toString(8).padStart(4, '0') };
    r.codejailGid = Number(
      fs
        .readFileSync('/etc/group', 'utf8')
        .split('\n')
        .find((l) => l.startsWith('codejail:'))
        ?.split(':')[2] ?? -1,
    );
    // The first connection: `codejail check` as an operator would run it.
    const check = await cli('check', '--json');
    r.check = { status: check.status, ms: check.ms, stderr: check.stderr.slice(-2000) };
    try {
      const parsed = JSON.parse(check.stdout);
      r.check.ok = parsed.ok;
      r.check.layers = parsed.layers;
      r.check.failed = parsed.probes.filter((p) => p.outcome === 'failed');
    } catch {
      r.check.stdout = check.stdout.slice(-2000);
    }
    r.after = await show(UNIT, ['ActiveState', 'SubState', 'MainPID', 'TriggeredBy']);
    r.ready = (await daemonLog()).find((l) => l.msg === 'ready');
    await withClient(async (client) => {
      const j = await client.jailCode('python', { code: 'print(6 * 7)\n' });
      r.jailCode = { status: j.status, stdout: j.stdout.toString().trim(), stderr: j.stderr.toString().slice(-1000), confinement: j.confinement };
      r.safeExec = await client.safeExec('y = x * 2', { x: 21 });
    });
  });

  await section('cgroups', async (r) => {
    const s = await cli('status', '--json');
    r.statusLayers = JSON.parse(s.stdout || '{}').layers;
    const base = await serviceCgroup();
    r.serviceCgroup = base;
    const { MainPID, Delegate } = await show(UNIT, ['MainPID', 'Delegate']);
    r.delegate = Delegate;
    r.daemonCgroup = readTrim(`/proc/${MainPID}/cgroup`);
    r.subtreeControl = readTrim(path.join(base, 'cgroup.subtree_control'));
    r.leavesBefore = leaves(base);
    await withClient(async (client) => {
      // A fork loop past NPROC, watched from outside while it runs: its leaf and the leaf's limits.
      let seen;
      const watching = (async () => {
        for (let i = 0; i < 600 && !seen; i++) {
          const [leaf] = leaves(base);
          const dir = leaf && path.join(base, 'codejail', leaf);
          if (dir && Number(readTrim(path.join(dir, 'pids.current'))) >= 1) {
            seen = { leaf, memoryMax: readTrim(path.join(dir, 'memory.max')), pidsMax: readTrim(path.join(dir, 'pids.max')), oomGroup: readTrim(path.join(dir, 'memory.oom.group')) };
          }
          await sleep(50);
        }
      })();
      const f = await client.jailCode('python', { code: FORK_LOOP, limits: { NPROC, CPU: 20, REALTIME: 120 } });
      await watching;
      r.leafDuringRun = seen;
      r.pids = { status: f.status, stdout: f.stdout.toString().trim(), stderr: f.stderr.toString().slice(-500) };
      // A run's leaf goes in its clean-up, which finishes after the reply: once no slot is busy.
      await idle(client);
      r.leavesAfter = leaves(base);
      // VMEM 0: no RLIMIT_AS, so memory.max (cgroupMemoryMax) is the only bound on the bomb.
      r.pidBeforeBomb = (await show(UNIT, ['MainPID'])).MainPID;
      const m = await client.jailCode('python', { code: MEMORY_BOMB, limits: { VMEM: 0, CPU: 20, REALTIME: 120 } });
      r.memory = { status: m.status, oomKilled: m.oomKilled, memoryPeakKb: m.usage.memoryPeakKb, confinement: m.confinement, stderr: m.stderr.toString().slice(-300) };
      await idle(client);
      r.leavesAfterBomb = leaves(base);
      // systemd logs the kernel's OOM kill in the unit; it must not stop the service for it.
      r.afterBomb = await show(UNIT, ['ActiveState', 'MainPID']);
    });
  });

  await section('reload', async (r) => {
    await withClient(async (client) => {
      r.before = (await client.jailCode('python', { code: PRINT_FSIZE })).stdout.toString().trim();
      r.pidBefore = (await show(UNIT, ['MainPID'])).MainPID;
      fs.writeFileSync(CONFIG_FILE, JSON.stringify({ ...CONFIG, defaultLimits: { ...CONFIG.defaultLimits, FSIZE: 123456 } }, null, 2));
      const reload = await systemctl('reload', UNIT);
      r.reloadStatus = reload.status;
      r.reloadStderr = reload.stderr;
      // The very next run, through the same connection.
      const after = await client.jailCode('python', { code: PRINT_FSIZE });
      r.after = after.stdout.toString().trim();
      r.afterStderr = after.stderr.toString().slice(-500);
      r.pidAfter = (await show(UNIT, ['MainPID'])).MainPID;
      r.logged = (await daemonLog()).filter((l) => /reload/.test(l.msg ?? ''));
    });
  });

  await section('restart', async (r) => {
    // An upgrade in place under load: the next build's files over the install (new inodes, as npm
    // writes them: a new version, and a marker in the warm template that a warm run sees in its
    // template's frames), then `systemctl restart` while runs keep coming.
    const oldPid = Number((await show(UNIT, ['MainPID'])).MainPID);
    const oldTemplates = (await daemonLog(`_PID=${oldPid}`)).filter((l) => l.msg === 'warm template ready').map((l) => l.pid);
    const manifest = path.join(INSTALL, 'package.json');
    const template = path.join(INSTALL, 'python/warm_template.py');
    const originals = [manifest, template].map((file) => [file, fs.readFileSync(file)]);
    const replace = (file, text) => {
      fs.writeFileSync(`${file}.new`, text);
      fs.renameSync(`${file}.new`, file);
    };
    const code = [
      'import inspect, sys',
      'marks = sorted({f.frame.f_globals.get("UPGRADE_BUILD_MARKER") for f in inspect.stack()} - {None})',
      'print(sys.argv[1], ",".join(marks) or "-")',
    ].join('\n');
    const outcomes = [];
    let stopping = false;
    let serial = 0;
    const clients = [new Client({ socketPath: SOCKET }), new Client({ socketPath: SOCKET })];
    const loops = [0, 1, 2].map(async (worker) => {
      while (!stopping) {
        const nonce = `n${serial++}`;
        const sentAt = performance.now();
        try {
          const j = await clients[worker % 2].jailCode('python', { code, argv: [nonce], limits: { CPU: 10, REALTIME: 60 } });
          const [echo, mark] = j.stdout.toString().trim().split(' ');
          outcomes.push(j.status === 0 && echo === nonce ? { sentAt, mark } : { sentAt, error: `status ${j.status}: ${j.stdout}${j.stderr}`.slice(0, 300) });
        } catch (err) {
          outcomes.push({ sentAt, code: err.code, error: `${err.code}: ${err.message}`.slice(0, 300) });
          await sleep(25);
        }
      }
    });
    const served = () => outcomes.filter((o) => o.mark !== undefined).length;
    try {
      await waitFor(async () => served() >= 3, 120_000, 100);
      const manifestJson = JSON.parse(originals[0][1].toString());
      r.newVersion = `${manifestJson.version}-restart`;
      replace(manifest, JSON.stringify({ ...manifestJson, version: r.newVersion }, null, 2));
      const source = originals[1][1].toString();
      const at = source.indexOf('\ndef _vm_size_kb():');
      replace(template, `${source.slice(0, at)}\nUPGRADE_BUILD_MARKER = "build-B"\n${source.slice(at)}`);
      const restart = await systemctl('restart', UNIT);
      r.restart = { status: restart.status, ms: restart.ms, stderr: restart.stderr };
      r.restartedAt = performance.now();
      const before = served();
      await waitFor(async () => served() >= before + 3, 120_000, 100);
    } finally {
      stopping = true;
      await Promise.all(loops);
      await Promise.all(clients.map((c) => c.close()));
      for (const [file, bytes] of originals) replace(file, bytes);
    }
    r.requests = outcomes.length;
    r.codes = {};
    for (const o of outcomes) if (o.code) r.codes[o.code] = (r.codes[o.code] ?? 0) + 1;
    r.wrong = outcomes.filter((o) => o.error !== undefined && o.code !== 'shutting_down').map((o) => o.error);
    r.marksAfter = [...new Set(outcomes.filter((o) => o.sentAt > r.restartedAt && o.mark !== undefined).map((o) => o.mark))];
    r.servedAfter = outcomes.filter((o) => o.sentAt > r.restartedAt && o.mark !== undefined).length;
    const status = await withClient((client) => client.status());
    r.status = { version: status.version, pid: status.pid };
    r.oldPid = oldPid;
    r.oldTemplates = oldTemplates;
    r.oldLeft = [oldPid, ...oldTemplates].filter((pid) => fs.existsSync(`/proc/${pid}`));
    delete r.restartedAt;
  });

  await section('notify', async (r) => {
    r.stop = (await systemctl('stop', UNIT)).status;
    await systemctl('reset-failed', UNIT);
    r.stopped = await show(UNIT, ['ActiveState']);
    // While `systemctl start` waits, record what systemd says about the unit.
    const states = new Set();
    let done = false;
    const t = performance.now();
    const start = run('systemctl', ['start', UNIT]).then((s) => {
      done = true;
      return s;
    });
    while (!done) {
      const s = await show(UNIT, ['ActiveState', 'SubState', 'StatusText']);
      if (!done) states.add(`${s.ActiveState}/${s.SubState}: ${s.StatusText}`);
      await sleep(100);
    }
    const s = await start;
    r.start = { status: s.status, stderr: s.stderr, ms: Math.round(performance.now() - t) };
    r.whileStarting = [...states];
    r.after = await show(UNIT, ['ActiveState', 'SubState', 'StatusText', 'MainPID', 'InvocationID', 'ExecMainStartTimestampMonotonic', 'ActiveEnterTimestampMonotonic']);
    // Activation took as long as the self-check: READY=1, not the exec, ended it.
    r.execToActiveMs = Math.round((Number(r.after.ActiveEnterTimestampMonotonic) - Number(r.after.ExecMainStartTimestampMonotonic)) / 1000);
    // Logged by the daemon before it sent READY=1: in the journal by the time start returned.
    r.readyLogged = (await daemonLog(`_SYSTEMD_INVOCATION_ID=${r.after.InvocationID}`)).some((l) => l.msg === 'ready');
    r.statusOutput = (await systemctl('status', UNIT, '--no-pager', '--lines=0')).stdout;
  });

  await section('stop', async (r) => {
    const base = await serviceCgroup();
    r.graceMs = GRACE_MS;
    await withClient(async (client) => {
      const settle = (p) =>
        p.then(
          (j) => ({ status: j.status, stdout: j.stdout.toString().trim(), timedOut: j.timedOut, stderr: j.stderr.toString().slice(-300) }),
          (err) => ({ error: `${err.code ?? err.name}: ${err.message}` }),
        );
      // One run that ends well within the grace period, one that would outlast it.
      const short = settle(client.jailCode('python', { code: 'import time\ntime.sleep(1)\nprint("finished")\n', limits: { CPU: 10, REALTIME: 60 } }));
      const long = settle(client.jailCode('python', { code: 'import time\ntime.sleep(120)\nprint("finished")\n', limits: { CPU: 10, REALTIME: 200 } }));
      r.bothRunning = (await waitFor(async () => leaves(base).length === 2, 60_000, 50)) === true;
      const stop = await systemctl('stop', UNIT);
      r.stop = { status: stop.status, ms: stop.ms, stderr: stop.stderr };
      r.short = await short;
      r.long = await long;
    });
    r.after = await show(UNIT, ['ActiveState', 'Result', 'ExecMainCode', 'ExecMainStatus']);
    r.socketActive = (await systemctl('is-active', 'codejaild.socket')).stdout.trim();
    r.socketKept = fs.existsSync(SOCKET);
    r.daemonPidsAfter = daemonPids();
    r.logged = (await daemonLog())
      .map((l) => l.msg)
      .filter((m) => /stopping|grace|stopped/.test(m ?? ''))
      .slice(-5);
  });

  await section('watchdog', async (r) => {
    fs.mkdirSync(DROP_IN_DIR, { recursive: true });
    // A short watchdog for this test only, and a test switch preloaded into the daemon: SIGUSR2
    // blocks its event loop (test/helpers/daemon_test_hooks.mjs, copied where the unit's sandbox
    // lets it read: not beneath a home or /tmp). The shipped unit keeps WatchdogSec=30s.
    fs.mkdirSync(path.dirname(TEST_HOOKS), { recursive: true });
    fs.copyFileSync(path.join(repo, 'test/helpers/daemon_test_hooks.mjs'), TEST_HOOKS);
    fs.writeFileSync(
      path.join(DROP_IN_DIR, 'watchdog-test.conf'),
      `[Service]\nWatchdogSec=8s\nEnvironment=NODE_OPTIONS=--import=${TEST_HOOKS} CODEJAIL_TEST_BLOCK_ON_SIGUSR2=1\n`,
    );
    await systemctl('daemon-reload');
    await systemctl('reset-failed', UNIT);
    r.start = (await systemctl('start', UNIT)).status;
    r.before = await show(UNIT, ['MainPID', 'NRestarts', 'WatchdogUSec', 'ActiveState']);
    const t = performance.now();
    r.kill = (await systemctl('kill', '--kill-who=main', '--signal=SIGUSR2', UNIT)).status;
    r.after = await waitFor(async () => {
      const s = await show(UNIT, ['MainPID', 'NRestarts', 'ActiveState', 'SubState']);
      return s.ActiveState === 'active' && s.MainPID !== r.before.MainPID && s.MainPID !== '0' ? s : undefined;
    }, 180_000);
    r.restartedAfterMs = Math.round(performance.now() - t);
    r.blockedLogged = (await daemonLog(`_PID=${r.before.MainPID}`)).some((l) => /SIGUSR2 received, blocking/.test(l.msg ?? ''));
    r.systemdSaid = (await journal('-o', 'cat', '-u', UNIT, '_PID=1')).split('\n').filter((l) => /watchdog/i.test(l));
    r.served = await withClient(async (client) => {
      const j = await client.jailCode('python', { code: 'print("served")\n' });
      return { status: j.status, stdout: j.stdout.toString().trim(), stderr: j.stderr.toString().slice(-500) };
    });
    // The drop-in stays: nothing after this section starts the daemon again.
  });


  await section('security', async (r) => {
    const s = await run('systemd-analyze', ['security', '--no-pager', UNIT]);
    r.status = s.status;
    r.stderr = s.stderr.slice(-1000);
    r.output = s.stdout;
    r.overall = s.stdout.split('\n').find((l) => /Overall exposure level/.test(l))?.trim();
  });

  await section('journal', async (r) => {
    const lines = (await journal('-o', 'cat', `_SYSTEMD_UNIT=${UNIT}`)).split('\n').filter((l) => l.trim());
    r.daemonLines = lines.length;
    r.notJson = lines.filter((l) => {
      try {
        const o = JSON.parse(l);
        return !(o && typeof o.msg === 'string' && typeof o.level === 'string' && typeof o.time === 'string');
      } catch {
        return true;
      }
    });
    // `journalctl -u` also shows what systemd (PID 1) says about the unit, in plain text.
    const all = (await journal('-o', 'cat', '-u', UNIT)).split('\n').filter((l) => l.trim());
    r.unitLines = all.length;
    r.unitNotJson = all.filter((l) => {
      try {
        JSON.parse(l);
        return false;
      } catch {
        return true;
      }
    });
    const pid1 = new Set((await journal('-o', 'cat', '-u', UNIT, '_PID=1')).split('\n').filter((l) => l.trim()));
    r.pid1Lines = pid1.size;
    r.unitNotJsonNotPid1 = r.unitNotJson.filter((l) => !pid1.has(l));
  });

  await section('homeInstall', async (r) => {
    await systemctl('stop', 'codejaild.socket', UNIT);
    await systemctl('reset-failed', UNIT);
    const home = '/root/codejail';
    installCopy(home);
    const node = `/root/.nvm/versions/node/${process.version}/bin/node`;
    fs.mkdirSync(path.dirname(node), { recursive: true });
    fs.copyFileSync(fs.realpathSync(process.execPath), node);
    fs.chmodSync(node, 0o755);
    const s = await run(node, [path.join(home, 'dist/cli/main.js'), 'setup', '--systemd']);
    r.setup = { status: s.status, stderr: s.stderr.slice(-2000) };
    r.report = s.stdout.trim().split('\n').filter((l) => /BindReadOnlyPaths|codejaild/.test(l));
    r.unit = readTrim(`/etc/systemd/system/${UNIT}`)
      .split('\n')
      .filter((l) => /^(ExecStart|ProtectHome|BindReadOnlyPaths|PrivateTmp)=/.test(l));
    const check = await cli('check', '--json');
    r.check = { status: check.status, stderr: check.stderr.slice(-2000) };
    try {
      const parsed = JSON.parse(check.stdout);
      r.check.ok = parsed.ok;
      r.check.failed = parsed.probes.filter((p) => p.outcome === 'failed');
    } catch {
      r.check.stdout = check.stdout.slice(-2000);
    }
    const { MainPID } = await show(UNIT, ['MainPID']);
    r.daemon = { exe: fs.readlinkSync(`/proc/${MainPID}/exe`), cmdline: fs.readFileSync(`/proc/${MainPID}/cmdline`, 'utf8').split('\0').filter(Boolean) };
    await withClient(async (client) => {
      r.runs = [];
      for (const warm of [true, false]) {
        const j = await client.jailCode('python', { code: 'print(6 * 7)\n', warm, profile: true });
        r.runs.push({ warm: j.usage.stages?.warm, status: j.status, stdout: j.stdout.toString().trim(), stderr: j.stderr.toString().slice(-500) });
        r.runs.push({ warm, safeExec: await client.safeExec('y = x * 2', { x: 21 }, { warm }) });
      }
    });
    // The same install beneath /tmp: PrivateTmp= would hide it from the units, so setup refuses.
    fs.cpSync(home, '/tmp/codejail', { recursive: true });
    const t = await run(node, ['/tmp/codejail/dist/cli/main.js', 'setup', '--systemd']);
    r.fromTmp = { status: t.status, stderr: t.stderr.trim().split('\n').slice(-3) };
    r.unitAfterTmp = readTrim(`/etc/systemd/system/${UNIT}`)
      .split('\n')
      .filter((l) => /^ExecStart=/.test(l));
  });

  // Uninstall under a real systemd and AppArmor: refused while the daemon runs, then everything
  // setup made goes (units known to systemd, profiles loaded in the kernel, slot accounts, the run
  // base) and the configuration stays (no --purge).
  await section('uninstall', async (r) => {
    const node = `/root/.nvm/versions/node/${process.version}/bin/node`;
    const main = '/root/codejail/dist/cli/main.js';
    const passwdSlots = () => fs.readFileSync('/etc/passwd', 'utf8').split('\n').filter((l) => /^codejail-6100[01]:/.test(l)).length;
    r.slotAccountsBefore = passwdSlots();
    r.profilesBefore = fs.readFileSync('/sys/kernel/security/apparmor/profiles', 'utf8').split('\n').filter((l) => /codejail/.test(l)).length;
    await withClient((client) => client.status());
    r.activeBefore = (await show(UNIT, ['ActiveState'])).ActiveState;
    const refused = await run(node, [main, 'setup', '--uninstall']);
    r.refused = { status: refused.status, stderr: refused.stderr.trim().split('\n').slice(-2) };
    await systemctl('stop', 'codejaild.socket', UNIT, 'codejail-http.service');
    const u = await run(node, [main, 'setup', '--uninstall']);
    r.uninstall = { status: u.status, report: u.stdout.trim().split('\n'), stderr: u.stderr.slice(-2000) };
    // The units setup installs (this guest's own codejail-vm units and the watchdog section's
    // drop-in are not setup's, and stay).
    const setupUnits = ['codejaild.service', 'codejaild.socket', 'codejail-http.service'];
    r.unitFiles = setupUnits.filter((f) => fs.existsSync(path.join('/etc/systemd/system', f)));
    r.unitsKnown = (await systemctl('list-unit-files', '--no-legend', ...setupUnits)).stdout.trim();
    r.profilesLoaded = fs.readFileSync('/sys/kernel/security/apparmor/profiles', 'utf8').split('\n').filter((l) => /codejail/.test(l));
    r.apparmorFiles = ['codejail-sandbox', 'codejaild', 'tunables/codejail'].filter((f) => fs.existsSync(path.join('/etc/apparmor.d', f)));
    r.slotAccountsAfter = passwdSlots();
    r.runBaseLeft = fs.existsSync('/var/lib/codejail/runs');
    r.configKept = fs.existsSync(CONFIG_FILE);
    r.daemonPids = daemonPids();
  });
} catch (err) {
  out.fatal = String(err?.stack ?? err);
  step(`FATAL ${out.fatal}`);
} finally {
  save();
  step(`done in ${out.seconds}s`);
}
