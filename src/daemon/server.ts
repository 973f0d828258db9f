// The Unix socket server: length-prefixed msgpack frames in, one reply per request out. One
// connection carries many concurrent requests told apart by id. A malformed or oversized frame
// closes that connection only; a connection that closes has its runs cancelled.
import { promises as fs } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import {
  describeIssues,
  encodeFrame,
  FrameDecoder,
  FrameError,
  PROTOCOL_VERSION,
  request as requestSchema,
  type ErrorCode,
  type Request,
  type StatusResult,
} from '../protocol/index.js';
import { readAccounts } from './accounts.js';
import { DaemonError } from './errors.js';
import type { Logger } from './log.js';
import type { Runner } from './runner.js';

export interface ServerOptions {
  socketPath: string;
  /** Group allowed to connect (socket is root:group, `mode`); missing group: root-only 0600. */
  group: string;
  mode: number;
  maxFrameBytes: number;
  runner: Runner;
  status: () => StatusResult;
  log: Logger;
}

export class DaemonServer {
  private readonly server: net.Server;
  private readonly connections = new Set<Connection>();
  private stopping = false;

  constructor(private readonly options: ServerOptions) {
    this.server = net.createServer((socket) => this.accept(socket));
  }

  get address(): string {
    return this.options.socketPath;
  }

  /** Listens on the socket path (replacing a stale socket) and sets its owner and mode. */
  async listen(): Promise<void> {
    const { socketPath, log } = this.options;
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
  }

  /** Stops accepting, cancels every run (reason: shutting_down), waits for their clean-up. */
  async close(): Promise<void> {
    this.stopping = true;
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    await Promise.all([...this.connections].map((c) => c.shutdown()));
    await closed;
    await fs.unlink(this.options.socketPath).catch(() => undefined);
  }

  private accept(socket: net.Socket): void {
    if (this.stopping) {
      socket.destroy();
      return;
    }
    const connection = new Connection(socket, this.options);
    this.connections.add(connection);
    socket.on('close', () => this.connections.delete(connection));
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

/** One client connection: its frame decoder and the runs it has in flight. */
class Connection {
  private readonly decoder: FrameDecoder;
  private readonly inflight = new Map<number, AbortController>();
  private readonly settled = new Set<Promise<void>>();
  private broken = false;

  constructor(
    private readonly socket: net.Socket,
    private readonly options: ServerOptions,
  ) {
    this.decoder = new FrameDecoder(options.maxFrameBytes);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err) => options.log.debug('client connection error', { error: err }));
    socket.on('close', () => this.cancelAll(new DaemonError('cancelled', 'the client disconnected')));
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
    let messages: unknown[];
    try {
      messages = this.decoder.push(chunk);
    } catch (err) {
      // The stream cannot be resynchronised after a bad frame: say why, then hang up. (The
      // decoder throws only FrameError; anything else is treated the same rather than crash.)
      const reason = err instanceof FrameError ? err.message : `undecodable frame: ${(err as Error).message}`;
      this.broken = true;
      this.options.log.warn('closing a connection after a bad frame', { reason });
      this.socket.end(this.errorFrame(0, 'bad_frame', reason));
      this.socket.destroySoon();
      return;
    }
    for (const message of messages) {
      try {
        this.handle(message);
      } catch (err) {
        this.options.log.error('handling a request failed', { error: err, stack: (err as Error)?.stack });
        this.replyError(requestId(message), 'internal', 'internal error in the daemon (logged)');
      }
    }
  }

  private handle(raw: unknown): void {
    const id = requestId(raw);
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
      this.replyError(id, 'bad_request', 'a request must be a map');
      return;
    }
    const version = (raw as { v?: unknown }).v;
    if (version !== undefined && version !== PROTOCOL_VERSION) {
      this.replyError(id, 'bad_version', `protocol version ${String(version)} is not supported; this daemon speaks version ${PROTOCOL_VERSION}`);
      return;
    }
    const parsed = requestSchema.safeParse(raw);
    if (!parsed.success) {
      this.replyError(id, 'bad_request', describeIssues(parsed.error));
      return;
    }
    this.dispatch(parsed.data);
  }

  private dispatch(request: Request): void {
    switch (request.op) {
      case 'status':
        this.replyOk(request.id, this.options.status());
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
    const done: Promise<void> = this.options.runner
      .run(request, controller.signal)
      .then(
        (result) => this.replyOk(id, result),
        (err: unknown) => {
          if (err instanceof DaemonError) {
            this.replyError(id, err.code, err.message);
          } else {
            this.options.log.error('a run failed unexpectedly', { id, slug: request.slug, error: err, stack: (err as Error)?.stack });
            this.replyError(id, 'internal', 'internal error in the daemon (logged)');
          }
        },
      )
      .finally(() => {
        this.inflight.delete(id);
        this.settled.delete(done);
      });
    this.settled.add(done);
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
  }
}

/** The request's id when it is a valid one, so even a rejected request gets a matching reply. */
function requestId(raw: unknown): number {
  const id = (raw as { id?: unknown } | null)?.id;
  return typeof id === 'number' && Number.isInteger(id) && id >= 0 && id <= 0xffffffff ? id : 0;
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
