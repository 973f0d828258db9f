// One warm template (its kind's script, python/warm_template.py): the interpreter process a warm
// command's runs fork from, and its channel. It starts the process (root, in the runs' mount
// namespace and an empty network namespace of its own), sends it each run's prepared plan with
// the run's fds (native/warm_send.cc), and turns the fork into the same RunProcess a cold start
// gives supervise(). When to start, restart and replace templates is src/run/warm.ts.
//
// The template runs no submitted code: its children confine themselves (native/warm_apply.cc,
// the same cj_apply_plan as a cold child) before anything of the run is read.
import { readFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import type { Logger } from '../log.js';
import { RequestError } from '../protocol/errors.js';
import type { native, NativePlan } from '../native.js';
import type { CommandProfile } from './commands.js';
import { installFiles } from './install_files.js';
import { CHANNEL, CHANNEL_LAYOUT, channelKind } from '../kinds/channel.js';
import { CODE_FILE } from './rundir.js';
import { closeQuietly, runProcess, type Budgets, type ProcessExit, type RunProcess } from './process.js';
import { sendTemplateFiles } from './template_boot.js';
import { kindNamed } from '../kinds/index.js';
import { envObject, HeldChild } from './held.js';

type Addon = ReturnType<typeof native>;

/** How long a template may take to import its preloads and say it is ready. */
export const TEMPLATE_START_MS = 30_000;
/**
 * How long a forked run may take to confine itself and report (it takes about a millisecond). A
 * template that lets a run wait this long is stuck (stopped, or wedged): it is killed and
 * restarted, and the run starts cold instead.
 */
export const FORK_REPORT_MS = 3_000;
/**
 * How long a held run (src/run/held.ts) may take to confine itself: its slot waits for it before
 * going back to the pool. Given up, its late child is killed when it reports, as any late one.
 */
export const HOLD_REPORT_MS = 500;
/** A tail (argv and environment) past this runs cold: it must fit the channel's message. */
export const MAX_WARM_TAIL_BYTES = 128 * 1024;
const SIGKILL = 9;
const ESRCH = 3;
/**
 * After the template's exit, how long what it had sent may take to be read before its runs are
 * settled without it (its channel's end normally comes at once, when the last child holding it
 * dies).
 */
const CHANNEL_DRAIN_MS = 500;
/** How often the runs in flight are checked for an exit the template has not reported. */
const REAP_CHECK_MS = 500;
/** An exit the template leaves unreported this long: the template is stuck. */
export const REAP_LATE_MS = 2_000;
/**
 * How long a slot waits for a given-up held child to end before the slot is treated as dirty
 * (quarantined: swept again on a backoff until clean): a run's give-up time and the time a
 * template has to report an exit.
 */
export const LATE_CHILD_WAIT_MS = FORK_REPORT_MS + REAP_LATE_MS;
/**
 * How often a template is asked whether it still answers (PING), when nothing else was heard
 * from it meanwhile, and how long it may take to: a template stopped or wedged while idle is
 * found and replaced without a run having to wait on it first.
 */
export const PROBE_EVERY_MS = 2_000;
export const PROBE_LATE_MS = 3_000;

export interface TemplateContext {
  addon: Addon;
  log: Logger;
  /** The runs' mount namespace (mntns layer), which the template joins; undefined: the host's. */
  mntnsFd?: number;
  /** Give the template an empty network namespace of its own (netns layer). */
  ownNetns: boolean;
  /**
   * The seccomp layer is active: the template filters itself with the warm policy but setns
   * once it is ready, and each child adds only setns (native/seccomp.cc: install_template_seccomp).
   */
  seccomp?: boolean;
}

/** What a warm child runs, beside its plan. */
export interface WarmTail {
  /** 'main': the run directory's CODE_FILE as __main__ (jailCode); 'safe_exec': the harness. */
  mode: 'main' | 'safe_exec';
  argv: string[];
  env: string[];
  result: boolean;
}

/** A started warm run, once its child has confined itself. */
interface PendingRun {
  ends: { stdin: number; stdout: number; stderr: number; result?: number };
  resolveStart(started: { pid: number; pidfd: number }): void;
  rejectStart(err: Error): void;
  started?: { pid: number; pidfd: number };
  settleExit?: (exit: ProcessExit | RequestError) => void;
  /**
   * EXIT read before the start's continuation ran (both in one read of the channel); or the
   * template lost before it could say.
   */
  exitEarly?: ProcessExit | RequestError;
  timer: NodeJS.Timeout;
  /** When its pidfd was first seen readable (it exited) with no EXIT from the template yet. */
  exitSeenAt?: number;
  /** A held child waiting for its go (src/run/held.ts): not a run in flight yet. */
  waitingForGo?: boolean;
  /** Given up before it reported (a tombstone kept for its EXIT): no run of anyone's. */
  givenUp?: boolean;
}

/** A failed warm start: the step the child reports (as the addon's set-up errors carry). */
export class WarmStartError extends Error {
  /**
   * The template failed, not the run's plan ("fork": it went away, or never answered): nothing
   * of the run started, and the same plan may start cold.
   */
  get templateFailed(): boolean {
    return this.step === 'fork' || this.step === 'message';
  }

  constructor(
    message: string,
    readonly step: string,
    readonly errno?: number,
    readonly code?: string,
  ) {
    super(message);
    this.name = 'WarmStartError';
  }
}

/** One template process and its channel. */
export class Template {
  readonly ready: Promise<void>;
  forks = 0;
  readonly startedAt = performance.now();
  /** Bytes of address space the template had mapped beyond a fresh interpreter: added to VMEM. */
  vmAllowanceBytes = 0;
  /** Bytes of address space a fresh interpreter has mapped when it starts a script. */
  vmStartBytes = 0;
  private state: 'starting' | 'ready' | 'draining' | 'gone' = 'starting';
  private readonly runs = new Map<number, PendingRun>();
  /** Held children still waiting for their go (src/run/held.ts). */
  private readonly held = new Set<HeldChild>();
  private nextToken = 1;
  /** Messages read from the template so far: a stuck one reads none. */
  private messages = 0;
  /** The last PING: when it was sent, and how many messages had been read by then. */
  private probe?: { since: number; messages: number; pingedAt?: number };
  private readonly stuckCheck: NodeJS.Timeout;
  private readonly channel: number;
  private readonly watch: number;
  private readonly pid: number;
  private readonly pidfd: number;
  private onGone: (reason: string) => void = () => {};
  /** The template process has been reaped (its pidfd is closed). */
  private reaped = false;
  /** Why it exited, once it has. */
  private exitReason?: string;

  constructor(
    private readonly profile: CommandProfile,
    private readonly ctx: TemplateContext,
  ) {
    const { addon } = ctx;
    const [mine, theirs] = addon.channelPair();
    this.channel = mine;
    let netnsFd: number | undefined;
    let settleReady!: { resolve(): void; reject(err: Error): void };
    this.ready = new Promise<void>((resolve, reject) => (settleReady = { resolve, reject }));
    this.ready.catch(() => {});
    try {
      if (ctx.ownNetns) netnsFd = addon.createNamespace('net');
      const child = addon.spawn(this.spawnPlan(theirs, netnsFd));
      this.pid = child.pid;
      this.pidfd = child.pidfd;
      // Its program, harness and library: the daemon's start-time copies (template_boot.ts).
      sendTemplateFiles(child.stdin, installFiles(), profile.kind);
      logLines(child.stdout, ctx.log, profile.name);
      logLines(child.stderr, ctx.log, profile.name);
      addon.watchExit(child.pidfd, child.pid, (exit) => {
        // Reaped: its pidfd's number may be reused from here on, and must never be signalled.
        this.reaped = true;
        addon.closeFd(child.pidfd);
        this.exitReason = `the template exited (${exit.signal !== null ? `signal ${exit.signal}` : `status ${exit.code}`})`;
        // What it sent before it died is read first (a run's OKAY: that run has started, and must
        // not run again cold): gone() once its channel reaches its end, or CHANNEL_DRAIN_MS later.
        const drained = setTimeout(() => this.gone(this.exitReason!), CHANNEL_DRAIN_MS);
        drained.unref();
      });
    } catch (err) {
      addon.closeFd(mine);
      throw err;
    } finally {
      addon.closeFd(theirs);
      if (netnsFd !== undefined) addon.closeFd(netnsFd);
    }
    const timer = setTimeout(() => {
      settleReady.reject(new Error(`the warm template of "${profile.name}" was not ready within ${TEMPLATE_START_MS / 1000} s`));
      this.kill();
    }, TEMPLATE_START_MS);
    timer.unref();
    this.onGone = (reason) => {
      clearTimeout(timer);
      settleReady.reject(new Error(`the warm template of "${profile.name}" could not start: ${reason}`));
    };
    this.stuckCheck = setInterval(() => {
      this.checkReaping();
      this.checkAnswering();
    }, REAP_CHECK_MS);
    this.stuckCheck.unref();
    this.watch = addon.watchChannel(
      mine,
      (data, fds) => this.onMessage(data, fds, () => {
        clearTimeout(timer);
        this.state = 'ready';
        settleReady.resolve();
      }),
      (error) => this.gone(this.exitReason ?? (error ? `its channel failed: ${error}` : 'its channel closed')),
    );
  }

  get isReady(): boolean {
    // Not once it has exited, while what it sent is still being read.
    return this.state === 'ready' && !this.reaped;
  }

  get inFlight(): number {
    return this.runs.size;
  }

  /** Called once when the template is gone (after every run it held has been settled). */
  set whenGone(callback: (reason: string) => void) {
    const previous = this.onGone;
    this.onGone = (reason) => {
      previous(reason);
      callback(reason);
    };
  }

  /**
   * Sends the run and resolves with its RunProcess once the child has confined itself; rejects
   * with WarmStartError when a step failed (or the template went away first).
   */
  start(plan: NativePlan, tail: WarmTail, stdin: Uint8Array | undefined, budgets: Budgets): Promise<RunProcess> {
    const { addon } = this.ctx;
    const token = this.nextToken++;
    const body = Buffer.from(JSON.stringify({ mode: tail.mode, script: CODE_FILE, argv: tail.argv, env: envObject(tail.env), result: tail.result }));
    // Synchronous: a send that fails (EAGAIN: the template is behind) throws before anything ran.
    const ends = addon.sendWarmRun(this.channel, token, withVmAllowance(plan, this.vmAllowanceBytes), body);
    return this.awaitConfined(token, ends).then(({ started, exited }) => runProcess(addon, { ...started, ...ends }, stdin, budgets, exited));
  }

  /**
   * Starts a run ahead of its request (src/run/held.ts): its child confines itself with `plan`,
   * reports, and waits on its stdin for its go record. Resolves once it is confined; throws and
   * rejects as start() does. A held child still waiting when the template drains is discarded.
   */
  hold(plan: NativePlan): Promise<HeldChild> {
    const { addon } = this.ctx;
    const token = this.nextToken++;
    // All a held child needs before its go: whether its fd 3 is a result channel (kept open).
    const body = Buffer.from(JSON.stringify({ result: plan.resultChannel === true }));
    const ends = addon.sendWarmRun(this.channel, token, withVmAllowance(plan, this.vmAllowanceBytes), body, true);
    return this.awaitConfined(token, ends, true).then(({ started, exited, run }) => {
      run.waitingForGo = true;
      const held: HeldChild = new HeldChild(addon, { ...started, ...ends }, exited, () => this.isReady, () => {
        run.waitingForGo = false;
        this.held.delete(held);
      });
      // Began draining (or went away) while this child confined itself: drain() has already
      // discarded the ones it knew of, and this one would keep the old template alive.
      if (this.state !== 'ready') {
        held.discard();
        throw new WarmStartError('the warm template stopped taking runs while a run was held', 'fork');
      }
      this.held.add(held);
      return held;
    });
  }

  /** Sent runs until their child has confined itself: its pid and pidfd, and its exit to come. */
  private async awaitConfined(
    token: number,
    ends: PendingRun['ends'],
    held = false,
  ): Promise<{ started: { pid: number; pidfd: number }; exited: Promise<ProcessExit>; run: PendingRun }> {
    this.forks++;
    let run!: PendingRun;
    const started = await new Promise<{ pid: number; pidfd: number }>((resolveStart, rejectStart) => {
      const sentAt = this.messages;
      // A held run is given up sooner, and says nothing of the template: its slot waits for it
      // before going back to the pool, and a stuck template is judged by the runs it is sent.
      // Its child may still confine itself and take the slot's uid after the slot was swept: the
      // error carries whether the child ended (its EXIT, or the template's death) within
      // LATE_CHILD_WAIT_MS, which the slot waits for before its sweep. A template that stops
      // answering meanwhile is killed by checkAnswering() (a given-up run does not shield it),
      // and its children die with it.
      const giveUpHeld = () => {
        let settleLate!: () => void;
        const ended = new Promise<void>((resolve) => (settleLate = resolve));
        let waited: NodeJS.Timeout | undefined;
        const lateExit = Promise.race([
          ended.then(() => true),
          new Promise<boolean>((resolve) => (waited = setTimeout(() => resolve(false), LATE_CHILD_WAIT_MS))),
        ]).finally(() => clearTimeout(waited));
        const error = new WarmStartError(`the warm template did not confine a held run within ${HOLD_REPORT_MS} ms`, 'fork');
        this.fail(token, Object.assign(error, { lateExit }), settleLate);
      };
      const giveUp = () => {
        this.fail(token, new WarmStartError(`the warm template did not fork the run within ${FORK_REPORT_MS / 1000} s`, 'fork'));
        // Stuck (stopped, wedged) if it has said nothing since: killed, and restarted. One that
        // did answer meanwhile is only slow (a loaded host); its late child is killed on arrival.
        if (this.messages === sentAt) {
          this.ctx.log.error('a warm template did not fork a run in time and says nothing; killing it (runs go cold until it is back)', {
            command: this.profile.name,
            waitedMs: FORK_REPORT_MS,
          });
          this.kill();
        } else {
          this.ctx.log.warn('a warm template was too slow to fork a run; running it cold', { command: this.profile.name, waitedMs: FORK_REPORT_MS });
        }
      };
      const timer = held ? setTimeout(giveUpHeld, HOLD_REPORT_MS) : setTimeout(giveUp, FORK_REPORT_MS);
      run = { ends, resolveStart, rejectStart, timer };
      this.runs.set(token, run);
    });
    // Its EXIT may have been read in the same wake-up as its OKAY, before this line ran.
    const settled =
      run.exitEarly !== undefined ? Promise.resolve(run.exitEarly) : new Promise<ProcessExit | RequestError>((resolve) => (run.settleExit = resolve));
    // A run whose end the template took with it has no result of its own to give: its caller gets
    // template_lost, not the kill that ended it.
    const exited = settled.then((exit) => {
      if (exit instanceof RequestError) throw exit;
      return exit;
    });
    return { started, exited, run };
  }

  /** Takes no new run; the template exits once its children are gone (held ones are discarded). */
  drain(): void {
    if (this.state === 'gone' || this.state === 'draining') return;
    this.state = 'draining';
    for (const held of [...this.held]) held.discard();
    try {
      this.ctx.addon.channelSend(this.channel, channelKind('drain'));
    } catch {
      this.kill();
    }
  }

  /** SIGKILL: its children die with it (their parent-death signal). */
  kill(): void {
    if (this.reaped) return;
    try {
      this.ctx.addon.pidfdSignal(this.pidfd, SIGKILL);
    } catch {
      // Already gone.
    }
  }

  private onMessage(data: Buffer | null, fds: number[], onReady: () => void): void {
    const { addon, log } = this.ctx;
    this.messages++;
    const keep: number[] = [];
    try {
      const kind = data?.subarray(0, 4).toString('latin1');
      if (data && (kind === CHANNEL.okay.kind || kind === CHANNEL.fail.kind) && data.length === CHANNEL.okay.bytes) {
        // A child's report (native/warm_apply.cc): token, then pid, or step and errno.
        const token = data.readUInt32LE(CHANNEL_LAYOUT.tokenAt);
        const run = this.runs.get(token);
        if (kind === CHANNEL.okay.kind && fds.length === 1 && (!run || run.started)) {
          // Confined, but its start was given up (it came too late): nobody supervises it, and
          // its slot has moved on. It dies now, before its first line runs for long.
          try {
            addon.pidfdSignal(fds[0]!, SIGKILL);
          } catch {
            // Gone already.
          }
          return;
        }
        if (!run) return;
        if (kind === CHANNEL.okay.kind && !run.started && fds.length === 1) {
          clearTimeout(run.timer);
          run.started = { pid: data.readInt32LE(CHANNEL_LAYOUT.reportValueAt), pidfd: fds[0]! };
          keep.push(fds[0]!);
          run.resolveStart(run.started);
        } else if (kind === CHANNEL.fail.kind) {
          const step = addon.stepName(data.readInt32LE(CHANNEL_LAYOUT.reportValueAt));
          const errno = data.readInt32LE(CHANNEL_LAYOUT.reportErrnoAt);
          if (step === 'pdeathsig' && errno === ESRCH) {
            // The child's parent check: the template died while it was setting itself up. That
            // says nothing of the run's plan, and nothing of the run started: it may go cold.
            this.fail(token, new WarmStartError('the warm template went away while the run was being set up', 'fork'));
          } else {
            this.fail(token, new WarmStartError(`sandbox set-up failed at ${step}: ${errnoText(errno)}`, step, errno, errnoName(errno)));
          }
        }
        return;
      }
      if (data && kind === CHANNEL.exit.kind && data.length === CHANNEL.exit.bytes) {
        this.exited(data.readUInt32LE(CHANNEL_LAYOUT.tokenAt), exitOfReport(data));
        return;
      }
      let message: { token?: number; [key: string]: unknown } | undefined;
      try {
        if (data) message = JSON.parse(data.subarray(4).toString('utf8'));
      } catch {
        message = undefined;
      }
      if (!message) {
        log.warn('a warm template sent a message that could not be read', { command: this.profile.name });
      } else if (kind === CHANNEL.ready.kind) {
        const vmStart = Number(message.vmStartKb) || 0;
        const vmReady = Number(message.vmReadyKb) || 0;
        this.vmAllowanceBytes = Math.max(0, vmReady - vmStart) * 1024;
        this.vmStartBytes = vmStart * 1024;
        log.info('warm template ready', { command: this.profile.name, pid: message.pid, vmAllowanceKb: vmReady - vmStart });
        onReady();
      } else if (kind === CHANNEL.warn.kind) {
        log.warn('warm template', { command: this.profile.name, message: message.message });
      }
    } finally {
      for (const fd of fds) if (!keep.includes(fd)) closeQuietly(addon, fd);
    }
  }

  /** The run failed before its code could run: its pipes close, its start rejects. */
  private fail(token: number, err: Error, onLateExit?: () => void): void {
    const run = this.runs.get(token);
    if (!run || run.started) return;
    clearTimeout(run.timer);
    for (const fd of [run.ends.stdin, run.ends.stdout, run.ends.stderr, run.ends.result]) if (fd !== undefined) closeQuietly(this.ctx.addon, fd);
    // Its EXIT still comes (the template reaps it, or gone() settles it); keep nothing for it but
    // a tombstone, which tells `onLateExit`.
    this.runs.set(token, { ...run, started: { pid: 0, pidfd: -1 }, settleExit: () => onLateExit?.(), givenUp: true });
    run.rejectStart(err);
  }

  private exited(token: number, exit: ProcessExit | RequestError): void {
    const run = this.runs.get(token);
    if (!run) return;
    this.runs.delete(token);
    clearTimeout(run.timer);
    if (!run.started) {
      // Died before it could report: set-up did not finish (a kill, a crash in the plan).
      for (const fd of [run.ends.stdin, run.ends.stdout, run.ends.stderr, run.ends.result]) if (fd !== undefined) closeQuietly(this.ctx.addon, fd);
      run.rejectStart(new WarmStartError(`the warm run ended during set-up (${exit instanceof RequestError ? exit.message : describeExit(exit)})`, 'fork'));
      return;
    }
    if (run.settleExit) run.settleExit(exit);
    else run.exitEarly = exit;
  }

  /**
   * A child that has exited is reaped by the template at once, which then says EXIT. One exited
   * for REAP_LATE_MS without it means the template is stuck (stopped, wedged): its runs would
   * wait for it however their REALTIME runs. The run is settled with the status the kernel keeps
   * for the zombie, and the template is killed (and restarted).
   */
  private checkReaping(): void {
    const now = performance.now();
    for (const [, run] of this.runs) {
      if (!run.started || run.started.pidfd < 0 || !this.ctx.addon.pidfdExited(run.started.pidfd)) continue;
      run.exitSeenAt ??= now;
      if (now - run.exitSeenAt < REAP_LATE_MS) continue;
      this.ctx.log.error('a warm template did not reap a run that ended; killing it (runs go cold until it is back)', {
        command: this.profile.name,
        waitedMs: REAP_LATE_MS,
      });
      // Every run that has ended gets its own status now, before the kill makes the template's
      // children the daemon's (whose sweeps reap them); the others were running when it was lost.
      this.settleEnded();
      this.kill();
      return;
    }
  }

  /**
   * A ready template that has said nothing for PROBE_EVERY_MS is sent a PING; an idle one that
   * says nothing for PROBE_LATE_MS after it is stuck: it is killed (and restarted).
   */
  private checkAnswering(): void {
    if (this.state !== 'ready' && this.state !== 'draining') return;
    const now = performance.now();
    if (!this.probe || this.messages !== this.probe.messages) {
      this.probe = { since: now, messages: this.messages };
      return;
    }
    if (this.probe.pingedAt === undefined) {
      if (now - this.probe.since < PROBE_EVERY_MS) return;
      try {
        this.ctx.addon.channelSend(this.channel, channelKind('ping'));
      } catch {
        // A full socket: the template is not reading. The deadline below decides.
      }
      this.probe.pingedAt = now;
      return;
    }
    if (now - this.probe.pingedAt < PROBE_LATE_MS) return;
    // With runs in flight, a template is judged by them (a run not forked in time, an exit left
    // unreported): a slow one is not killed under runs that are fine.
    // Held children waiting for their go are not runs yet, nor are given-up ones waited for only
    // for their EXIT: they would shield a stopped template.
    if ([...this.runs.values()].some((run) => !run.waitingForGo && !run.givenUp)) return;
    this.ctx.log.error('a warm template does not answer; killing it (runs go cold until it is back)', {
      command: this.profile.name,
      waitedMs: Math.round(now - this.probe.pingedAt),
    });
    this.kill();
  }

  /**
   * Settles each started run whose process has ended with the status the kernel keeps for it.
   * One whose status cannot be read is left to gone(): template_lost.
   */
  private settleEnded(): void {
    for (const [token, run] of [...this.runs]) {
      if (!run.started || run.started.pidfd < 0 || !this.ctx.addon.pidfdExited(run.started.pidfd)) continue;
      const exit = zombieExit(run.started.pid, run.started.pidfd);
      if (exit) this.exited(token, exit);
    }
  }

  private gone(reason: string): void {
    if (this.state === 'gone') return;
    this.state = 'gone';
    clearInterval(this.stuckCheck);
    const { addon } = this.ctx;
    addon.unwatchChannel(this.watch);
    closeQuietly(addon, this.channel);
    this.kill();
    // Its held children die with it: their pipes close now, not when their slot is next used.
    for (const held of [...this.held]) held.discard();
    // Its children die with it (parent-death signal). A run that had ended by itself keeps its
    // own status when it can still be read: ended by anything but SIGKILL, it was not the
    // template's death that ended it. Any other run's end is the template's: template_lost.
    for (const token of [...this.runs.keys()]) {
      const run = this.runs.get(token)!;
      if (!run.started) {
        this.fail(token, new WarmStartError(`the warm template went away: ${reason}`, 'fork'));
        this.runs.delete(token);
        continue;
      }
      const own = run.started.pidfd >= 0 && this.ctx.addon.pidfdExited(run.started.pidfd) ? zombieExit(run.started.pid, run.started.pidfd) : undefined;
      this.exited(
        token,
        own && own.signal !== SIGKILL
          ? own
          : new RequestError('template_lost', `the warm template running this run went away (${reason}); the run's result is lost, run it again`),
      );
    }
    this.onGone(reason);
  }

  private spawnPlan(channelFd: number, netnsFd: number | undefined): NativePlan {
    const { profile, ctx } = this;
    const template = kindNamed(profile.kind).template;
    if (!template) throw new Error(`command ${profile.name}: kind ${profile.kind} has no warm template`);
    return {
      file: profile.executable,
      argv: [...template.argv(profile), ...(ctx.seccomp ? ['--seccomp'] : [])],
      // A run's environment, so that the interpreter starts as a run's would (locale, stdio
      // encoding); each child sets its own run's values before its code runs.
      env: templateEnv(profile),
      cwd: '/',
      ...(ctx.mntnsFd !== undefined ? { mntnsFd: ctx.mntnsFd } : {}),
      ...(netnsFd !== undefined ? { netnsFd } : {}),
      channelFd,
      parentDeathSignal: true,
      noNewPrivs: false,
    };
  }
}

/** A template's environment: a run's, with HOME and TMPDIR nowhere (no run is there yet). */
function templateEnv(profile: CommandProfile): string[] {
  const env: Record<string, string> = { PATH: '/usr/bin:/bin', LANG: 'C.UTF-8', ...profile.env, HOME: '/nonexistent', TMPDIR: '/nonexistent' };
  return Object.entries(env).map(([name, value]) => `${name}=${value}`);
}

/**
 * A warm child starts with the template's mappings (a fresh interpreter's, plus the harness and
 * the preloads): VMEM gets that much more room, so that the allocation at which MemoryError comes
 * is where it comes in a cold run.
 */
function withVmAllowance(plan: NativePlan, allowance: number): NativePlan {
  const as = plan.rlimits?.as;
  if (!as || allowance === 0) return plan;
  const raise = (v: number) => (v >= Number.MAX_SAFE_INTEGER ? v : v + allowance);
  return { ...plan, rlimits: { ...plan.rlimits, as: [raise(as[0]), raise(as[1])] } };
}

/**
 * The exit of a zombie the template did not reap, as the kernel keeps it in /proc/<pid>/stat
 * (state, field 3; exit_code, field 52, in wait status form; utime and stime, fields 14 and 15,
 * in clock ticks of 100 Hz). Undefined when there is no zombie to read (reaped meanwhile, by the
 * template or, once it is gone, a sweep): the status is not known, and must not be guessed.
 *
 * A zombie's pid is not reused, but once it is reaped the pid is free, and /proc/<pid> may then be
 * another process (a zombie too, by chance). So the stat counts only if the run's pidfd, read
 * after it, still holds an unreaped process: its fdinfo says `Pid: -1` once the process is reaped,
 * and while it is not, the pid was the run's throughout the read.
 */
function zombieExit(pid: number, pidfd: number): ProcessExit | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (fields[3 - 3] !== 'Z') return undefined;
    if (!pidfdHoldsUnreaped(pidfd, pid)) return undefined;
    const ticksUs = 1_000_000 / 100;
    return waitStatusExit(Number(fields[52 - 3]), { userUs: Number(fields[14 - 3]) * ticksUs, systemUs: Number(fields[15 - 3]) * ticksUs });
  } catch {
    return undefined;
  }
}

/** Whether the pidfd still refers to `pid`, not yet reaped (its fdinfo's Pid line). */
export function pidfdHoldsUnreaped(pidfd: number, pid: number): boolean {
  try {
    const line = /^Pid:\s*(-?\d+)$/m.exec(readFileSync(`/proc/self/fdinfo/${pidfd}`, 'latin1'));
    return line !== null && Number(line[1]) === pid;
  } catch {
    return false;
  }
}

/** A wait status (exited: code in bits 8-15; killed: the signal in bits 0-6) as a ProcessExit. */
function waitStatusExit(status: number, usage: Pick<ProcessExit, 'userUs' | 'systemUs' | 'maxRssKb'>): ProcessExit {
  const signal = status & 0x7f;
  return signal === 0 ? { code: (status >> 8) & 0xff, signal: null, ...usage } : { code: null, signal, ...usage };
}

/** The template's binary EXIT: the wait status and the rusage of the reaped child. */
function exitOfReport(data: Buffer): ProcessExit {
  const int64 = (at: number) => Number(data.readBigInt64LE(at));
  const timevalUs = (at: number) => int64(at) * 1_000_000 + int64(at + 8);
  const rusageAt = CHANNEL_LAYOUT.exitRusageAt;
  const maxRssKb = int64(rusageAt + 32);
  return waitStatusExit(data.readInt32LE(CHANNEL_LAYOUT.exitStatusAt), {
    userUs: timevalUs(rusageAt),
    systemUs: timevalUs(rusageAt + 16),
    ...(maxRssKb > 0 ? { maxRssKb } : {}),
  });
}

function describeExit(exit: ProcessExit): string {
  return exit.signal !== null ? `signal ${exit.signal}` : `status ${exit.code}`;
}

/** The names the kernel's errno values have (os.constants.errno, inverted). */
const ERRNO_NAMES = new Map(Object.entries(os.constants.errno).map(([name, value]) => [value, name]));
function errnoName(errno: number): string {
  return ERRNO_NAMES.get(errno) ?? `errno ${errno}`;
}
function errnoText(errno: number): string {
  const name = ERRNO_NAMES.get(errno);
  return name ? `${name} (${errno})` : `errno ${errno}`;
}

/** The template's own output (it prints only on failure): logged a line at a time, bounded. */
function logLines(fd: number, log: Logger, command: string): void {
  const stream = new net.Socket({ fd, readable: true, writable: false });
  let pending = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    pending = (pending + chunk).slice(-16 * 1024);
    let nl: number;
    while ((nl = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      if (line) log.warn('warm template says', { command, line });
    }
  });
  stream.on('error', () => {});
  stream.on('close', () => {
    if (pending) log.warn('warm template says', { command, line: pending });
  });
}
