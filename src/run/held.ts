// A held run: the next warm run of an idle slot, started ahead of its request. Its directory is
// made and mounted, the layers' per-run state made (the cgroup leaf), and its child forked from
// the template and confined with the whole plan (native/warm_apply.cc, the same cj_apply_plan):
// it reports OKAY and then waits on its stdin, its own fresh pipe, for a go record
// (cj_warm_await_go). When a request that fits comes, the daemon writes the request's files
// into the directory and the go record (what to run: mode, argv, environment) ahead of the
// run's stdin; the run's clock starts then. A request that does not fit, a replaced template,
// or the daemon stopping discards it: its stdin closes (it exits quietly), it is killed, and the
// slot is swept and released as after any run.
//
// Why it is as safe as a run started on demand (README, "Held runs"):
// - it is made after the previous run of its slot was swept and its directory removed, exactly
//   as a run started on demand is, only earlier;
// - until its go it runs only the template's code, and its plan is the one a run of those
//   limits gets: nothing of the request exists yet, and the go record can say only what to run
//   (the plan, limits included, is fixed when it is confined);
// - its pipes are its own, made for it, and the go record is the first thing on its stdin.
import { writeSync } from 'node:fs';
import { LIMITS, LIMIT_NAMES, type Limits } from '../protocol/limits.js';
import { RequestError } from '../protocol/errors.js';
import type { native } from '../native.js';
import { GO_RECORD } from '../kinds/channel.js';
import { CODE_FILE } from './rundir.js';
import { closeQuietly, runProcess, type Budgets, type ProcessExit, type RunProcess, type StartedChild } from './process.js';

type Addon = ReturnType<typeof native>;

/**
 * A go record this long or shorter is written on its own, at once: an empty pipe always has room
 * for PIPE_BUF bytes, so the write cannot block. A longer one goes ahead of the run's stdin.
 */
const GO_WRITE_AT_ONCE = 4096;
const SIGKILL = 9;

/** What a held child runs once it goes (a warm run's tail without `result`, which its plan fixed). */
export interface GoTail {
  mode: 'main' | 'safe_exec';
  argv: string[];
  /** "NAME=value" entries. */
  env: string[];
}

/** The go record of `tail` (GO_RECORD: kind, the JSON's length, the JSON). */
export function goRecord(tail: GoTail): Buffer {
  const body = Buffer.from(JSON.stringify({ mode: tail.mode, script: CODE_FILE, argv: tail.argv, env: envObject(tail.env) }));
  const record = Buffer.alloc(GO_RECORD.headBytes + body.length);
  record.write(GO_RECORD.kind, 0, 'latin1');
  record.writeUInt32LE(body.length, GO_RECORD.tailLengthAt);
  body.copy(record, GO_RECORD.headBytes);
  return record;
}

export function envObject(env: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const entry of env) {
    const eq = entry.indexOf('=');
    if (eq > 0) out[entry.slice(0, eq)] = entry.slice(eq + 1);
  }
  return out;
}

/**
 * A template's child confined and waiting for its go (src/run/template.ts: Template.hold). Owns
 * its pipe ends and pidfd until go() hands them to the run's RunProcess, or discard() closes them.
 */
export class HeldChild {
  private state: 'waiting' | 'running' | 'discarded' | 'ended' = 'waiting';
  /** Settles once the template has reaped it (or is gone); never rejects. */
  readonly ended: Promise<void>;

  constructor(
    private readonly addon: Addon,
    private readonly child: StartedChild,
    private readonly exited: Promise<ProcessExit>,
    /** Whether its template still takes runs (not draining, not gone). */
    private readonly templateReady: () => boolean,
    /** Called once, when it stops waiting (it went, or was discarded). */
    private readonly onSettled: () => void,
  ) {
    this.ended = exited.then(
      () => {},
      () => {},
    );
    // Died while it waited (with its template: its parent-death signal): it is gone, its pid free.
    void this.ended.then(() => {
      if (this.state === 'waiting') this.state = 'ended';
    });
  }

  get pid(): number {
    return this.child.pid;
  }

  /** Still waiting, alive, and its template still takes runs. */
  get usable(): boolean {
    return this.state === 'waiting' && this.templateReady() && !this.addon.pidfdExited(this.child.pidfd);
  }

  /**
   * The go: the record on its stdin, then the run's own stdin; hands its ends over as the run's
   * RunProcess. Throws RequestError template_lost when it died since `usable` said it waits
   * (its template was killed just then): the run is lost as one in flight is.
   */
  go(tail: GoTail, stdin: Uint8Array | undefined, budgets: Budgets): RunProcess {
    // The caller checked `usable` just before; this is the last line of defence, not a path.
    if (this.state !== 'waiting') throw new RequestError('template_lost', `the held warm run was ${this.state} before it could start; run it again`);
    this.state = 'running';
    this.onSettled();
    const record = goRecord(tail);
    let input = stdin;
    try {
      if (record.length <= GO_WRITE_AT_ONCE) writeSync(this.child.stdin, record);
      else input = stdin && stdin.length ? Buffer.concat([record, stdin]) : record;
    } catch (err) {
      this.closeEnds();
      void this.ended.then(() => closeQuietly(this.addon, this.child.pidfd));
      throw new RequestError('template_lost', `the held warm run went away as it started (${(err as Error).message}); run it again`);
    }
    return runProcess(this.addon, this.child, input, budgets, this.exited);
  }

  /**
   * Ends it: its stdin closes (it exits quietly) and it is killed through its pidfd; its pidfd is
   * closed once the template has reaped it. Idempotent; nothing once it went.
   *
   * Through the pidfd only, never its process group by number: a held child that died with its
   * template has been reaped, its pid is free, and a group of that number may be anyone's. It
   * ran no code of a run, so it has no group to kill; the slot's sweep kills its uid anyway.
   */
  discard(): void {
    if (this.state !== 'waiting' && this.state !== 'ended') return;
    const alive = this.state === 'waiting';
    this.state = 'discarded';
    this.onSettled();
    if (alive) {
      try {
        this.addon.pidfdSignal(this.child.pidfd, SIGKILL);
      } catch {
        // Already gone.
      }
    }
    this.closeEnds();
    // Not before: the template's bookkeeping reads the pidfd until its EXIT (a closed number
    // could be another fd's by then).
    void this.ended.then(() => closeQuietly(this.addon, this.child.pidfd));
  }

  private closeEnds(): void {
    const { stdin, stdout, stderr, result } = this.child;
    for (const fd of [stdin, stdout, stderr, result]) if (fd !== undefined) closeQuietly(this.addon, fd);
  }
}

/**
 * What a slot holds for its next run: made for one caller, command, the limits its confinement
 * fixes, and result channel. The caller is in it so that a run held for one caller is never
 * taken by another: whether a request found its run held (its latency, `stages.held`) says
 * nothing of what other callers ran.
 */
export interface HeldRunKey {
  /** The uid the run is for (undefined: the daemon's own, the self-check). */
  caller: number | undefined;
  command: string;
  limits: Limits;
  resultChannel: boolean;
}

/**
 * The key of a held run. Only the limits its confinement fixes when it confines itself are in
 * it; the ones the daemon enforces while it supervises the run (REALTIME, OUTPUT) are the
 * request's own, applied at its go.
 */
export function heldRunKey(key: HeldRunKey): string {
  const fixed = LIMIT_NAMES.filter((name) => LIMITS[name].enforcedBy !== 'supervise').map((name) => key.limits[name]);
  return JSON.stringify([key.caller ?? null, key.command, fixed, key.resultChannel]);
}
