// codejail-service's HTTP API on top of the daemon's client: POST /api/v0/code-exec (what
// edx-platform's remote exec posts), GET /health/, and this service's own GET /metrics. It is a
// client of the daemon's socket and nothing more: the daemon confines the runs; this process
// bounds what a network caller may make it hold (body, fields, files, requests at once, time).
import http from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { CodejailError, SafeExecError } from '../client/index.js';
import type { CheckResult, SafeExecOptions, StatusResult } from '../client/index.js';
import { FormError, readForm, type FormLimits } from './form.js';
import { HttpMetrics } from './metrics.js';
import { BadRequest, checkRequest, parsePayload, PYTHON_LIB_ZIP } from './payload.js';
import { stringifyPythonJson } from './python_json.js';

/** What the service needs of the daemon's client (Client has all of it). */
export interface DaemonClient {
  safeExec(code: string, globals: Record<string, unknown>, options: SafeExecOptions): Promise<Record<string, unknown>>;
  check(): Promise<CheckResult>;
  status(): Promise<StatusResult>;
}

/** The daemon's log lines: {time, level, msg, ...fields} (src/daemon/log.ts makes one). */
export interface HttpLogger {
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

export interface HttpServiceLimits extends FormLimits {
  /** code-exec requests handled at once (reading, queued in the daemon, running); more get 503. */
  maxInFlight: number;
  /**
   * Whether maxInFlight follows the daemon's slots plus its queue, read again with each
   * self-check (a daemon reloaded with more slots is used without restarting this service).
   */
  maxInFlightFromDaemon?: boolean;
  /** Time to receive a request's headers (Node's headersTimeout). */
  headersTimeoutMs: number;
  /** Time to receive a whole request, body included (Node's requestTimeout). */
  requestTimeoutMs: number;
  /** How long a self-check result is reused by /health/ and code-exec. */
  selfCheckTtlMs: number;
}

export const DEFAULT_HTTP_LIMITS: Readonly<HttpServiceLimits> = Object.freeze({
  // edx-platform sends one course library zip (a few MB at most) and a payload; both together
  // must fit one of the daemon's frames (64 MiB) with room to spare.
  maxBodyBytes: 32 * 1024 * 1024,
  maxFieldBytes: 8 * 1024 * 1024,
  maxFileBytes: 24 * 1024 * 1024,
  maxParts: 16,
  maxInFlight: 32,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  selfCheckTtlMs: 60_000,
});

/** Seconds a caller refused for want of room is told to wait. */
const RETRY_AFTER_SECONDS = 1;

const CODE_EXEC_PATH = '/api/v0/code-exec';
const HEALTH_PATH = '/health/';
const METRICS_PATH = '/metrics';

/** The answer to a request, before it is written. */
interface Answer {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
  /** codejail-service's codejail.exec.status for a code-exec request. */
  outcome?: string;
  /** The body will not be read: the connection closes after the answer. */
  close?: boolean;
}

function errorAnswer(status: number, error: string, outcome?: string, extra: Partial<Answer> = {}): Answer {
  return { status, body: { error }, outcome, ...extra };
}

/** Client error codes that mean the daemon cannot serve now (500) rather than a bad request. */
const CALLER_ERRORS = new Set(['bad_request', 'limit_exceeds_ceiling']);

export class HttpService {
  readonly metrics = new HttpMetrics();
  private readonly server: http.Server;
  private inFlight = 0;
  private maxInFlight: number;
  /** The last self-check: passed, and whether the daemon could be reached at all. */
  private lastCheck: { ok: boolean; at: number; unreachable: boolean } | undefined;
  private checking: Promise<boolean> | undefined;

  constructor(
    private readonly client: DaemonClient,
    private readonly logger: HttpLogger,
    private readonly limits: HttpServiceLimits = DEFAULT_HTTP_LIMITS,
  ) {
    this.maxInFlight = limits.maxInFlight;
    this.metrics.maxInFlight = limits.maxInFlight;
    this.server = http.createServer(
      {
        headersTimeout: limits.headersTimeoutMs,
        requestTimeout: limits.requestTimeoutMs,
        // How often those two are enforced (Node's default, 30 s, would let a slow sender hold a
        // connection for that long past its timeout).
        connectionsCheckingInterval: Math.max(100, Math.min(1000, limits.headersTimeoutMs / 2)),
        // Headers are a few hundred bytes from edx-platform; Node's default (16 KiB) bounds them.
        maxHeaderSize: 16 * 1024,
      },
      (req, res) => void this.handle(req, res),
    );
    // A keep-alive connection left idle is closed, so idle sockets do not pile up.
    this.server.keepAliveTimeout = 5_000;
  }

  /** Listens on host:port (port 0: any free port) and resolves with the address bound. */
  listen(port: number, host: string): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        resolve(this.server.address() as AddressInfo);
      });
    });
  }

  /**
   * Stops accepting and closes idle connections; requests in flight get `graceMs` to finish (a
   * run is bounded by the daemon's limits), then every connection left is closed, so that a
   * caller holding one open (a slow upload) cannot keep the service from stopping.
   */
  close(graceMs = 10_000): Promise<void> {
    return new Promise((resolve) => {
      const force = setTimeout(() => this.server.closeAllConnections(), graceMs);
      this.server.close(() => {
        clearTimeout(force);
        resolve();
      });
      this.server.closeIdleConnections();
    });
  }

  /**
   * Whether the daemon's self-check passes: its last result if younger than selfCheckTtlMs, else
   * a new check (one at a time, shared by everyone asking). An unreachable daemon fails it.
   */
  selfCheck(): Promise<boolean> {
    if (this.lastCheck && Date.now() - this.lastCheck.at < this.limits.selfCheckTtlMs) return Promise.resolve(this.lastCheck.ok);
    let unreachable = false;
    this.checking ??= this.client
      .check()
      .then(
        (result) => {
          if (!result.ok) {
            const failed = result.probes.filter((probe) => probe.outcome === 'failed').map((probe) => probe.name);
            this.logger.error('daemon self-check failed', { failed });
          }
          if (this.limits.maxInFlightFromDaemon) void this.followDaemonCapacity();
          return result.ok;
        },
        (err: Error) => {
          this.logger.error('daemon self-check could not run', { err: err.message });
          unreachable = true;
          return false;
        },
      )
      .then((ok) => {
        this.lastCheck = { ok, at: Date.now(), unreachable };
        this.checking = undefined;
        return ok;
      });
    return this.checking;
  }

  private async followDaemonCapacity(): Promise<void> {
    try {
      const status = await this.client.status();
      this.maxInFlight = Math.max(1, status.slots.total + status.queue.max);
      this.metrics.maxInFlight = this.maxInFlight;
    } catch {
      // Kept as it was: the next self-check tries again.
    }
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = process.hrtime.bigint();
    const url = (req.url ?? '/').split('?')[0]!;
    let route = 'other';
    let answer: Answer;
    try {
      if (url === CODE_EXEC_PATH) {
        route = 'code_exec';
        answer = req.method === 'POST' ? await this.codeExec(req) : errorAnswer(405, `Method ${req.method} not allowed`, undefined, { headers: { allow: 'POST' } });
      } else if (url === HEALTH_PATH) {
        route = 'health';
        answer =
          req.method === 'GET' || req.method === 'HEAD'
            ? (await this.selfCheck())
              ? { status: 200, body: { status: 'OK' } }
              : { status: 503, body: { status: 'UNAVAILABLE' } }
            : errorAnswer(405, `Method ${req.method} not allowed`, undefined, { headers: { allow: 'GET, HEAD' } });
      } else if (url === METRICS_PATH && req.method === 'GET') {
        route = 'metrics';
        answer = { status: 200, body: this.metrics.render(), headers: { 'content-type': 'text/plain; version=0.0.4' } };
      } else {
        answer = errorAnswer(404, 'Not found');
      }
    } catch (err) {
      this.logger.error('http request failed', { err: (err as Error).stack ?? String(err) });
      answer = errorAnswer(500, "Couldn't execute sandboxed code: See logs.", 'error.internal');
    }
    this.write(res, answer);
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    this.metrics.request(route, answer.status);
    if (answer.outcome) this.metrics.outcome(answer.outcome);
    if (route === 'code_exec') this.metrics.latency(seconds);
    this.logger.info('http request', {
      method: req.method,
      path: url.slice(0, 200),
      status: answer.status,
      ms: Math.round(seconds * 1000),
      remote: req.socket.remoteAddress,
      bytesIn: Number(req.headers['content-length']) || undefined,
      ...(answer.outcome ? { outcome: answer.outcome } : {}),
    });
  }

  private write(res: ServerResponse, answer: Answer): void {
    const text = typeof answer.body === 'string' ? answer.body : stringifyPythonJson(answer.body);
    const headers: Record<string, string | number> = {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(text),
      ...answer.headers,
    };
    if (answer.close) headers.connection = 'close';
    res.writeHead(answer.status, headers);
    res.end(res.req.method === 'HEAD' ? undefined : text);
  }

  private async codeExec(req: IncomingMessage): Promise<Answer> {
    // Refused before the body is read: a full service holds no more uploads.
    if (this.inFlight >= this.maxInFlight) {
      return errorAnswer(503, 'Codejail service is at capacity; retry later', 'unavailable.capacity', {
        headers: { 'retry-after': String(RETRY_AFTER_SECONDS) },
      });
    }
    this.inFlight++;
    this.metrics.inFlight = this.inFlight;
    try {
      return await this.codeExecAdmitted(req);
    } finally {
      this.inFlight--;
      this.metrics.inFlight = this.inFlight;
    }
  }

  private async codeExecAdmitted(req: IncomingMessage): Promise<Answer> {
    // The last result, not a fresh one: a check runs sandboxes and must not delay a run. One
    // that is stale is renewed in the background; only the very first request waits for it.
    const known = this.lastCheck;
    const healthy = known ? known.ok : await this.selfCheck();
    if (known && Date.now() - known.at >= this.limits.selfCheckTtlMs) void this.selfCheck();
    if (!healthy) {
      // A daemon that cannot be reached (stopped, restarting) is a passing state a balancer should
      // route around and a client may retry; one whose self-check fails is misconfigured.
      if (this.lastCheck?.unreachable) {
        return errorAnswer(503, 'Codejail service is unavailable: its daemon cannot be reached; retry later', 'unavailable.daemon', {
          headers: { 'retry-after': String(RETRY_AFTER_SECONDS) },
        });
      }
      return errorAnswer(500, 'Codejail service is not correctly configured', 'disabled.safety_checks_failed');
    }
    let form;
    try {
      form = await readForm(req, this.limits);
    } catch (err) {
      if (err instanceof FormError) return errorAnswer(err.status, err.message, 'invalid.body');
      throw err;
    }
    const payloadText = form.fields.get('payload');
    if (payloadText === undefined) return errorAnswer(400, "Missing 'payload' parameter in POST body", 'invalid.payload.missing');
    let payload;
    try {
      payload = parsePayload(payloadText);
      checkRequest(payload, form.files.keys());
    } catch (err) {
      if (err instanceof BadRequest) return errorAnswer(400, err.message, 'invalid.payload');
      throw err;
    }

    const libraryZip = form.files.get(PYTHON_LIB_ZIP);
    const options: SafeExecOptions = {
      extraFiles: libraryZip ? [[PYTHON_LIB_ZIP, libraryZip]] : [],
      // Only with the upload: a python_path entry without its file would otherwise be read from
      // this process's working directory (the original copies python_path entries from disk).
      pythonPath: libraryZip && payload.pythonPath.includes(PYTHON_LIB_ZIP) ? [PYTHON_LIB_ZIP] : [],
      limitOverridesContext: payload.limitOverridesContext ?? undefined,
      slug: payload.slug ?? undefined,
      // 2.0 stays a float both ways, as codejail-service's JSON keeps it.
      wholeFloats: 'python',
    };
    try {
      const globalsOut = await this.client.safeExec(payload.code, payload.globalsDict, options);
      return { status: 200, body: { globals_dict: globalsOut }, outcome: 'executed.success' };
    } catch (err) {
      if (err instanceof SafeExecError) {
        // safeExec leaves the globals it was given as they were when the code fails.
        return { status: 200, body: { globals_dict: payload.globalsDict, emsg: err.message }, outcome: 'executed.error' };
      }
      if (err instanceof CodejailError) {
        if (err.code === 'overloaded') {
          return errorAnswer(503, 'Codejail service is at capacity; retry later', 'unavailable.overloaded', {
            headers: { 'retry-after': String(RETRY_AFTER_SECONDS) },
          });
        }
        if (CALLER_ERRORS.has(err.code)) return errorAnswer(400, err.message, 'invalid.request');
        this.logger.error('codejail daemon failed the request', { code: err.code, err: err.message });
        // The next request checks the daemon again before running anything.
        this.lastCheck = undefined;
        if (err.code === 'template_lost') {
          return errorAnswer(503, 'Codejail service lost the run in flight; retry', 'unavailable.template_lost', {
            headers: { 'retry-after': String(RETRY_AFTER_SECONDS) },
          });
        }
        if (err.code === 'unavailable' || err.code === 'connection_lost' || err.code === 'shutting_down') {
          return errorAnswer(503, 'Codejail service is unavailable: its daemon went away; retry later', `unavailable.${err.code}`, {
            headers: { 'retry-after': String(RETRY_AFTER_SECONDS) },
          });
        }
        // The details (socket path, daemon's words) go to the log, not to the network caller.
        return errorAnswer(500, 'Codejail service is unavailable: see its logs', `error.${err.code}`);
      }
      throw err;
    }
  }
}
