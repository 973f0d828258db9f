// Starting and stopping a daemon in-process: what main.ts (the codejaild bin) and tests use.
// Order matters and is fail-closed: config, layers, interpreter discovery, run base, self-check;
// only then does the socket exist.
import { realpathSync } from 'node:fs';
import type http from 'node:http';
import { performance } from 'node:perf_hooks';
import { PROTOCOL_VERSION, SERVED_PROTOCOL_VERSIONS, type CheckResult, type StatusResult } from '../protocol/index.js';
import { native } from '../native.js';
import { PACKAGE_VERSION } from '../package.js';
import { resolveAllowList, type AllowList, type Caller } from './auth.js';
import { loadConfig } from './config.js';
import type { DaemonConfig } from '../config/schema.js';
import { RequestError } from '../protocol/errors.js';
import { discoverCommands, type CommandProfile } from '../run/commands.js';
import { openWarmCommands, type WarmCommand, type WarmSettings } from '../run/warm.js';
import { installFiles } from '../run/install_files.js';
import { detectLayers, releaseLayers, type LayerReport, type Layers } from '../layers/index.js';
import { createLogger, type LogLevel, type Logger } from '../log.js';
import { closeHttp, Metrics, serveMetricsHttp } from './metrics.js';
import { prepareRunBase, sweepRunBase } from '../run/rundir.js';
import { describeBounds } from '../run/limits.js';
import { Runner, START_DRAIN_MS } from './runner.js';
import { IdleCollector } from '../run/idle_memory.js';
import { runSelfCheck, SelfCheckError, type CheckOutcome } from './selfcheck.js';
import { DaemonServer } from './server/index.js';
import { slotUsers } from '../run/slot_users.js';
import { lowerOwnOomScore } from '../run/oom.js';
import { SlotPool } from './slots.js';
import { claimRunBase, type RunBaseClaim } from './instance.js';
import { kindNamed } from '../kinds/index.js';

export { loadConfig, defaultConfig, parseConfig, ConfigError } from './config.js';
export { DEFAULT_CONFIG_PATH } from '../config/schema.js';
export type { DaemonConfig, DaemonConfigInput } from '../config/schema.js';
export { LayerError } from '../layers/index.js';
export type { LayerReport } from '../layers/index.js';
export { SelfCheckError } from './selfcheck.js';
export { InstanceError } from './instance.js';
export { createLogger, silentLogger } from '../log.js';
export type { Logger } from '../log.js';

export interface StartDaemonOptions {
  /** A loaded configuration; without it, `configFile` (or the default path) is loaded. */
  config?: DaemonConfig;
  configFile?: string;
  /** Overrides config.socket.path. */
  socketPath?: string;
  /** Run without confinement except rlimits (loudly logged). Also implied when not root. */
  unsafe?: boolean;
  /** Defaults to JSON lines on stderr at config.logLevel. */
  log?: Logger;
  /** Overrides config.logLevel (a command-line flag): kept across reloads. */
  logLevel?: LogLevel;
  /** A listening socket inherited from systemd (LISTEN_FDS): served instead of binding socket.path. */
  listenFd?: number;
}

/** What a SIGHUP did: keys applied, keys that only a restart applies (kept as they were). */
export interface ReloadReport {
  applied: string[];
  needsRestart: string[];
}

export interface Health {
  healthy: boolean;
  /** Why not, when not. */
  reason?: string;
}

export interface DaemonHandle {
  /** The socket path clients connect to. */
  address: string;
  /** Layer -> state, as logged at start and returned by the status op. */
  layers: LayerReport;
  unsafe: boolean;
  /** Whether the socket came from systemd. */
  activated: boolean;
  /** The daemon's logger (its level follows logLevel across reloads). */
  log: Logger;
  /**
   * Stops accepting; lets running work finish for up to `graceMs` (default: config
   * shutdownGraceMs; 0 cancels at once); cancels and cleans up the rest; removes the socket it
   * bound. Idempotent: later calls return the first call's promise, and a later call with
   * graceMs 0 cuts the first one's grace period short.
   */
  close(graceMs?: number): Promise<void>;
  /**
   * Re-reads the config file and applies what can change while serving (limits, ceilings,
   * allow, logLevel, queueMax, shutdownGraceMs). Throws ConfigError, keeping the old config,
   * when the file is invalid.
   */
  reload(): ReloadReport;
  /** Slots not all quarantined and the last self-check passed (the watchdog's test). */
  health(): Health;
  /** One line for systemd's STATUS=. */
  describe(): string;
}

/** Keys a reload applies at once; any other key that changed waits for a restart. */
const LIVE_KEYS = new Set(['defaultLimits', 'ceilings', 'allow', 'logLevel', 'queueMax', 'shutdownGraceMs']);

const VERSION = PACKAGE_VERSION;

/** How often the daemon looks whether it went idle after work (watchIdleMemory()). */
const IDLE_MEMORY_TICK_MS = 1000;
/** Fewer bytes than this read and written in a tick is no work (a health check, a status request). */
const QUIET_BYTES = 64 * 1024;

/** How long the 'check' request may take, its runs' wait for slots included. */
export const CHECK_TIMEOUT_MS = 60_000;

export async function startDaemon(options: StartDaemonOptions = {}): Promise<DaemonHandle> {
  // This one object is the runner's config for the daemon's lifetime: a reload assigns the live
  // keys into it, so the next run sees the new limits without any other plumbing.
  const config: DaemonConfig = withFlags(options.config ?? loadConfig(options.configFile), options);
  const log = options.log ?? createLogger({ level: config.logLevel });
  // Before anything touches the slots or the run base: another daemon may still be using them.
  const claim = claimRunBase(config.runBase);
  const addon = native();
  const startedAt = Date.now();
  // What runs and templates need of the install, read now and kept: they cannot look it up later
  // (the runs' namespace may not show it), nor should a later upgrade of the files reach them.
  installFiles();

  let layers: Layers;
  try {
    layers = detectLayers(config, { addon, log, unsafe: options.unsafe ?? false });
  } catch (err) {
    claim.release();
    throw err;
  }
  let daemon: Daemon | undefined;
  let warm: Map<string, WarmCommand> | undefined;
  try {
    log.info('confinement layers', { layers: layers.report });
    // Orphans of a run (a daemonised grandchild) must come back to us to be reaped, not to an
    // init that may never reap them and keep the slot's uid "in use".
    addon.becomeSubreaper();
    // Before the templates start: they inherit it (each run raises its own to RUN_OOM_SCORE_ADJ).
    lowerOwnOomScore(log);

    const commands = discoverCommands(config, log);
    for (const profile of commands.values()) {
      log.info('command ready', { command: profile.name, executable: profile.executable, execute: profile.execute, read: profile.read });
    }

    // A crashed daemon may have left sandboxes running (a setsid()'d grandchild outlives the
    // parent-death signal). They must be gone BEFORE the sweep: one still running as a slot uid
    // could swap a directory of its run for a symlink while root removes the tree. A slot that
    // does not drain in time is quarantined, not fatal; the sweep then waits for the next start.
    // Warm templates: each command's interpreter started once, with its preloads imported; runs
    // fork from it. One that cannot start (a preload that does not import) stops the start.
    warm = await openWarmCommands(config.warm.enabled ? commands.values() : [], () => warmSettings(config), {
      addon,
      log,
      mntnsFd: layers.mntnsFd,
      ownNetns: layers.netns === true,
      seccomp: layers.seccomp === true && !layers.unsafe,
      uidLayer: layers.uid === true && !layers.unsafe,
    });
    const slotList = slotUsers(config.slots);
    const slots = new SlotPool(slotList, config.queueMax);
    const runner = new Runner({ config, layers, commands, slots, addon, log, warm });
    const quarantinedAtStart = await runner.drainAtStart(slotList);
    // Some slots quarantined: the daemon serves with the others and retries them. All of them: it
    // could run nothing, not even its self-check, so it says why and stops (a supervisor restarts
    // it, and the next start drains again) rather than wait without a word.
    if (quarantinedAtStart > 0 && quarantinedAtStart === slotList.length) {
      throw new Error(
        `every slot (${slotList.length}) still has processes of an earlier daemon ${START_DRAIN_MS / 1000} s after they were killed, ` +
          'or they cannot be killed: the daemon cannot run anything',
      );
    }
    prepareRunBase(config.runBase);
    if (quarantinedAtStart === 0) await sweepRunBase(realpathSync(config.runBase), log, layers.runDisk);
    else log.warn('run directories of an earlier daemon are kept until a start finds every slot empty', { runBase: config.runBase });

    const checkCommand = Object.entries(config.commands).find(([, c]) => kindNamed(c.kind).selfCheck)?.[0];
    if (checkCommand) {
      await runSelfCheck({ runner, layers, command: checkCommand, ceilings: config.ceilings, log, startUp: true });
      // Its runs' clean-up ends after their replies: every slot is free before the first request.
      await runner.drained();
    } else {
      log.warn('self-check skipped: no command of kind "python" is configured');
    }
    daemon = new Daemon({ options, config, log, layers, commands, slots, runner, checkCommand, startedAt, warm, claim });
    await daemon.serve((fd) => addon.peerCred(fd));
    return daemon;
  } catch (err) {
    await daemon?.abandon();
    for (const command of warm?.values() ?? []) command.close();
    await releaseLayers(layers, { addon: native(), log });
    claim.release();
    throw err;
  }
}

function warmSettings(config: DaemonConfig): WarmSettings {
  return { maxForks: config.warm.maxForks, maxAgeMs: config.warm.maxAgeSeconds * 1000 };
}

/** Flags win over the file, now and at every reload. */
function withFlags(loaded: DaemonConfig, options: StartDaemonOptions): DaemonConfig {
  return {
    ...loaded,
    ...(options.socketPath ? { socket: { ...loaded.socket, path: options.socketPath } } : {}),
    ...(options.logLevel ? { logLevel: options.logLevel } : {}),
  };
}

/** What the start-up sequence built, handed to the serving daemon. */
interface DaemonParts {
  options: StartDaemonOptions;
  config: DaemonConfig;
  log: Logger;
  layers: Layers;
  commands: Map<string, CommandProfile>;
  slots: SlotPool;
  runner: Runner;
  /** Each warm command's templates. */
  warm: Map<string, WarmCommand>;
  /** The command the self-check runs, when one of kind "python" is configured. */
  checkCommand: string | undefined;
  startedAt: number;
  /** This daemon's claim on its run base, released once it has stopped. */
  claim: RunBaseClaim;
}

/** A daemon past its start-up checks: serves the socket, answers status and check, reloads, stops. */
class Daemon implements DaemonHandle {
  readonly address: string;
  readonly layers: LayerReport;
  readonly unsafe: boolean;
  readonly log: Logger;
  private readonly metrics = new Metrics();
  private allowList: AllowList;
  private selfCheckOk = true;
  private stopping = false;
  /** The 'check' in progress: concurrent requests share it. */
  private checking: Promise<CheckResult> | undefined;
  private server: DaemonServer | undefined;
  private metricsHttp: http.Server | undefined;
  /** Gives memory back once the daemon sits idle after work (see watchIdleMemory()). */
  private idleMemory: { readonly collections: number; stop(): void } | undefined;
  private closing: Promise<void> | undefined;
  /** Aborted by a close(0) during a close: the grace period ends at once. */
  private readonly hurry = new AbortController();

  constructor(private readonly parts: DaemonParts) {
    this.address = parts.config.socket.path;
    this.layers = parts.layers.report;
    this.unsafe = parts.layers.unsafe;
    this.log = parts.log;
    this.allowList = resolveAllowList(parts.config, parts.log);
  }

  get activated(): boolean {
    return this.server?.activated ?? false;
  }

  /** Listens on the socket (and the metrics port, if configured); only then is the daemon ready. */
  async serve(peerCred: (fd: number) => Caller): Promise<void> {
    const { config, options, runner, log, layers, commands } = this.parts;
    this.server = new DaemonServer({
      socketPath: config.socket.path,
      group: config.socket.group,
      mode: config.socket.mode,
      maxFrameBytes: config.maxFrameBytes,
      connections: config.connections,
      runner,
      commandKinds: new Map(Object.entries(config.commands).map(([name, command]) => [name, command.kind])),
      status: () => this.status(),
      log,
      listenFd: options.listenFd,
      peerCred,
      allowList: () => this.allowList,
      metrics: this.metrics,
      renderMetrics: () => this.renderMetrics(),
      check: () => this.check(),
    });
    await this.server.listen();
    this.idleMemory = this.watchIdleMemory(this.server);
    if (config.metrics.port !== undefined) {
      this.metricsHttp = await serveMetricsHttp({ host: config.metrics.host, port: config.metrics.port, render: () => this.renderMetrics(), log });
    }
    log.info('ready', {
      socket: config.socket.path,
      activated: this.server.activated,
      version: VERSION,
      unsafe: layers.unsafe,
      layers: layers.report,
      slots: config.slots.count,
      commands: [...commands.keys()],
      allow: this.allowList.describe,
    });
  }

  /**
   * A full collection and malloc_trim once the daemon sat idle for a second or more after work
   * (no run started, nothing in a slot, queued or in flight, and less than QUIET_BYTES read or
   * written on all connections in a whole tick) and its own memory (resident, less the bytes its
   * connections hold: replies not yet read, frames in progress) is 8 MiB above its idle level
   * (see IdleCollector: at most one per 5 s, looked at again while a collection leaves it above
   * or while connections hold bytes, and a level that rises only to what three collections in a
   * row left). Without it the garbage of
   * a burst of large requests and replies (frames of MiBs) stayed resident in a daemon that then
   * sat idle: V8 collects only when allocating, and glibc keeps freed room. Only growth triggers
   * a collection, so traffic that leaves nothing behind (a caller's tiny requests) costs none;
   * health checks a second apart do not keep the daemon from being idle, and a connection that
   * stalls holding bytes (a reply its caller never reads) moves none, so it does not either.
   */
  private watchIdleMemory(server: DaemonServer): { readonly collections: number; stop(): void } {
    const { slots, runner, log } = this.parts;
    const running = () => slots.busy > 0 || slots.queued > 0 || server.inflight > 0;
    /** server.bytesMoved and the runs started at the last tick, and whether that tick found work. */
    let seen = server.bytesMoved;
    let started = runner.counters.started;
    let working = false;
    const collector = new IdleCollector({
      thresholdBytes: Infinity,
      growthBytes: 8 * 1024 * 1024,
      idleMs: 1000,
      minGapMs: 5000,
      maxGapMs: 300_000,
      // Not while the last tick found work, and not if it has come since.
      isIdle: () => !working && server.bytesMoved - seen < QUIET_BYTES && !running(),
      // Replies not yet read and frames in progress: held, not garbage, and not live memory either.
      buffered: () => server.bufferedBytes(),
      onCollect: (memory) => log.debug('idle: gave memory back', memory),
      onLook: (memory) => log.debug('idle: nothing to give back', memory),
    });
    const timer = setInterval(() => {
      const moved = server.bytesMoved;
      // A run that started and ended between two ticks is work too.
      if (moved - seen >= QUIET_BYTES || runner.counters.started !== started || running()) {
        working = true;
        collector.held(1);
      } else if (working) {
        working = false;
        collector.held(0);
      }
      // A look counts the bytes since the last tick only: health checks a second apart add up
      // to 64 KiB in a minute, and a look due later (after a gap) would never find the daemon idle.
      seen = moved;
      started = runner.counters.started;
    }, IDLE_MEMORY_TICK_MS);
    timer.unref();
    return {
      get collections() {
        return collector.collections;
      },
      stop: () => {
        clearInterval(timer);
        collector.stop();
      },
    };
  }

  /** Undoes serve() after a start that failed (the caller releases the layers). */
  async abandon(): Promise<void> {
    this.idleMemory?.stop();
    if (this.metricsHttp) await closeHttp(this.metricsHttp);
    await this.server?.close().catch(() => undefined);
  }

  /** The 'status' request. */
  private status(): StatusResult {
    const { config, layers, slots, commands, runner, startedAt } = this.parts;
    const heldRuns = runner.heldRuns();
    return {
      version: VERSION,
      protocol: PROTOCOL_VERSION,
      protocols: [...SERVED_PROTOCOL_VERSIONS],
      unsafe: layers.unsafe,
      layers: layers.report,
      slots: { total: slots.total, busy: slots.busy, quarantined: runner.quarantineReport() },
      queue: { depth: slots.queued, max: slots.maxQueued },
      uptimeMs: Date.now() - startedAt,
      pid: process.pid,
      commands: [...commands.keys()],
      ...describeBounds(config.defaultLimits, {
        rlimits: layers.rlimits,
        cgroups: layers.cgroupTree !== undefined,
        cgroupMemoryMax: config.cgroupMemoryMax,
        disk: layers.disk,
      }),
      warm: [...this.parts.warm.values()].map((w) => ({
        command: w.profile.name,
        ready: w.ready,
        warmRuns: w.counters.warm,
        coldRuns: w.counters.cold,
        restarts: w.counters.restarts,
        replaced: w.counters.replaced,
        preload: w.profile.preload,
      })),
      counters: { ...runner.counters },
      held: { ...runner.heldCounters, holding: heldRuns.filter((run) => run.usable).length, runs: heldRuns },
    };
  }

  /**
   * The 'check' request: the same self-check again, through real sandboxes. Concurrent requests
   * share one run; its outcome is what the watchdog's health test looks at.
   */
  private check(): Promise<CheckResult> {
    return (this.checking ??= this.runCheck().finally(() => {
      this.checking = undefined;
    }));
  }

  private async runCheck(): Promise<CheckResult> {
    const { checkCommand, layers, slots, runner, config, log } = this.parts;
    if (this.stopping) throw new RequestError('shutting_down', 'the daemon is stopping');
    if (!checkCommand) {
      return { ok: true, layers: layers.report, durationMs: 0, probes: [{ name: 'self-check', outcome: 'skipped', detail: 'no command of kind "python" is configured' }] };
    }
    // A check that cannot run says so at once, rather than wait in the queue for a slot that
    // never comes back: its probes would read as a broken sandbox, or never finish.
    if (slots.total > 0 && runner.quarantinedSlots >= slots.total) {
      throw new RequestError('overloaded', `no slot can take a run: all ${slots.total} slots are quarantined (processes of their uids survived a kill; see the log)`);
    }
    // Probes that were refused for want of a queue place would read as a broken sandbox.
    if (slots.busy >= slots.total && slots.queued >= slots.maxQueued) throw new RequestError('overloaded', 'the run queue is full; try the check again later');
    const started = performance.now();
    // Its runs queue for slots like any other: bounded, so that a caller (codejail check, serve's
    // /health/) gets an answer. Running out of time says nothing about the sandbox: it is not a
    // failed probe, and the last verdict stands.
    const deadline = new AbortController();
    const timer = setTimeout(
      () => deadline.abort(new RequestError('overloaded', `the self-check did not finish within ${CHECK_TIMEOUT_MS} ms: its runs wait for slots like any other`)),
      CHECK_TIMEOUT_MS,
    );
    let probes: CheckOutcome[];
    try {
      probes = await runSelfCheck({ runner, layers, command: checkCommand, ceilings: config.ceilings, log, signal: deadline.signal });
    } catch (err) {
      if (!(err instanceof SelfCheckError)) throw err;
      probes = err.outcomes;
    } finally {
      clearTimeout(timer);
    }
    if (deadline.signal.aborted) throw deadline.signal.reason;
    this.selfCheckOk = probes.every((p) => p.outcome !== 'failed');
    if (!this.selfCheckOk) log.error('self-check failed while serving: the daemon reports itself unhealthy', {});
    return { ok: this.selfCheckOk, layers: layers.report, probes, durationMs: Math.round(performance.now() - started) };
  }

  /** The 'metrics' request and the HTTP endpoint: the Prometheus text. */
  private renderMetrics(): string {
    const { slots, runner } = this.parts;
    return this.metrics.render({
      slotsTotal: slots.total,
      slotsBusy: slots.busy,
      slotsQuarantined: runner.quarantinedSlots,
      queueDepth: slots.queued,
      queueMax: slots.maxQueued,
      selfCheckOk: this.selfCheckOk,
      setupFailures: runner.counters.setupFailures,
      draining: this.stopping,
      cleanups: runner.cleanupStats,
      idleCollections: this.idleMemory?.collections ?? 0,
      held: { ...runner.heldCounters, holding: runner.heldRuns().filter((run) => run.usable).length },
      warm: [...this.parts.warm.values()].map((w) => ({ command: w.profile.name, ready: w.ready, ...w.counters })),
    });
  }

  close(graceMs?: number): Promise<void> {
    if (this.closing && graceMs === 0) this.hurry.abort();
    return (this.closing ??= this.stop(graceMs ?? this.parts.config.shutdownGraceMs));
  }

  private async stop(graceMs: number): Promise<void> {
    const { slots, layers, log } = this.parts;
    const server = this.server!;
    this.stopping = true;
    this.idleMemory?.stop();
    log.info('stopping', { inflight: server.inflight, busySlots: slots.busy, queued: slots.queued, graceMs });
    // Queued runs are refused now (shutting_down); runs already in a slot may finish.
    slots.close('the daemon is stopping');
    if (this.metricsHttp) await closeHttp(this.metricsHttp);
    await server.close(graceMs, this.hurry.signal);
    await this.parts.runner.drained();
    await this.parts.runner.dropHeldRuns();
    this.parts.runner.retireSlots();
    for (const command of this.parts.warm.values()) command.close();
    await releaseLayers(layers, { addon: native(), log });
    this.parts.claim.release();
    log.info('stopped');
  }

  reload(): ReloadReport {
    const { options, config, log, slots } = this.parts;
    if (!options.configFile && options.config) {
      throw new Error('this daemon was started with an in-memory config: there is no file to reload');
    }
    let next: DaemonConfig;
    try {
      next = withFlags(loadConfig(options.configFile), options);
    } catch (err) {
      this.metrics.recordReload(false);
      throw err;
    }
    const report: ReloadReport = { applied: [], needsRestart: [] };
    const keys = new Set([...Object.keys(config), ...Object.keys(next)]);
    for (const key of keys) {
      const before = (config as Record<string, unknown>)[key];
      const after = (next as Record<string, unknown>)[key];
      if (JSON.stringify(before) === JSON.stringify(after)) continue;
      if (LIVE_KEYS.has(key)) report.applied.push(key);
      else report.needsRestart.push(key);
    }
    // Resolve before assigning anything, so a failure leaves the old config whole.
    // Against the socket group in force: a new socket.group only applies after a restart.
    const nextAllow = resolveAllowList({ ...next, socket: config.socket }, log);
    for (const key of report.applied) (config as Record<string, unknown>)[key] = (next as Record<string, unknown>)[key];
    this.allowList = nextAllow;
    // Also when allow itself did not change: a group may have lost members or been removed.
    const revoked = this.server!.reauthorize();
    if (revoked > 0) log.warn(`${revoked} connection(s) closed: their callers are no longer allowed`, { revoked });
    slots.setMaxQueued(config.queueMax);
    // Fresh templates (they drain the old ones): a SIGHUP also bounds what a template has held.
    for (const command of this.parts.warm.values()) command.replace('reload');
    (log as Partial<{ setLevel(level: LogLevel): void }>).setLevel?.(config.logLevel);
    this.metrics.recordReload(true);
    return report;
  }

  health(): Health {
    const { slots, runner } = this.parts;
    if (!this.selfCheckOk) return { healthy: false, reason: 'the last self-check failed' };
    if (slots.total > 0 && runner.quarantinedSlots >= slots.total) {
      return { healthy: false, reason: `all ${slots.total} slots are quarantined (processes survived a kill)` };
    }
    return { healthy: true };
  }

  describe(): string {
    const { layers, slots, runner } = this.parts;
    return this.stopping
      ? `stopping: ${this.server!.inflight} requests in flight`
      : `serving${layers.unsafe ? ' UNSAFE' : ''}: ${slots.busy}/${slots.total} slots busy, ${slots.queued} queued, ` +
          `${runner.counters.finished} runs done`;
  }
}
