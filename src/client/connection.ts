// One Unix-socket connection to the daemon, carrying many concurrent requests told apart by id.
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { FrameDecoder, FrameError, PROTOCOL_VERSION, describeIssues, encodeFrame, reply } from '../protocol/index.js';
import { CodejailError } from './errors.js';

interface PendingRequest {
  resolve: (result: unknown) => void;
  reject: (error: CodejailError) => void;
}

const MAX_REQUEST_ID = 0xffffffff;

/**
 * A connect() refused with EAGAIN (the daemon's listen backlog is full: a burst of callers, or
 * someone churning connections) is tried again, after waits doubling from the first to the
 * largest (each drawn between half and all of it, so that callers refused together do not come
 * back together), for as long as the budget lasts; then the request fails 'unavailable'.
 */
const CONNECT_RETRY_FIRST_MS = 2;
const CONNECT_RETRY_MAX_MS = 100;
const CONNECT_RETRY_BUDGET_MS = 10_000;

export class Connection {
  /** The socket of the current attempt to connect (a new one after each EAGAIN). */
  private socket!: net.Socket;
  private readonly decoder: FrameDecoder;
  private readonly pending = new Map<number, PendingRequest>();
  /** 0 is never used: the daemon answers the connection itself (forbidden, bad_frame) on id 0. */
  private nextId = 1;
  private connected = false;
  /** Frames of requests made before the connection is up: an attempt refused loses nothing. */
  private unsent: Buffer[] = [];
  private readonly connectStarted = performance.now();
  private connectAttempts = 0;
  /** Set when an attempt failed with EAGAIN: the wait before the next, once its socket closed. */
  private retryWaitMs: number | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  /** Set once the connection is unusable; every request still pending is rejected with it. */
  private failure: CodejailError | null = null;
  private readonly closedPromise: Promise<void>;
  private settleClosed!: () => void;

  constructor(
    private readonly socketPath: string,
    private readonly maxFrameBytes: number,
  ) {
    // The daemon is trusted with the lengths it announces: a large reply is assembled as it comes.
    this.decoder = new FrameDecoder(maxFrameBytes, undefined, true);
    this.closedPromise = new Promise((resolve) => (this.settleClosed = resolve));
    this.open();
  }

  private open(): void {
    const { socketPath } = this;
    const socket = net.createConnection(socketPath);
    this.socket = socket;
    this.connectAttempts++;
    // An idle connection must not keep the caller's process alive; it is referenced only while
    // requests are in flight (see request() and settle()).
    if (this.pending.size === 0) socket.unref();
    socket.on('connect', () => {
      this.connected = true;
      for (const frame of this.unsent) socket.write(frame);
      this.unsent = [];
    });
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (!this.connected && err.code === 'EAGAIN' && this.failure === null) {
        this.retryWaitMs = this.nextRetryWait();
        if (this.retryWaitMs !== undefined) return;
      }
      const reason = err.code ?? err.message;
      const retried =
        err.code === 'EAGAIN'
          ? `; its listen backlog stayed full through ${this.connectAttempts} attempts over ${Math.round(performance.now() - this.connectStarted)} ms: the daemon is overloaded, or its socket is flooded with connections`
          : ' (is codejaild running, and may this user use its socket?)';
      this.fail(
        this.connected
          ? new CodejailError('connection_lost', `connection to the codejail daemon at ${socketPath} failed: ${reason}`, { cause: err })
          : new CodejailError('unavailable', `cannot connect to the codejail daemon at ${socketPath}: ${reason}${retried}`, { cause: err }),
      );
    });
    socket.on('close', () => {
      if (this.retryWaitMs !== undefined && this.failure === null) {
        const timer = setTimeout(() => {
          this.retryTimer = undefined;
          this.open();
        }, this.retryWaitMs);
        this.retryWaitMs = undefined;
        if (this.pending.size === 0) timer.unref();
        this.retryTimer = timer;
        return;
      }
      this.fail(new CodejailError('connection_lost', `the codejail daemon at ${socketPath} closed the connection`));
      this.settleClosed();
    });
  }

  /** The wait before the next attempt to connect, or undefined once the budget is spent. */
  private nextRetryWait(): number | undefined {
    const cap = Math.min(CONNECT_RETRY_MAX_MS, CONNECT_RETRY_FIRST_MS * 2 ** Math.min(this.connectAttempts - 1, 16));
    const wait = cap / 2 + Math.random() * (cap / 2);
    return performance.now() + wait - this.connectStarted > CONNECT_RETRY_BUDGET_MS ? undefined : wait;
  }

  /** False once the connection failed or was closed; the client then opens a new one. */
  get usable(): boolean {
    return this.failure === null;
  }

  /** Sends one request and resolves with the daemon's `result`, or rejects with its error. */
  request(op: string, fields: Record<string, unknown>): Promise<unknown> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.allocateId();
    const frame = encodeFrame({ v: PROTOCOL_VERSION, id, op, ...fields });
    const bodyBytes = frame.length - 4;
    if (bodyBytes > this.maxFrameBytes) {
      // The daemon would cut the whole connection off for this, failing every other request too.
      return Promise.reject(
        new CodejailError(
          'bad_request',
          `the ${op} request is ${bodyBytes} bytes, more than the ${this.maxFrameBytes}-byte frame maximum; send less data`,
        ),
      );
    }
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.socket.ref();
      this.retryTimer?.ref();
      if (this.connected) this.socket.write(frame);
      else this.unsent.push(frame);
    });
  }

  /** Closes the connection; requests still in flight reject with code 'closed'. */
  close(): Promise<void> {
    this.fail(new CodejailError('closed', 'the codejail client was closed while the request was running'));
    return this.closedPromise;
  }

  /** Ids are uint32 from 1 and wrap; one still in flight after a wrap is skipped. */
  private allocateId(): number {
    for (;;) {
      const id = this.nextId;
      this.nextId = id === MAX_REQUEST_ID ? 1 : id + 1;
      if (!this.pending.has(id)) return id;
    }
  }

  private onData(chunk: Buffer): void {
    let messages: unknown[];
    try {
      messages = this.decoder.push(chunk);
    } catch (err) {
      if (!(err instanceof FrameError)) throw err;
      // Replies that came whole before the bad frame are the daemon's own: deliver them first.
      for (const message of err.complete) {
        if (this.failure) return;
        this.onReply(message);
      }
      if (this.failure) return;
      this.fail(new CodejailError('bad_reply', `the codejail daemon sent a bad frame: ${err.message}`, { cause: err }));
      return;
    }
    for (const message of messages) {
      if (this.failure) return;
      this.onReply(message);
    }
  }

  private onReply(message: unknown): void {
    const parsed = reply.safeParse(message);
    if (!parsed.success) {
      this.fail(new CodejailError('bad_reply', `the codejail daemon sent a malformed reply: ${describeIssues(parsed.error)}`));
      return;
    }
    const answer = parsed.data;
    const request = this.pending.get(answer.id);
    if (!request && !answer.ok) {
      // An error that answers no request answers the connection (a refused caller: 'forbidden',
      // or a bad frame): every request on it fails with the daemon's own code and reason.
      this.fail(new CodejailError(answer.error.code, answer.error.message));
      return;
    }
    if (!request) {
      // Replies can no longer be matched to requests safely; handing one caller another's
      // result would be worse than failing them all.
      this.fail(new CodejailError('bad_reply', `the codejail daemon replied to request ${answer.id}, which is not pending`));
      return;
    }
    this.settle(answer.id);
    if (!answer.ok) {
      request.reject(new CodejailError(answer.error.code, daemonErrorMessage(answer.error.code, answer.error.message)));
    } else if (answer.v !== PROTOCOL_VERSION) {
      request.reject(
        new CodejailError('bad_version', `the codejail daemon speaks protocol ${answer.v}; this client speaks ${PROTOCOL_VERSION}`),
      );
    } else {
      request.resolve(answer.result);
    }
  }

  private settle(id: number): void {
    this.pending.delete(id);
    if (this.pending.size === 0) {
      this.socket.unref();
      this.retryTimer?.unref();
    }
  }

  /** Marks the connection failed (the first reason wins), destroys it and rejects what is pending. */
  private fail(error: CodejailError): void {
    this.failure ??= error;
    this.unsent = [];
    if (this.retryTimer !== undefined) {
      // Between two attempts: no socket is open, so the connection is closed now.
      clearTimeout(this.retryTimer);
      this.retryTimer = undefined;
      this.settleClosed();
    }
    this.socket.destroy();
    const requests = [...this.pending.values()];
    this.pending.clear();
    for (const request of requests) request.reject(this.failure);
  }
}

/**
 * The daemon's message, and for bad_version the client's side too: a daemon that does not serve
 * this client's protocol names its own versions (an older one may name only its own), so the
 * error names both and says which side is older.
 */
function daemonErrorMessage(code: string, message: string): string {
  if (code !== 'bad_version') return message;
  return `this client speaks codejail protocol version ${PROTOCOL_VERSION}, which the daemon does not serve (upgrade the daemon, or use a client of its version): ${message}`;
}
