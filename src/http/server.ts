// codejail-service's HTTP API on top of the daemon's client: POST /api/v0/code-exec (what
// edx-platform's remote exec posts), GET /health/, and this service's own GET /metrics. It is a
// client of the daemon's socket and nothing more: the daemon confines the runs; this process
// bounds what a network caller may make it hold (body, fields, files, requests at once, time).
import http from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { CodejailError, SafeExecError } from '../client/index.js';
import type { CheckResult, SafeExecOptions, StatusResult } from '../client/index.js';
import { discardRest, FormError, readForm, type FormLimits } from './form.js';
import { IdleCollector } from '../run/idle_memory.js';
import { HttpMetrics } from './metrics.js';
import { BadRequest, checkRequest, parsePayload, PYTHON_LIB_ZIP, type CodeExecPayload } from './payload.js';
import { countJsonValues, holdsLoneSurrogate, stringifyPythonJson, UnencodableString } from './python_json.js';

/** What the service needs of the daemon's client (Client has all of it). */
export interface DaemonClient {
  safeExec(code: string, globals: Record<string, unknown>, options: SafeExecOptions): Promise<Record<string, unknown>>;
  check(): Promise<CheckResult>;
  status(): Promise<StatusResult>;
}

/** The daemon's log lines: {time, level, msg, ...fields} (src/log.ts makes one). */
export interface HttpLogger {
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

export interface HttpServiceLimits extends FormLimits {
  /**
   * code-exec requests whose body has arrived, handled at once (queued in the daemon, running);
   * more get 503. A request still sending its body takes no place here.
   */
  maxInFlight: number;
  /** code-exec requests still sending their body, from everyone; more get 503 at once. */
  maxBodiesReading: number;
  /** code-exec requests still sending their body, from one client address; more get 429 at once. */
  maxBodiesReadingPerAddress: number;
  /**
   * Bytes that requests in this service may hold at once: each body's bytes as they arrive, and
   * for its payload once read, what parsing and sending it may cost (payloadCost). A request
   * that does not fit gets 503 (Retry-After).
   */
  maxBytesInFlight: number;
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
  /**
   * How long /health/ (and a code-exec that finds no self-check result yet) waits for the
   * daemon's check before answering 503: a probe must get an answer, whatever the daemon does.
   */
  healthTimeoutMs: number;
  /**
   * How long a stop drains at most before the listening socket closes: /health/ answers 503 so
   * that a balancer takes this front end out, and every request that still comes is served
   * (drain()). Set it to at least the time the balancer takes to mark a server DOWN.
   */
  drainMs: number;
  /**
   * The drain ends sooner once no request but health checks has arrived for this long: the
   * balancer has stopped sending.
   */
  drainQuietMs: number;
}

export const DEFAULT_HTTP_LIMITS: Readonly<HttpServiceLimits> = Object.freeze({
  // edx-platform sends one course library zip (a few MB at most) and a payload; both together
  // must fit one of the daemon's frames (64 MiB) with room to spare.
  maxBodyBytes: 32 * 1024 * 1024,
  maxFieldBytes: 8 * 1024 * 1024,
  maxFileBytes: 24 * 1024 * 1024,
  maxParts: 16,
  maxInFlight: 32,
  maxBodiesReading: 128,
  maxBodiesReadingPerAddress: 32,
  maxBytesInFlight: 256 * 1024 * 1024,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  selfCheckTtlMs: 60_000,
  healthTimeoutMs: 5_000,
  drainMs: 5_000,
  drainQuietMs: 1_000,
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

/**
 * What a payload of this text may cost this process once parsed and sent to the daemon: the
 * parsed strings, the tagged copy safeExec sends and its frame (4 bytes a character), and 96
 * bytes for each value (an empty {}, 3 characters of text, becomes an object of about 80).
 */
function payloadCost(text: string): number {
  return 4 * text.length + 96 * countJsonValues(text);
}

/**
 * Lets Node's close of a `Connection: close` answer end the connection without a reset. Node
 * destroys the socket once the answer is written; with body bytes of the caller still unread,
 * the kernel then answers with a reset, and a caller still sending (most clients send the whole
 * body before they read) sees a broken pipe instead of the answer. Here the write side is ended
 * (FIN) and the socket is destroyed once the body has been read to its end; discardRest bounds
 * what is read (twice maxBodyBytes) and requestTimeoutMs how long.
 */
function closeAfterBody(req: IncomingMessage, socket: Socket): void {
  if (req.readableEnded) return;
  socket.destroySoon = function (this: Socket) {
    this.end();
    if (req.readableEnded) this.destroy();
    else req.once('end', () => this.destroy()).once('close', () => this.destroy());
  };
}

/** Client error codes that mean the daemon cannot serve now (500) rather than a bad request. */
const CALLER_ERRORS = new Set(['bad_request', 'limit_exceeds_ceiling']);

export class HttpService {
  readonly metrics = new HttpMetrics();
  private readonly server: http.Server;
  private inFlight = 0;
  private maxInFlight: number;
  /** Requests still sending their body: in all, and by client address. */
  private bodiesReading = 0;
  private readonly bodiesReadingByAddress = new Map<string, number>();
  private bytesInFlight = 0;
  /**
   * A full collection once idle after holding 32 MiB or more, or with 8 MiB more resident than
   * its idle level (at most one per 5 s). 8 MiB, not more: serve idles near 90 MB, and growth it
   * never collects is what an operator sees as a leak (the soak bounds it at 20%).
   */
  private readonly idleCollector = new IdleCollector({
    thresholdBytes: 32 * 1024 * 1024,
    growthBytes: 8 * 1024 * 1024,
    idleMs: 1000,
    minGapMs: 5000,
    maxGapMs: 300_000,
    isIdle: () => this.bytesInFlight === 0,
  });
  /** Requests that asked for `100 Continue` before sending their body (it is sent when read). */
  private readonly expectingContinue = new WeakSet<IncomingMessage>();
  /** Set by drain(): /health/ fails and every answer closes its connection. */
  private draining = false;
  /** performance.now() when the last request other than a health check arrived. */
  private lastRequestAt = -Infinity;
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
    // A body declared too large, or one that finds no room, is refused before the caller sends
    // it: `100 Continue` goes only when the body is about to be read.
    this.server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
      this.expectingContinue.add(req);
      void this.handle(req, res);
    });
    // A keep-alive connection left idle is closed, so idle sockets do not pile up.
    this.server.keepAliveTimeout = 5_000;
  }

  /** Listens on host:port (port 0: any free port) and resolves with the address bound. */
  listen(port: number, host: string): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        // Errors of the listening socket (an accept() failing for want of fds): logged, not fatal.
        this.server.on('error', (err) => this.logger.error('http server error', { err: err.message }));
        resolve(this.server.address() as AddressInfo);
      });
    });
  }

  /**
   * The first step of a stop, before close(): /health/ answers 503 and every answer carries
   * `Connection: close`, while requests are still accepted and served; resolves once none but
   * health checks has arrived for drainQuietMs (a balancer checking /health/ has taken this
   * front end out), or after drainMs.
   *
   * Why the listening socket stays open meanwhile: closing it resets every connection waiting in
   * its accept queue, and a balancer has already sent its request on each of them. HAProxy does
   * not always retry a request whose server connection was reset (not one it began forwarding
   * before all of it had come, and a retry may land here again while this front end is still
   * UP), and then closes its own client's connection without an answer: the failover test in
   * test/multihost lost 1-2 of 300 requests that way when close() came first.
   */
  async drain(): Promise<void> {
    this.draining = true;
    const started = performance.now();
    for (;;) {
      const now = performance.now();
      const quietLeft = this.limits.drainQuietMs - (now - this.lastRequestAt);
      const drainLeft = this.limits.drainMs - (now - started);
      if (quietLeft <= 0 || drainLeft <= 0) return;
      await new Promise((resolve) => setTimeout(resolve, Math.min(quietLeft, drainLeft)));
    }
  }

  /**
   * Stops accepting and closes idle connections; requests in flight get `graceMs` to finish (a
   * run is bounded by the daemon's limits), then every connection left is closed, so that a
   * caller holding one open (a slow upload) cannot keep the service from stopping. Behind a
   * balancer, drain() first.
   */
  close(graceMs = 10_000): Promise<void> {
    this.idleCollector.stop();
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

  /** selfCheck(), or false when it has not answered within `ms` (it goes on, for the next asker). */
  private async selfCheckWithin(ms: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => {
        this.logger.warn('the daemon self-check did not answer in time', { healthTimeoutMs: ms });
        resolve(false);
      }, ms);
    });
    try {
      return await Promise.race([this.selfCheck(), late]);
    } finally {
      clearTimeout(timer);
    }
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
    // A caller that resets the connection errors both; the request's own reader handles it.
    res.on('error', () => {});
    req.on('error', () => {});
    const url = (req.url ?? '/').split('?')[0]!;
    if (url !== HEALTH_PATH) this.lastRequestAt = performance.now();
    let route = 'other';
    let answer: Answer;
    try {
      if (url === CODE_EXEC_PATH) {
        route = 'code_exec';
        answer = req.method === 'POST' ? await this.codeExec(req, res) : errorAnswer(405, `Method ${req.method} not allowed`, undefined, { headers: { allow: 'POST' } });
      } else if (url === HEALTH_PATH) {
        route = 'health';
        answer =
          req.method === 'GET' || req.method === 'HEAD'
            ? !this.draining && (await this.selfCheckWithin(this.limits.healthTimeoutMs))
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
    answer = this.write(req, res, answer);
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

  /** Writes the answer; returns what was written (a result that cannot be rendered is a 500). */
  private write(req: IncomingMessage, res: ServerResponse, answer: Answer): Answer {
    let text: string;
    try {
      text = typeof answer.body === 'string' ? answer.body : stringifyPythonJson(answer.body);
    } catch (err) {
      if (!(err instanceof UnencodableString)) throw err;
      // codejail-service's renderer fails the same way (its UTF-8 encode), and Django answers 500.
      answer = errorAnswer(500, `Couldn't render the result: ${err.message}`, 'error.unencodable');
      text = stringifyPythonJson(answer.body);
    }
    // A body not read to its end (a refusal before or while reading it) is not left in the
    // connection for the next request: the connection closes once the body is dropped. While
    // draining, a caller is told not to send its next request on this connection.
    const close = answer.close || !req.complete || this.draining;
    const headers: Record<string, string | number> = {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(text),
      ...answer.headers,
    };
    if (close) {
      headers.connection = 'close';
      if (!req.complete) {
        if (req.readableFlowing !== true) discardRest(req, this.limits);
        closeAfterBody(req, req.socket);
      }
    }
    if (res.headersSent || res.destroyed) return answer;
    res.writeHead(answer.status, headers);
    res.end(req.method === 'HEAD' ? undefined : text);
    return answer;
  }

  private async codeExec(req: IncomingMessage, res: ServerResponse): Promise<Answer> {
    // Refused before the body is read: a full service takes no more uploads.
    if (this.inFlight >= this.maxInFlight) return this.atCapacity('unavailable.capacity');
    const address = req.socket.remoteAddress ?? '';
    if (this.bodiesReading >= this.limits.maxBodiesReading) return this.atCapacity('unavailable.reading');
    const fromAddress = this.bodiesReadingByAddress.get(address) ?? 0;
    if (fromAddress >= this.limits.maxBodiesReadingPerAddress) {
      return errorAnswer(429, 'Too many requests from this address are still sending their body; retry later', 'unavailable.reading_per_address', {
        headers: { 'retry-after': String(RETRY_AFTER_SECONDS) },
      });
    }
    // Every byte this request holds is charged here and given back when it is answered.
    let charged = 0;
    const charge = (bytes: number): boolean => {
      if (this.bytesInFlight + bytes > this.limits.maxBytesInFlight) return false;
      this.bytesInFlight += bytes;
      charged += bytes;
      this.metrics.bytesInFlight = this.bytesInFlight;
      this.idleCollector.held(this.bytesInFlight);
      return true;
    };
    // Counted from here, with no wait between the check and the count: the self-check below may
    // take a while for the very first requests.
    this.bodiesReading++;
    this.bodiesReadingByAddress.set(address, fromAddress + 1);
    this.metrics.bodiesReading = this.bodiesReading;
    let reading = true;
    const doneReading = () => {
      if (!reading) return;
      reading = false;
      this.bodiesReading--;
      const left = this.bodiesReadingByAddress.get(address)! - 1;
      if (left === 0) this.bodiesReadingByAddress.delete(address);
      else this.bodiesReadingByAddress.set(address, left);
      this.metrics.bodiesReading = this.bodiesReading;
    };
    try {
      return await this.codeExecCharged(req, res, charge, doneReading);
    } finally {
      doneReading();
      this.bytesInFlight -= charged;
      this.metrics.bytesInFlight = this.bytesInFlight;
      this.idleCollector.held(this.bytesInFlight);
    }
  }

  private atCapacity(outcome: string): Answer {
    return errorAnswer(503, 'Codejail service is at capacity; retry later', outcome, {
      headers: { 'retry-after': String(RETRY_AFTER_SECONDS) },
    });
  }

  private async codeExecCharged(req: IncomingMessage, res: ServerResponse, charge: (bytes: number) => boolean, doneReading: () => void): Promise<Answer> {
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
      form = await readForm(req, this.limits, {
        charge,
        accept: () => {
          if (this.expectingContinue.has(req)) res.writeContinue();
        },
      });
    } catch (err) {
      if (err instanceof FormError) {
        if (err.status === 503) return this.atCapacity('unavailable.memory');
        return errorAnswer(err.status, err.message, 'invalid.body');
      }
      throw err;
    } finally {
      doneReading();
    }
    const payloadText = form.fields.get('payload');
    if (payloadText === undefined) return errorAnswer(400, "Missing 'payload' parameter in POST body", 'invalid.payload.missing');
    const cost = payloadCost(payloadText);
    if (cost > this.limits.maxBytesInFlight) {
      // It would not fit even alone: retrying cannot help.
      return errorAnswer(413, `Payload too large to parse: it would take about ${cost} bytes, more than the ${this.limits.maxBytesInFlight} allowed`, 'invalid.body');
    }
    if (!charge(cost)) return this.atCapacity('unavailable.memory');
    let payload;
    try {
      payload = parsePayload(payloadText);
      checkRequest(payload, form.files.keys());
    } catch (err) {
      if (err instanceof BadRequest) return errorAnswer(400, err.message, 'invalid.payload');
      throw err;
    }
    // codejail-service runs the code and then fails to render the answer, which carries the
    // input's globals back whether the code succeeded or not: Django's 500. No run is needed
    // to know it.
    if (holdsLoneSurrogate(payload.globalsDict)) {
      return errorAnswer(500, `Couldn't render the result: globals_dict: ${new UnencodableString().message}`, 'error.unencodable');
    }
    // A place in flight only now that the body has arrived: a slow sender holds none.
    if (this.inFlight >= this.maxInFlight) return this.atCapacity('unavailable.capacity');
    this.inFlight++;
    this.metrics.inFlight = this.inFlight;
    try {
      return await this.run(payload, form.files);
    } finally {
      this.inFlight--;
      this.metrics.inFlight = this.inFlight;
    }
  }

  private async run(payload: CodeExecPayload, files: Map<string, Buffer>): Promise<Answer> {

    const libraryZip = files.get(PYTHON_LIB_ZIP);
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
