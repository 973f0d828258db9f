// Unsafe mode: `new Client({ unsafe: true })` runs jailCode and safeExec itself, with no daemon
// and no root, for development machines and tests where codejaild is not installed. The code
// runs as the calling user with rlimits only (CPU, VMEM, FSIZE, NPROC, and the daemon's NOFILE
// and core size): it can read and write whatever that user can, and reach the network. It is
// otherwise the daemon's run, reused piece by piece: the same plan (src/layers/plan.ts, with the
// layers of the daemon's unsafe mode: rlimits, an OOM score of 1000, the parent-death signal),
// the same run directory layout (jailed_code, files and extraFiles written by the same code,
// tmp/ as HOME and TMPDIR), the same clean environment, REALTIME, the OUTPUT cap and the fd 3
// result channel. Results say
// confinement 'none'. Kills reach the run's process group only (the daemon sweeps a whole slot
// uid instead): a descendant that calls setsid() outlives the run.
//
// The process is started by the native addon (clone, rlimits, execve; no privilege needed), or,
// when the addon is not built, by `prlimit` from util-linux through child_process.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { RequestError } from '../protocol/errors.js';
import type { CommandProfile } from '../run/commands.js';
import { RLIMITS } from '../run/limits.js';
import { collectOutput, feedInput, OutputBudget } from '../run/pipes.js';
import { startNative, type Budgets, type ProcessExit, type RunProcess } from '../run/process.js';
import { removeRunDir, TMP_DIR, type RunDir } from '../run/rundir.js';
import { writeRunFiles } from '../run/run_files.js';
import { jailCodeResult, supervise } from '../run/supervise.js';
import { native, type NativePlan, type NativeRlimits } from '../native.js';
import { DEFAULT_LIMITS, describeIssues, jailCodeRequest } from '../protocol/index.js';
import type { JailCodeRequest, JailCodeResult, Limits } from '../protocol/index.js';
import { LAYERS, type LayerName, type Layers } from '../layers/index.js';
import { buildPlan } from '../layers/plan.js';
import { CodejailError } from './errors.js';

/** An interpreter an unsafe client may run, like a daemon config's `commands` entry. */
export interface UnsafeCommand {
  /** Absolute path of the program (not resolved: a venv's bin/python works as it is). */
  path: string;
  /** Arguments before 'jailed_code' and the call's argv. */
  args?: string[];
  /** Environment on top of the clean one (PATH, LANG; HOME and TMPDIR always point into the run). */
  env?: Record<string, string>;
}

/** What an unsafe client runs unless told otherwise: the daemon's default command. */
export const DEFAULT_UNSAFE_COMMANDS: Readonly<Record<string, UnsafeCommand>> = {
  python: { path: '/usr/bin/python3', args: ['-E', '-B'] },
};

/** How the process is started: 'auto' uses the addon when it loads, else prlimit. */
export type UnsafeSpawner = 'auto' | 'addon' | 'prlimit';

const PRLIMIT = '/usr/bin/prlimit';

/** The layers of an unsafe run, as a daemon's unsafe mode has them: those it keeps (rlimits). */
const UNSAFE_LAYERS: Layers = {
  ...(Object.fromEntries(LAYERS.map((layer) => [layer.name, Boolean(layer.keptWhenUnsafe)])) as Record<LayerName, boolean>),
  unsafe: true,
  kill: 'process-group',
  report: {},
  confinement: 'none',
};

let warned = false;

/** Once per process, on stderr: nobody should run student code this way by accident. */
function warnOnce(): void {
  if (warned) return;
  warned = true;
  process.emitWarning(
    'codejail UNSAFE MODE: code runs as this user WITHOUT a sandbox (rlimits only: no uid, Landlock, ' +
      'seccomp or network isolation). Use it for development only, never for untrusted code.',
    { code: 'CODEJAIL_UNSAFE' },
  );
}

/** A request's fields, its limits complete (what the caller set, over DEFAULT_LIMITS). */
type UnsafeRequest = Omit<JailCodeRequest, 'v' | 'id' | 'op' | 'limits'> & { limits: Limits };
const requestFields = jailCodeRequest.omit({ v: true, id: true });

/** Runs jail_code requests without a daemon. Used by Client in unsafe mode. */
export class UnsafeRunner {
  private readonly commands: Map<string, CommandProfile>;
  private readonly spawner: Exclude<UnsafeSpawner, 'auto'>;
  private closing = new AbortController();

  constructor(commands: Readonly<Record<string, UnsafeCommand>> = DEFAULT_UNSAFE_COMMANDS, spawner: UnsafeSpawner = 'auto') {
    this.commands = new Map(Object.entries(commands).map(([name, command]) => [name, profileOf(name, command)]));
    if (this.commands.size === 0) throw new CodejailError('bad_request', 'unsafe mode: commands must name at least one command');
    this.spawner = spawner === 'auto' ? (addonLoads() ? 'addon' : 'prlimit') : spawner;
    if (this.spawner === 'prlimit' && !isExecutable(PRLIMIT)) {
      throw new CodejailError(
        'unavailable',
        `unsafe mode: the native addon is not built and ${PRLIMIT} (util-linux) is missing, so limits cannot be applied`,
      );
    }
    warnOnce();
  }

  has(command: string): boolean {
    return this.commands.has(command);
  }

  /** Kills every run in flight; they reject with code 'closed'. Later runs work as before. */
  close(): void {
    this.closing.abort();
    this.closing = new AbortController();
  }

  /** Runs validated jail_code fields (buildJailCodeFields' output) and returns the wire result. */
  async run(fields: Record<string, unknown>): Promise<JailCodeResult> {
    const parsed = requestFields.safeParse({ op: 'jail_code', ...fields });
    if (!parsed.success) throw new CodejailError('bad_request', `jailCode: ${describeIssues(parsed.error)}`);
    const request: UnsafeRequest = { ...parsed.data, limits: { ...DEFAULT_LIMITS, ...parsed.data.limits } };
    const profile = this.commands.get(request.command);
    if (!profile) {
      throw new CodejailError(
        'unknown_command',
        `unknown command "${request.command}"; this unsafe client runs: ${[...this.commands.keys()].join(', ')}`,
      );
    }
    const signal = this.closing.signal;
    const dir = await makeRunDir();
    try {
      await writeRunFiles(dir, request, undefined).catch((err: unknown) => {
        throw err instanceof RequestError ? new CodejailError(err.code, err.message) : err;
      });
      // The daemon's plan builder, with the layers of its unsafe mode: rlimits only.
      const plan = buildPlan({
        profile,
        dir,
        hasCode: request.code !== undefined,
        argv: request.argv,
        limits: request.limits,
        slot: { index: 0, uid: os.userInfo().uid, gid: os.userInfo().gid },
        layers: UNSAFE_LAYERS,
        apparmorProfile: '',
        resultChannel: request.resultChannel === true,
      });
      return await this.supervise(plan, dir, request, signal);
    } finally {
      await removeRunDir(dir);
    }
  }

  private async supervise(plan: NativePlan, dir: RunDir, request: UnsafeRequest, signal: AbortSignal): Promise<JailCodeResult> {
    const { limits } = request;
    // As in the daemon: with a result channel, output and result each get their own budget.
    const budgets: Budgets = {
      output: new OutputBudget(limits.OUTPUT > 0 ? limits.OUTPUT : Infinity),
      result: new OutputBudget(Infinity),
    };
    if (signal.aborted) throw closedError();
    const started = this.spawner === 'addon' ? startWithAddon(plan, request.stdin, budgets) : startWithPrlimit(plan, request.stdin, budgets);
    const outcome = await supervise(started, {
      realtimeSeconds: limits.REALTIME,
      signal,
      // The main process is gone; what it left in its process group goes too, so the pipes close.
      afterExit: async () => started.kill(),
    });
    if (outcome.cancelled !== undefined) throw closedError();
    return jailCodeResult(outcome, { runId: path.basename(dir.path), budgets, confinement: 'none', limits });
  }
}

function profileOf(name: string, command: UnsafeCommand): CommandProfile {
  const where = `unsafe command "${name}"`;
  if (typeof command?.path !== 'string' || !path.isAbsolute(command.path) || command.path.includes('\0')) {
    throw new CodejailError('bad_request', `${where}: path must be an absolute path, got ${JSON.stringify(command?.path)}`);
  }
  const args = command.args ?? [];
  if (!Array.isArray(args) || args.some((arg) => typeof arg !== 'string' || arg.includes('\0'))) {
    throw new CodejailError('bad_request', `${where}: args must be strings without NUL`);
  }
  const env = command.env ?? {};
  for (const [key, value] of Object.entries(env)) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key) || typeof value !== 'string' || value.includes('\0')) {
      throw new CodejailError('bad_request', `${where}: env ${JSON.stringify(key)} must be a variable name with a string value without NUL`);
    }
  }
  // Not resolved: execve of the path itself keeps a venv's bin/python symlink working. Nothing
  // is confined, so there is no Landlock policy to compute, and nothing to discover (kind binary).
  return { name, path: command.path, executable: command.path, args, env, execute: [], read: [], kind: 'binary', warm: false, preload: [] };
}

/** A fresh private directory (0700) with tmp/ inside, laid out like a daemon's run directory. */
async function makeRunDir(): Promise<RunDir> {
  const base = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'codejail-unsafe-'));
  const dir: RunDir = { id: path.basename(base), path: base, tmp: path.join(base, TMP_DIR) };
  try {
    await fs.promises.mkdir(dir.tmp, { mode: 0o700 });
  } catch (err) {
    await removeRunDir(dir);
    throw err;
  }
  return dir;
}

function startWithAddon(plan: NativePlan, stdin: Uint8Array | undefined, budgets: Budgets): RunProcess {
  try {
    return startNative(plan, stdin, budgets);
  } catch (err) {
    const failure = err as Partial<{ step: string; message: string }>;
    throw new CodejailError('setup_failed', `unsafe run could not start at step "${failure.step ?? 'spawn'}": ${failure.message ?? String(err)}`, {
      cause: err,
    });
  }
}

function startWithPrlimit(plan: NativePlan, stdin: Uint8Array | undefined, budgets: Budgets): RunProcess {
  const limits = Object.entries(plan.rlimits ?? {}).map(
    ([name, [soft, hard]]) => `${RLIMITS[name as keyof NativeRlimits].prlimit}=${soft}:${hard}`,
  );
  const env = Object.fromEntries(plan.env.map((entry) => [entry.slice(0, entry.indexOf('=')), entry.slice(entry.indexOf('=') + 1)]));
  let child: ChildProcess;
  try {
    child = spawn(PRLIMIT, [...limits, '--', plan.file, ...plan.argv.slice(1)], {
      cwd: plan.cwd,
      env,
      // Its own process group (setsid), so a kill reaches what it started too.
      detached: true,
      stdio: plan.resultChannel ? ['pipe', 'pipe', 'pipe', 'pipe'] : ['pipe', 'pipe', 'pipe'],
    });
  } catch (err) {
    throw new CodejailError('setup_failed', `unsafe run could not start ${PRLIMIT}: ${(err as Error).message}`, { cause: err });
  }
  const exited = new Promise<ProcessExit>((resolve, reject) => {
    child.once('error', (err) => reject(new CodejailError('setup_failed', `unsafe run could not start ${PRLIMIT}: ${err.message}`, { cause: err })));
    child.once('exit', (code, signal) =>
      // child_process reports no resource usage.
      resolve({ code, signal: signal ? os.constants.signals[signal] : null, userUs: 0, systemUs: 0 }),
    );
  });
  const kill = () => {
    if (child.pid !== undefined) killGroup(child.pid);
  };
  return {
    stdout: collectOutput(child.stdout!, budgets.output),
    stderr: collectOutput(child.stderr!, budgets.output),
    result: plan.resultChannel ? collectOutput(child.stdio[3] as Readable, budgets.result) : undefined,
    stdin: feedInput(child.stdin as Writable, stdin),
    exited,
    // No addon, so no deadline thread: a timer of this event loop.
    armDeadline: (ms) => {
      let fired = false;
      const timer = setTimeout(() => {
        fired = true;
        kill();
      }, ms);
      return () => {
        clearTimeout(timer);
        return fired;
      };
    },
    kill,
    release: () => {},
  };
}

/** SIGKILLs the run's process group (the child called setsid, so its pid is the group's id). */
function killGroup(pid: number): void {
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // ESRCH: the group is already gone.
  }
}

function closedError(): CodejailError {
  return new CodejailError('closed', 'the client was closed while the run was in flight; the run was killed');
}

function addonLoads(): boolean {
  try {
    native();
    return true;
  } catch {
    return false;
  }
}

function isExecutable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return true;
  } catch {
    return false;
  }
}
