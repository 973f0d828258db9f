// What each request does once its frame is decoded and valid (connection.ts): status, metrics,
// check, cancel, jail_code and safe_exec (a jail_code of the daemon's harness: ../safe_exec.ts);
// and the accounting of every run: one 'run ended' line at info and its verdict in the metrics.
import { performance } from 'node:perf_hooks';
import type { ErrorCode, JailCodeResult, Request } from '../../protocol/index.js';
import { RequestError } from '../../protocol/errors.js';
import type { Verdict } from '../metrics.js';
import { safeExecKind, safeExecPayloadBytes, safeExecRun } from '../safe_exec.js';
import type { RunRequest } from '../runner.js';
import type { ServerOptions } from './options.js';
import type { ThrottledLog } from './throttle.js';
import { roundMs } from '../../run/supervise.js';

/** What the handlers need of the connection a request came on (a Connection). */
export interface RequestOrigin {
  /** The connection's number, as the log names it. */
  readonly id: number;
  /** Runs in flight on the connection by request id: 'cancel' aborts one, a close aborts all. */
  readonly runs: Map<number, AbortController>;
  /** The caller (SO_PEERCRED): its uid is whose share of the run queue a run takes. */
  readonly caller: { readonly uid: number };
  /** The caller's uid and pid, for log lines. */
  callerFields(): Record<string, number>;
  replyOk(id: number, result: unknown): void;
  replyError(id: number, code: ErrorCode, message: string): void;
  /** Counts `work` as in flight on the connection until it settles (shutdown waits for it). */
  track(work: Promise<void>): void;
  /**
   * Charges a queued request's bytes to the connection and its uid until the returned function
   * is called; throws RequestError 'overloaded' past a byte cap.
   */
  holdQueued(bytes: number): () => void;
}

/** The daemon's answers to requests; one for the server, shared by its connections. */
export class Requests {
  constructor(
    private readonly options: ServerOptions,
    /** Log lines about refusals, rate-limited. */
    private readonly refusals: ThrottledLog,
  ) {}

  dispatch(request: Request, origin: RequestOrigin): void {
    if (request.op !== 'jail_code' && request.op !== 'safe_exec') {
      this.options.log.debug('request', { op: request.op, id: request.id, connection: origin.id, caller: origin.callerFields() });
    }
    switch (request.op) {
      case 'status':
        origin.replyOk(request.id, this.options.status());
        return;
      case 'metrics':
        origin.replyOk(request.id, { text: this.options.renderMetrics() });
        return;
      case 'check':
        origin.track(
          this.options.check().then(
            (result) => origin.replyOk(request.id, result),
            (err: unknown) => this.replyFailure(origin, request.id, err, { op: 'check' }),
          ),
        );
        return;
      case 'cancel': {
        const controller = origin.runs.get(request.target);
        controller?.abort(new RequestError('cancelled', `cancelled by request ${request.id}`));
        origin.replyOk(request.id, { cancelled: controller !== undefined });
        return;
      }
      case 'jail_code':
      case 'safe_exec':
        this.startRun(request, origin);
        return;
    }
  }

  private startRun(request: RunOp, origin: RequestOrigin): void {
    const { id } = request;
    if (origin.runs.has(id)) {
      origin.replyError(id, 'bad_request', `request id ${id} is already in flight on this connection`);
      return;
    }
    const controller = new AbortController();
    origin.runs.set(id, controller);
    const { log, metrics } = this.options;
    const started = performance.now();
    // Every run ends with exactly one 'run ended' line at info: who asked (caller uid and pid),
    // what (slug, command, limits), how it went (verdict, status or error code) and what it cost.
    const base = {
      id,
      connection: origin.id,
      slug: request.slug,
      caller: origin.callerFields(),
      command: request.command,
      ...(request.op === 'safe_exec' ? { op: request.op } : {}),
    };
    log.debug('run accepted', { ...base, requestedLimits: request.limits });
    // Until its run starts, the request waits in the run queue holding its payload: charged to its
    // connection and uid as their bytes are, or refused past their caps.
    let running: Promise<JailCodeResult>;
    try {
      // Its command checked before anything is held (a safe_exec refused for it leaves nothing
      // held), and its payload charged before the harness's stdin is made (a copy of its code).
      if (request.op === 'safe_exec') safeExecKind(request, this.options.commandKinds);
      const release = origin.holdQueued(payloadBytes(request));
      let run: RunRequest;
      try {
        run = request.op === 'safe_exec' ? safeExecRun(request, this.options.commandKinds) : request;
      } catch (err) {
        release();
        throw err;
      }
      running = this.options.runner
        .run(run, controller.signal, { caller: origin.caller.uid, started: release })
        .finally(release);
    } catch (err) {
      running = Promise.reject(err);
    }
    origin.track(
      running
        .then(
          (result) => {
            const verdict = resultVerdict(result);
            const durationMs = roundMs(performance.now() - started);
            metrics.recordRun(verdict, durationMs / 1000);
            log.info('run ended', {
              ...base,
              runId: result.runId,
              verdict,
              status: result.status,
              limits: result.limits,
              durationMs,
              usage: result.usage,
              truncated: result.truncated,
            });
            origin.replyOk(id, result);
          },
          (err: unknown) => {
            const verdict = errorVerdict(err);
            const durationMs = roundMs(performance.now() - started);
            metrics.recordRun(verdict, durationMs / 1000);
            const fields = { ...base, verdict, requestedLimits: request.limits, durationMs };
            // Refusals (overloaded, unknown command...) come in storms when callers retry: their
            // lines are rate-limited; runs_total counts every one.
            const line = { ...fields, error: (err as RequestError).code, reason: (err as Error).message };
            if (verdict === 'rejected') this.refusals.info('run ended', line);
            else if (err instanceof RequestError) log.info('run ended', line);
            this.replyFailure(origin, id, err, fields);
          },
        )
        .finally(() => origin.runs.delete(id)),
    );
  }

  /** A RequestError is the caller's answer; anything else is a bug, logged, and 'internal' to it. */
  private replyFailure(origin: RequestOrigin, id: number, err: unknown, fields: Record<string, unknown>): void {
    if (err instanceof RequestError) {
      origin.replyError(id, err.code, err.message);
      return;
    }
    this.options.log.error('a request failed unexpectedly', { ...fields, error: err, stack: (err as Error)?.stack });
    origin.replyError(id, 'internal', 'internal error in the daemon (logged)');
  }
}

/** The requests that make a run. */
type RunOp = Extract<Request, { op: 'jail_code' | 'safe_exec' }>;

/**
 * The bytes a run request holds once decoded: its code, stdin, files, extra files and argv (what
 * the decoder keeps of its frame; the rest of a frame is a few bytes per item), or for safe_exec
 * its code, globals and python path, and the harness's stdin made of them.
 */
export function payloadBytes(request: RunOp): number {
  let bytes = 0;
  if (request.op === 'safe_exec') {
    bytes += safeExecPayloadBytes(request);
  } else {
    bytes += (request.code?.byteLength ?? 0) + (request.stdin?.byteLength ?? 0);
    for (const arg of request.argv) bytes += Buffer.byteLength(arg);
  }
  for (const file of request.files) {
    bytes += Buffer.byteLength(file.name);
    if (file.type === 'file') bytes += file.data.byteLength;
    else if (file.type === 'symlink') bytes += Buffer.byteLength(file.target);
  }
  for (const [name, data] of request.extraFiles) bytes += Buffer.byteLength(name) + data.byteLength;
  return bytes;
}

export function resultVerdict(result: JailCodeResult): Verdict {
  if (result.timedOut) return 'timeout';
  if (result.oomKilled) return 'oom';
  if (result.status === 0) return 'ok';
  return result.status < 0 ? 'signal' : 'exit';
}

export function errorVerdict(err: unknown): Verdict {
  if (!(err instanceof RequestError)) return 'error';
  switch (err.code) {
    case 'setup_failed':
      return 'setup_failed';
    case 'cancelled':
    case 'shutting_down':
    case 'forbidden':
      return 'cancelled';
    case 'internal':
    case 'template_lost':
      return 'error';
    default:
      // overloaded, unknown_command, limit_exceeds_ceiling, bad_request: refused before running.
      return 'rejected';
  }
}

