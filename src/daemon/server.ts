// The Unix socket server: length-prefixed msgpack frames in, one reply per request out. One
// connection carries many concurrent requests told apart by id. A malformed or oversized frame
// closes that connection only; a connection that closes has its runs cancelled. Every
// connection's caller (SO_PEERCRED) is checked against the allow list before a byte is read.
// Callers are trusted with nothing else: connections are capped in all and per uid, idle ones
// and unfinished frames time out, the bytes each and all connections hold are bounded, and a
// frame's cost is bounded before it is decoded (shape.ts). Refusals are counted in the metrics
// and logged at a bounded rate (throttle.ts).
import { promises as fs, readFileSync, readlinkSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as delay } from 'node:timers/promises';
import {
  encodeFrame,
  FrameDecoder,
  FrameError,
  PROTOCOL_VERSION,
  RefusedFrame,
  REQUEST_SHAPE_LIMITS,
  request as requestSchema,
  validateFirstIssue,
  type CheckResult,
  type ErrorCode,
  type JailCodeResult,
  type Request,
  type StatusResult,
} from '../protocol/index.js';
import { readAccounts } from './accounts.js';
import { authorize, type AllowList, type Caller } from './auth.js';
import { DaemonError } from './errors.js';
import type { Logger } from './log.js';
import type { ConnectionClose, Metrics, Verdict } from './metrics.js';
import type { Runner } from './runner.js';
import { ThrottledLog } from './throttle.js';

/** The connections section of the config, its byte defaults resolved (config.ts). */
export interface ConnectionLimits {
  max: number;
  perUid: number;
  idleTimeoutMs: number;
  frameTimeoutMs: number;
  maxBufferedBytes: number;
  totalBufferedBytes: number;
}

export interface ServerOptions {
  socketPath: string;
  /** Group allowed to connect (socket is root:group, `mode`); missing group: root-only 0600. */
  group: string;
  mode: number;
  maxFrameBytes: number;
  connections: ConnectionLimits;
  runner: Runner;
  status: () => StatusResult;
  log: Logger;
  /**
   * A listening socket inherited from systemd (socket activation): served as is. Its path, owner
   * and mode are the .socket unit's business, so the server neither binds, chmods nor unlinks.
   */
  listenFd?: number;
  /** SO_PEERCRED of a connected socket's fd (the addon's peerCred). */
  peerCred: (fd: number) => Caller;
  /** The allow list in force; a function because SIGHUP may replace it. */
  allowList: () => AllowList;
  metrics: Metrics;
  /** Renders the Prometheus text (the 'metrics' request). */
  renderMetrics: () => string;
  /** Runs the self-check again (the 'check' request). */
  check: () => Promise<CheckResult>;
}

/**
 * Refused connections told why at once (the rest are hung up on without a word): telling takes a
 * second at most, and a flood of connections must not hold file descriptors meanwhile.
 */
const REFUSALS_BEING_TOLD = 64;

/** File descriptors kept for the runs (pipes, pidfds, files written) and the daemon's own. */
const DESCRIPTORS_FOR_RUNS = 1024;

export class DaemonServer {
  private readonly server: net.Server;
  private readonly connections = new Set<Connection>();
  /** Open connections per caller uid. */
  private readonly perUid = new Map<number, number>();
  private refusing = 0;
  private readonly refusals: ThrottledLog;
  private stopping = false;
  private nextConnectionId = 1;

  constructor(private readonly options: ServerOptions) {
    this.server = net.createServer((socket) => this.accept(socket));
    this.refusals = new ThrottledLog(options.log);
    options.metrics.observeConnections(() => ({ open: this.connections.size, bufferedBytes: this.bufferedBytes() }));
  }

  get address(): string {
    return this.options.socketPath;
  }

  /** Whether the listening socket came from systemd rather than from our own bind. */
  get activated(): boolean {
    return this.options.listenFd !== undefined;
  }

  /**
   * Listens on the inherited fd, or on the socket path (replacing a stale socket) with its owner
   * and mode set.
   */
  async listen(): Promise<void> {
    const { socketPath, log, listenFd } = this.options;
    if (listenFd !== undefined) {
      const inherited = describeListeningUnixSocket(listenFd);
      await new Promise<void>((resolve, reject) => {
        this.server.once('error', reject);
        this.server.listen({ fd: listenFd }, () => {
          this.server.off('error', reject);
          resolve();
        });
      });
      this.server.on('error', (err) => log.error('socket server error', { error: err }));
      log.info('serving the socket passed by systemd', { fd: listenFd, path: inherited });
      this.checkDescriptors();
      return;
    }
    await fs.mkdir(path.dirname(socketPath), { recursive: true, mode: 0o755 });
    await removeStaleSocket(socketPath);
    // Until chmod below the socket has the umask's mode (0755 at most): connecting needs write
    // permission, so only root can connect in that window.
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(socketPath, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    this.server.on('error', (err) => log.error('socket server error', { error: err }));
    await this.restrictSocket();
    this.checkDescriptors();
  }

  /**
   * Warns when connections.max leaves too few file descriptors for the runs: when connections
   * took them all, a run failed writing its files (EMFILE). The soft RLIMIT_NOFILE is what
   * counts (node raises it to the hard limit at start).
   */
  private checkDescriptors(): void {
    const { log, connections } = this.options;
    let limit: number;
    try {
      const line = readFileSync('/proc/self/limits', 'utf8').split('\n').find((l) => l.startsWith('Max open files'));
      limit = Number(line?.split(/\s{2,}/)[1]);
    } catch {
      return;
    }
    const needed = connections.max + REFUSALS_BEING_TOLD + DESCRIPTORS_FOR_RUNS;
    if (Number.isFinite(limit) && limit < needed) {
      log.warn(
        `connections.max (${connections.max}) leaves too few of the daemon's ${limit} file descriptors for runs: lower it or raise LimitNOFILE to ${needed} at least`,
        { nofile: limit, connectionsMax: connections.max },
      );
    }
  }

  /** Requests (runs and checks) in flight on every connection. */
  get inflight(): number {
    let count = 0;
    for (const connection of this.connections) count += connection.pending;
    return count;
  }

  /**
   * Stops accepting; lets the work in flight finish for up to `graceMs`; then cancels what is
   * left (reason: shutting_down) and waits for its clean-up (every slot swept, every run
   * directory removed); closes the connections and removes the socket we bound. Callers close
   * the slot pool first, so that no new run starts meanwhile. `hurry` aborting ends the grace
   * period early (a second SIGTERM).
   */
  async close(graceMs = 0, hurry?: AbortSignal): Promise<void> {
    this.stopping = true;
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    const { log } = this.options;
    const pending = this.inflight;
    if (graceMs > 0 && pending > 0) {
      log.info('waiting for requests in flight to finish', { inflight: pending, graceMs });
      const timer = new AbortController();
      const onHurry = () => timer.abort();
      hurry?.addEventListener('abort', onHurry, { once: true });
      if (hurry?.aborted) timer.abort();
      const finished = await Promise.race([
        Promise.all([...this.connections].map((c) => c.idle())).then(() => true),
        delay(graceMs, false, { signal: timer.signal }).catch(() => false),
      ]);
      hurry?.removeEventListener('abort', onHurry);
      timer.abort();
      if (!finished) log.warn('shutdown grace period over: cancelling the runs still in flight', { inflight: this.inflight, graceMs });
    }
    await Promise.all([...this.connections].map((c) => c.shutdown()));
    await closed;
    this.refusals.flush();
    if (!this.activated) await fs.unlink(this.options.socketPath).catch(() => undefined);
  }

  /**
   * Checks every open connection against the allow list again (after a reload): a caller that
   * lost its permission has its requests failed with 'forbidden' and its runs cancelled, and is
   * disconnected. Returns how many were.
   */
  reauthorize(): number {
    let revoked = 0;
    for (const connection of this.connections) {
      const verdict = authorize(connection.caller, this.options.allowList());
      if (verdict.allowed) continue;
      revoked++;
      this.options.log.warn('connection closed: caller no longer allowed', {
        connection: connection.id,
        caller: { uid: connection.caller.uid, gid: connection.caller.gid, pid: connection.caller.pid },
        reason: verdict.reason,
      });
      connection.revoke(verdict.reason);
    }
    return revoked;
  }

  /** Bytes all connections hold: frames in progress and unread replies. */
  bufferedBytes(): number {
    let total = 0;
    for (const connection of this.connections) total += connection.bufferedBytes;
    return total;
  }

  /**
   * Past the budget for all connections, closes the connection holding the most bytes until the
   * rest fit: a caller hoarding memory (unfinished frames, unread replies) goes before one that
   * holds a little. Called when a connection's holding grew, so the excess is a chunk at most.
   */
  private enforceBudget(): void {
    const budget = this.options.connections.totalBufferedBytes;
    let total = this.bufferedBytes();
    while (total > budget) {
      let largest: Connection | undefined;
      for (const connection of this.connections) {
        if (connection.bufferedBytes > (largest?.bufferedBytes ?? 0)) largest = connection;
      }
      if (!largest) return;
      const held = largest.bufferedBytes;
      total -= held;
      largest.close(
        'buffer_budget',
        'overloaded',
        `the daemon's connections hold more than its budget of ${budget} bytes (connections.totalBufferedBytes), and this one held the most (${held} bytes of an unfinished frame and unread replies)`,
      );
    }
  }

  private accept(socket: net.Socket): void {
    if (this.stopping) {
      socket.destroy();
      return;
    }
    const { log, metrics, connections: limits } = this.options;
    socket.on('error', (err) => log.debug('client connection error', { error: err }));
    if (this.connections.size >= limits.max) {
      metrics.recordConnectionRefusal('max');
      this.refusals.warn('connection refused: too many connections', { open: this.connections.size, max: limits.max });
      this.refuse(socket, 'overloaded', `the daemon has ${limits.max} connections open, its maximum (connections.max); try again later`);
      return;
    }
    // The kernel's record of who connected; libuv keeps the fd in the handle.
    const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
    let caller: Caller;
    try {
      if (typeof fd !== 'number' || fd < 0) throw new Error('the connection has no file descriptor');
      caller = this.options.peerCred(fd);
    } catch (err) {
      log.error('cannot read the credentials of a connection; closing it', { error: err });
      socket.destroy();
      return;
    }
    const verdict = authorize(caller, this.options.allowList());
    if (!verdict.allowed) {
      metrics.recordRefusedConnection();
      this.refusals.warn('connection refused: caller not allowed', { caller: { uid: caller.uid, gid: caller.gid, pid: caller.pid }, reason: verdict.reason });
      this.refuse(socket, 'forbidden', verdict.reason);
      return;
    }
    const ofUid = this.perUid.get(caller.uid) ?? 0;
    if (ofUid >= limits.perUid) {
      metrics.recordConnectionRefusal('per_uid');
      this.refusals.warn('connection refused: too many connections from its uid', { caller: { uid: caller.uid, pid: caller.pid }, perUid: limits.perUid });
      this.refuse(
        socket,
        'overloaded',
        `uid ${caller.uid} has ${limits.perUid} connections open, the most one caller may (connections.perUid); close some or reuse one`,
      );
      return;
    }
    const connection = new Connection(socket, this.options, caller, this.nextConnectionId++, {
      refusals: this.refusals,
      grew: () => this.enforceBudget(),
    });
    log.debug('connection accepted', { connection: connection.id, caller: { uid: caller.uid, pid: caller.pid }, via: verdict.via });
    this.connections.add(connection);
    this.perUid.set(caller.uid, ofUid + 1);
    socket.on('close', () => {
      this.connections.delete(connection);
      const left = (this.perUid.get(caller.uid) ?? 1) - 1;
      if (left > 0) this.perUid.set(caller.uid, left);
      else this.perUid.delete(caller.uid);
    });
  }

  /**
   * Answers a connection with an error on request id 0 (it answers the connection, not a
   * request) and hangs up. Half-closes after it and lets the caller hang up: closing at once
   * would make its pending write fail (EPIPE) before it reads why. What it sends meanwhile is
   * discarded unread, and a caller that does not hang up is cut off after a second.
   */
  private refuse(socket: net.Socket, code: ErrorCode, message: string): void {
    if (this.refusing >= REFUSALS_BEING_TOLD) {
      socket.destroy();
      return;
    }
    this.refusing++;
    socket.end(encodeFrame({ v: PROTOCOL_VERSION, id: 0, ok: false, error: { code, message } }));
    socket.resume();
    const cutOff = setTimeout(() => socket.destroy(), 1000);
    cutOff.unref();
    socket.once('close', () => {
      clearTimeout(cutOff);
      this.refusing--;
    });
  }

  private async restrictSocket(): Promise<void> {
    const { socketPath, group, mode, log } = this.options;
    const gid = readAccounts('/etc/group').byName.get(group);
    if (gid === undefined) {
      log.warn(`group "${group}" does not exist (run "codejail setup"): the socket is owner-only (0600)`, { socket: socketPath });
      await fs.chmod(socketPath, 0o600);
      return;
    }
    try {
      await fs.lchown(socketPath, process.getuid?.() ?? 0, gid);
    } catch (err) {
      log.warn(`cannot give the socket to group "${group}": it stays owner-only (0600)`, { socket: socketPath, error: err });
      await fs.chmod(socketPath, 0o600);
      return;
    }
    await fs.chmod(socketPath, mode);
  }
}

/** What a connection needs of its server. */
interface ConnectionHost {
  /** Log lines about refusals, rate-limited. */
  refusals: ThrottledLog;
  /** Called when the bytes a connection holds grew: the server checks its budget for all. */
  grew(): void;
}

/** One client connection: its frame decoder and the runs it has in flight. */
class Connection {
  private readonly decoder: FrameDecoder;
  private readonly inflight = new Map<number, AbortController>();
  private readonly settled = new Set<Promise<void>>();
  private broken = false;
  /** Requests decoded but not handled yet: a chunk may hold many, and handling pauses with reading. */
  private readonly backlog: unknown[] = [];
  private backlogHead = 0;
  /** The client has more unread replies than a frame: requests wait until its socket drains. */
  private waitingForDrain = false;
  /** Set when a reload took the caller's permission away: every request is refused with it. */
  private revoked: string | undefined;
  /** Set once the daemon closed the connection for a cap: it holds nothing any more. */
  private closedFor: ConnectionClose | undefined;
  /** Closes a connection with nothing in flight that sent nothing for idleTimeoutMs. */
  private readonly idleTimer: NodeJS.Timeout;
  /** Armed while a frame is in progress: it must arrive whole within frameTimeoutMs. */
  private frameTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly socket: net.Socket,
    private readonly options: ServerOptions,
    readonly caller: Caller,
    readonly id: number,
    private readonly host: ConnectionHost,
  ) {
    this.decoder = new FrameDecoder(options.maxFrameBytes, REQUEST_SHAPE_LIMITS);
    this.idleTimer = setTimeout(() => this.onIdle(), options.connections.idleTimeoutMs);
    this.idleTimer.unref();
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('close', () => {
      clearTimeout(this.idleTimer);
      clearTimeout(this.frameTimer);
      this.cancelAll(new DaemonError('cancelled', 'the client disconnected'));
    });
  }

  /** Requests still being worked on. */
  get pending(): number {
    return this.settled.size;
  }

  /** Bytes this connection holds in the daemon: a frame in progress and replies not yet read. */
  get bufferedBytes(): number {
    if (this.closedFor !== undefined) return 0;
    return this.decoder.pendingBytes + this.socket.writableLength;
  }

  /**
   * Closes the connection for a cap or a bad frame, releasing what it holds at once. Over a byte
   * cap, a caller with replies unread gets no explanation (writing one would hold more); others
   * get `code` and `message` on request id 0 before the hang-up. Its runs are cancelled when the
   * socket closes.
   */
  close(reason: ConnectionClose, code: ErrorCode, message: string): void {
    if (this.closedFor !== undefined) return;
    this.closedFor = reason;
    this.broken = true;
    this.options.metrics.recordConnectionClose(reason);
    this.host.refusals.warn(`connection closed: ${CLOSE_REASONS[reason]}`, {
      connection: this.id,
      caller: this.callerFields(),
      frameBytes: this.decoder.pendingBytes,
      unreadBytes: this.socket.writableLength,
      reason: message,
    });
    this.decoder.reset();
    clearTimeout(this.frameTimer);
    if ((reason === 'buffer_limit' || reason === 'buffer_budget') && this.socket.writableLength > 0) {
      this.socket.destroy();
      return;
    }
    // As a refused connection is told (DaemonServer.refuse): half-close, let the caller hang up.
    this.socket.end(this.errorFrame(0, code, message));
    this.socket.resume();
    const cutOff = setTimeout(() => this.socket.destroy(), 1000);
    cutOff.unref();
    this.socket.once('close', () => clearTimeout(cutOff));
  }

  /** Resolves once nothing is in flight on this connection (new work may not start: slots are closed). */
  async idle(): Promise<void> {
    while (this.settled.size > 0) await Promise.all(this.settled);
  }

  /** Fails everything in flight with 'forbidden', then says why on request id 0 and hangs up. */
  revoke(reason: string): void {
    if (this.revoked !== undefined) return;
    this.revoked = reason;
    this.cancelAll(new DaemonError('forbidden', reason));
    void this.idle().then(() => {
      this.send(this.errorFrame(0, 'forbidden', reason));
      this.broken = true;
      this.socket.end();
      this.socket.destroySoon();
    });
  }

  /** Cancels this connection's runs, waits until they are cleaned up, then closes it. */
  async shutdown(): Promise<void> {
    this.cancelAll(new DaemonError('shutting_down', 'the daemon is stopping'));
    await Promise.all(this.settled);
    this.socket.end();
    this.socket.destroySoon();
  }

  private onData(chunk: Buffer): void {
    if (this.broken) return;
    this.idleTimer.refresh();
    let messages: unknown[];
    try {
      messages = this.decoder.push(chunk);
    } catch (err) {
      // The stream cannot be resynchronised after a bad frame: say why, then hang up. (The
      // decoder throws only FrameError; anything else is treated the same rather than crash.)
      const reason = err instanceof FrameError ? err.message : `undecodable frame: ${(err as Error).message}`;
      this.close('bad_frame', 'bad_frame', reason);
      return;
    }
    // The frame timer times the frame in progress: one that completed ends it, and the bytes
    // left over (if any) began the next one in this chunk.
    if (messages.length > 0 || this.decoder.pendingBytes === 0) {
      clearTimeout(this.frameTimer);
      this.frameTimer = undefined;
    }
    if (this.decoder.pendingBytes > 0) {
      this.frameTimer ??= setTimeout(() => this.onFrameTimeout(), this.options.connections.frameTimeoutMs).unref();
      // A frame in progress is held here: within this connection's cap, and the daemon's.
      if (!this.withinCap()) return;
      this.host.grew();
      if (this.broken) return;
    }
    for (const message of messages) this.backlog.push(message);
    this.pump();
  }

  /** Closes the connection when it holds more than connections.maxBufferedBytes; false then. */
  private withinCap(): boolean {
    const cap = this.options.connections.maxBufferedBytes;
    const held = this.bufferedBytes;
    if (held <= cap) return true;
    this.close(
      'buffer_limit',
      'overloaded',
      `the connection holds ${held} bytes (an unfinished frame and unread replies), more than the ${cap} one may (connections.maxBufferedBytes)`,
    );
    return false;
  }

  private onIdle(): void {
    if (this.broken) return;
    // Not idle while work is in flight, requests wait, or a frame is in progress (its own timer).
    if (this.pending > 0 || this.backlogHead < this.backlog.length || this.waitingForDrain || this.decoder.pendingBytes > 0) {
      this.idleTimer.refresh();
      return;
    }
    this.broken = true;
    this.options.metrics.recordConnectionClose('idle');
    this.options.log.debug('closing an idle connection', { connection: this.id, caller: this.callerFields(), idleTimeoutMs: this.options.connections.idleTimeoutMs });
    this.socket.end();
    this.socket.destroySoon();
  }

  private onFrameTimeout(): void {
    this.frameTimer = undefined;
    if (this.broken || this.decoder.pendingBytes === 0) return;
    // Paused because the client does not read its replies: the frame waits on us, not on it.
    if (this.waitingForDrain) {
      this.frameTimer = setTimeout(() => this.onFrameTimeout(), this.options.connections.frameTimeoutMs).unref();
      return;
    }
    const { frameTimeoutMs } = this.options.connections;
    this.close(
      'frame_timeout',
      'bad_frame',
      `a frame must arrive whole within ${frameTimeoutMs} ms of its first byte (connections.frameTimeoutMs); ${this.decoder.pendingBytes} bytes of it came`,
    );
  }

  /** Handles decoded requests until none is left or the client stopped reading its replies. */
  private pump(): void {
    while (this.backlogHead < this.backlog.length && !this.waitingForDrain && !this.broken) {
      const message = this.backlog[this.backlogHead++];
      try {
        this.handle(message);
      } catch (err) {
        this.options.log.error('handling a request failed', { error: err, stack: (err as Error)?.stack });
        this.replyError(requestId(message), 'internal', 'internal error in the daemon (logged)');
      }
    }
    if (this.backlogHead === this.backlog.length) {
      this.backlog.length = 0;
      this.backlogHead = 0;
    }
  }

  private handle(raw: unknown): void {
    if (raw instanceof RefusedFrame) {
      // Over the caps a request can reach: refused undecoded, the connection kept.
      this.options.metrics.recordRequestRefusal('frame_limit');
      this.host.refusals.info('request refused: frame over the protocol caps', { connection: this.id, caller: this.callerFields(), reason: raw.reason });
      this.replyError(raw.id ?? 0, 'bad_request', raw.reason);
      return;
    }
    const id = requestId(raw);
    if (this.revoked !== undefined) {
      this.replyError(id, 'forbidden', this.revoked);
      return;
    }
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
      this.replyError(id, 'bad_request', 'a request must be a map');
      return;
    }
    const version = (raw as { v?: unknown }).v;
    if (version !== undefined && version !== PROTOCOL_VERSION) {
      this.replyError(id, 'bad_version', `protocol version ${String(version)} is not supported; this daemon speaks version ${PROTOCOL_VERSION}`);
      return;
    }
    const parsed = validateFirstIssue(requestSchema, raw);
    if (!parsed.success) {
      this.options.metrics.recordRequestRefusal('bad_request');
      this.host.refusals.info('request refused: not a valid request', { connection: this.id, caller: this.callerFields(), reason: parsed.message });
      this.replyError(id, 'bad_request', parsed.message);
      return;
    }
    this.dispatch(parsed.data);
  }

  private dispatch(request: Request): void {
    if (request.op !== 'jail_code') {
      this.options.log.debug('request', { op: request.op, id: request.id, connection: this.id, caller: this.callerFields() });
    }
    switch (request.op) {
      case 'status':
        this.replyOk(request.id, this.options.status());
        return;
      case 'metrics':
        this.replyOk(request.id, { text: this.options.renderMetrics() });
        return;
      case 'check':
        this.track(
          this.options.check().then(
            (result) => this.replyOk(request.id, result),
            (err: unknown) => this.replyFailure(request.id, err, { op: 'check' }),
          ),
        );
        return;
      case 'cancel': {
        const controller = this.inflight.get(request.target);
        controller?.abort(new DaemonError('cancelled', `cancelled by request ${request.id}`));
        this.replyOk(request.id, { cancelled: controller !== undefined });
        return;
      }
      case 'jail_code':
        this.startRun(request);
        return;
    }
  }

  private startRun(request: Extract<Request, { op: 'jail_code' }>): void {
    const { id } = request;
    if (this.inflight.has(id)) {
      this.replyError(id, 'bad_request', `request id ${id} is already in flight on this connection`);
      return;
    }
    const controller = new AbortController();
    this.inflight.set(id, controller);
    const { log, metrics } = this.options;
    const started = performance.now();
    // Every run ends with exactly one 'run ended' line at info: who asked (caller uid and pid),
    // what (slug, command, limits), how it went (verdict, status or error code) and what it cost.
    const base = { id, connection: this.id, slug: request.slug, caller: this.callerFields(), command: request.command };
    log.debug('run accepted', { ...base, requestedLimits: request.limits });
    this.track(
      this.options.runner
        .run(request, controller.signal)
        .then(
          (result) => {
            const verdict = resultVerdict(result);
            const durationMs = round(performance.now() - started);
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
            this.replyOk(id, result);
          },
          (err: unknown) => {
            const verdict = errorVerdict(err);
            const durationMs = round(performance.now() - started);
            metrics.recordRun(verdict, durationMs / 1000);
            const fields = { ...base, verdict, requestedLimits: request.limits, durationMs };
            // Refusals (overloaded, unknown command...) come in storms when callers retry: their
            // lines are rate-limited; runs_total counts every one.
            const line = { ...fields, error: (err as DaemonError).code, reason: (err as Error).message };
            if (verdict === 'rejected') this.host.refusals.info('run ended', line);
            else if (err instanceof DaemonError) log.info('run ended', line);
            this.replyFailure(id, err, fields);
          },
        )
        .finally(() => this.inflight.delete(id)),
    );
  }

  /**
   * Keeps `work` in the settled set until it is done, so shutdown can wait for it. The idle time
   * counts from the last reply too: a client that waited on a long run may send the next request.
   */
  private track(work: Promise<void>): void {
    const done: Promise<void> = work.finally(() => {
      this.settled.delete(done);
      this.idleTimer.refresh();
    });
    this.settled.add(done);
  }

  private replyFailure(id: number, err: unknown, fields: Record<string, unknown>): void {
    if (err instanceof DaemonError) {
      this.replyError(id, err.code, err.message);
      return;
    }
    this.options.log.error('a request failed unexpectedly', { ...fields, error: err, stack: (err as Error)?.stack });
    this.replyError(id, 'internal', 'internal error in the daemon (logged)');
  }

  private callerFields(): Record<string, number> {
    return { uid: this.caller.uid, pid: this.caller.pid };
  }

  private cancelAll(reason: DaemonError): void {
    for (const controller of this.inflight.values()) controller.abort(reason);
  }

  private replyOk(id: number, result: unknown): void {
    this.send(encodeFrame({ v: PROTOCOL_VERSION, id, ok: true, result }));
  }

  private replyError(id: number, code: ErrorCode, message: string): void {
    this.send(this.errorFrame(id, code, message));
  }

  private errorFrame(id: number, code: ErrorCode, message: string): Buffer {
    return encodeFrame({ v: PROTOCOL_VERSION, id, ok: false, error: { code, message } });
  }

  private send(frame: Buffer): void {
    // A client that left gets no reply; its runs were cancelled when it closed.
    if (this.broken || this.socket.destroyed || !this.socket.writable) return;
    this.socket.write(frame);
    // Replies a client does not read pile up in this process. Past one frame's worth, stop
    // reading its requests (no new work, so no new replies) until the socket drains; past its
    // cap (replies of runs already in flight), it is not reading at all: cut it off, which
    // cancels its runs, rather than let one caller exhaust the daemon's memory. All connections
    // together are held to the daemon's budget.
    const unread = this.socket.writableLength;
    const { maxFrameBytes } = this.options;
    if (unread === 0) return;
    if (!this.withinCap()) return;
    this.host.grew();
    if (this.broken) return;
    if (unread > maxFrameBytes && !this.waitingForDrain) {
      this.waitingForDrain = true;
      this.socket.pause();
      this.socket.once('drain', () => {
        this.waitingForDrain = false;
        if (this.broken) return;
        this.socket.resume();
        this.pump();
      });
    }
  }
}

/** How the log names each reason a connection is closed for. */
const CLOSE_REASONS: Record<ConnectionClose, string> = {
  idle: 'idle',
  frame_timeout: 'a frame was not completed in time',
  bad_frame: 'bad frame',
  buffer_limit: 'it holds more bytes than a connection may',
  buffer_budget: "it holds the most bytes and all connections hold more than the daemon's budget",
};

function resultVerdict(result: JailCodeResult): Verdict {
  if (result.timedOut) return 'timeout';
  if (result.oomKilled) return 'oom';
  if (result.status === 0) return 'ok';
  return result.status < 0 ? 'signal' : 'exit';
}

function errorVerdict(err: unknown): Verdict {
  if (!(err instanceof DaemonError)) return 'error';
  switch (err.code) {
    case 'setup_failed':
      return 'setup_failed';
    case 'cancelled':
    case 'shutting_down':
    case 'forbidden':
      return 'cancelled';
    case 'internal':
      return 'error';
    default:
      // overloaded, unknown_command, limit_exceeds_ceiling, bad_request: refused before running.
      return 'rejected';
  }
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}

/** The request's id when it is a valid one, so even a rejected request gets a matching reply. */
function requestId(raw: unknown): number {
  const id = (raw as { id?: unknown } | null)?.id;
  return typeof id === 'number' && Number.isInteger(id) && id >= 0 && id <= 0xffffffff ? id : 0;
}

/**
 * Checks that `fd` is a listening Unix stream socket and returns its path. Peer credentials, and
 * so authorization, exist only on Unix sockets: a TCP socket from a wrong ListenStream= would
 * otherwise be served. The kernel lists Unix sockets with their inode in /proc/net/unix (columns:
 * Num RefCount Protocol Flags Type St Inode Path; Flags 00010000 is "listening", Type 0001 stream).
 */
function describeListeningUnixSocket(fd: number): string {
  const fail = (why: string) =>
    new Error(`fd ${fd} passed by systemd (LISTEN_FDS) ${why}; codejaild needs a listening Unix stream socket: check ListenStream= in codejaild.socket`);
  let link: string;
  try {
    link = readlinkSync(`/proc/self/fd/${fd}`);
  } catch (err) {
    throw fail(`is not open (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  const inode = /^socket:\[(\d+)\]$/.exec(link)?.[1];
  if (!inode) throw fail(`is not a socket (${link})`);
  const entry = readFileSync('/proc/net/unix', 'utf8')
    .split('\n')
    .slice(1)
    .map((line) => line.trim().split(/\s+/))
    .find((fields) => fields[6] === inode);
  if (!entry) throw fail('is not a Unix socket');
  if (entry[4] !== '0001') throw fail('is not a stream socket');
  if ((parseInt(entry[3] ?? '0', 16) & 0x10000) === 0) throw fail('is not listening');
  return entry[7] ?? '(unnamed)';
}

/**
 * Removes a socket file left by a daemon that died. Refuses to replace anything that is not a
 * socket, or a socket another daemon still answers on.
 */
async function removeStaleSocket(socketPath: string): Promise<void> {
  const stat = await fs.lstat(socketPath).catch(() => undefined);
  if (!stat) return;
  if (!stat.isSocket()) throw new Error(`${socketPath} exists and is not a socket; refusing to replace it`);
  const alive = await new Promise<boolean>((resolve) => {
    const probe = net.connect(socketPath);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (alive) throw new Error(`another daemon is already listening on ${socketPath}`);
  await fs.unlink(socketPath);
}
