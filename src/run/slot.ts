// A slot and its lifecycle, as isolate has init/run/cleanup for a box: one uid and gid (and what
// the layers keep per run, such as a cgroup leaf) that hosts one run at a time. The layers' part
// in each step is their RunHooks (run_hooks.ts), called in LAYERS order; this file names no layer.
//
//   prepare     the run directory (as the layers make it: owned by the slot, its own tmpfs), the
//               request's files, then each layer's per-run state (a cgroup leaf with the limits)
//   run         the plan applied in a cloned child, then supervise(): output, REALTIME,
//               cancellation, the layers' verdicts and the sweep once the main process is gone
//   sweep       the layers' kill rounds until none finds anything of the slot left (every process
//               of its uid, every process of its leaf), on timers, never blocking the event loop;
//               the same code empties a slot an earlier daemon left at start-up
//   release     the layers' per-run state and the run directory go; the slot is ready for the next run
//   quarantine  a slot whose sweep failed is kept out of use and swept again on a backoff until
//               it is clean; the run directories it held are removed only then
//   hold        (warm.holdAhead) a released slot prepares its next warm run ahead: the directory,
//               the layers' state and a confined child waiting for its go (src/run/held.ts); a
//               request that fits takes it (its files written, then go), any other discards it
import path from 'node:path';
import type { JailCodeResult, Limits } from '../protocol/index.js';
import { RequestError } from '../protocol/errors.js';
import type { native, NativePlan } from '../native.js';
import type { Logger } from '../log.js';
import { OutputBudget } from './pipes.js';
import { startNative, type Budgets, type RunProcess } from './process.js';
import { createMountPoint, createRunDir, isEmptyMountPoint, removeMountPoint, removeRunDir, type RunDir } from './rundir.js';
import { writeRunFiles, type RunFiles } from './run_files.js';
import type { RunDirPart, RunHooks, RunVerdict } from './run_hooks.js';
import type { SlotIdentity } from './slot_users.js';
import { jailCodeResult, supervise } from './supervise.js';
import { WarmStartError } from './template.js';
import type { HeldChild } from './held.js';

type Addon = ReturnType<typeof native>;

export interface SlotContext {
  runBase: string;
  /** What each result's `confinement` says (the daemon's Layers: the active layers, or 'none'). */
  confinement: JailCodeResult['confinement'];
  /** Every layer's per-run work (layers/index.ts: runHooks), in LAYERS order. */
  hooks: readonly RunHooks[];
  addon: Addon;
  log: Logger;
  /**
   * The sweep of a held run discarded while the slot was idle failed (held.ts): the slot is dirty
   * while it sits in the pool, and must be taken out of it and quarantined.
   */
  onDirtyWhileIdle?(slot: RunSlot): void;
}

/** What a prepared run holds until it is released. */
export interface PreparedRun {
  dir: RunDir;
  /**
   * Fds the layers' prepare() made for the plan input, by PlanInput field (the open cgroup.procs
   * of the run's leaf); the slot closes them once the child has started (and so joined them).
   */
  planFds: Record<string, number>;
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
  /**
   * Starts the slot's held run (takeHeld) instead: its go. Never falls back to a cold start: the
   * prepared run's plan fds were given to the held child and are closed.
   */
  startHeld?(plan: NativePlan, stdin: Uint8Array | undefined, budgets: Budgets): RunProcess;
}

/** A slot's held run (src/run/held.ts): what it was made for, its directory and layers, its child. */
export interface HeldRun {
  key: string;
  limits: Limits;
  prepared: PreparedRun;
  child: HeldChild;
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
   * Where this slot's run disks are mounted, one run after the other (rundir.ts:
   * createMountPoint), once a run had one; forgotten when removing a run's disk did not leave it
   * empty, and the next run gets a new one.
   */
  private mountPoint: string | undefined;
  /**
   * Sweeps in flight. A sweep's kill rounds reach every process of the slot's uid, whoever's:
   * the slot is handed on (release) only once every one of them has ended, whatever path its run
   * took (cancelled, failed to start, supervise threw, the daemon stopping).
   */
  private readonly sweeps = new Set<Promise<boolean>>();
  /** The next run, started ahead (hold); taken or discarded by the next acquire of the slot. */
  private held: HeldRun | undefined;
  /**
   * A held run whose child ended while the slot was idle (its template replaced or gone) being
   * discarded: the next takeHeld waits for it, so its directory and leaf do not wait for a request.
   */
  private dropping: Promise<void> | undefined;
  /** The directory of the held run `dropping` discards, until it is removed. */
  private droppingDir: RunDir | undefined;

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
   * The run it holds (or is discarding while idle): its directory's name in the run base, its
   * child's pid (absent once it is being discarded), and whether a request could take it.
   */
  get heldRun(): { dir: string; pid?: number; usable: boolean } | undefined {
    if (this.held) return { dir: path.basename(this.held.prepared.dir.path), pid: this.held.child.pid, usable: this.held.child.usable };
    if (this.droppingDir) return { dir: path.basename(this.droppingDir.path), usable: false };
    return undefined;
  }

  /** The key of the run it holds (held.ts: heldRunKey), or undefined. */
  get heldKey(): string | undefined {
    return this.held?.key;
  }

  /**
   * The run directory with the request's files, and what each layer keeps per run (a cgroup leaf
   * with the run's limits). Throws RequestError (bad_request: a file) or SetupError (a layer's
   * prepare); leaves nothing behind.
   */
  async prepare(files: RunFiles, limits: Limits, signal?: AbortSignal): Promise<PreparedRun> {
    const { hooks, runBase } = this.ctx;
    const made = this.runDirPart(limits);
    const mountPoint = made.disk ? (this.mountPoint ??= createMountPoint(runBase)) : undefined;
    let dir: RunDir;
    try {
      dir = await createRunDir(runBase, made.owner, made.disk, mountPoint);
    } catch (err) {
      // The mount point may be what failed: gone from runBase (removed by something else while
      // the slot was idle) or no longer empty. Kept, it would fail every later run of the slot;
      // the next run takes a new one (an empty one left behind goes at the next start's sweep).
      if (mountPoint !== undefined && !isEmptyMountPoint(mountPoint)) this.mountPoint = undefined;
      // A host-side failure before anything of the request ran: setup_failed, naming the step.
      throw new SetupError(err, 'rundir');
    }
    const prepared: PreparedRun = { dir, planFds: {} };
    try {
      await writeRunFiles(prepared.dir, files, made.owner);
      throwIfAborted(signal);
      for (const hook of hooks) {
        if (!hook.prepare) continue;
        try {
          Object.assign(prepared.planFds, hook.prepare(this.identity, limits));
        } catch (err) {
          throw new SetupError(err, hook.step ?? hook.name);
        }
      }
      return prepared;
    } catch (err) {
      await this.release(prepared);
      throw err;
    }
  }

  /**
   * Prepares the slot's next run ahead (warm.holdAhead): the directory and the layers' state for
   * `limits`, and a child started by `start` with the plan `plan` builds, confined and waiting for
   * its go. Resolves with whether the slot holds it; on any failure, what was made goes (the
   * slot is swept and released) and the slot is as it was.
   */
  async hold(key: string, limits: Limits, plan: (prepared: PreparedRun) => NativePlan, start: (plan: NativePlan) => Promise<HeldChild> | undefined): Promise<boolean> {
    if (this.held) return false;
    let prepared: PreparedRun | undefined;
    let child: HeldChild | undefined;
    let lateChild = false;
    try {
      prepared = await this.prepare({ files: [], extraFiles: [] }, limits);
      child = await start(plan(prepared));
    } catch (err) {
      this.ctx.log.warn('a held run could not be started ahead; the slot starts its next run on demand', { slot: this.identity.index, error: err });
      // Given up while its child confined itself (src/run/template.ts): that child could take
      // the slot's uid after the sweep below. The slot waits for its end first, for a bounded time.
      const lateExit = (err as { lateExit?: Promise<boolean> }).lateExit;
      if (lateExit) lateChild = !(await lateExit);
    } finally {
      // The child joined them (its cgroup leaf), or failed.
      if (prepared) this.closePlanFds(prepared);
    }
    if (prepared && child) {
      const held: HeldRun = { key, limits, prepared, child };
      this.held = held;
      // Ended while held (discarded when its template drained, or died with it): what was made
      // for it goes now, not at the slot's next request.
      void child.ended.then(() => {
        if (this.held !== held) return;
        this.held = undefined;
        this.droppingDir = held.prepared.dir;
        this.dropping = this.discardHeld(held)
          .catch((err: unknown) => this.ctx.log.error('discarding a held run that ended failed', { slot: this.identity.index, error: err }))
          .finally(() => {
            this.dropping = undefined;
            this.droppingDir = undefined;
            if (this.dirtyFlag) this.ctx.onDirtyWhileIdle?.(this);
          });
      });
      return true;
    }
    if (prepared && lateChild) {
      // Still not ended: it may yet take the slot's uid. The slot is dirty, so the daemon
      // quarantines it; the quarantine's sweeps go on until one finds it clean, which releases
      // what was made.
      this.deferredDirs.push(prepared.dir);
      this.dirtyFlag = true;
      this.ctx.log.error("a given-up held run's child did not end in time; the slot is quarantined", { slot: this.identity.index });
    } else if (prepared) {
      await this.sweep();
      await this.release(prepared);
    }
    return false;
  }

  /**
   * The held run when it was made for `key` and still waits; otherwise the slot's held run, if
   * any, is discarded (killed, swept, released) and undefined returned. `key` undefined: only
   * discards.
   */
  async takeHeld(key: string | undefined): Promise<HeldRun | undefined> {
    while (this.dropping) await this.dropping;
    const held = this.held;
    if (!held) return undefined;
    this.held = undefined;
    if (key !== undefined && held.key === key && held.child.usable) return held;
    await this.discardHeld(held);
    return undefined;
  }

  /** Discards the slot's held run, if any (the daemon is stopping). */
  async dropHeld(): Promise<void> {
    await this.takeHeld(undefined);
  }

  /**
   * Discards a held run already taken (takeHeld), whose child can no longer go: killed, the
   * slot swept, what was made for it released (its files too).
   */
  async dropRun(held: HeldRun): Promise<void> {
    await this.discardHeld(held);
  }

  /**
   * Writes the request's files into a held run's directory (as prepare() does for a run made on
   * demand). On failure (a bad name, cancelled) the held child is discarded and the slot swept;
   * the caller releases `held.prepared` as after any run.
   */
  async fillHeld(held: HeldRun, files: RunFiles, signal?: AbortSignal): Promise<void> {
    try {
      throwIfAborted(signal);
      await writeRunFiles(held.prepared.dir, files, this.runDirPart(held.limits).owner);
      throwIfAborted(signal);
    } catch (err) {
      held.child.discard();
      await this.sweep();
      throw err;
    }
  }

  /**
   * Starts the plan in the slot and supervises it to its end; the sweep runs once the main
   * process is gone. Throws SetupError when the child could not start.
   */
  async run(prepared: PreparedRun, spec: RunSpec): Promise<RunOutcome> {
    const { addon, confinement, log } = this.ctx;
    const budgets = {
      output: new OutputBudget(Math.min(spec.limits.OUTPUT > 0 ? spec.limits.OUTPUT : Infinity, spec.outputRoom)),
      result: new OutputBudget(spec.resultRoom),
    };
    let started: RunProcess;
    const t0 = performance.now();
    let warm = false;
    try {
      const plan = spec.plan(prepared);
      if (spec.startHeld) {
        started = spec.startHeld(plan, spec.stdin, budgets);
        warm = true;
      } else {
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
      }
    } catch (err) {
      // The addon reaps a child whose set-up failed; sweep the slot anyway, it costs little.
      await this.sweep();
      // A held run lost as it went (template_lost) is the caller's to retry, not a set-up failure.
      if (err instanceof RequestError) throw err;
      throw new SetupError(err);
    } finally {
      this.closePlanFds(prepared);
    }
    const t1 = performance.now();
    let exitAt = t1;
    let verdict: RunVerdict = {};
    const outcome = await supervise(started, {
      realtimeSeconds: spec.limits.REALTIME,
      signal: spec.signal,
      onStarted: spec.onStarted,
      afterExit: async () => {
        exitAt = performance.now();
        // Before the kill: what the layers saw of the run (an OOM kill's trace) is its verdict.
        verdict = this.verdict();
        await this.sweep(started);
      },
      onLateOutputs: () => log.warn('output pipes still open after the slot was swept; closing them', { runId: prepared.dir.id }),
    });
    const result = jailCodeResult(outcome, {
      runId: prepared.dir.id,
      budgets,
      confinement,
      limits: spec.limits,
      memory: verdict.memory,
    });
    // The reply waited for the outputs (and, when one was held open, the sweep) until `collected`.
    const collected = performance.now();
    const stages: RunStages = { startMs: t1 - t0, runMs: exitAt - t1, resultMs: collected - exitAt, warm };
    return { result, stages, swept: outcome.swept, ...(outcome.cancelled !== undefined ? { cancelled: outcome.cancelled } : {}) };
  }

  /**
   * Kills every process of the slot and waits, on timers, until none is left: each round is every
   * layer's kill round (the uid layer: every process of its uid, the whole tree, setsid()'d or
   * not; the cgroups layer: every process of its leaf). With no layer that kills (unsafe, or uid
   * off) only `run`'s main process and its process group: never a uid the daemon shares with
   * anything else. A slot not empty by
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
    const { hooks, log } = this.ctx;
    const killers = hooks.filter((hook) => hook.killRound);
    const until = deadline ?? performance.now() + SWEEP_BUDGET_MS;
    // One round: every layer's kill round, one after the other. Clean when none found anything
    // left; `left` names what the last round found.
    let left: string[] = [];
    const round = async (): Promise<boolean> => {
      left = [];
      for (const hook of killers) {
        if (!(await hook.killRound!(this.identity))) left.push(hook.killScope?.(this.identity) ?? `the ${hook.name} layer's processes`);
      }
      return left.length === 0;
    };
    try {
      if (killers.length === 0) {
        run?.kill();
        return true;
      }
      for (let pause = 1; !(await round()); pause = Math.min(pause * 2, SWEEP_MAX_PAUSE_MS)) {
        if (performance.now() >= until) throw new Error(`processes of ${left.join(' and ')} remain after SIGKILL`);
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
   * The slot is ready for the next run, once every sweep in flight has ended: what the layers
   * keep per run (its leaf) and the run directory go. A dirty slot keeps both: the quarantine
   * removes them once it is clean.
   */
  async release(prepared: PreparedRun | undefined): Promise<void> {
    const { hooks, log } = this.ctx;
    if (prepared) this.closePlanFds(prepared);
    await this.swept();
    if (this.dirtyFlag) {
      if (prepared) this.deferredDirs.push(prepared.dir);
      return;
    }
    for (const hook of hooks) {
      try {
        hook.release?.(this.identity);
      } catch (err) {
        log.error('could not release what a layer kept for a run', { slot: this.identity.index, layer: hook.name, error: err });
      }
    }
    for (const dir of [...this.deferredDirs.splice(0), ...(prepared ? [prepared.dir] : [])]) {
      const kept = await removeRunDir(dir).catch((err) => {
        log.error('could not remove a run directory', { runId: dir.id, path: dir.path, error: err });
        return false;
      });
      if (!kept && dir.path === this.mountPoint) this.mountPoint = undefined;
    }
  }

  /**
   * The daemon is stopping and every run has been released: the slot's mount point goes. A
   * dirty slot keeps it, with the run directories it holds (the next start removes them).
   */
  retire(): void {
    if (this.dirtyFlag || this.mountPoint === undefined) return;
    const dir = this.mountPoint;
    this.mountPoint = undefined;
    try {
      removeMountPoint(dir);
    } catch (err) {
      this.ctx.log.error("could not remove a slot's mount point", { slot: this.identity.index, path: dir, error: err });
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
        await this.release(undefined);
        onClean();
        // Once it is: a caller that reads the log (a test, an operator) may use the slot at once.
        log.info('slot is clean again and back in the pool', { slot: this.identity.index, uid: this.identity.uid, attempts: attempt });
      });
    }, Math.min(1000 * 2 ** attempt, 60_000));
    // A stopping daemon exits anyway; its parent-death signal and the next start's sweep finish the job.
    retry.unref();
  }

  /** What the layers make a run directory of, for `limits` (its owner, its disk). */
  private runDirPart(limits: Limits): RunDirPart {
    return Object.assign({}, ...this.ctx.hooks.map((hook) => hook.runDir?.(this.identity, limits)));
  }

  /** Kills a held run's child, sweeps the slot and releases what was made for the run. */
  private async discardHeld(held: HeldRun): Promise<void> {
    held.child.discard();
    await this.sweep();
    await this.release(held.prepared);
  }

  /** What the layers saw of the run; a layer whose verdict is unreadable says nothing. */
  private verdict(): RunVerdict {
    const verdict: RunVerdict = {};
    for (const hook of this.ctx.hooks) {
      try {
        Object.assign(verdict, hook.verdict?.(this.identity));
      } catch (err) {
        this.ctx.log.error("could not read a layer's verdict of a run", { slot: this.identity.index, layer: hook.name, error: err });
      }
    }
    return verdict;
  }

  private closePlanFds(prepared: PreparedRun): void {
    for (const fd of Object.values(prepared.planFds)) {
      try {
        this.ctx.addon.closeFd(fd);
      } catch {
        // Already closed.
      }
    }
    prepared.planFds = {};
  }
}

/** On the global setTimeout (and budgets on the global performance), which the unit tests' fake timers drive. */
function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (!signal?.aborted) return;
  throw signal.reason instanceof RequestError ? signal.reason : new RequestError('cancelled', 'the run was cancelled');
}
