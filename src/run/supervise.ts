// One run from its start to its end, whoever started it: feeds nothing itself (stdin was handed
// to the process), collects output, arms REALTIME, honours cancellation, lets the caller sweep
// what the run left once its main process is gone, and waits for the pipes to close. The daemon's
// slots, the unsafe client and the layer tests all run through here.
import type { JailCodeResult, Limits } from '../protocol/index.js';
import type { OutputPipe } from './pipes.js';
import type { Budgets, ProcessExit, RunProcess } from './process.js';

const SIGKILL = 9;

/** After the main process exits and the run is swept, its pipes close at once; this is a backstop. */
export const OUTPUT_EOF_GRACE_MS = 2000;

export interface SuperviseOptions {
  /** Wall-clock seconds before the run is killed; 0: none. */
  realtimeSeconds: number;
  /** Aborting kills the run at once; the abort's reason comes back as `cancelled`. */
  signal?: AbortSignal;
  /**
   * Called once the main process has been reaped, before the pipes are waited for: reads what
   * must be read before the kill (a cgroup's OOM verdict) and kills everything the run left (a
   * setsid()'d sleeper holding the pipes). Also called, once, when supervise fails earlier.
   */
  afterExit(): Promise<void>;
  /** Called when output pipes are still open OUTPUT_EOF_GRACE_MS after the sweep (a leak). */
  onLateOutputs?(): void;
  /** Called right after the deadline is armed (a test hook blocks the event loop here). */
  onStarted?(): void;
}

export interface Supervised {
  /**
   * Settles when the sweep after the exit is done. When every output had closed by itself, the
   * outcome comes back before the sweep finishes (nothing the reply needs depends on it): the
   * caller waits for this before it hands the slot on.
   */
  swept: Promise<void>;
  exit: ProcessExit;
  wallMs: number;
  /** REALTIME ran out and the run was killed for it. */
  timedOut: boolean;
  /** The abort reason when `signal` aborted while the run was in flight. */
  cancelled?: unknown;
  stdout: Buffer;
  stderr: Buffer;
  result?: Buffer;
}

export async function supervise(run: RunProcess, options: SuperviseOptions): Promise<Supervised> {
  const { signal } = options;
  const started = performance.now();
  run.exited.catch(() => {}); // observed below; never an unhandled rejection
  let disarm: (() => boolean) | undefined;
  let cancelled: unknown;
  let sweptOnce = false;
  const sweep = async () => {
    if (sweptOnce) return;
    sweptOnce = true;
    await options.afterExit();
  };
  // One kill is enough to end the main process; the sweep after its exit does the rest.
  const onAbort = () => {
    cancelled = signal!.reason ?? new Error('the run was cancelled');
    run.kill();
  };
  const outputs: OutputPipe[] = [run.stdout, run.stderr, ...(run.result ? [run.result] : [])];
  try {
    if (options.realtimeSeconds > 0) disarm = run.armDeadline(options.realtimeSeconds * 1000);
    options.onStarted?.();
    if (signal?.aborted) onAbort();
    else signal?.addEventListener('abort', onAbort, { once: true });

    const exit = await run.exited;
    const wallMs = performance.now() - started;
    // The deadline fired and the kill is what ended the run: a process that exited by itself
    // between the deadline thread's check and its signal still takes the signal (as a zombie),
    // but was not timed out.
    const timedOut = (disarm?.() ?? false) && exit.signal === SIGKILL;
    signal?.removeEventListener('abort', onAbort);
    // The sweep kills whatever the run left (a sleeper holding a pipe open). The output is
    // complete once every pipe is at EOF: when that comes first, the reply need not wait for the
    // sweep's kill rounds, which only the slot's next run must.
    const swept = sweep();
    swept.catch(() => {}); // the caller awaits it
    const allClosed = Promise.all(outputs.map((output) => output.closed));
    await Promise.race([allClosed, swept]);
    if (!(await closedWithin(outputs, OUTPUT_EOF_GRACE_MS))) {
      await swept;
      options.onLateOutputs?.();
    }
    return {
      swept,
      exit,
      wallMs,
      timedOut,
      ...(cancelled !== undefined ? { cancelled } : {}),
      stdout: run.stdout.contents(),
      stderr: run.stderr.contents(),
      ...(run.result ? { result: run.result.contents() } : {}),
    };
  } finally {
    disarm?.();
    signal?.removeEventListener('abort', onAbort);
    if (!sweptOnce) {
      run.kill();
      await sweep();
    }
    run.stdin.destroy();
    for (const output of outputs) output.destroy();
    await run.exited.catch(() => undefined);
    run.release();
  }
}

/** What a jail_code result says beyond what supervise() saw. */
export interface ResultContext {
  runId: string;
  budgets: Budgets;
  confinement: JailCodeResult['confinement'];
  limits: Limits;
  /** The cgroups layer's view of the run's memory. */
  memory?: { oomKilled: boolean; memoryPeakKb?: number };
}

/** A supervised run as the jail_code result both the daemon and the unsafe client return. */
export function jailCodeResult(outcome: Supervised, context: ResultContext): JailCodeResult {
  const { exit } = outcome;
  const { memory, budgets } = context;
  const result: JailCodeResult = {
    runId: context.runId,
    stdout: outcome.stdout,
    stderr: outcome.stderr,
    status: exit.code ?? -(exit.signal ?? 0),
    truncated: budgets.output.truncated,
    timedOut: outcome.timedOut,
    usage: {
      wallMs: roundMs(outcome.wallMs),
      userMs: roundMs(exit.userUs / 1000),
      systemMs: roundMs(exit.systemUs / 1000),
      ...(exit.maxRssKb !== undefined ? { maxRssKb: exit.maxRssKb } : {}),
      ...(memory?.memoryPeakKb !== undefined ? { memoryPeakKb: memory.memoryPeakKb } : {}),
    },
    ...(memory ? { oomKilled: memory.oomKilled } : {}),
    confinement: context.confinement,
    limits: context.limits,
  };
  if (outcome.result) {
    // A cut-off result cannot be decoded: say so rather than hand back half of it.
    if (budgets.result.truncated) result.truncated = true;
    result.result = outcome.result;
  }
  return result;
}

/** Milliseconds to the microsecond, for results and logs. */
export function roundMs(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}

/**
 * Whether every output reached EOF within `ms`. A plain timer, cleared: aborting a timers/promises
 * delay made a DOMException and an AbortError, two stack traces, for every run (50 us of the
 * daemon's CPU a run).
 */
async function closedWithin(outputs: OutputPipe[], ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<boolean>((resolve) => (timer = setTimeout(resolve, ms, false)));
  const closed = Promise.all(outputs.map((output) => output.closed)).then(() => true);
  try {
    return await Promise.race([closed, late]);
  } finally {
    clearTimeout(timer);
  }
}
