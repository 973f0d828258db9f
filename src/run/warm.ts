// The warm path of each warm command (a kind with a template, src/kinds/): its current template
// (src/run/template.ts), restarted when it dies and replaced when it has served long enough, as
// the runs' fast path.
// A run goes cold, with the same plan, whenever no template can take it.
//
// A template is replaced after `maxForks` runs or `maxAgeMs`, and on SIGHUP, so that what every
// child shares with it (heap layout, address-space layout, hash seed) has a bounded lifetime; the
// old one drains: it takes no new run and exits once its children have. A timer replaces one
// that has grown old while idle; a template that stops answering is killed (src/run/template.ts)
// and restarted here, and a restart that fails is tried again, later each time.
import type { NativePlan } from '../native.js';
import type { CommandProfile } from './commands.js';
import type { Budgets, RunProcess } from './process.js';
import type { HeldChild } from './held.js';
import { Template, type TemplateContext, type WarmTail } from './template.js';

/** After an unexpected exit, restart after 1 s, doubling to this. */
const RESTART_MAX_MS = 60_000;
/**
 * How often the template's age is looked at without a run: an idle template past maxAgeMs is
 * replaced then, not at the next run.
 */
const TEND_MS = 1000;
/** VMEM below this many times a fresh interpreter's address space runs cold (see WarmCommand.start). */
const TIGHT_VMEM_FACTOR = 1.5;

export interface WarmSettings {
  /** Forks after which a template is replaced. */
  maxForks: number;
  /** Milliseconds after which a template is replaced. */
  maxAgeMs: number;
}

/**
 * The warm path of one command: its current template, restarted when it dies and replaced when
 * it has served long enough. `start()` hands back undefined when no template is ready (the run
 * then goes cold).
 */
export class WarmCommand {
  private current?: Template;
  private starting?: Template;
  private restartDelay = 1000;
  private restartTimer?: NodeJS.Timeout;
  private tendTimer?: NodeJS.Timeout;
  private replaceNotBefore = 0;
  private closed = false;
  private behindLoggedAt = -Infinity;
  readonly counters = { warm: 0, cold: 0, restarts: 0, replaced: 0 };

  constructor(
    readonly profile: CommandProfile,
    private readonly settings: () => WarmSettings,
    private readonly ctx: TemplateContext,
  ) {}

  /** The first template; rejects when it cannot start (a preload that does not import). */
  async open(): Promise<void> {
    const template = this.launch();
    await template.ready;
    this.current = template;
    this.tendTimer = setInterval(() => this.tend(), TEND_MS);
    this.tendTimer.unref();
  }

  get ready(): boolean {
    return this.current?.isReady === true;
  }

  /**
   * Starts the run warm, or returns undefined when no template is ready (the caller runs it cold).
   * Rejects with WarmStartError when the run's set-up failed in the child.
   */
  start(plan: NativePlan, tail: WarmTail, stdin: Uint8Array | undefined, budgets: Budgets): Promise<RunProcess> | undefined {
    const template = this.templateFor(plan);
    if (!template) {
      this.counters.cold++;
      return undefined;
    }
    try {
      const started = template.start(plan, tail, stdin, budgets);
      this.counters.warm++;
      return started;
    } catch (err) {
      // Not sent (the template's socket is full, or it just went away): this run goes cold.
      const failure = err as { step?: string; code?: string };
      if (failure.step !== 'send') throw err;
      this.counters.cold++;
      // Too large for one message is the request's size, said by the fallback counter; a full
      // socket is the template falling behind, worth a line (at most one a second).
      if (failure.code !== 'EMSGSIZE' && performance.now() - this.behindLoggedAt > 1000) {
        this.behindLoggedAt = performance.now();
        this.ctx.log.warn('a warm template is behind; running cold', { command: this.profile.name, error: err });
      }
      return undefined;
    }
  }

  /**
   * Starts a held run (src/run/held.ts) with `plan`, or returns undefined when no template can
   * take it now (none ready, VMEM too tight for a warm run, or its socket is full). Rejects with
   * WarmStartError when the child's set-up failed.
   */
  hold(plan: NativePlan): Promise<HeldChild> | undefined {
    const template = this.templateFor(plan);
    if (!template) return undefined;
    try {
      return template.hold(plan);
    } catch (err) {
      if ((err as { step?: string }).step === 'send') return undefined;
      throw err;
    }
  }

  /**
   * Whether a held run of address-space limit `vmemBytes` (0: none) could start now: checked
   * before its directory is made, so a slot does not mount and unmount one for nothing.
   * templateFor() decides again from the plan.
   */
  canHold(vmemBytes: number): boolean {
    const template = this.current;
    if (!template?.isReady) return false;
    return vmemBytes === 0 || vmemBytes >= template.vmStartBytes * TIGHT_VMEM_FACTOR;
  }

  /**
   * The template a run of `plan` forks from, or undefined when it must start cold: none is
   * ready, or its VMEM is so tight that a fresh interpreter could not even start (only a cold
   * run fails the way a cold run does: a warm child is already running and would not notice).
   * Asks for a replacement when the template has served long enough.
   */
  private templateFor(plan: NativePlan): Template | undefined {
    const template = this.current;
    if (!template?.isReady) return undefined;
    const as = plan.rlimits?.as?.[0];
    if (as !== undefined && as < template.vmStartBytes * TIGHT_VMEM_FACTOR) return undefined;
    const { maxForks } = this.settings();
    if (template.forks + 1 >= maxForks) this.replace(`${maxForks} forks`);
    else this.replaceIfOld(template);
    return template;
  }

  /**
   * Starts a new template; once it is ready it takes the runs and the old one drains. After a
   * replacement that did not start, the next one for age or forks waits RESTART_MAX_MS (a reload
   * does not).
   */
  replace(reason: string): void {
    if (this.closed || this.starting) return;
    if (reason !== 'reload' && performance.now() < this.replaceNotBefore) return;
    let next: Template;
    try {
      next = this.launch();
    } catch (err) {
      // Not even spawned (out of fds, processes): the old one keeps serving, and a run is not failed for it.
      this.replaceNotBefore = performance.now() + RESTART_MAX_MS;
      this.ctx.log.error('a replacement warm template could not be started; the old one keeps serving', { command: this.profile.name, error: err });
      return;
    }
    this.starting = next;
    next.ready.then(
      () => {
        if (this.starting !== next) return;
        this.starting = undefined;
        const old = this.current;
        this.current = next;
        this.counters.replaced++;
        this.ctx.log.info('warm template replaced', { command: this.profile.name, reason, forks: old?.forks });
        old?.drain();
      },
      (err) => {
        if (this.starting === next) this.starting = undefined;
        this.replaceNotBefore = performance.now() + RESTART_MAX_MS;
        this.ctx.log.error('a replacement warm template did not start; the old one keeps serving', { command: this.profile.name, error: err });
      },
    );
  }

  /** Kills the templates (the daemon is stopping; its runs are already over). */
  close(): void {
    this.closed = true;
    clearTimeout(this.restartTimer);
    clearInterval(this.tendTimer);
    this.starting?.kill();
    this.current?.kill();
  }

  /** Without a run: an old template is replaced; with none at all, a restart is on its way. */
  private tend(): void {
    if (this.closed) return;
    if (this.current) this.replaceIfOld(this.current);
    else if (!this.restartTimer) this.scheduleRestart();
  }

  private replaceIfOld(template: Template): void {
    const { maxAgeMs } = this.settings();
    if (performance.now() - template.startedAt >= maxAgeMs) this.replace(`${Math.round(maxAgeMs / 1000)} s old`);
  }

  private launch(): Template {
    const template = new Template(this.profile, this.ctx);
    template.whenGone = (reason) => {
      if (this.closed || this.current !== template) return;
      this.current = undefined;
      this.counters.restarts++;
      this.ctx.log.error('warm template gone; runs go cold until it is back', { command: this.profile.name, reason, restartInMs: this.restartDelay });
      this.scheduleRestart();
    };
    return template;
  }

  /** A new template after restartDelay; one that fails to start is tried again, twice as late. */
  private scheduleRestart(): void {
    clearTimeout(this.restartTimer);
    this.restartTimer = setTimeout(() => {
      if (this.closed || this.current) {
        this.restartTimer = undefined;
        return;
      }
      const failed = (err: unknown) => {
        this.restartDelay = Math.min(this.restartDelay * 2, RESTART_MAX_MS);
        this.ctx.log.error('a warm template did not start; trying again', { command: this.profile.name, error: err, restartInMs: this.restartDelay });
        if (!this.closed) this.scheduleRestart();
      };
      let next: Template;
      try {
        next = this.launch();
      } catch (err) {
        // Thrown in a timer, it would end the daemon.
        failed(err);
        return;
      }
      next.ready.then(
        () => {
          this.restartTimer = undefined;
          this.restartDelay = 1000;
          if (!this.closed && !this.current) this.current = next;
          else if (this.current !== next) next.kill();
        },
        failed,
      );
    }, this.restartDelay);
    this.restartTimer.unref();
  }
}

/**
 * The warm path of every warm command, each with its first template ready; rejects (and stops
 * what it started) when one cannot start, so that a daemon told to preload what does not import
 * says so at start. None without the uid layer: a template's child would stay root.
 */
export async function openWarmCommands(
  profiles: Iterable<CommandProfile>,
  settings: () => WarmSettings,
  ctx: TemplateContext & { uidLayer: boolean },
): Promise<Map<string, WarmCommand>> {
  const warm = new Map<string, WarmCommand>();
  if (!ctx.uidLayer) return warm;
  for (const profile of profiles) if (profile.warm) warm.set(profile.name, new WarmCommand(profile, settings, ctx));
  try {
    await Promise.all([...warm.values()].map((command) => command.open()));
  } catch (err) {
    for (const command of warm.values()) command.close();
    throw err;
  }
  return warm;
}
