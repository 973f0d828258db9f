// A slot and its lifecycle, as isolate has init/run/cleanup for a box: one uid and gid (and, with
// the cgroups layer, one leaf) that hosts one run at a time.
//
//   prepare     the run directory (its own tmpfs with the disk layer), the request's files, the
//               cgroup leaf with the run's limits
//   run         the plan applied in a cloned child, then supervise(): output, REALTIME,
//               cancellation, and the sweep once the main process is gone
//   sweep       kill rounds until nothing of the slot is left (every process of its uid, every
//               process of its leaf), on timers, never blocking the event loop; the same code
//               empties a slot an earlier daemon left at start-up
//   release     the leaf and the run directory go; the slot is ready for the next run
//   quarantine  a slot whose sweep failed is kept out of use and swept again on a backoff until
//               it is clean; the run directories it held are removed only then
import type { JailCodeResult, Limits } from '../protocol/index.js';
import { RequestError } from '../protocol/errors.js';
import type { native, NativePlan } from '../native.js';
import type { CgroupVerdict } from '../layers/cgroups.js';
import type { Layers } from '../layers/index.js';
import type { Logger } from '../log.js';
import { OutputBudget } from './pipes.js';
import { startNative, type Budgets, type RunProcess } from './process.js';
import { createRunDir, removeRunDir, runDiskSize, writeRunFiles, type RunDir, type RunFiles, type RunOwner } from './rundir.js';
import { jailCodeResult, supervise } from './supervise.js';
import { WarmStartError } from './template.js';

type Addon = ReturnType<typeof native>;

/** A slot's identity: slot i of the range runs as uid = gid = firstUid + i. */
export interface SlotIdentity {
  index: number;
  uid: number;
  gid: number;
}

export interface SlotRange {
  firstUid: number;
  count: number;
}

export interface SlotUser extends SlotIdentity {
  /** The name `codejail setup` gives the slot's user and group: codejail-<uid>. */
  user: string;
  /**
   * The name earlier setups gave slot i of any range, codejail-s<i>. Still accepted for the same
   * uid (existing installs keep working), but no longer created: it made a second range's slot 0
   * collide with the first range's.
   */
  legacyUser: string;
}

/**
 * The slots of a range with their account names. Named by uid, not by index, so that daemons
 * with different slot ranges can share a host (their ranges must not overlap: the names cannot
 * tell two daemons' use of one uid apart).
 */
export function slotUsers(range: SlotRange): SlotUser[] {
  return Array.from({ length: range.count }, (_, index) => {
    const uid = range.firstUid + index;
    return { index, uid, gid: uid, user: `codejail-${uid}`, legacyUser: `codejail-s${index}` };
  });
}

export interface SlotContext {
  runBase: string;
  /** The configured range: each kill round also reaps zombies of every slot's uid. */
  range: { firstUid: number; count: number };
  layers: Layers;
  addon: Addon;
  log: Logger;
}

/** What a prepared run holds until it is released. */
export interface PreparedRun {
  dir: RunDir;
  /** The cgroups layer: the open cgroup.procs of the run's leaf, until the child has joined it. */
  cgroupProcsFd?: number;
}

/** What a run needs beyond its prepared directory. */
export interface RunSpec {
  /** Builds the plan the child applies (the layers decide what is in it). */
  plan(prepared: PreparedRun): NativePlan;
  stdin?: Uint8Array;
  limits: Limits;
  /** Bytes of stdout+stderr the reply can carry, and of the result channel. */
  outputRoom: number;
  resultRoom: number;
  signal?: AbortSignal;
  /** Names the run in log lines. */
  slug?: string;
  /** Called right after the child started (the test hook that blocks the event loop). */
  onStarted?(): void;
  /**
   * Starts the run from a warm template instead (src/run/template.ts), or returns undefined when
   * none is ready: the run then starts cold. Either way the rest of the lifecycle is this one.
   */
  startWarm?(plan: NativePlan, stdin: Uint8Array | undefined, budgets: Budgets): Promise<RunProcess> | undefined;
}

/** Where a run's time went, in milliseconds (`profile` requests; codejail bench --profile). */
export interface RunStages {
  /** Building the plan and starting the child, until it is confined (fork or clone, and the plan). */
  startMs: number;
  /** The run's code, until its main process exits. */
  runMs: number;
  /**
   * From the exit to the complete output (and, when a process the run left held a pipe open, the
   * sweep that killed it). The rest of the sweep and the release run after the reply.
   */
  resultMs: number;
  /** Whether the run forked from a warm template. */
  warm: boolean;
}

/**
 * A step of setting the sandbox up failed: the cgroup leaf, or a step in the child (the addon
 * reports which, with its errno). The run never started; the request fails with setup_failed.
 */
export class SetupError extends Error {
  readonly step: string;
  readonly code?: string;
  readonly errno?: number;

  constructor(cause: unknown, step?: string) {
    const failure = cause as Partial<{ step: string; code: string; errno: number; message: string }>;
    super(failure.message ?? String(cause), { cause });
    this.name = 'SetupError';
    this.step = step ?? failure.step ?? 'spawn';
    this.code = failure.code;
    this.errno = failure.errno;
  }
}

/** A finished run, as a jail_code result, plus whether it was cancelled. */
export interface RunOutcome {
  result: JailCodeResult;
  stages: RunStages;
  /** Settles once the slot is swept (see Supervised.swept); release() waits for it whatever happened. */
  swept: Promise<void>;
  /** The abort reason when the run was cancelled (the result is then not for the caller). */
  cancelled?: unknown;
}

/**
 * A sweep's kill rounds: the first at once, the next after 1 ms, doubling up to 100 ms, for at
 * most this long; then the slot is quarantined. Killed processes need a moment to die, and a zombie
 * whose parent is another run's process a moment to be reparented here and reaped.
 */
export const SWEEP_BUDGET_MS = 2000;
const SWEEP_MAX_PAUSE_MS = 100;

export class RunSlot {
  /** The last sweep failed: the slot must be quarantined, not reused. */
  private dirtyFlag = false;
  /** Run directories held until the slot is clean (removing a tree beside a live process of its uid races it). */
  private readonly deferredDirs: RunDir[] = [];
  /**
   * Sweeps in flight. A sweep's kill rounds reach every process of the slot's uid, whoever's:
   * the slot is handed on (release) only once every one of them has ended, whatever path its run
   * took (cancelled, failed to start, supervise threw, the daemon stopping).
   */
  private readonly sweeps = new Set<Promise<boolean>>();

  constructor(
    readonly identity: SlotIdentity,
    private readonly ctx: SlotContext,
  ) {}

  get index(): number {
    return this.identity.index;
  }

  get dirty(): boolean {
    return this.dirtyFlag;
  }

  /**
   * The run directory with the request's files, and the cgroup leaf with the run's limits.
   * Throws RequestError (bad_request: a file) or SetupError (the leaf); leaves nothing behind.
   */
  async prepare(files: RunFiles, limits: Limits, signal?: AbortSignal): Promise<PreparedRun> {
    const { layers, runBase } = this.ctx;
    const owner: RunOwner | undefined = layers.uid ? { uid: this.identity.uid, gid: this.identity.gid } : undefined;
    const disk = layers.runDisk && { control: layers.runDisk, size: runDiskSize(limits.DISK) };
    const prepared: PreparedRun = { dir: await createRunDir(runBase, owner, disk) };
    try {
      await writeRunFiles(prepared.dir, files, owner);
      throwIfAborted(signal);
      try {
        prepared.cgroupProcsFd = layers.cgroupTree?.prepare(this.identity, limits);
      } catch (err) {
        throw new SetupError(err, 'cgroup');
      }
      return prepared;
    } catch (err) {
      await this.release(prepared);
      throw err;
    }
  }

  /**
   * Starts the plan in the slot and supervises it to its end; the sweep runs once the main
   * process is gone. Throws SetupError when the child could not start.
   */
  async run(prepared: PreparedRun, spec: RunSpec): Promise<RunOutcome> {
    const { addon, layers, log } = this.ctx;
    const budgets = {
      output: new OutputBudget(Math.min(spec.limits.OUTPUT > 0 ? spec.limits.OUTPUT : Infinity, spec.outputRoom)),
      result: new OutputBudget(spec.resultRoom),
    };
    let started: RunProcess;
    const t0 = performance.now();
    let warm = false;
    try {
      const plan = spec.plan(prepared);
      const warmStart = spec.startWarm?.(plan, spec.stdin, budgets);
      let warmStarted: RunProcess | undefined;
      if (warmStart) {
        try {
          warmStarted = await warmStart;
        } catch (err) {
          // The template failed (it went away or never answered), not the plan: nothing of the
          // run started, and the same plan starts cold. A step that failed stays a failure.
          if (!(err instanceof WarmStartError && err.templateFailed)) throw err;
          log.warn('the warm template failed a run before it started; running it cold', { slug: spec.slug, error: err.message });
        }
      }
      warm = warmStarted !== undefined;
      started = warmStarted ?? startNative(plan, spec.stdin, budgets, addon);
    } catch (err) {
      // The addon reaps a child whose set-up failed; sweep the slot anyway, it costs little.
      await this.sweep();
      throw new SetupError(err);
    } finally {
      this.closeCgroupProcs(prepared);
    }
    const t1 = performance.now();
    let exitAt = t1;
    let memory: CgroupVerdict | undefined;
    const outcome = await supervise(started, {
      realtimeSeconds: spec.limits.REALTIME,
      signal: spec.signal,
      onStarted: spec.onStarted,
      afterExit: async () => {
        exitAt = performance.now();
        // Before the kill: an OOM kill's trace in memory.events is the run's memory verdict.
        memory = this.cgroupVerdict();
        await this.sweep(started);
      },
      onLateOutputs: () => log.warn('output pipes still open after the slot was swept; closing them', { runId: prepared.dir.id }),
    });
    const result = jailCodeResult(outcome, {
      runId: prepared.dir.id,
      budgets,
      confinement: layers.confinement,
      limits: spec.limits,
      memory,
    });
    // The reply waited for the outputs (and, when one was held open, the sweep) until `collected`.
    const collected = performance.now();
    const stages: RunStages = { startMs: t1 - t0, runMs: exitAt - t1, resultMs: collected - exitAt, warm };
    return { result, stages, swept: outcome.swept, ...(outcome.cancelled !== undefined ? { cancelled: outcome.cancelled } : {}) };
  }

  /**
   * Kills every process of the slot and waits, on timers, until none is left: with the uid layer
   * every process of its uid (the whole tree, setsid()'d or not), with the cgroups layer every
   * process of its leaf. Without either (unsafe, or uid off) only `run`'s main process and its
   * process group: never a uid the daemon shares with anything else. A slot not empty by
   * `deadline` (default: SWEEP_BUDGET_MS from now) is marked dirty, for quarantine. `onWait` is
   * called once if a first round left something. Resolves with whether it is clean. release()
   * waits for every sweep in flight.
   */
  sweep(run?: RunProcess, deadline?: number, onWait?: () => void): Promise<boolean> {
    const sweeping = this.killRounds(run, deadline, onWait);
    this.sweeps.add(sweeping);
    void sweeping.finally(() => this.sweeps.delete(sweeping));
    return sweeping;
  }

  /** Resolves once no sweep of the slot is in flight. */
  async swept(): Promise<void> {
    while (this.sweeps.size > 0) await Promise.allSettled([...this.sweeps]);
  }

  private async killRounds(run: RunProcess | undefined, deadline: number | undefined, onWait: (() => void) | undefined): Promise<boolean> {
    const { addon, layers, log, range } = this.ctx;
    const { cgroupTree } = layers;
    const byUid = layers.kill === 'uid';
    const until = deadline ?? performance.now() + SWEEP_BUDGET_MS;
    // One round: cgroup.kill reaches every process of the run's leaf, whatever its uid or
    // session; the uid round every process of the slot's uid, and also reaps zombies of every
    // slot's uid reparented here, whichever run left them. Clean when both found nothing left.
    const round = async (): Promise<boolean> => {
      const leafEmpty = cgroupTree ? cgroupTree.killRound(this.identity) : true;
      const uidEmpty = byUid ? await addon.killUidRoundAsync(this.identity.uid, range.firstUid, range.count) : true;
      return leafEmpty && uidEmpty;
    };
    try {
      if (!byUid && !cgroupTree) {
        run?.kill();
        return true;
      }
      if (byUid) assertKillable(this.identity);
      for (let pause = 1; !(await round()); pause = Math.min(pause * 2, SWEEP_MAX_PAUSE_MS)) {
        if (performance.now() >= until) {
          throw new Error(`processes of ${byUid ? `uid ${this.identity.uid}` : `the slot's cgroup`} remain after SIGKILL`);
        }
        if (pause === 1) onWait?.();
        await sleep(pause);
      }
      this.dirtyFlag = false;
      return true;
    } catch (err) {
      this.dirtyFlag = true;
      log.error('killing a run failed', { slot: this.identity.index, uid: this.identity.uid, error: err });
      return false;
    }
  }

  /**
   * The slot is ready for the next run, once every sweep in flight has ended: its leaf and the
   * run directory go. A dirty slot keeps both: the quarantine removes them once it is clean.
   */
  async release(prepared: PreparedRun | undefined): Promise<void> {
    const { layers, log } = this.ctx;
    if (prepared) this.closeCgroupProcs(prepared);
    await this.swept();
    if (this.dirtyFlag) {
      if (prepared) this.deferredDirs.push(prepared.dir);
      return;
    }
    if (layers.cgroupTree) {
      try {
        layers.cgroupTree.release(this.identity);
      } catch (err) {
        log.error('could not remove a run cgroup', { slot: this.identity.index, error: err });
      }
    }
    for (const dir of [...this.deferredDirs.splice(0), ...(prepared ? [prepared.dir] : [])]) {
      await removeRunDir(dir).catch((err) => log.error('could not remove a run directory', { runId: dir.id, path: dir.path, error: err }));
    }
  }

  /**
   * Keeps a dirty slot out of use: sweeps it again on a backoff (2 s, 4 s, ... 60 s) and, once it
   * is clean, releases what it held and calls `onClean` (back to the pool); `onStillDirty` after
   * each sweep that failed.
   */
  quarantine(reason: string, onClean: () => void, onStillDirty?: () => void, attempt = 1): void {
    const { log } = this.ctx;
    this.dirtyFlag = true;
    if (attempt === 1) log.error(`slot quarantined: ${reason}`, { slot: this.identity.index, uid: this.identity.uid });
    const retry = setTimeout(() => {
      void this.sweep().then(async (clean) => {
        if (!clean) {
          onStillDirty?.();
          this.quarantine(reason, onClean, onStillDirty, attempt + 1);
          return;
        }
        log.info('slot is clean again and back in the pool', { slot: this.identity.index, uid: this.identity.uid, attempts: attempt });
        await this.release(undefined);
        onClean();
      });
    }, Math.min(1000 * 2 ** attempt, 60_000));
    // A stopping daemon exits anyway; its parent-death signal and the next start's sweep finish the job.
    retry.unref();
  }

  /** The cgroups layer's memory verdict of the run; undefined without it, or if unreadable. */
  private cgroupVerdict(): CgroupVerdict | undefined {
    try {
      return this.ctx.layers.cgroupTree?.verdict(this.identity);
    } catch (err) {
      this.ctx.log.error('could not read a run cgroup', { slot: this.identity.index, error: err });
      return undefined;
    }
  }

  private closeCgroupProcs(prepared: PreparedRun): void {
    if (prepared.cgroupProcsFd === undefined) return;
    try {
      this.ctx.addon.closeFd(prepared.cgroupProcsFd);
    } catch {
      // Already closed.
    }
    prepared.cgroupProcsFd = undefined;
  }
}

function assertKillable(slot: SlotIdentity): void {
  if (slot.uid < 1000 || slot.uid === process.getuid?.()) throw new Error(`refusing to kill uid ${slot.uid}`);
}

/** On the global setTimeout (and budgets on the global performance), which the unit tests' fake timers drive. */
function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (!signal?.aborted) return;
  throw signal.reason instanceof RequestError ? signal.reason : new RequestError('cancelled', 'the run was cancelled');
}
