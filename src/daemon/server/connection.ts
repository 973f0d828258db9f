// One client connection: its frames (decoded with their cost bounded first, shape.ts), the
// requests it has in flight, its timeouts (idle, unfinished frame) and its backpressure (it is
// not read while its replies are not). A decoded request that is valid goes to requests.ts.
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import {
  encodeFrame,
  FrameDecoder,
  FrameError,
  PROTOCOL_VERSION,
  RefusedFrame,
  REQUEST_SHAPE_LIMITS,
  request as requestSchema,
  validateFirstIssue,
  unservedVersion,
  type ErrorCode,
} from '../../protocol/index.js';
import type { Caller } from '../auth.js';
import { RequestError } from '../../protocol/errors.js';
import type { ConnectionClose } from '../metrics.js';
import type { ServerOptions } from './options.js';
import type { RequestOrigin, Requests } from './requests.js';
import type { ThrottledLog } from './throttle.js';

/** What a connection the stopping daemon closes is told on request id 0. */
export const SHUTDOWN_NOTICE = 'the daemon is stopping: requests sent on this connection that got no reply of their own were not run; send them again';

/** How long a stopping daemon waits for a caller to hang up after its notice, before cutting it off. */
const SHUTDOWN_HANG_UP_MS = 1000;

/**
 * How long a connection the daemon hangs up on (idle, or its permission revoked) has to take
 * what is left of its replies: a caller that does not read them would otherwise keep the socket,
 * its fd and its place in connections.perUid for good.
 */
const HANG_UP_MS = 1000;

/**
 * How long after a reply was written it counts as in transit (the kernel draining it to a reader
 * that reads): the budget closes such a connection last. A reader that has not read it by then
 * is holding it like any other.
 */
const REPLY_TRANSIT_MS = 1000;

/** What a connection needs of its server. */
export interface ConnectionHost {
  /** Log lines about refusals, rate-limited. */
  refusals: ThrottledLog;
  /**
   * Called when the bytes a connection holds grew: the server checks its budget per uid and in
   * all. 'wait': a frame's room is taken by queued requests; stop reading until roomMade().
   */
  grew(connection: Connection, growth: 'frame' | 'reply'): 'ok' | 'wait';
  /** Called when queued requests' bytes were released: connections waiting for room may read again. */
  released(): void;
  /** Why the connection may not hold `bytes` more for a queued request (a cap and its key), or undefined. */
  refusal(connection: Connection, bytes: number): string | undefined;
  /** What each request does. */
  requests: Requests;
  /** Called with the bytes of each chunk read and each reply written (the idle collector's measure of work). */
  moved(bytes: number): void;
}

/** One client connection: its frame decoder and the runs it has in flight. */
export class Connection implements RequestOrigin {
  private readonly decoder: FrameDecoder;
  /** Runs in flight by request id (requests.ts adds and removes them; a close aborts them). */
  readonly runs = new Map<number, AbortController>();
  private readonly settled = new Set<Promise<void>>();
  private broken = false;
  /** Requests decoded but not handled yet: a chunk may hold many, and handling pauses with reading. */
  private readonly backlog: unknown[] = [];
  private backlogHead = 0;
  /** The client has more unread replies than a frame: requests wait until its socket drains. */
  private waitingForDrain = false;
  /** Set when a reload took the caller's permission away: every request is refused with it. */
  private revoked: string | undefined;
  /**
   * Set when a bad frame followed valid ones: nothing more is read, the valid ones are answered,
   * then the connection is closed with this reason.
   */
  private closingAfterBacklog: string | undefined;
  /** Set once the daemon closed the connection for a cap: it holds nothing any more. */
  private closedFor: ConnectionClose | undefined;
  /** Bytes of this connection's requests waiting in the run queue (their code, stdin, files, argv). */
  private queued = 0;
  /** Its frame in progress found the room taken by queued requests: not read until they leave. */
  private waitingForRoom = false;
  /** When the last reply that did not go out at once was written (performance.now()). */
  private replyWrittenAt = -Infinity;
  /** Bytes of the writes to the caller that had completed at the last idle check (onIdle()). */
  private completedAtLastIdle = 0;
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
      this.cancelAll(new RequestError('cancelled', 'the client disconnected'));
    });
  }

  /** Requests still being worked on. */
  get pending(): number {
    return this.settled.size;
  }

  /**
   * Bytes this connection holds in the daemon: a frame in progress, replies not yet read, and
   * requests waiting in the run queue. A connection the daemon closed holds nothing (what its
   * queued requests hold goes as they are cancelled, at once).
   */
  get bufferedBytes(): number {
    if (this.closedFor !== undefined) return 0;
    return this.decoder.pendingBytes + this.socket.writableLength + this.queued;
  }

  /** Bytes of this connection's requests waiting in the run queue. */
  get queuedBytes(): number {
    return this.queued;
  }

  /** A reply was written within REPLY_TRANSIT_MS and the kernel has not taken all of it yet. */
  get replyInTransit(): boolean {
    return this.socket.writableLength > 0 && performance.now() - this.replyWrittenAt < REPLY_TRANSIT_MS;
  }

  /**
   * Charges `bytes` of a request about to wait in the run queue to this connection (and so to its
   * uid and the daemon's budget) until the returned function is called: when its run starts, or
   * it was refused or cancelled. Past a cap it is refused 'overloaded' (a RequestError thrown),
   * and nobody is closed to make room for it.
   */
  holdQueued(bytes: number): () => void {
    const refusal = this.host.refusal(this, bytes);
    if (refusal !== undefined) throw new RequestError('overloaded', refusal);
    this.queued += bytes;
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      this.queued -= bytes;
      this.host.released();
    };
  }

  /** Queued requests left: reads again if its frame was waiting for room (the budget checks again). */
  roomMade(): void {
    if (!this.waitingForRoom) return;
    this.waitingForRoom = false;
    this.readOrPause();
  }

  /** Reads the socket unless a reason to stop (replies unread, no room for its frame) holds. */
  private readOrPause(): void {
    if (this.broken) return;
    if (this.waitingForDrain || this.waitingForRoom || this.closingAfterBacklog !== undefined) this.socket.pause();
    else this.socket.resume();
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
      queuedBytes: this.queued,
      reason: message,
    });
    this.decoder.reset();
    clearTimeout(this.frameTimer);
    if ((reason === 'buffer_limit' || reason === 'buffer_uid_limit' || reason === 'buffer_budget') && this.socket.writableLength > 0) {
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
    this.cancelAll(new RequestError('forbidden', reason));
    void this.idle().then(() => {
      this.send(this.errorFrame(0, 'forbidden', reason));
      this.hangUp();
    });
  }

  /**
   * Cancels this connection's runs and waits until they are cleaned up and answered; then says on
   * request id 0 that the daemon is stopping, half-closes and waits (a second at most) for the
   * caller to hang up. A request the caller sent after the last reply is never read, and the id 0
   * error is its answer: `shutting_down`, not run. Closing at once would have failed the caller's
   * write of it (EPIPE, or ECONNRESET) before it read anything: a request lost without a reply.
   */
  async shutdown(): Promise<void> {
    this.cancelAll(new RequestError('shutting_down', 'the daemon is stopping'));
    await Promise.all(this.settled);
    if (this.socket.destroyed) return;
    const hungUp = new Promise<void>((resolve) => this.socket.once('close', () => resolve()));
    if (!this.broken && this.socket.writable) {
      this.socket.end(this.errorFrame(0, 'shutting_down', SHUTDOWN_NOTICE));
    } else {
      this.socket.end();
    }
    this.broken = true;
    // Read and dropped: a caller that is not read from may be blocked writing, and not see the notice.
    this.socket.resume();
    const cutOff = setTimeout(() => this.socket.destroy(), SHUTDOWN_HANG_UP_MS);
    cutOff.unref();
    await hungUp;
    clearTimeout(cutOff);
  }

  private onData(chunk: Buffer): void {
    if (this.broken || this.closingAfterBacklog !== undefined) return;
    this.host.moved(chunk.length);
    this.idleTimer.refresh();
    let messages: unknown[];
    try {
      messages = this.decoder.push(chunk);
    } catch (err) {
      // The stream cannot be resynchronised after a bad frame: say why, then hang up, once every
      // request that came before it (in this chunk, or earlier and still running) is answered.
      // (The decoder throws only FrameError; anything else is treated the same rather than crash.)
      const reason = err instanceof FrameError ? err.message : `undecodable frame: ${(err as Error).message}`;
      this.closeAfter(err instanceof FrameError ? err.complete : [], reason);
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
      // A frame in progress is held here: within this connection's cap, its uid's and the
      // daemon's; when queued requests take the room it needs, it waits for them to start.
      if (this.queuedTakeTheRoom()) {
        this.waitingForRoom = true;
        this.readOrPause();
      } else {
        if (!this.withinCap()) return;
        if (this.host.grew(this, 'frame') === 'wait' && !this.broken) {
          this.waitingForRoom = true;
          this.readOrPause();
        }
        if (this.broken) return;
      }
    }
    for (const message of messages) this.backlog.push(message);
    this.pump();
  }

  /**
   * A bad frame came: the requests before it (`complete`, in the same chunk, and those of earlier
   * chunks still waiting or running) were sent first and are owed their replies. Reading stops;
   * they are handled (runs included) and answered, and only then is the connection closed for
   * the bad frame.
   */
  private closeAfter(complete: unknown[], reason: string): void {
    this.closingAfterBacklog = reason;
    this.decoder.reset();
    clearTimeout(this.frameTimer);
    this.frameTimer = undefined;
    this.readOrPause();
    for (const message of complete) this.backlog.push(message);
    this.pump();
  }

  /** The backlog is handled: a connection closing after it waits for its work, then closes. */
  private backlogDone(): void {
    const reason = this.closingAfterBacklog;
    if (reason === undefined) return;
    void this.idle().then(() => this.close('bad_frame', 'bad_frame', reason));
  }

  /** Over connections.maxBufferedBytes only with its queued requests counted. */
  private queuedTakeTheRoom(): boolean {
    const cap = this.options.connections.maxBufferedBytes;
    const held = this.bufferedBytes;
    return held > cap && held - this.queued <= cap;
  }

  /**
   * Closes the connection when it holds more than connections.maxBufferedBytes; false then. Its
   * queued requests count: they are its own, and they go with it.
   */
  private withinCap(): boolean {
    const cap = this.options.connections.maxBufferedBytes;
    const held = this.bufferedBytes;
    if (held <= cap) return true;
    this.close(
      'buffer_limit',
      'overloaded',
      `the connection holds ${held} bytes (an unfinished frame, unread replies and queued requests), more than the ${cap} one may (connections.maxBufferedBytes)`,
    );
    return false;
  }

  private onIdle(): void {
    if (this.broken) return;
    // Replies still going out to a caller that is reading them are work; replies of which not one
    // more write completed in a whole idleTimeoutMs are waiting on a caller that does not read.
    // (A write completes when the kernel took all of it: a frame, or the frames queued together.)
    const completed = this.socket.bytesWritten - this.socket.writableLength;
    const repliesMoving = this.socket.writableLength > 0 && completed !== this.completedAtLastIdle;
    this.completedAtLastIdle = completed;
    // Not idle while work is in flight, requests wait, or a frame is in progress (its own timer).
    const busy = this.pending > 0 || this.backlogHead < this.backlog.length || this.waitingForRoom || this.decoder.pendingBytes > 0;
    if (busy || repliesMoving) {
      this.idleTimer.refresh();
      return;
    }
    this.options.metrics.recordConnectionClose('idle');
    this.options.log.debug('closing an idle connection', { connection: this.id, caller: this.callerFields(), idleTimeoutMs: this.options.connections.idleTimeoutMs, unreadBytes: this.socket.writableLength });
    this.hangUp();
  }

  /**
   * Half-closes once the replies are out, and cuts the connection off if its caller has not
   * taken them within HANG_UP_MS. What it sends meanwhile is read and dropped: a caller blocked
   * writing would not see the end otherwise.
   */
  private hangUp(): void {
    this.broken = true;
    this.socket.end();
    this.socket.destroySoon();
    this.socket.resume();
    const cutOff = setTimeout(() => this.socket.destroy(), HANG_UP_MS);
    cutOff.unref();
    this.socket.once('close', () => clearTimeout(cutOff));
  }

  private onFrameTimeout(): void {
    this.frameTimer = undefined;
    if (this.broken || this.decoder.pendingBytes === 0) return;
    // Paused because the client does not read its replies, or queued requests take the room its
    // frame needs: the frame waits on us, not on it.
    if (this.waitingForDrain || this.waitingForRoom) {
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
      this.backlogDone();
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
    // Every served version is answered (protocol/versions.ts); today that is only version 1.
    const unserved = unservedVersion((raw as { v?: unknown }).v);
    if (unserved !== undefined) {
      this.replyError(id, 'bad_version', unserved);
      return;
    }
    const parsed = validateFirstIssue(requestSchema, raw);
    if (!parsed.success) {
      this.options.metrics.recordRequestRefusal('bad_request');
      this.host.refusals.info('request refused: not a valid request', { connection: this.id, caller: this.callerFields(), reason: parsed.message });
      this.replyError(id, 'bad_request', parsed.message);
      return;
    }
    this.host.requests.dispatch(parsed.data, this);
  }

  /**
   * Keeps `work` in the settled set until it is done, so shutdown can wait for it. The idle time
   * counts from the last reply too: a client that waited on a long run may send the next request.
   */
  track(work: Promise<void>): void {
    const done: Promise<void> = work.finally(() => {
      this.settled.delete(done);
      this.idleTimer.refresh();
    });
    this.settled.add(done);
  }

  callerFields(): Record<string, number> {
    return { uid: this.caller.uid, pid: this.caller.pid };
  }

  private cancelAll(reason: RequestError): void {
    for (const controller of this.runs.values()) controller.abort(reason);
  }

  replyOk(id: number, result: unknown): void {
    this.send(encodeFrame({ v: PROTOCOL_VERSION, id, ok: true, result }));
  }

  replyError(id: number, code: ErrorCode, message: string): void {
    this.send(this.errorFrame(id, code, message));
  }

  private errorFrame(id: number, code: ErrorCode, message: string): Buffer {
    return encodeFrame({ v: PROTOCOL_VERSION, id, ok: false, error: { code, message } });
  }

  private send(frame: Buffer): void {
    // A client that left gets no reply; its runs were cancelled when it closed.
    if (this.broken || this.socket.destroyed || !this.socket.writable) return;
    this.host.moved(frame.length);
    this.socket.write(frame);
    // Replies a client does not read pile up in this process. Past one frame's worth, stop
    // reading its requests (no new work, so no new replies) until the socket drains; past its
    // cap (replies of runs already in flight), it is not reading at all: cut it off, which
    // cancels its runs, rather than let one caller exhaust the daemon's memory. All connections
    // together are held to the daemon's budget.
    const unread = this.socket.writableLength;
    const { maxFrameBytes } = this.options;
    if (unread === 0) return;
    this.replyWrittenAt = performance.now();
    if (!this.withinCap()) return;
    this.host.grew(this, 'reply');
    if (this.broken) return;
    if (unread > maxFrameBytes && !this.waitingForDrain) {
      this.waitingForDrain = true;
      this.readOrPause();
      this.socket.once('drain', () => {
        this.waitingForDrain = false;
        if (this.broken) return;
        this.readOrPause();
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
  buffer_uid_limit: 'it holds the most bytes of its uid, which holds more than one caller may',
  buffer_budget: "it holds the most bytes of the uid holding the most, and all connections hold more than the daemon's budget",
};

/** The request's id when it is a valid one, so even a rejected request gets a matching reply. */
function requestId(raw: unknown): number {
  const id = (raw as { id?: unknown } | null)?.id;
  return typeof id === 'number' && Number.isInteger(id) && id >= 0 && id <= 0xffffffff ? id : 0;
}
