// Runs Python through the addon with an explicit set of layers, for the per-layer suites.
// CODEJAIL_SABOTAGE=<layer>[,<layer>] drops layers from every plan built here: the way to see a
// deny_* test fail with its layer turned off (npm run sabotage does it for each layer).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll } from 'vitest';
import { silentLogger } from '../../src/log.js';
import type { SabotageSwitch } from '../../src/layers/index.js';
import { native, type NativeExit, type NativeLandlock, type NativePlan } from '../../src/native.js';
import { discoverCommand, landlockPolicy, type CommandProfile } from '../../src/run/commands.js';
import { OutputBudget } from '../../src/run/pipes.js';
import { startNative } from '../../src/run/process.js';
import { supervise } from '../../src/run/supervise.js';

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

let pythonProfile: CommandProfile | undefined;

/**
 * The Landlock policy the daemon gives its default python command, for a given run directory:
 * the daemon's own discovery and policy code, not a copy of it.
 */
export function pythonLandlock(runDir: string): NativeLandlock {
  pythonProfile ??= discoverCommand(
    'python',
    { path: PYTHON, kind: 'python', args: ['-E', '-B'], env: {}, read: [], execute: [], preload: [] },
    '/var/lib/codejail-native-tests',
    silentLogger,
  );
  return landlockPolicy(pythonProfile, runDir);
}

export interface Layers {
  uid?: boolean;
  rlimits?: NativePlan['rlimits'];
  landlock?: boolean;
  seccomp?: boolean;
  netns?: boolean;
  mntns?: boolean;
  /** Not a layer: the plan's oomScoreAdj, as the daemon's plans carry it. */
  oomScoreAdj?: number;
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
  if (layers.oomScoreAdj !== undefined) plan.oomScoreAdj = layers.oomScoreAdj;
  if (layers.uid && layerOn('uid')) Object.assign(plan, { uid: TEST_UID, gid: TEST_UID });
  if (layers.rlimits && layerOn('rlimits')) plan.rlimits = layers.rlimits;
  if (layers.landlock && layerOn('landlock')) plan.landlock = pythonLandlock(runDir);
  if (layers.netns && layerOn('netns')) plan.netnsFd = sharedNetns();
  if (layers.mntns && layerOn('mntns')) plan.mntnsFd = sharedMntns();
  // The run's whole path, as the daemon's slots and the unsafe client take it: supervise().
  const budgets = { output: new OutputBudget(Infinity), result: new OutputBudget(Infinity) };
  const started = startNative(plan, undefined, budgets);
  const outcome = await supervise(started, {
    // A bound, so that a probe its layer no longer stops (sabotaged: a busy loop without CPU)
    // ends here and fails on its assertion, not on the test's timeout with the loop left running.
    realtimeSeconds: 15,
    afterExit: async () => {
      if (layers.uid && layerOn('kill')) native().killUid(TEST_UID);
    },
  });
  const exit: NativeExit = { ...outcome.exit, maxRssKb: outcome.exit.maxRssKb ?? 0 };
  return { stdout: outcome.stdout.toString(), stderr: outcome.stderr.toString(), exit, status: exit.code ?? -(exit.signal ?? 0) };
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
