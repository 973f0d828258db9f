// An install that works from wherever it was put: a copy of this built checkout (dist/, build/,
// node_modules/, python/, hard links, as a clone or an `npm i -g` would leave it) under /root,
// /home/<user>, /tmp and /opt, each with `codejail setup` run from there, then its own daemon
// serving one warm and one cold run of each kind. The runs' mount namespace shows /root, /home and
// /tmp empty, so nothing a run or a warm template needs may be looked up in the install from
// inside it. Under /root the daemon runs on a node of its own there, as nvm would install it.
//
// And an in-place upgrade: the install's files replaced on disk, then SIGHUP (which replaces the
// warm templates): the new templates run what the daemon read at its start, not the new files.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '../../src/client/index.js';
import { followLogLines, type LogLine } from '../helpers/log_lines.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const isRoot = process.getuid?.() === 0;
/** What an installed package holds that the daemon and `codejail setup` use. */
const SHIPPED = ['package.json', 'dist', 'build', 'python', 'node_modules', 'systemd', 'apparmor'];
const USER = 'cj-install-test';
// Clear of the test daemons' slot ranges (62000-77999, 78000 up for a few) and of each other.
const FIRST_UID = 90_000 + (process.pid % 1000) * 8;

/** Hard links of the shipped files (the copy costs no disk and no time); never written through. */
function copyInstall(target: string): void {
  fs.mkdirSync(target, { recursive: true });
  for (const entry of SHIPPED) {
    const r = spawnSync('cp', ['-al', path.join(root, entry), target], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`cp -al ${entry} ${target}: ${r.stderr}`);
  }
}

/** Replaces a file of the install by a new one (a new inode: the hard-linked original is untouched). */
function replaceFile(file: string, content: string | Buffer): void {
  fs.writeFileSync(`${file}.new`, content, { mode: 0o755 });
  fs.renameSync(`${file}.new`, file);
}

interface Install {
  where: string;
  dir: string;
  node: string;
  configFile: string;
  socketPath: string;
  runBase: string;
  firstUid: number;
}

interface RunningDaemon {
  child: ChildProcess;
  logs: LogLine[];
  exited: Promise<number | null>;
}

function prepare(where: string, index: number): Install {
  const dir = path.join(where, `cj-install-${process.pid}`);
  fs.rmSync(dir, { recursive: true, force: true });
  copyInstall(dir);
  let node = process.execPath;
  if (where === '/root') {
    // As nvm installs it: node itself beneath the home directory.
    const bin = path.join(dir, '.nvm/versions/node', process.version, 'bin');
    fs.mkdirSync(bin, { recursive: true });
    node = path.join(bin, 'node');
    try {
      fs.linkSync(process.execPath, node);
    } catch {
      fs.copyFileSync(process.execPath, node);
      fs.chmodSync(node, 0o755);
    }
  }
  const private_ = fs.mkdtempSync(path.join(os.tmpdir(), 'cj-install-'));
  const firstUid = FIRST_UID + index * 2;
  const runBase = `/var/lib/codejail-test/install-${process.pid}-${index}`;
  const socketPath = path.join(private_, 'codejail.sock');
  const configFile = path.join(private_, 'config.json');
  fs.writeFileSync(
    configFile,
    JSON.stringify({ runBase, slots: { firstUid, count: 2 }, socket: { path: socketPath, group: 'codejail', mode: '0660' } }),
  );
  return { where, dir, node, configFile, socketPath, runBase, firstUid };
}

function setup(install: Install): { status: number | null; output: string } {
  const r = spawnSync(install.node, [path.join(install.dir, 'dist/cli/main.js'), 'setup', '--config', install.configFile], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { status: r.status, output: `${r.stdout}${r.stderr}` };
}

async function startDaemon(install: Install): Promise<RunningDaemon> {
  const child = spawn(install.node, [path.join(install.dir, 'dist/daemon/main.js'), '--config', install.configFile], {
    stdio: ['ignore', 'pipe', 'pipe'],
    cwd: install.dir,
  });
  const logs: LogLine[] = [];
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    followLogLines([child.stdout, child.stderr], (line) => {
      logs.push(line);
      if (line.msg === 'ready') resolve();
    });
    void exited.then((code) => reject(new Error(`codejaild in ${install.dir} exited with ${code} before ready:\n${logs.map((l) => JSON.stringify(l)).join('\n')}`)));
  });
  return { child, logs, exited };
}

async function stopDaemon(daemon: RunningDaemon | undefined, install: Install): Promise<void> {
  if (daemon && daemon.child.exitCode === null && daemon.child.signalCode === null) daemon.child.kill('SIGTERM');
  if (daemon) await daemon.exited;
  spawnSync('umount', ['--recursive', '--lazy', install.runBase], { stdio: 'ignore' });
  fs.rmSync(install.runBase, { recursive: true, force: true });
  fs.rmSync(path.dirname(install.configFile), { recursive: true, force: true });
  fs.rmSync(install.dir, { recursive: true, force: true });
  // The slot accounts setup created for this range.
  for (let uid = install.firstUid; uid < install.firstUid + 2; uid++) {
    spawnSync('userdel', [`codejail-${uid}`], { stdio: 'ignore' });
    spawnSync('groupdel', [`codejail-${uid}`], { stdio: 'ignore' });
  }
}

/** One jailCode and one safeExec on each path, each checked to have run on that path. */
async function serveBothPaths(install: Install): Promise<void> {
  const client = new Client({ socketPath: install.socketPath });
  try {
    for (const warm of [true, false]) {
      const r = await client.jailCode('python', { code: 'import sys; print(sys.argv[1])', argv: [warm ? 'warm' : 'cold'], warm, profile: true });
      expect({ status: r.status, stdout: r.stdout.toString(), stderr: r.stderr.toString(), warm: r.usage.stages?.warm }).toEqual({
        status: 0,
        stdout: `${warm ? 'warm' : 'cold'}\n`,
        stderr: '',
        warm,
      });
      expect(await client.safeExec('y = x * 2', { x: 21 }, { warm })).toEqual({ x: 21, y: 42 });
    }
  } finally {
    await client.close();
  }
}

describe.skipIf(!isRoot)('an install anywhere: setup, then the daemon serves warm and cold runs', () => {
  beforeAll(() => {
    if (!fs.existsSync(`/home/${USER}`)) spawnSync('useradd', ['-m', '-s', '/usr/sbin/nologin', USER], { stdio: 'ignore' });
    fs.mkdirSync('/var/lib/codejail-test', { recursive: true });
  });
  afterAll(() => {
    spawnSync('userdel', ['-r', USER], { stdio: 'ignore' });
  });

  const places = ['/root', `/home/${USER}`, '/tmp', '/opt'];
  it.each(places.map((where, index) => [where, index] as const))('from %s', async (where, index) => {
    const install = prepare(where, index);
    let daemon: RunningDaemon | undefined;
    try {
      const s = setup(install);
      expect(s.status, s.output).toBe(0);
      expect(s.output).toContain(`created user codejail-${install.firstUid}`);
      daemon = await startDaemon(install);
      expect(daemon.logs.some((l) => l.msg === 'warm template ready')).toBe(true);
      await serveBothPaths(install);
    } finally {
      await stopDaemon(daemon, install);
    }
  }, 60_000);

  it("in-place upgrade: templates replaced after SIGHUP run the daemon's start-time template, harness and library", async () => {
    const install = prepare('/opt', places.length);
    let daemon: RunningDaemon | undefined;
    try {
      const s = setup(install);
      expect(s.status, s.output).toBe(0);
      daemon = await startDaemon(install);
      const readyBefore = daemon.logs.filter((l) => l.msg === 'warm template ready').length;
      // A newer version on disk that this daemon must not load: each file fails loudly if it is.
      replaceFile(path.join(install.dir, 'python/warm_template.py'), 'raise SystemExit("the new warm_template.py was loaded")\n');
      replaceFile(path.join(install.dir, 'python/safe_exec_harness.py'), 'raise SystemExit("the new harness was loaded")\n');
      replaceFile(path.join(install.dir, 'build/Release/codejail_warm.so'), 'not a shared object\n');
      daemon.child.kill('SIGHUP');
      const until = Date.now() + 20_000;
      while (daemon.logs.filter((l) => l.msg === 'warm template ready').length === readyBefore && Date.now() < until) {
        await new Promise((r) => setTimeout(r, 50));
      }
      expect(
        daemon.logs.filter((l) => l.msg === 'warm template ready').length,
        daemon.logs.map((l) => JSON.stringify(l)).join('\n'),
      ).toBeGreaterThan(readyBefore);
      await serveBothPaths(install);
      expect(daemon.logs.filter((l) => l.msg === 'warm template says')).toEqual([]);
    } finally {
      await stopDaemon(daemon, install);
    }
  }, 60_000);
});
