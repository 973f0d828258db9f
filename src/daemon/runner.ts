// Runs one jail_code request in a slot, from limits to clean-up. Whatever happens (set-up
// failure, timeout, client gone, daemon stopping) the same finally-chain runs: kill everything
// of the slot, drain and close the pipes, close the pidfd, remove the run directory, release the
// slot. Nothing outlives a run.
import { setTimeout as delay } from 'node:timers/promises';
import type { JailCodeRequest, JailCodeResult, Limits } from '../protocol/index.js';
import type { native, NativeChild, NativeExit } from '../native.js';
import type { CgroupVerdict } from '../layers/cgroups.js';
import type { DaemonConfig } from './config.js';
import { DaemonError } from './errors.js';
import type { CommandProfile } from './interpreter.js';
import type { Layers } from '../layers/index.js';
import { effectiveLimits } from './limits.js';
import type { Logger } from './log.js';
import { readOutput, writeInput, OutputBudget, type InputPipe, type OutputPipe } from './pipes.js';
import { buildPlan } from '../layers/plan.js';
import { createRunDir, removeRunDir, runDiskSize, writeRunFiles, type RunDir, type RunOwner } from './rundir.js';
import type { Slot, SlotPool } from './slots.js';

type Addon = ReturnType<typeof native>;

/** The fields of a jail_code request the runner uses. */
export type RunRequest = Pick<
  JailCodeRequest,
  'command' | 'code' | 'files' | 'extraFiles' | 'argv' | 'stdin' | 'limits' | 'slug' | 'resultChannel'
>;

export interface RunnerContext {
  config: DaemonConfig;
  layers: Layers;
  commands: Map<string, CommandProfile>;
  slots: SlotPool;
  addon: Addon;
  log: Logger;
}

export interface RunCounters {
  started: number;
  finished: number;
  setupFailures: number;
  timedOut: number;
  cancelled: number;
}

/** After the main process exits and the slot is swept, its pipes close at once; this is a backstop. */
const OUTPUT_EOF_GRACE_MS = 2000;
/**
 * A sweep's kill rounds: the first at once, the next after 1 ms, doubling up to 100 ms, for at
 * most this long; then the slot is quarantined. Killed processes need a moment to die, and a zombie
 * whose parent is another run's process a moment to be reparented here and reaped.
 */
const SWEEP_BUDGET_MS = 2000;
const SWEEP_MAX_PAUSE_MS = 100;
/**
 * At start-up, how long the slots may take to drain of what an earlier daemon left: a killed
 * daemon's sandboxes may linger as zombies until the host's init reaps them. A slot still not
 * empty then is quarantined, and the daemon starts without it.
 */
const START_DRAIN_MS = 5000;
/** Room in the reply frame for everything but stdout and stderr. */
const REPLY_OVERHEAD_BYTES = 16 * 1024;
const SIGKILL = 9;

export class Runner {
  readonly counters: RunCounters = { started: 0, finished: 0, setupFailures: 0, timedOut: 0, cancelled: 0 };
  /** Slots whose last sweep failed: they go to quarantine instead of back to the pool. */
  private readonly dirtySlots = new Set<Slot>();
  /** Run directories of quarantined slots, removed once their slot is clean. */
  private readonly deferredDirs = new Map<Slot, RunDir[]>();

  constructor(private readonly ctx: RunnerContext) {}

  /** Slots kept out of the pool because processes of their uid survived a kill (health, metrics). */
  get quarantinedSlots(): number {
    return this.dirtySlots.size;
  }

  /**
   * Start-up: kills whatever an earlier daemon left in each slot (a setsid()'d grandchild outlives
   * the parent-death signal) and waits, at most START_DRAIN_MS and without blocking the event
   * loop, for the slots to be empty. A slot still not empty then is taken out of the pool and
   * quarantined (retried like after a run), not fatal. Resolves with how many were quarantined.
   */
  async drainAtStart(slots: Slot[]): Promise<number> {
    const { layers, log } = this.ctx;
    const deadline = performance.now() + START_DRAIN_MS;
    const drained = await Promise.all(
      slots.map(async (slot) => {
        const started = performance.now();
        let waited = false;
        // Kills what the crashed daemon left, by uid and in the slot's leaf.
        const clean = await this.sweep(slot, undefined, deadline, () => {
          waited = true;
          log.warn('waiting for processes of an earlier daemon to go', { slot: slot.index, uid: slot.uid, maxWaitMs: START_DRAIN_MS });
        });
        if (!clean) return false;
        if (waited) log.info('slot drained', { slot: slot.index, uid: slot.uid, waitedMs: Math.round(performance.now() - started) });
        try {
          // A leaf left by the crashed daemon, empty now: removed.
          layers.cgroupTree?.release(slot);
        } catch (err) {
          log.error('could not remove a run cgroup left by an earlier daemon', { slot: slot.index, error: err });
          return false;
        }
        return true;
      }),
    );
    let quarantined = 0;
    for (const [i, slot] of slots.entries()) {
      if (drained[i]) continue;
      quarantined++;
      this.dirtySlots.add(slot);
      this.ctx.slots.take(slot);
      this.quarantine(slot, 1, `processes of an earlier daemon did not go within ${START_DRAIN_MS} ms`);
    }
    if (quarantined > 0 && quarantined === slots.length) {
      log.error('every slot is quarantined: runs, the self-check included, wait until one is clean', {});
    }
    return quarantined;
  }

  /**
   * Runs the request and resolves with its result. Rejects with a DaemonError: unknown_command,
   * limit_exceeds_ceiling or bad_request (argv) before taking a slot, overloaded, bad_request
   * (files), setup_failed, cancelled or shutting_down (when `signal` aborts; its reason, if a
   * DaemonError, is used).
   */
  async run(request: RunRequest, signal?: AbortSignal): Promise<JailCodeResult> {
    const profile = this.ctx.commands.get(request.command);
    if (!profile) {
      const known = [...this.ctx.commands.keys()].join(', ');
      throw new DaemonError('unknown_command', `unknown command "${request.command}"; this daemon runs: ${known}`);
    }
    const { config } = this.ctx;
    const limits = effectiveLimits(config.defaultLimits, request.limits, config.ceilings);
    // A C string ends at its first NUL: such an argument cannot reach the program intact.
    const nul = request.argv.findIndex((arg) => arg.includes('\0'));
    if (nul >= 0) throw new DaemonError('bad_request', `argv[${nul}] holds a NUL byte, which no program can receive`);
    const slot = await this.ctx.slots.acquire(signal);
    try {
      return await this.runInSlot(profile, request, limits, slot, signal);
    } finally {
      if (this.dirtySlots.has(slot)) this.quarantine(slot);
      else this.ctx.slots.release(slot);
    }
  }

  /**
   * A slot whose processes could not all be killed must not host the next run (it would share a
   * uid with the survivors): keep it out of the pool and retry the sweep until it is clean.
   */
  private quarantine(slot: Slot, attempt = 1, reason = 'processes of its uid survived the kill'): void {
    const { log, slots } = this.ctx;
    if (attempt === 1) log.error(`slot quarantined: ${reason}`, { slot: slot.index, uid: slot.uid });
    const retry = setTimeout(() => {
      void this.sweep(slot, undefined).then((clean) => {
        if (!clean) {
          this.quarantine(slot, attempt + 1);
          return;
        }
        log.info('slot is clean again and back in the pool', { slot: slot.index, uid: slot.uid, attempts: attempt });
        const dirs = this.deferredDirs.get(slot) ?? [];
        this.deferredDirs.delete(slot);
        void Promise.all(dirs.map((dir) => this.remove(dir))).then(() => slots.release(slot));
      });
    }, Math.min(1000 * 2 ** attempt, 60_000));
    // A stopping daemon exits anyway; its parent-death signal and the next start's sweep finish the job.
    retry.unref();
  }

  private async runInSlot(
    profile: CommandProfile,
    request: RunRequest,
    limits: Limits,
    slot: Slot,
    signal: AbortSignal | undefined,
  ): Promise<JailCodeResult> {
    const { config, layers, addon } = this.ctx;
    const owner: RunOwner | undefined = layers.uid ? { uid: slot.uid, gid: slot.gid } : undefined;
    let dir: RunDir | undefined;
    // cgroups layer: the fd of the run's leaf's cgroup.procs, needed only until the child joined.
    let cgroupProcsFd: number | undefined;
    try {
      const disk = layers.runDisk && { control: layers.runDisk, size: runDiskSize(limits.DISK) };
      dir = await createRunDir(config.runBase, owner, disk);
      await writeRunFiles(dir, request, owner);
      throwIfAborted(signal);
      try {
        cgroupProcsFd = layers.cgroupTree?.prepare(slot, limits);
      } catch (err) {
        throw this.setupFailed(Object.assign(err as Error, { step: 'cgroup' }), dir.id, request.slug);
      }
      const plan = buildPlan({
        profile,
        dir,
        hasCode: request.code !== undefined,
        argv: request.argv,
        limits,
        slot,
        layers,
        apparmorProfile: config.apparmorProfile,
        resultChannel: request.resultChannel === true,
        cgroupProcsFd,
      });
      let child: NativeChild;
      this.counters.started++;
      try {
        child = addon.spawn(plan);
      } catch (err) {
        // The addon reaps a child whose set-up failed; sweep the slot anyway, it costs little.
        await this.sweep(slot, undefined);
        throw this.setupFailed(err, dir.id, request.slug);
      } finally {
        if (cgroupProcsFd !== undefined) closeQuietly(addon, cgroupProcsFd);
        cgroupProcsFd = undefined;
      }
      const result = await this.supervise(child, dir, slot, request, limits, signal);
      this.counters.finished++;
      return result;
    } finally {
      if (cgroupProcsFd !== undefined) closeQuietly(addon, cgroupProcsFd);
      // A quarantined slot keeps its leaf: the next prepare() of the slot empties and replaces it.
      if (layers.cgroupTree && !this.dirtySlots.has(slot)) {
        try {
          layers.cgroupTree.release(slot);
        } catch (err) {
          this.ctx.log.error('could not remove a run cgroup', { slot: slot.index, error: err });
        }
      }
      if (dir && this.dirtySlots.has(slot)) {
        // Removing a tree while a process of its uid still runs would race it (a directory swapped
        // for a symlink between lstat and readdir): the quarantine removes it once the slot is clean.
        this.deferredDirs.set(slot, [...(this.deferredDirs.get(slot) ?? []), dir]);
      } else if (dir) {
        await this.remove(dir);
      }
    }
  }

  private async remove(dir: RunDir): Promise<void> {
    await removeRunDir(dir).catch((err) =>
      this.ctx.log.error('could not remove a run directory', { runId: dir.id, path: dir.path, error: err }),
    );
  }

  /**
   * Feeds stdin, collects output, arms REALTIME, honours cancellation, and cleans up. REALTIME is
   * the addon's deadline thread's job, not a timer of this event loop: a loop busy for seconds
   * (a large frame being decoded) must not stretch a run's time.
   */
  private async supervise(
    child: NativeChild,
    dir: RunDir,
    slot: Slot,
    request: RunRequest,
    limits: Limits,
    signal: AbortSignal | undefined,
  ): Promise<JailCodeResult> {
    const { addon, log, config } = this.ctx;
    const started = performance.now();

    // Watch for the exit first: whatever fails below, the child is then always reaped, and the
    // pidfd is closed only once the watcher is done with it.
    let watching = true;
    const exited = new Promise<NativeExit>((resolve, reject) => {
      try {
        addon.watchExit(child.pidfd, child.pid, resolve);
      } catch (err) {
        watching = false;
        reject(err);
      }
    });
    exited.catch(() => {}); // observed below; never an unhandled rejection

    let stdin: InputPipe | undefined;
    let stdout: OutputPipe | undefined;
    let stderr: OutputPipe | undefined;
    let result: OutputPipe | undefined;
    // The reply frame carries stdout+stderr and, when asked for, the result channel: with a result
    // channel each side gets half the frame, so neither can crowd the other out.
    const frameRoom = config.maxFrameBytes - REPLY_OVERHEAD_BYTES;
    const outputRoom = child.result === undefined ? frameRoom : Math.floor(frameRoom / 2);
    const budget = new OutputBudget(Math.min(limits.OUTPUT > 0 ? limits.OUTPUT : Infinity, outputRoom));
    const resultBudget = new OutputBudget(frameRoom - outputRoom);
    let deadline: number | undefined;
    let timedOut = false;
    let cancelledBy: unknown;
    let swept = false;
    // One kill round is enough to end the main process; the sweep after its exit does the rest.
    const onAbort = () => {
      cancelledBy = signal!.reason ?? new DaemonError('cancelled', 'the run was cancelled');
      this.killOnce(slot, child);
    };

    try {
      // Each wrap takes ownership of its fd; the fds not wrapped when one throws are closed below.
      stdout = readOutput(child.stdout, budget);
      stderr = readOutput(child.stderr, budget);
      if (child.result !== undefined) result = readOutput(child.result, resultBudget);
      stdin = writeInput(child.stdin, request.stdin);

      if (limits.REALTIME > 0) deadline = addon.armDeadline(child.pidfd, child.pid, limits.REALTIME * 1000);
      blockLoopForTests(request.slug);
      if (signal?.aborted) onAbort();
      else signal?.addEventListener('abort', onAbort, { once: true });

      const exit = await exited;
      const wallMs = performance.now() - started;
      // Before the kill below: an OOM kill's trace in memory.events is the run's memory verdict.
      const memory = this.cgroupVerdict(slot);
      if (deadline !== undefined) {
        timedOut = addon.disarmDeadline(deadline);
        deadline = undefined;
      }
      if (timedOut) {
        this.counters.timedOut++;
        log.warn(`run ${dir.id} exceeded REALTIME ${limits.REALTIME}s, killed`, { runId: dir.id, slug: request.slug });
      }
      signal?.removeEventListener('abort', onAbort);
      // The main process is gone; anything it left (a setsid()'d sleeper holding the pipes) goes too.
      swept = true;
      await this.sweep(slot, child);
      await this.drain(dir.id, [stdout, stderr, ...(result ? [result] : [])]);

      if (cancelledBy !== undefined) {
        this.counters.cancelled++;
        throw cancelledBy instanceof DaemonError ? cancelledBy : new DaemonError('cancelled', 'the run was cancelled');
      }
      const status = exit.code ?? -(exit.signal ?? 0);
      log.debug('run finished', {
        runId: dir.id,
        slug: request.slug,
        command: request.command,
        status,
        wallMs: round(wallMs),
        truncated: budget.truncated,
      });
      const reply: JailCodeResult = {
        runId: dir.id,
        stdout: stdout.contents(),
        stderr: stderr.contents(),
        status,
        truncated: budget.truncated,
        timedOut,
        usage: {
          wallMs: round(wallMs),
          userMs: round(exit.userUs / 1000),
          systemMs: round(exit.systemUs / 1000),
          // Only a figure above what the child inherited from the daemon's memory is the run's own.
          ...(exit.maxRssKb > child.inheritedRssKb ? { maxRssKb: exit.maxRssKb } : {}),
          ...(memory?.memoryPeakKb !== undefined ? { memoryPeakKb: memory.memoryPeakKb } : {}),
        },
        ...(memory ? { oomKilled: memory.oomKilled } : {}),
        confinement: this.ctx.layers.confinement,
        limits,
      };
      if (result) {
        // A cut-off result cannot be decoded: say so rather than hand back half of it.
        if (resultBudget.truncated) reply.truncated = true;
        reply.result = result.contents();
      }
      return reply;
    } finally {
      if (deadline !== undefined) addon.disarmDeadline(deadline);
      signal?.removeEventListener('abort', onAbort);
      if (!swept) await this.sweep(slot, child);
      stdin?.destroy();
      stdout?.destroy();
      stderr?.destroy();
      result?.destroy();
      if (!result && child.result !== undefined) closeQuietly(addon, child.result);
      if (!stdout) closeQuietly(addon, child.stdout);
      if (!stderr) closeQuietly(addon, child.stderr);
      if (!stdin) closeQuietly(addon, child.stdin);
      if (watching) await exited.catch(() => undefined);
      closeQuietly(addon, child.pidfd);
    }
  }

  /** Waits for EOF on every output; destroys them after a grace period (logged: it means a leak). */
  private async drain(runId: string, outputs: OutputPipe[]): Promise<void> {
    const grace = new AbortController();
    const closed = Promise.all(outputs.map((output) => output.closed)).then(() => true);
    const late = delay(OUTPUT_EOF_GRACE_MS, false, { signal: grace.signal }).catch(() => false);
    const drained = await Promise.race([closed, late]);
    grace.abort();
    if (!drained) {
      this.ctx.log.warn('output pipes still open after the slot was swept; closing them', { runId });
    }
  }

  /**
   * Kills every process of the run and waits, on timers, until none is left: with the uid layer
   * every process of the slot's uid (the whole tree, setsid()'d or not), with the cgroups layer
   * every process of the slot's leaf. Without either (unsafe, or uid off) only the main process and
   * its process group: never a uid the daemon shares with anything else. A slot that cannot be
   * emptied by `deadline` (default: SWEEP_BUDGET_MS from now) is marked dirty, for quarantine.
   * `onWait` is called once if a first round left something. Resolves with whether it is clean.
   */
  private async sweep(slot: Slot, child: NativeChild | undefined, deadline?: number, onWait?: () => void): Promise<boolean> {
    const { addon, layers, log, config } = this.ctx;
    const until = deadline ?? performance.now() + SWEEP_BUDGET_MS;
    const { cgroupTree } = layers;
    const byUid = layers.kill === 'uid';
    const { firstUid, count } = config.slots;
    // One round: cgroup.kill reaches every process of the run's leaf, whatever its uid or
    // session; the uid round every process of the slot's uid, and also reaps zombies of every
    // slot's uid reparented here, whichever run left them. Clean when both found nothing left.
    const round = (): boolean => {
      const leafEmpty = cgroupTree ? cgroupTree.killRound(slot) : true;
      const uidEmpty = byUid ? addon.killUidRound(slot.uid, firstUid, count) : true;
      return leafEmpty && uidEmpty;
    };
    try {
      if (!byUid && !cgroupTree) {
        if (child) this.signalGroup(child);
        return true;
      }
      if (byUid) assertKillable(slot);
      for (let pause = 1; !round(); pause = Math.min(pause * 2, SWEEP_MAX_PAUSE_MS)) {
        if (performance.now() >= until) {
          throw new Error(`processes of ${byUid ? `uid ${slot.uid}` : `the slot's cgroup`} remain after SIGKILL`);
        }
        if (pause === 1) onWait?.();
        await sleep(pause);
      }
      this.dirtySlots.delete(slot);
      return true;
    } catch (err) {
      if (layers.kill === 'uid' || layers.cgroupTree) this.dirtySlots.add(slot);
      log.error('killing a run failed', { slot: slot.index, uid: slot.uid, error: err });
      return !(layers.kill === 'uid' || layers.cgroupTree);
    }
  }

  /** One kill round, at once and without waiting (cancellation): the sweep after the exit finishes. */
  private killOnce(slot: Slot, child: NativeChild): void {
    const { addon, layers, log, config } = this.ctx;
    try {
      if (layers.kill === 'uid') {
        assertKillable(slot);
        addon.killUidRound(slot.uid, config.slots.firstUid, config.slots.count);
      } else {
        this.signalGroup(child);
      }
    } catch (err) {
      log.error('killing a run failed', { slot: slot.index, uid: slot.uid, error: err });
    }
  }

  /** SIGKILLs the main process and its process group (it called setsid(): its pid is the group's). */
  private signalGroup(child: NativeChild): void {
    this.ctx.addon.pidfdSignal(child.pidfd, SIGKILL);
    try {
      process.kill(-child.pid, 'SIGKILL');
    } catch {
      // ESRCH: the group is already gone.
    }
  }

  /** The cgroups layer's memory verdict of the slot's run; undefined without it, or if unreadable. */
  private cgroupVerdict(slot: Slot): CgroupVerdict | undefined {
    try {
      return this.ctx.layers.cgroupTree?.verdict(slot);
    } catch (err) {
      this.ctx.log.error('could not read a run cgroup', { slot: slot.index, error: err });
      return undefined;
    }
  }

  private setupFailed(err: unknown, runId: string, slug: string | undefined): DaemonError {
    this.counters.setupFailures++;
    const failure = err as Partial<{ step: string; code: string; errno: number; message: string }>;
    const step = failure.step ?? 'spawn';
    this.ctx.log.error('sandbox set-up failed', { runId, slug, step, code: failure.code, errno: failure.errno, error: err });
    return new DaemonError('setup_failed', `sandbox set-up failed at step "${step}": ${failure.message ?? String(err)}`);
  }
}

function assertKillable(slot: Slot): void {
  if (slot.uid < 1000 || slot.uid === process.getuid?.()) throw new Error(`refusing to kill uid ${slot.uid}`);
}

/** On the global setTimeout (and budgets on the global performance), which the unit tests' fake timers drive. */
function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Tests only (honoured under vitest): blocks the event loop for CODEJAIL_TEST_BLOCK_LOOP_MS right
 * after spawning a run slugged 'test-block-loop', as a huge frame being decoded would.
 */
const TEST_BLOCK_LOOP_MS = process.env.VITEST ? Number(process.env.CODEJAIL_TEST_BLOCK_LOOP_MS ?? 0) : 0;
function blockLoopForTests(slug: string | undefined): void {
  if (TEST_BLOCK_LOOP_MS > 0 && slug === 'test-block-loop') Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, TEST_BLOCK_LOOP_MS);
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (!signal?.aborted) return;
  throw signal.reason instanceof DaemonError ? signal.reason : new DaemonError('cancelled', 'the run was cancelled');
}

function closeQuietly(addon: Addon, fd: number): void {
  try {
    addon.closeFd(fd);
  } catch {
    // Already closed.
  }
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
