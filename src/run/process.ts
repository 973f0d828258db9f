// A run's main process once started, whoever started it: the addon's confined clone (the daemon,
// the unsafe client, the layer tests) or child_process through prlimit (an unsafe client without
// the addon). supervise() needs only this face of it.
import { native, type NativeChild, type NativePlan, type NativeWarmEnds } from '../native.js';
import { OutputBudget, readOutput, writeInput, type InputPipe, type OutputPipe } from './pipes.js';

type Addon = ReturnType<typeof native>;

/** How the main process ended, and what it cost. */
export interface ProcessExit {
  /** Exit code, or null when killed by a signal. */
  code: number | null;
  signal: number | null;
  /** CPU time in microseconds, the process and its reaped descendants. */
  userUs: number;
  systemUs: number;
  /** Peak resident set of the run's own processes, KiB; absent when it cannot be told apart. */
  maxRssKb?: number;
}

export interface RunProcess {
  stdin: InputPipe;
  stdout: OutputPipe;
  stderr: OutputPipe;
  /** fd 3 of the run (safeExec's globals), when a result channel was asked for. */
  result?: OutputPipe;
  /** Resolves once the main process is reaped. */
  exited: Promise<ProcessExit>;
  /**
   * Arms REALTIME: at `ms` the main process and its process group are killed, whatever this
   * event loop is doing where the addon's deadline thread does it. Returns disarm(), which says
   * whether the deadline fired.
   */
  armDeadline(ms: number): () => boolean;
  /** SIGKILLs the main process and its process group now (cancellation). */
  kill(): void;
  /** Gives back what the start holds (the pidfd); once `exited` has settled. */
  release(): void;
}

/** Output budgets: stdout and stderr share one (OUTPUT counts both); the result channel has its own. */
export interface Budgets {
  output: OutputBudget;
  result: OutputBudget;
}

/**
 * Starts `plan` through the addon: the child applies the plan (cj_apply_plan) and execs. Throws
 * the addon's set-up error (with `step`, `code`, `errno`) when a step failed in the child.
 */
export function startNative(plan: NativePlan, stdin: Uint8Array | undefined, budgets: Budgets, addon: Addon = native()): RunProcess {
  const child = addon.spawn(plan);
  return wrapNativeChild(child, stdin, budgets, addon);
}

/** The RunProcess of a child the addon spawned; takes ownership of its fds. */
export function wrapNativeChild(child: NativeChild, stdin: Uint8Array | undefined, budgets: Budgets, addon: Addon = native()): RunProcess {
  // Watch for the exit first: whatever fails below, the child is then always reaped.
  let exited: Promise<ProcessExit>;
  try {
    exited = new Promise<ProcessExit>((resolve) =>
      addon.watchExit(child.pidfd, child.pid, (exit) =>
        resolve({
          code: exit.code,
          signal: exit.signal,
          userUs: exit.userUs,
          systemUs: exit.systemUs,
          // The child is exec'd from this process's memory: the kernel folds our peak into its
          // figure, so only one above what it inherited is the run's own.
          ...(exit.maxRssKb > child.inheritedRssKb ? { maxRssKb: exit.maxRssKb } : {}),
        }),
      ),
    );
  } catch (err) {
    killGroup(addon, child);
    for (const fd of [child.stdin, child.stdout, child.stderr, child.result, child.pidfd]) if (fd !== undefined) closeQuietly(addon, fd);
    throw err;
  }
  return runProcess(addon, child, stdin, budgets, exited);
}

/** What a started main process is made of, however it started: its pid and pidfd, our pipe ends. */
export type StartedChild = Pick<NativeChild, 'pid' | 'pidfd'> & NativeWarmEnds;

/**
 * The RunProcess of a started main process, cold (the addon's clone) or warm (a template's fork):
 * takes ownership of its pipe ends (each wrap's libuv handle closes its fd) and of its pidfd.
 */
export function runProcess(addon: Addon, child: StartedChild, stdin: Uint8Array | undefined, budgets: Budgets, exited: Promise<ProcessExit>): RunProcess {
  return {
    stdout: readOutput(child.stdout, budgets.output),
    stderr: readOutput(child.stderr, budgets.output),
    result: child.result === undefined ? undefined : readOutput(child.result, budgets.result),
    stdin: writeInput(child.stdin, stdin),
    exited,
    armDeadline: (ms) => {
      const id = addon.armDeadline(child.pidfd, child.pid, ms);
      let fired: boolean | undefined;
      return () => (fired ??= addon.disarmDeadline(id));
    },
    kill: () => killGroup(addon, child),
    release: () => closeQuietly(addon, child.pidfd),
  };
}

const SIGKILL = 9;

/**
 * SIGKILLs a run's main process (through its pidfd: no pid reuse) and its process group, cold or
 * warm (both lead their own session).
 */
export function killGroup(addon: Addon, child: Pick<NativeChild, 'pid' | 'pidfd'>): void {
  try {
    addon.pidfdSignal(child.pidfd, SIGKILL);
  } catch {
    // Already reaped.
  }
  try {
    // The child called setsid(): its pid is its process group's id.
    process.kill(-child.pid, 'SIGKILL');
  } catch {
    // ESRCH: the group is already gone.
  }
}

/** Closes an fd of the addon's that may already be closed. */
export function closeQuietly(addon: Addon, fd: number): void {
  try {
    addon.closeFd(fd);
  } catch {
    // Already closed.
  }
}
