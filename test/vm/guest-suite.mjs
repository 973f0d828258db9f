// The security suite that runs INSIDE the test VM (test/vm/guest.sh starts it; test/vm/*.test.ts
// boots the VM and asserts on what this writes). Plain Node against the compiled dist/, no
// vitest: the guest is software-emulated and about 100x slower, so every run counts.
//
// It installs and loads the AppArmor profiles exactly as `codejail setup` does, then starts real
// daemons in this process and runs one probe program per pass:
//   apparmor-only  landlock, seccomp and mntns off: AppArmor is the only filesystem/exec/socket layer
//   sabotage       the same with AppArmor off too (AppArmor alone differs): every probe must then
//                  be ALLOWED, which shows that apparmor-only's denials are AppArmor's
//   all-layers     every layer required (AppArmor included): the probes are refused, by whichever
//                  layer comes first (Landlock, before AppArmor in the LSM order), so these are not
//                  AppArmor's denials
//   confined-daemon  the daemon under its own codejaild profile, its runs stacked, landlock,
//                  seccomp and mntns off as in apparmor-only: AppArmor's denials, stacked
// and a start-up check: layers.apparmor "required" with a profile that is not loaded must stop
// the daemon with a message naming it. Results go to <results>/results.json.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';

const results = process.argv[2];
if (!results) throw new Error('usage: guest-suite.mjs RESULTS_DIR');
const repo = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
const dist = (p) => path.join(repo, 'dist', p);
const { startDaemon, parseConfig, createLogger } = await import(dist('daemon/index.js'));
const { setupAppArmor } = await import(dist('setup/apparmor.js'));
const { Client } = await import(dist('client/index.js'));

const RUN_BASE = '/var/lib/codejail-vm/runs';
const started = performance.now();
const out = { kernel: fs.readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim(), steps: [], passes: {}, startup: {}, cgroups: {} };
const elapsed = () => Math.round(performance.now() - started) / 1000;
const step = (msg) => {
  out.steps.push(`${elapsed()}s ${msg}`);
  console.log(`[guest ${elapsed()}s] ${msg}`);
};

// One Python program per pass probes every deny at once (each failure is caught), so a pass
// costs one interpreter start. PermissionError is the specific refusal AppArmor (and Landlock,
// seccomp) produce, EACCES/EPERM: DENIED. EROFS (the mntns layer's empty read-only /var/tmp) is
// reported as EROFS, never as DENIED: it is not AppArmor's. Anything else is an error.
const PROBES = String.raw`
import errno, json, os, socket, subprocess
out = {}
def probe(name, fn):
    try:
        fn()
        out[name] = 'ALLOWED'
    except PermissionError:
        out[name] = 'DENIED'
    except OSError as e:
        out[name] = 'EROFS' if e.errno == errno.EROFS else 'ERROR %s: %s' % (type(e).__name__, e)
    except Exception as e:
        out[name] = 'ERROR %s: %s' % (type(e).__name__, e)
def label():
    with open('/proc/self/attr/current') as f:
        out['label'] = f.read().strip()
probe('read_attr_current', label)
probe('read_etc_passwd', lambda: open('/etc/passwd').read())
def write_outside():
    with open('/var/tmp/codejail-escape-%d' % os.getpid(), 'w') as f:
        f.write('escaped')
probe('write_outside_rundir', write_outside)
probe('exec_usr_bin_true', lambda: subprocess.run(['/usr/bin/true'], check=True))
probe('socket_af_inet', lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM).close())
def write_inside():
    # The run directory itself is root's (the sandbox reads it); its tmp/ ($TMPDIR) is writable.
    name = os.path.join(os.environ['TMPDIR'], 'inside.txt')
    with open(name, 'w') as f:
        f.write('ok')
    assert open(name).read() == 'ok'
probe('write_rundir', write_inside)
def userns_create():
    # Last: on success this process is in a new user namespace (no uid mapped), which the probes
    # above must not see. Python 3.11 has no os.unshare.
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(0x10000000) != 0:  # CLONE_NEWUSER
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
probe('userns_create', userns_create)
print(json.dumps(out))
`;

const log = createLogger({ level: 'warn' });
const baseConfig = (name, layers, extra = {}) =>
  parseConfig({
    socket: { path: `/run/codejail-vm/${name}.sock`, group: 'root', mode: '0660' },
    runBase: RUN_BASE,
    slots: { firstUid: 63000, count: 2 },
    layers,
    ...extra,
  });

async function withDaemon(name, layers, fn, extra = {}) {
  const config = baseConfig(name, layers, extra);
  const t = performance.now();
  const daemon = await startDaemon({ config, log });
  step(`${name}: daemon ready in ${Math.round(performance.now() - t)} ms, layers ${JSON.stringify(daemon.layers)}`);
  const client = new Client({ socketPath: daemon.address });
  try {
    return await fn(client, daemon);
  } finally {
    await daemon.close();
  }
}

async function probePass(name, layers) {
  const pass = { layers: undefined, confinement: undefined, probes: undefined, status: undefined, stderr: '' };
  out.passes[name] = pass;
  try {
    await withDaemon(name, layers, async (client, daemon) => {
      pass.layers = daemon.layers;
      const status = await client.status();
      pass.statusLayers = status.layers;
      // FSIZE above 0 (the default forbids writing any file): the write probes must be stopped by
      // a confinement layer, not by the file size limit.
      const r = await client.jailCode('python', { code: PROBES, limits: { CPU: 20, REALTIME: 120, FSIZE: 1_000_000 } });
      pass.status = r.status;
      pass.confinement = r.confinement;
      pass.stderr = r.stderr.toString().slice(-2000);
      pass.probes = JSON.parse(r.stdout.toString() || '{}');
      if (layers.landlock !== 'off') pass.outsideLabel = await labelSeenFromOutside(client);
    });
  } catch (err) {
    pass.error = String(err?.stack ?? err);
  }
  step(`${name}: ${JSON.stringify(pass.probes ?? pass.error)}`);
}

// With Landlock on, the sandbox cannot open /proc/self/attr/current itself (Landlock grants no
// /proc): read it from outside instead, while a run sleeps, from the daemon's side.
async function labelSeenFromOutside(client) {
  const run = client.jailCode('python', { code: 'import time\nprint("up", flush=True)\ntime.sleep(6)\n', limits: { CPU: 20, REALTIME: 60 } });
  let seen;
  for (let i = 0; i < 100 && !seen; i++) {
    await sleep(100);
    for (const pid of fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
      try {
        const uid = fs.statSync(`/proc/${pid}`).uid;
        if (uid < 63000 || uid >= 63002) continue;
        // The sandboxed interpreter, not a process of the slot's uid that has not exec'd yet (the
        // child between setresuid and execve) or the daemon's kill helper: both carry the
        // daemon's own label.
        // A warm run is a fork of the template: its command line is the template's.
        const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
        if (!cmdline.includes('jailed_code') && !cmdline.includes('warm_template.py')) continue;
        seen = fs.readFileSync(`/proc/${pid}/attr/current`, 'utf8').trim();
        break;
      } catch {
        // Gone meanwhile.
      }
    }
  }
  await run;
  return seen;
}

// The daemon itself confined by the shipped codejaild profile (enforce), as a site would run
// it: a separate process started with "exec codejaild" in its exec attribute. Its runs must
// stack ("stack codejail-sandbox": no_new_privs forbids a plain transition from a confined
// task), and the same probes must be denied.
async function confinedDaemonPass() {
  const name = 'confined-daemon';
  const pass = {};
  out.passes[name] = pass;
  // AppArmor alone, as in apparmor-only: the stacked profile's denials are then AppArmor's.
  const layers = { apparmor: 'required', landlock: 'off', seccomp: 'off', mntns: 'off' };
  const config = { socket: { path: `/run/codejail-vm/${name}.sock`, group: 'root', mode: '0660' }, runBase: RUN_BASE, slots: { firstUid: 63000, count: 2 }, layers };
  fs.mkdirSync('/etc/codejail', { recursive: true });
  fs.writeFileSync('/etc/codejail/confined.json', JSON.stringify(config));
  const t = performance.now();
  const child = spawn(
    '/bin/sh',
    ['-c', `echo "exec codejaild" > /proc/self/attr/apparmor/exec && exec "${process.execPath}" "${dist('daemon/main.js')}" --config /etc/codejail/confined.json`],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let logs = '';
  const exited = new Promise((resolve) => child.on('exit', resolve));
  try {
    await new Promise((resolve, reject) => {
      const feed = (chunk) => {
        logs += chunk;
        if (/"msg":"ready"/.test(logs)) resolve();
      };
      child.stdout.on('data', feed);
      child.stderr.on('data', feed);
      void exited.then((code) => reject(new Error(`the confined daemon exited with ${code} before ready: ${logs.slice(-3000)}`)));
    });
    pass.daemonLabel = fs.readFileSync(`/proc/${child.pid}/attr/current`, 'utf8').trim();
    step(`${name}: daemon ready in ${Math.round(performance.now() - t)} ms, label ${pass.daemonLabel}`);
    const client = new Client({ socketPath: config.socket.path });
    const r = await client.jailCode('python', { code: PROBES, limits: { CPU: 20, REALTIME: 120, FSIZE: 1_000_000 } });
    pass.status = r.status;
    pass.confinement = r.confinement;
    pass.stderr = r.stderr.toString().slice(-2000);
    pass.probes = JSON.parse(r.stdout.toString() || '{}');
    pass.outsideLabel = await labelSeenFromOutside(client);
    step(`${name}: ${JSON.stringify(pass.probes)}, sandbox label ${pass.outsideLabel}`);
  } catch (err) {
    pass.error = String(err?.stack ?? err);
    step(`${name}: ERROR ${pass.error}`);
  } finally {
    child.kill('SIGTERM');
    pass.exitCode = await exited;
    // Denials the daemon's own profile caused (there should be none) show in the kernel log. A
    // run's probes are refused by the whole stack, codejaild included (Landlock is off here, so
    // AppArmor sees them): those carry a slot's fsuid and are the run's, not the daemon's.
    const codejaildDenials = execFileSync('dmesg', { encoding: 'utf8' })
      .split('\n')
      .filter((l) => /apparmor="DENIED".*profile="codejaild"/.test(l));
    const ofASlot = (l) => /\bfsuid=(\d+)/.test(l) && Number(/\bfsuid=(\d+)/.exec(l)[1]) >= 63000 && Number(/\bfsuid=(\d+)/.exec(l)[1]) < 63002;
    pass.denials = codejaildDenials.filter((l) => !ofASlot(l));
    pass.runDenials = codejaildDenials.filter(ofASlot);
  }
}

async function startupChecks() {
  // Required, but the configured profile is not loaded: start-up must fail, naming it.
  try {
    const daemon = await startDaemon({ config: baseConfig('missing-profile', { apparmor: 'required' }, { apparmorProfile: 'codejail-not-loaded' }), log });
    await daemon.close();
    out.startup.missingProfile = 'started (WRONG)';
  } catch (err) {
    out.startup.missingProfile = `${err.name}: ${err.message}`;
  }
  step(`startup (profile not loaded): ${out.startup.missingProfile}`);
}

try {
  step(`kernel ${out.kernel}, lsm ${fs.readFileSync('/sys/kernel/security/lsm', 'utf8').trim()}`);
  // The booted kernel's AppArmor feature set, in the form apparmor_parser's --features-file and
  // --kernel-features read: the host compiles the profiles against it (test/vm/apparmor.test.ts).
  execFileSync('aa-features-abi', ['-x', '-w', path.join(results, 'features')]);
  const setupConfig = baseConfig('setup', {});
  out.setup = await setupAppArmor(setupConfig);
  step(`setup: ${out.setup.join('; ')}`);
  out.loadedProfiles = fs.readFileSync('/sys/kernel/security/apparmor/profiles', 'utf8').trim().split('\n');
  step(`loaded: ${out.loadedProfiles.join(', ')}`);

  await startupChecks();
  await probePass('apparmor-only', { apparmor: 'required', landlock: 'off', seccomp: 'off', mntns: 'off' });
  await probePass('sabotage', { apparmor: 'off', landlock: 'off', seccomp: 'off', mntns: 'off' });
  await probePass('all-layers', { apparmor: 'required', landlock: 'required', seccomp: 'required' });
  await confinedDaemonPass();
  const cgroupSuite = path.join(repo, 'test/vm/guest-cgroups.mjs');
  if (fs.existsSync(cgroupSuite)) {
    const { runCgroupChecks } = await import(cgroupSuite);
    out.cgroups = await runCgroupChecks({ withDaemon, step });
  }
} catch (err) {
  out.fatal = String(err?.stack ?? err);
  step(`FATAL ${out.fatal}`);
} finally {
  out.seconds = elapsed();
  fs.writeFileSync(path.join(results, 'results.json'), JSON.stringify(out, null, 2));
  step(`done in ${out.seconds}s`);
}
