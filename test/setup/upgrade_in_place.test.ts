// Upgrading a running install in place, the documented way (README, "Upgrading a running
// install"): build A is installed with `npm i -g` from its tarball, `codejail setup` is run, and
// its codejaild serves a steady load of warm and cold runs; build B's tarball is installed over it
// (`npm i -g` again, into the same prefix) while A keeps serving; then A is stopped (SIGTERM: it
// lets its runs in flight finish) and B's codejaild is started, the load still coming.
//
// "Nothing lost" means, for every request the load sent, exactly one of:
// - its own right answer: status 0 and the stdout its own arguments make (a nonce it alone was
//   given, a product of its numbers), from the build that was serving when it was sent;
// - a CodejailError whose code says the request did not run and may be sent again:
//   `shutting_down` (the stopping daemon refused or cancelled it, or closed the connection it came
//   on before reading it) or `unavailable` (no daemon listened on the socket: between A's stop and
//   B's start).
// Never `connection_lost` (a connection dropped without a reply, which leaves the caller unable to
// tell whether the request ran), never another code, never a request left without an answer.
//
// And: A exits 0; nothing of A is left (its warm templates are gone, no process runs as a slot
// uid, no process maps a file of the install that the upgrade deleted); B's daemon reports B's
// version and maps B's files; B's warm templates are B's daemon's children and run B's template
// program (build B carries a marker in python/warm_template.py that a warm run sees in its
// template's frames, where A's runs see none).
//
// The two tarballs are packed without scripts from a staging copy of this built checkout (dist/,
// python/, the addon and the warm library as prebuilds/, as `npm pack` ships them): packing with
// prebuildify is test/package/prebuilt_install.test.ts's subject, and compiles for minutes.
import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CodejailError } from '../../src/client/errors.js';
import { Client } from '../../src/client/index.js';
import { followLogLines, type LogLine } from '../helpers/log_lines.js';
import { within } from '../helpers/proc.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const isRoot = process.getuid?.() === 0;
const NPM_CLI = (() => {
  const found = spawnSync('sh', ['-c', 'command -v npm'], { encoding: 'utf8' }).stdout.trim();
  return found ? fs.realpathSync(found) : '';
})();
// Not beneath /tmp: the runs' mount namespace empties it (the daemon reads its files at start,
// but setup would refuse such an install for systemd, and an operator would not put one there).
const WORK = path.join('/var/lib/codejail-upgrade-test', String(process.pid));
const PREFIX = path.join(WORK, 'global');
const INSTALLED = path.join(PREFIX, 'lib/node_modules/codejail');
const SLOT_COUNT = 3;
// Clear of the other tests' slot ranges (60000-98999).
const FIRST_UID = 99_000 + (process.pid % 200) * 4;
const RUN_BASE = path.join('/var/lib/codejail-test', `upgrade-${process.pid}`);
const SOCKET = path.join(WORK, 'codejail.sock');
const CONFIG = path.join(WORK, 'config.json');
/** The codes that say a request did not run and may be sent again, and only those. */
const RETRYABLE = new Set(['shutting_down', 'unavailable']);
/** What build B's warm template carries, and a warm run of B prints. */
const MARKER_B = 'build-B';
const VERSION_A = '0.1.0-upgrade.a';
const VERSION_B = '0.1.0-upgrade.b';

/**
 * Runs a command to its end without blocking this worker. One still running after `timeoutMs` is
 * killed and the test fails naming it, with what it printed (a full run once hung here until the
 * test's own timeout, which says nothing of which step it was).
 */
function run(command: string, args: string[], options: SpawnOptions = {}, timeoutMs = 90_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], ...options });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${command} ${args.join(' ')} did not finish within ${timeoutMs} ms:\n${stdout}\n${stderr}`));
    }, timeoutMs);
    child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(stdout);
      else reject(new Error(`${command} ${args.join(' ')} exited ${code}:\n${stdout}\n${stderr}`));
    });
  });
}

/** npm's environment: offline where the cache has it, no audit, and node first on PATH. */
const npmEnv: NodeJS.ProcessEnv = {
  HOME: process.env.HOME,
  PATH: `${path.dirname(process.execPath)}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`,
  npm_config_build_from_source: 'false',
  npm_config_prefer_offline: 'true',
  npm_config_audit: 'false',
  npm_config_fund: 'false',
  npm_config_update_notifier: 'false',
  // What the cache lacks (a package's metadata: npm ci fetched only tarballs) comes from the
  // registry: a stalled fetch is given up and retried after 30 s, not npm's default 5 minutes.
  npm_config_fetch_timeout: '30000',
  npm_config_fetch_retries: '4',
  npm_config_fetch_retry_maxtimeout: '10000',
};

/**
 * Packs a tarball of this built checkout with `version` (and, for build B, the marker in the warm
 * template's program), as `npm pack` lays it out: the built addon and warm library as the glibc
 * prebuilds the install step uses.
 */
async function pack(version: string, marker: string | undefined): Promise<string> {
  const stage = path.join(WORK, `stage-${version}`);
  fs.mkdirSync(stage, { recursive: true });
  for (const entry of ['dist', 'native', 'binding.gyp', 'python', 'apparmor', 'systemd', 'README.md', 'LICENSE']) {
    fs.cpSync(path.join(root, entry), path.join(stage, entry), { recursive: true });
  }
  fs.mkdirSync(path.join(stage, 'scripts'));
  fs.copyFileSync(path.join(root, 'scripts/install.mjs'), path.join(stage, 'scripts/install.mjs'));
  const prebuilds = path.join(stage, 'prebuilds/linux-x64');
  fs.mkdirSync(prebuilds, { recursive: true });
  fs.copyFileSync(path.join(root, 'build/Release/codejail.node'), path.join(prebuilds, 'codejail.napi.glibc.node'));
  fs.copyFileSync(path.join(root, 'build/Release/codejail_warm.so'), path.join(prebuilds, 'codejail_warm.glibc.so'));
  const manifest = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as Record<string, unknown>;
  fs.writeFileSync(path.join(stage, 'package.json'), JSON.stringify({ ...manifest, version }, null, 2));
  if (marker !== undefined) {
    const template = path.join(stage, 'python/warm_template.py');
    const source = fs.readFileSync(template, 'utf8');
    const at = source.indexOf('\ndef _vm_size_kb():');
    expect(at).toBeGreaterThan(0);
    fs.writeFileSync(template, `${source.slice(0, at)}\nUPGRADE_BUILD_MARKER = ${JSON.stringify(marker)}\n${source.slice(at)}`);
  }
  await run(process.execPath, [NPM_CLI, 'pack', '--ignore-scripts', '--pack-destination', WORK], { cwd: stage, env: npmEnv });
  return path.join(WORK, `codejail-${version}.tgz`);
}

interface Daemon {
  child: ChildProcess;
  logs: LogLine[];
  exited: Promise<number | null>;
  /** When its 'ready' line came (ms since the epoch). */
  readyAt: number;
}

/** Starts the installed codejaild (whichever build is installed now) and waits for 'ready'. */
async function startInstalledDaemon(): Promise<Daemon> {
  const child = spawn(path.join(PREFIX, 'bin/codejaild'), ['--config', CONFIG], { stdio: ['ignore', 'pipe', 'pipe'], env: npmEnv, cwd: '/' });
  const logs: LogLine[] = [];
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const ready = new Promise<number>((resolve, reject) => {
    followLogLines([child.stdout, child.stderr], (line) => {
      logs.push(line);
      if (line.msg === 'ready') resolve(Date.now());
    });
    void exited.then((code) => reject(new Error(`codejaild exited ${code} before ready:\n${logs.map((l) => JSON.stringify(l)).join('\n')}`)));
  });
  const readyAt = await within(30_000, `the installed codejaild to be ready (its log so far: ${logs.length} lines)`, ready).catch((err: Error) => {
    child.kill('SIGKILL');
    throw new Error(`${err.message}\n${logs.map((l) => JSON.stringify(l)).join('\n')}`);
  });
  return { child, logs, exited, readyAt };
}

function templatePids(daemon: Daemon): number[] {
  return daemon.logs.filter((l) => l.msg === 'warm template ready').map((l) => Number(l.pid));
}

function alive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

function procField(pid: number, field: string): string | undefined {
  try {
    return fs
      .readFileSync(`/proc/${pid}/status`, 'utf8')
      .split('\n')
      .find((line) => line.startsWith(`${field}:`))
      ?.split(/\s+/)[1];
  } catch {
    return undefined;
  }
}

/** Every live process that runs as a slot uid, or maps a deleted file of the install. */
function leftovers(): string[] {
  const found: string[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    const uid = Number(procField(pid, 'Uid'));
    if (uid >= FIRST_UID && uid < FIRST_UID + SLOT_COUNT && alive(pid)) found.push(`pid ${pid} runs as slot uid ${uid}`);
    let maps = '';
    try {
      maps = fs.readFileSync(`/proc/${pid}/maps`, 'utf8');
    } catch {
      continue;
    }
    const stale = maps.split('\n').filter((line) => line.includes(WORK) && line.endsWith('(deleted)'));
    if (stale.length > 0) found.push(`pid ${pid} maps deleted install files: ${stale[0]}`);
  }
  return found;
}

/** One request the load sent, and how it ended. */
interface Outcome {
  kind: 'warm' | 'cold';
  sentAt: number;
  endedAt: number;
  /** The build whose template the run's frames showed ('-': none, a cold run or build A). */
  marker?: string;
  error?: string;
  code?: string;
}

/** A warm or cold run whose answer only it can give; any other answer is recorded as an error. */
async function oneRequest(client: Client, serial: number, warm: boolean): Promise<Outcome> {
  const kind = warm ? 'warm' : 'cold';
  const nonce = `${process.pid}-${serial}-${Math.random().toString(36).slice(2)}`;
  const factor = 1000 + serial;
  // Mostly short, one in eight long enough to be in flight when the daemon stops; REALTIME with
  // room for a loaded machine, well within shutdownGraceMs.
  const sleep = serial % 8 === 0 ? 1 : Math.random() * 0.15;
  const code = [
    'import inspect, sys, time',
    'time.sleep(float(sys.argv[2]))',
    'marks = sorted({f.frame.f_globals.get("UPGRADE_BUILD_MARKER") for f in inspect.stack()} - {None})',
    'print(sys.argv[1], int(sys.argv[3]) * 7, ",".join(marks) or "-")',
  ].join('\n');
  const sentAt = Date.now();
  try {
    const result = await client.jailCode('python', { code, argv: [nonce, String(sleep), String(factor)], warm, limits: { REALTIME: 8 } });
    const endedAt = Date.now();
    const stdout = result.stdout.toString();
    const match = new RegExp(`^${nonce} ${factor * 7} (\\S+)\\n$`).exec(stdout);
    if (result.status !== 0 || !match) {
      return { kind, sentAt, endedAt, error: `not its own answer: status ${result.status}, timedOut ${result.timedOut}, stdout ${JSON.stringify(stdout)}, stderr ${JSON.stringify(result.stderr.toString())}` };
    }
    return { kind, sentAt, endedAt, marker: match[1] };
  } catch (err) {
    const endedAt = Date.now();
    if (err instanceof CodejailError) return { kind, sentAt, endedAt, code: err.code, error: `${err.code}: ${err.message}` };
    return { kind, sentAt, endedAt, error: `not a CodejailError: ${String(err)}` };
  }
}

/**
 * Workers sending one request after another until stopped; each request has a deadline of its
 * own, so a request that never gets an answer fails the test instead of hanging it.
 */
function startLoad(workers: number): { outcomes: Outcome[]; stop: () => Promise<void> } {
  const outcomes: Outcome[] = [];
  // Two clients: most workers share one connection (requests pipelined on it), one has its own.
  const clients = [new Client({ socketPath: SOCKET }), new Client({ socketPath: SOCKET })];
  let stopping = false;
  let serial = 0;
  const loops = Array.from({ length: workers }, async (_, worker) => {
    const client = clients[worker === 0 ? 1 : 0]!;
    while (!stopping) {
      const mine = serial++;
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<Outcome>((resolve) => {
        timer = setTimeout(() => resolve({ kind: 'warm', sentAt: Date.now(), endedAt: Date.now(), error: `request ${mine} got no answer within 60 s` }), 60_000);
      });
      const outcome = await Promise.race([oneRequest(client, mine, mine % 3 !== 0), deadline]);
      clearTimeout(timer);
      outcomes.push(outcome);
      // A stopping daemon, or none, answers at once: back off a little, as a caller would.
      if (outcome.code !== undefined) await new Promise((r) => setTimeout(r, 25));
    }
  });
  return {
    outcomes,
    stop: async () => {
      stopping = true;
      await Promise.all(loops);
      await Promise.all(clients.map((c) => c.close()));
    },
  };
}

async function until(condition: () => boolean, what: string, timeoutMs = 30_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe.runIf(isRoot && NPM_CLI !== '')('upgrading a running install in place under load', () => {
  let tarballA = '';
  let tarballB = '';
  const daemons: Daemon[] = [];

  beforeAll(async () => {
    fs.rmSync(WORK, { recursive: true, force: true });
    fs.mkdirSync(WORK, { recursive: true });
    tarballA = await pack(VERSION_A, undefined);
    tarballB = await pack(VERSION_B, MARKER_B);
    fs.writeFileSync(
      CONFIG,
      JSON.stringify({
        runBase: RUN_BASE,
        slots: { firstUid: FIRST_UID, count: SLOT_COUNT },
        socket: { path: SOCKET, group: 'codejail', mode: '0660' },
        shutdownGraceMs: 10_000,
      }),
    );
  }, 120_000);

  afterAll(async () => {
    for (const daemon of daemons) {
      if (daemon.child.exitCode === null && daemon.child.signalCode === null) daemon.child.kill('SIGTERM');
      await daemon.exited;
    }
    spawnSync('umount', ['--recursive', '--lazy', RUN_BASE], { stdio: 'ignore' });
    fs.rmSync(RUN_BASE, { recursive: true, force: true });
    fs.rmSync(WORK, { recursive: true, force: true });
    try {
      fs.rmdirSync(path.dirname(WORK)); // only when no other run of this test uses it
    } catch {
      // another run's, or gone
    }
    for (let uid = FIRST_UID; uid < FIRST_UID + SLOT_COUNT; uid++) {
      spawnSync('userdel', [`codejail-${uid}`], { stdio: 'ignore' });
      spawnSync('groupdel', [`codejail-${uid}`], { stdio: 'ignore' });
    }
  });

  it('answers every request with its own result or a retryable code, leaves nothing of A behind, and B runs B', async () => {
    await run(process.execPath, [NPM_CLI, 'install', '--global', '--prefix', PREFIX, tarballA], { cwd: WORK, env: npmEnv });
    await run(path.join(PREFIX, 'bin/codejail'), ['setup', '--config', CONFIG], { env: npmEnv });
    const a = await startInstalledDaemon();
    daemons.push(a);
    const templatesA = templatePids(a);
    expect(templatesA.length).toBeGreaterThan(0);

    const load = startLoad(5);
    const { outcomes } = load;
    const served = () => outcomes.filter((o) => o.error === undefined).length;
    let installedAt = 0;
    let stoppedAt = 0;
    let stopSentAt = 0;
    let b!: Daemon;
    try {
      await until(() => served() >= 15, 'build A to serve 15 runs under load');

      // B over A, while A serves.
      const beforeInstall = served();
      await run(process.execPath, [NPM_CLI, 'install', '--global', '--prefix', PREFIX, tarballB], { cwd: WORK, env: npmEnv });
      installedAt = Date.now();
      expect(JSON.parse(fs.readFileSync(path.join(INSTALLED, 'package.json'), 'utf8')).version).toBe(VERSION_B);
      await until(() => served() >= beforeInstall + 10, 'build A to serve 10 more runs after B was installed over it');
      // A answers status and its self-check as before: it loads nothing of the install lazily.
      const client = new Client({ socketPath: SOCKET });
      try {
        expect((await within(30_000, "build A's status", client.status())).version).toBe(VERSION_A);
        expect((await within(60_000, "build A's self-check", client.check())).ok).toBe(true);
      } finally {
        await client.close();
      }

      // The restart: SIGTERM, A lets its runs finish and exits, then B starts.
      stopSentAt = Date.now();
      a.child.kill('SIGTERM');
      expect(await within(40_000, 'build A to exit after SIGTERM', a.exited)).toBe(0);
      stoppedAt = Date.now();
      for (const pid of templatesA) expect(alive(pid), `build A's template ${pid}`).toBe(false);
      expect(leftovers()).toEqual([]);
      b = await startInstalledDaemon();
      daemons.push(b);
      const afterStart = served();
      await until(() => served() >= afterStart + 20, 'build B to serve 20 runs under load');
    } finally {
      await within(70_000, 'the load to stop (each request has a 60 s deadline)', load.stop());
    }

    // Every request: its own answer, or a retryable code.
    const wrong = outcomes.filter((o) => o.error !== undefined && !RETRYABLE.has(o.code ?? ''));
    expect(wrong.map((o) => o.error)).toEqual([]);
    // A served everything until it was told to stop, B everything once it was ready.
    const failed = (o: Outcome) => o.error !== undefined;
    // (A request sent before B was installed may still be queued when A is told to stop, on a
    // loaded runner: it then gets shutting_down, which is right; one answered before is not.)
    expect(outcomes.filter((o) => failed(o) && o.endedAt < stopSentAt).map((o) => `${o.error} (sent ${o.sentAt - installedAt} ms after B was installed)`)).toEqual([]);
    expect(outcomes.filter((o) => o.sentAt > b.readyAt && failed(o)).map((o) => o.error)).toEqual([]);
    // Warm runs show whose template they forked from: A's before the restart, B's after.
    const warmMarkers = (keep: (o: Outcome) => boolean) => [...new Set(outcomes.filter((o) => o.kind === 'warm' && !failed(o) && keep(o)).map((o) => o.marker))];
    expect(warmMarkers((o) => o.endedAt < stoppedAt)).toEqual(['-']);
    expect(warmMarkers((o) => o.sentAt > b.readyAt)).toEqual([MARKER_B]);
    expect(outcomes.filter((o) => o.kind === 'cold' && o.sentAt > b.readyAt && !failed(o)).length).toBeGreaterThan(0);

    // B's daemon: B's version, B's addon (the installed file, not a deleted one).
    const client = new Client({ socketPath: SOCKET });
    try {
      const status = await client.status();
      expect([status.version, status.pid]).toEqual([VERSION_B, b.child.pid]);
    } finally {
      await client.close();
    }
    const addon = path.join(INSTALLED, 'prebuilds/linux-x64/codejail.napi.glibc.node');
    const addonStat = fs.statSync(addon);
    const addonMaps = fs
      .readFileSync(`/proc/${b.child.pid}/maps`, 'utf8')
      .split('\n')
      .filter((line) => line.includes('codejail.napi.glibc.node'));
    expect(addonMaps.length).toBeGreaterThan(0);
    for (const line of addonMaps) {
      const [, , , , inode, file] = line.split(/\s+/);
      expect([file, Number(inode)]).toEqual([addon, addonStat.ino]);
    }
    // B's templates: children of B's daemon, the system's python (not a deleted file), and no
    // file of the install mapped at all (they get their program and library on stdin).
    const templatesB = templatePids(b);
    expect(templatesB.length).toBeGreaterThan(0);
    for (const pid of templatesB) {
      expect(alive(pid), `build B's template ${pid}`).toBe(true);
      expect(Number(procField(pid, 'PPid'))).toBe(b.child.pid);
      expect(fs.readlinkSync(`/proc/${pid}/exe`)).not.toMatch(/deleted/);
      expect(fs.readFileSync(`/proc/${pid}/cmdline`, 'latin1').split('\0')).toContain('warm_template.py');
      expect(fs.readFileSync(`/proc/${pid}/maps`, 'utf8')).not.toContain(WORK);
    }
    expect(leftovers()).toEqual([]);

    const count = (keep: (o: Outcome) => boolean) => outcomes.filter(keep).length;
    console.log(
      `upgrade under load: ${outcomes.length} requests; ${count((o) => !failed(o))} answered, ` +
        `${count((o) => o.code === 'shutting_down')} shutting_down, ${count((o) => o.code === 'unavailable')} unavailable; ` +
        `restart gap ${b.readyAt - stoppedAt} ms after A exited`,
    );
  }, 240_000);
});
