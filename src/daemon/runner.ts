// The daemon's side of running a jail_code request: refuses what cannot run (unknown command,
// limits past the ceilings, NUL in argv) before a slot is taken, waits for a slot, takes it
// through its lifecycle (src/run/slot.ts: prepare, run, sweep, release, quarantine), counts and
// logs. Whatever happens (set-up failure, timeout, client gone, daemon stopping), the slot is
// swept and released, or quarantined: nothing outlives a run.
import diagnostics from 'node:diagnostics_channel';
import type { JailCodeRequest, JailCodeResult, Limits } from '../protocol/index.js';
import { RequestError } from '../protocol/errors.js';
import type { native, NativePlan } from '../native.js';
import type { CommandProfile } from '../run/commands.js';
import { effectiveLimits } from '../run/limits.js';
import { RunSlot, SetupError, type HeldRun, type PreparedRun, type RunOutcome } from '../run/slot.js';
import type { SlotIdentity } from '../run/slot_users.js';
import { roundMs } from '../run/supervise.js';
import { MAX_WARM_TAIL_BYTES } from '../run/template.js';
import type { WarmCommand } from '../run/warm.js';
import { heldRunKey, type HeldChild } from '../run/held.js';
import { runHooks, type Layers } from '../layers/index.js';
import { buildPlan } from '../layers/plan.js';
import type { DaemonConfig } from '../config/schema.js';
import type { Logger } from '../log.js';
import type { SlotPool } from './slots.js';

/**
 * Each run's start ({ slug }), published as soon as its process exists, for observers in this
 * process (a test preload blocks the event loop there to pin REALTIME). A check without them.
 */
const runStarted = diagnostics.channel('codejail:run-started');

type Addon = ReturnType<typeof native>;

/** The fields of a jail_code request the runner uses; `safeExec` marks a safe_exec's run (safe_exec.ts). */
export type RunRequest = Pick<
  JailCodeRequest,
  'command' | 'code' | 'files' | 'extraFiles' | 'argv' | 'stdin' | 'limits' | 'slug' | 'resultChannel' | 'warm' | 'profile'
> & {
  /** The code is the safeExec harness and stdin its request: a warm run runs the template's harness. */
  safeExec?: boolean;
};

export interface RunnerContext {
  config: DaemonConfig;
  layers: Layers;
  commands: Map<string, CommandProfile>;
  slots: SlotPool;
  addon: Addon;
  log: Logger;
  /** The warm path of each warm command, by name (none in unsafe mode or without the uid layer). */
  warm?: Map<string, WarmCommand>;
}

/** Who a run is for, and who wants to know when it leaves the queue. */
export interface RunOrigin {
  /** The caller's uid: the run takes that caller's share of the slots and the queue. */
  caller?: number;
  /** Called once the run has its slot. */
  started?: () => void;
  /** Waits for a slot even while every slot is quarantined (the start-up self-check); others are refused. */
  patient?: boolean;
}

export interface RunCounters {
  started: number;
  finished: number;
  setupFailures: number;
  timedOut: number;
  cancelled: number;
}

/**
 * At start-up, how long the slots may take to drain of what an earlier daemon left: a killed
 * daemon's sandboxes may linger as zombies until the host's init reaps them. A slot still not
 * empty then is quarantined, and the daemon starts without it.
 */
export const START_DRAIN_MS = 5000;
/** Room in the reply frame for everything but stdout and stderr. */
const REPLY_OVERHEAD_BYTES = 16 * 1024;

export class Runner {
  readonly counters: RunCounters = { started: 0, finished: 0, setupFailures: 0, timedOut: 0, cancelled: 0 };
  /** Each slot's lifecycle, by slot index. */
  private readonly runSlots = new Map<number, RunSlot>();
  /** Slots kept out of the pool until a sweep finds them clean, by index: why, and since when (Date.now()). */
  private readonly quarantined = new Map<number, { identity: SlotIdentity; reason: string; since: number; sweeps: number }>();
  /** Clean-ups still running after their run's reply. */
  private readonly cleanups = new Set<Promise<void>>();
  /** Clean-ups after replies, for metrics: how many, and their total time. */
  readonly cleanupStats = { count: 0, totalMs: 0 };
  /** Held runs (warm.holdAhead): made ahead, and taken by a request that fit. */
  readonly heldCounters = { made: 0, used: 0 };
  /** What the slots hold ahead: the last caller's warm run's command, limits and result channel. */
  private holdNext?: { caller: number; profile: CommandProfile; limits: Limits; resultChannel: boolean };

  constructor(private readonly ctx: RunnerContext) {}

  /** Slots kept out of the pool because processes of their uid survived a kill (health, metrics). */
  get quarantinedSlots(): number {
    return this.quarantined.size;
  }

  /** Each quarantined slot: its index and uid, why, for how long, and how many sweeps failed (status). */
  quarantineReport(): Array<{ index: number; uid: number; reason: string; sinceMs: number; sweeps: number }> {
    const now = Date.now();
    return [...this.quarantined.values()].map(({ identity, reason, since, sweeps }) => ({ index: identity.index, uid: identity.uid, reason, sinceMs: now - since, sweeps }));
  }

  /**
   * Start-up: kills whatever an earlier daemon left in each slot (a setsid()'d grandchild outlives
   * the parent-death signal) and waits, at most START_DRAIN_MS and without blocking the event
   * loop, for the slots to be empty: the same sweep that follows every run. A slot still not empty
   * then is taken out of the pool and quarantined (retried like after a run), not fatal. Resolves
   * with how many were quarantined.
   */
  async drainAtStart(slots: SlotIdentity[]): Promise<number> {
    const { log } = this.ctx;
    const deadline = performance.now() + START_DRAIN_MS;
    const drained = await Promise.all(
      slots.map(async (identity) => {
        const slot = this.slotOf(identity);
        const started = performance.now();
        let waited = false;
        const clean = await slot.sweep(undefined, deadline, () => {
          waited = true;
          log.warn('waiting for processes of an earlier daemon to go', { slot: identity.index, uid: identity.uid, maxWaitMs: START_DRAIN_MS });
        });
        if (!clean) return false;
        if (waited) log.info('slot drained', { slot: identity.index, uid: identity.uid, waitedMs: Math.round(performance.now() - started) });
        // A leaf left by the crashed daemon, empty now: removed.
        await slot.release(undefined);
        return true;
      }),
    );
    let quarantined = 0;
    for (const [i, identity] of slots.entries()) {
      if (drained[i]) continue;
      quarantined++;
      this.ctx.slots.take(identity);
      this.quarantine(this.slotOf(identity), identity, `processes of an earlier daemon did not go within ${START_DRAIN_MS} ms`);
    }
    if (quarantined > 0 && quarantined === slots.length) {
      log.error('every slot is quarantined: runs, the self-check included, wait until one is clean', {});
    }
    return quarantined;
  }

  /**
   * Runs the request and resolves with its result. Rejects with a RequestError: unknown_command,
   * limit_exceeds_ceiling or bad_request (argv) before taking a slot, overloaded, bad_request
   * (files), setup_failed, cancelled or shutting_down (when `signal` aborts; its reason, if a
   * RequestError, is used). `run.caller` is the uid the run is for, whose share of the slots and
   * queue it takes (src/daemon/slots.ts; without it, the daemon's own: the self-check);
   * `run.started` is called once it has its slot (it left the run queue).
   */
  async run(request: RunRequest, signal?: AbortSignal, run: RunOrigin = {}): Promise<JailCodeResult> {
    const profile = this.ctx.commands.get(request.command);
    if (!profile) {
      const known = [...this.ctx.commands.keys()].join(', ');
      throw new RequestError('unknown_command', `unknown command "${request.command}"; this daemon runs: ${known}`);
    }
    const { config } = this.ctx;
    const limits = effectiveLimits(config.defaultLimits, request.limits, config.ceilings);
    // A C string ends at its first NUL: such an argument cannot reach the program intact.
    const nul = request.argv.findIndex((arg) => arg.includes('\0'));
    if (nul >= 0) throw new RequestError('bad_request', `argv[${nul}] holds a NUL byte, which no program can receive`);
    const warm = this.warmPath(profile, request);
    // The held run (src/run/held.ts) this request fits, if a slot holds one: such a slot is
    // preferred; a request that fits none prefers a slot holding none (the self-check's runs).
    const key = warm ? heldRunKey({ caller: run.caller, command: request.command, limits, resultChannel: request.resultChannel === true }) : undefined;
    const prefer = (identity: SlotIdentity) => {
      const heldKey = this.runSlots.get(identity.index)?.heldKey;
      return heldKey === undefined ? 1 : heldKey === key ? 2 : 0;
    };
    const queuedAt = performance.now();
    const identity = await this.ctx.slots.acquire(signal, run.caller, run.patient, this.ctx.config.warm.holdAhead ? prefer : undefined);
    const preparedAt = performance.now();
    run.started?.();
    const slot = this.slotOf(identity);
    let prepared: PreparedRun | undefined;
    let held: HeldRun | undefined;
    try {
      try {
        // The slot's held run when it was made for this one; any other is discarded.
        held = await slot.takeHeld(key);
        // Its discard's sweep failed: the slot is quarantined once this request gives it back.
        if (slot.dirty) throw new SetupError(new Error("processes of the slot's uid survived the kill of its held run"), 'sweep');
        if (held) {
          prepared = held.prepared;
          await slot.fillHeld(held, request, signal);
          // Discarded meanwhile (its template replaced while the files were written): this run
          // is made afresh. From here to its go nothing awaits, so this check holds until then.
          if (!held.child.usable) {
            await slot.dropRun(held);
            prepared = held = undefined;
            if (slot.dirty) throw new SetupError(new Error("processes of the slot's uid survived the kill of its held run"), 'sweep');
          }
        }
        if (held) {
          this.heldCounters.used++;
          warm!.counters.warm++;
        }
        const ready = held ? held.prepared : await slot.prepare(request, limits, signal);
        prepared = ready;
        // A caller's warm run: the kind of run the slots hold ahead next (not the self-check's).
        if (warm && run.caller !== undefined) this.holdNext = { caller: run.caller, profile, limits, resultChannel: request.resultChannel === true };
        const startAt = performance.now();
        const outcome = await this.runPrepared(slot, ready, profile, request, limits, signal, warm, held?.child);
        const { result, stages } = outcome;
        if (request.profile) {
          result.usage.stages = {
            queueMs: roundMs(preparedAt - queuedAt),
            prepareMs: roundMs(startAt - preparedAt),
            startMs: roundMs(stages.startMs),
            runMs: roundMs(stages.runMs),
            resultMs: roundMs(stages.resultMs),
            warm: stages.warm,
            ...(held ? { held: true } : {}),
          };
        }
        return result;
      } catch (err) {
        // A held run taken but never started (a step before its go failed): its child goes now.
        held?.child.discard();
        throw err instanceof SetupError ? this.setupFailed(err, prepared?.dir.id, request.slug) : err;
      }
    } finally {
      // After the reply: the sweep's last kill rounds, the leaf and the run directory. The slot
      // goes back to the pool (or into quarantine) only once they are done: release() waits for
      // every sweep of the slot, also one a cancelled or failed run left in flight.
      this.track(this.finish(slot, identity, prepared));
    }
  }

  /** Held runs now (status): slot, directory name, pid, whether a request could take it. */
  heldRuns(): Array<{ slot: number; dir: string; pid?: number; usable: boolean }> {
    const runs: Array<{ slot: number; dir: string; pid?: number; usable: boolean }> = [];
    for (const slot of this.runSlots.values()) {
      const held = slot.heldRun;
      if (held) runs.push({ slot: slot.index, ...held });
    }
    return runs;
  }

  /** Whether `command` has a warm path (its runs fork from a template unless they say otherwise). */
  isWarm(command: string): boolean {
    return this.ctx.warm?.has(command) === true;
  }

  /** Resolves once every run's clean-up has finished (the daemon is stopping). */
  async drained(): Promise<void> {
    while (this.cleanups.size > 0) await Promise.all([...this.cleanups]);
  }

  /** The daemon is stopping, its runs drained: what the slots kept for their runs goes (their mount points). */
  retireSlots(): void {
    for (const slot of this.runSlots.values()) slot.retire();
  }

  private async finish(slot: RunSlot, identity: SlotIdentity, prepared: PreparedRun | undefined): Promise<void> {
    const started = performance.now();
    try {
      await slot.release(prepared);
    } finally {
      this.cleanupStats.count++;
      this.cleanupStats.totalMs += performance.now() - started;
      // Before the slot is back in the pool: the next run to take it finds its run held. A
      // hold that failed and could not sweep its child away leaves the slot dirty too.
      if (!slot.dirty) await this.holdAhead(slot);
      if (slot.dirty) this.quarantine(slot, identity, 'processes of its uid survived the kill');
      else this.ctx.slots.release(identity);
    }
  }

  /**
   * warm.holdAhead: the slot, clean and about to go back to the pool, prepares its next run
   * ahead, for the command and limits of the last caller's warm run. Not while runs wait for a
   * slot (the slot goes to one of them at once), nor once the daemon is stopping. Never throws.
   */
  private async holdAhead(slot: RunSlot): Promise<void> {
    const next = this.holdNext;
    const { config, slots } = this.ctx;
    if (!next || !config.warm.holdAhead || slots.closed || slots.queued > 0) return;
    const warm = this.ctx.warm?.get(next.profile.name);
    if (!warm?.canHold(next.limits.VMEM)) return;
    const key = heldRunKey({ caller: next.caller, command: next.profile.name, limits: next.limits, resultChannel: next.resultChannel });
    try {
      // A warm run's plan: its argv and code travel in the go record, not in the plan.
      const held = await slot.hold(
        key,
        next.limits,
        (prepared) => this.planOf(slot, prepared, next.profile, next.limits, { hasCode: true, argv: [], resultChannel: next.resultChannel }),
        (plan) => warm.hold(plan),
      );
      if (held) this.heldCounters.made++;
    } catch (err) {
      this.ctx.log.error('holding a run ahead failed', { slot: slot.index, error: err });
    }
  }

  /** The daemon is stopping, its runs drained: every slot's held run is discarded. */
  async dropHeldRuns(): Promise<void> {
    await Promise.all([...this.runSlots.values()].map((slot) => slot.dropHeld()));
  }

  private track(cleanup: Promise<void>): void {
    this.cleanups.add(cleanup);
    cleanup
      .catch((err) => this.ctx.log.error('cleaning up after a run failed', { error: err }))
      .finally(() => this.cleanups.delete(cleanup));
  }

  private async runPrepared(
    slot: RunSlot,
    prepared: PreparedRun,
    profile: CommandProfile,
    request: RunRequest,
    limits: Limits,
    signal: AbortSignal | undefined,
    warm: WarmCommand | undefined,
    held: HeldChild | undefined,
  ): Promise<RunOutcome> {
    const { config, log } = this.ctx;
    // The reply frame carries stdout+stderr and, when asked for, the result channel: with a result
    // channel each side gets half the frame, so neither can crowd the other out.
    const frameRoom = config.maxFrameBytes - REPLY_OVERHEAD_BYTES;
    const outputRoom = request.resultChannel ? Math.floor(frameRoom / 2) : frameRoom;
    this.counters.started++;
    const mode = request.safeExec ? 'safe_exec' : 'main';
    const resultChannel = request.resultChannel === true;
    const outcome = await slot.run(prepared, {
      plan: (ready) => this.planOf(slot, ready, profile, limits, { hasCode: request.code !== undefined, argv: request.argv, resultChannel }),
      stdin: request.stdin,
      limits,
      outputRoom,
      resultRoom: frameRoom - outputRoom,
      signal,
      slug: request.slug,
      onStarted: () => {
        if (runStarted.hasSubscribers) runStarted.publish({ slug: request.slug });
      },
      ...(held
        ? { startHeld: (plan, stdin, budgets) => held.go({ mode, argv: request.argv, env: plan.env }, stdin, budgets) }
        : warm
          ? { startWarm: (plan, stdin, budgets) => warm.start(plan, { mode, argv: request.argv, env: plan.env, result: resultChannel }, stdin, budgets) }
          : {}),
    });
    const { result, cancelled } = outcome;
    if (result.timedOut) {
      this.counters.timedOut++;
      log.warn(`run ${result.runId} exceeded REALTIME ${limits.REALTIME}s, killed`, { runId: result.runId, slug: request.slug });
    }
    if (cancelled !== undefined) {
      this.counters.cancelled++;
      throw cancelled instanceof RequestError ? cancelled : new RequestError('cancelled', 'the run was cancelled');
    }
    this.counters.finished++;
    log.debug('run finished', {
      runId: result.runId,
      slug: request.slug,
      command: request.command,
      status: result.status,
      wallMs: result.usage.wallMs,
      truncated: result.truncated,
      warm: outcome.stages.warm,
    });
    return outcome;
  }

  /** The plan of a run in `slot` (the layers decide what is in it: src/layers/plan.ts). */
  private planOf(
    slot: RunSlot,
    { dir, planFds }: PreparedRun,
    profile: CommandProfile,
    limits: Limits,
    run: { hasCode: boolean; argv: string[]; resultChannel: boolean },
  ): NativePlan {
    const { config, layers } = this.ctx;
    return buildPlan({ profile, dir, ...run, limits, slot: slot.identity, layers, apparmorProfile: config.apparmorProfile, ...planFds });
  }

  /**
   * The command's warm path when this run may take it: a script to run (jailCode with code, or
   * safeExec), not turned off by the request, and an argv and environment that fit the channel.
   */
  private warmPath(profile: CommandProfile, request: RunRequest): WarmCommand | undefined {
    const warm = this.ctx.warm?.get(profile.name);
    if (!warm || request.warm === false || request.code === undefined) return undefined;
    // Measured as it travels (JSON: a control character takes 6 bytes): the environment and the
    // rest of the tail take the other half.
    return Buffer.byteLength(JSON.stringify(request.argv)) <= MAX_WARM_TAIL_BYTES / 2 ? warm : undefined;
  }

  /**
   * A slot whose processes could not all be killed must not host the next run (it would share a
   * uid with the survivors): keep it out of the pool until a sweep finds it clean.
   */
  private quarantine(slot: RunSlot, identity: SlotIdentity, reason: string): void {
    const entry = { identity, reason, since: Date.now(), sweeps: 1 };
    this.quarantined.set(identity.index, entry);
    this.ctx.slots.quarantined(identity);
    slot.quarantine(
      reason,
      () => {
        this.quarantined.delete(identity.index);
        this.ctx.slots.release(identity);
      },
      () => entry.sweeps++,
    );
  }

  private slotOf(identity: SlotIdentity): RunSlot {
    let slot = this.runSlots.get(identity.index);
    if (!slot) {
      const { config, layers, addon, log } = this.ctx;
      const hooks = runHooks(layers, { addon, range: config.slots });
      slot = new RunSlot(identity, {
        runBase: config.runBase,
        confinement: layers.confinement,
        hooks,
        addon,
        log,
        // Only while it is free in the pool: a busy slot's run finds it dirty and gives it back for quarantine.
        onDirtyWhileIdle: (idle) => {
          if (this.ctx.slots.takeIfFree(idle.identity)) this.quarantine(idle, idle.identity, "processes of its uid survived the kill of its held run");
        },
      });
      this.runSlots.set(identity.index, slot);
    }
    return slot;
  }

  private setupFailed(err: SetupError, runId: string | undefined, slug: string | undefined): RequestError {
    this.counters.setupFailures++;
    const { step, code, errno } = err;
    this.ctx.log.error('sandbox set-up failed', { runId, slug, step, code, errno, error: err.cause ?? err });
    return new RequestError('setup_failed', `sandbox set-up failed at step "${step}": ${err.message}`);
  }
}
