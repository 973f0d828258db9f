// Runs Python through the addon with an explicit set of layers, for the per-layer suites.
// CODEJAIL_SABOTAGE=<layer>[,<layer>] drops layers from every plan built here: the way to see a
// deny_* test fail with its layer turned off (npm run sabotage does it for each layer).
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll } from 'vitest';
import type { SabotageSwitch } from '../../src/layers/index.js';
import { native, type NativeExit, type NativeLandlock, type NativePlan } from '../../src/native.js';

export const isRoot = process.getuid?.() === 0;
export const PYTHON = '/usr/bin/python3';
/** A uid/gid no daemon slot uses, so these tests never race a running daemon. */
export const TEST_UID = 61999;

/** A CODEJAIL_SABOTAGE switch (the layers declare them: src/layers/*.ts `sabotage`). */
export type Layer = SabotageSwitch;
const sabotaged = new Set((process.env.CODEJAIL_SABOTAGE ?? '').split(',').filter(Boolean));
export const layerOn = (layer: Layer) => !sabotaged.has(layer);

// Like the daemon: orphans of runs must come back here to be reaped (killUid relies on it).
if (isRoot) native().becomeSubreaper();

/** What the native tests' mount namespace hides: not /tmp, where their run directories live. */
export const HIDDEN_IN_TESTS = ['/run', '/var/tmp', '/dev/shm', '/home', '/root'];

let mntnsFd: number | undefined;
function sharedMntns(): number {
  mntnsFd ??= native().createNamespace('mnt', HIDDEN_IN_TESTS);
  return mntnsFd;
}

let netnsFd: number | undefined;
function sharedNetns(): number {
  netnsFd ??= native().createNamespace('net');
  return netnsFd;
}

const madeDirs: string[] = [];

/** A world-writable scratch directory, removed when the importing suite ends. */
export function makeRunDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cj-native-'));
  fs.chmodSync(dir, 0o777);
  madeDirs.push(dir);
  return dir;
}

afterAll(() => {
  for (const dir of madeDirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

function realpaths(paths: string[]): string[] {
  return paths.filter((p) => fs.existsSync(p)).map((p) => fs.realpathSync(p));
}

/** The Landlock policy the daemon uses for Python, for a given run directory. */
export function pythonLandlock(runDir: string): NativeLandlock {
  const libDir = process.arch === 'arm64' ? '/usr/lib/aarch64-linux-gnu' : '/usr/lib/x86_64-linux-gnu';
  const loader = process.arch === 'arm64' ? '/lib/ld-linux-aarch64.so.1' : '/lib64/ld-linux-x86-64.so.2';
  return {
    execute: realpaths([PYTHON, loader]),
    read: realpaths([libDir, '/usr/lib/python3.11', '/usr/lib/python3/dist-packages', '/etc/ld.so.cache', '/dev/urandom']),
    readWrite: [runDir],
    readWriteFiles: ['/dev/null'],
    denyTcp: true,
    scope: true,
  };
}

export interface Layers {
  uid?: boolean;
  rlimits?: NativePlan['rlimits'];
  landlock?: boolean;
  seccomp?: boolean;
  netns?: boolean;
  mntns?: boolean;
}

export interface RunResult {
  stdout: string;
  stderr: string;
  exit: NativeExit;
  status: number;
}

/** Runs `code` with exactly the layers asked for (minus sabotaged ones), then sweeps the uid. */
export async function runPython(code: string, layers: Layers, runDir = makeRunDir()): Promise<RunResult> {
  const plan: NativePlan = {
    file: PYTHON,
    argv: [PYTHON, '-E', '-B', '-c', code],
    env: ['PATH=/usr/bin:/bin', 'LANG=C.UTF-8', `TMPDIR=${runDir}`],
    cwd: runDir,
    seccomp: Boolean(layers.seccomp) && layerOn('seccomp'),
  };
  if (layers.uid && layerOn('uid')) Object.assign(plan, { uid: TEST_UID, gid: TEST_UID });
  if (layers.rlimits && layerOn('rlimits')) plan.rlimits = layers.rlimits;
  if (layers.landlock && layerOn('landlock')) plan.landlock = pythonLandlock(runDir);
  if (layers.netns && layerOn('netns')) plan.netnsFd = sharedNetns();
  if (layers.mntns && layerOn('mntns')) plan.mntnsFd = sharedMntns();
  const child = native().spawn(plan);
  native().closeFd(child.stdin);
  const collect = (fd: number) =>
    new Promise<string>((resolve) => {
      const chunks: Buffer[] = [];
      const s = new net.Socket({ fd, readable: true, writable: false });
      s.on('data', (d) => chunks.push(d));
      s.on('close', () => resolve(Buffer.concat(chunks).toString()));
    });
  const out = collect(child.stdout);
  const err = collect(child.stderr);
  const exit = await new Promise<NativeExit>((resolve) => native().watchExit(child.pidfd, child.pid, resolve));
  native().closeFd(child.pidfd);
  if (layers.uid && layerOn('kill')) native().killUid(TEST_UID);
  const [stdout, stderr] = await Promise.all([out, err]);
  return { stdout, stderr, exit, status: exit.code ?? -(exit.signal ?? 0) };
}

/** Pids whose real uid is `uid`, read from /proc. */
export function processesOf(uid: number): number[] {
  const pids: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const status = fs.readFileSync(`/proc/${entry}/status`, 'utf8');
      const m = /^Uid:\s+(\d+)/m.exec(status);
      const state = /^State:\s+(\S)/m.exec(status);
      if (m && Number(m[1]) === uid && state?.[1] !== 'Z') pids.push(Number(entry));
    } catch {
      // raced with an exit
    }
  }
  return pids;
}
