// The Unix socket server: listens (on its own path, replacing a stale socket, or on the socket
// systemd passed), accepts connections and hands each to a Connection (connection.ts). Every
// connection's caller (SO_PEERCRED) is checked against the allow list before a byte is read, and
// again for each open connection after a reload. Callers are trusted with nothing else:
// connections are capped in all and per uid, and the bytes they hold are held to a budget per uid
// and in all (budget.ts). Refusals are counted in the metrics and logged at a bounded rate.
import { promises as fs, readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { encodeFrame, PROTOCOL_VERSION, type ErrorCode } from '../../protocol/index.js';
import { readAccounts } from '../../accounts.js';
import { authorize, type Caller } from '../auth.js';
import { describeListeningUnixSocket } from '../systemd.js';
import { BufferBudget } from './budget.js';
import { Connection, SHUTDOWN_NOTICE } from './connection.js';
import type { ServerOptions } from './options.js';
import { Requests } from './requests.js';
import { ThrottledLog } from './throttle.js';

/**
 * Refused connections told why at once (the rest are hung up on without a word): telling takes a
 * second at most, and a flood of connections must not hold file descriptors meanwhile.
 */
const REFUSALS_BEING_TOLD = 64;

/**
 * Connections the kernel queues for accept() (the kernel caps it at net.core.somaxconn, 4096 by
 * default): node's default, 511, was too few for a burst of callers, and a connect() finding the
 * queue full fails at once (EAGAIN; the client tries again for a while). Applies to a socket
 * systemd passed too: node listens on it again, with this backlog.
 */
const LISTEN_BACKLOG = 1024;

/**
 * How long a stopping daemon goes on accepting after removing its socket: the connections queued
 * before are accepted within one turn of the event loop, each told 'shutting_down'.
 */
const BACKLOG_DRAIN_MS = 50;

/** File descriptors kept for the runs (pipes, pidfds, files written) and the daemon's own. */
const DESCRIPTORS_FOR_RUNS = 1024;

export class DaemonServer {
  private readonly server: net.Server;
  private readonly connections = new Set<Connection>();
  /** Open connections per caller uid. */
  private readonly perUid = new Map<number, number>();
  private refusing = 0;
  private readonly refusals: ThrottledLog;
  private readonly requests: Requests;
  private stopping = false;
  /**
   * Set once our own bind of the socket path succeeded: only then is the file there ours to
   * remove. A start that failed before (another daemon serves the path, or it is not a socket)
   * must leave it alone.
   */
  private bound = false;
  /** The socket file our bind made (device and inode): only that one is removed at close. */
  private boundSocket: { dev: number; ino: number } | undefined;
  private nextConnectionId = 1;
  private bytesMovedCount = 0;
  /** The bytes connections hold, per caller uid and in all, and the caps on them. */
  private readonly budget: BufferBudget;

  constructor(private readonly options: ServerOptions) {
    this.server = net.createServer((socket) => this.accept(socket));
    this.refusals = new ThrottledLog(options.log);
    this.requests = new Requests(options, this.refusals);
    this.budget = new BufferBudget(this.connections, options.connections);
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
        // The backlog as an argument: node ignores options.backlog with an fd.
        this.server.listen({ fd: listenFd }, LISTEN_BACKLOG, () => {
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
      this.server.listen({ path: socketPath, backlog: LISTEN_BACKLOG }, () => {
        this.server.off('error', reject);
        this.bound = true;
        resolve();
      });
    });
    this.server.on('error', (err) => log.error('socket server error', { error: err }));
    const made = await fs.lstat(socketPath);
    this.boundSocket = { dev: made.dev, ino: made.ino };
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
   * directory removed); closes the connections, each told why (Connection.shutdown). Callers
   * close the slot pool first, so that no new run starts meanwhile. `hurry` aborting ends the
   * grace period early (a second SIGTERM).
   *
   * The socket we bound is removed first, so that a new caller finds no socket ('unavailable',
   * nothing sent) rather than a connection that closing the listener resets after it was queued
   * (the caller's request written, then ECONNRESET: lost without a reply). Connections already
   * queued are accepted meanwhile and told 'shutting_down' (accept()). A socket systemd passed
   * is closed at once: systemd keeps it, and queues new connections for the next daemon.
   */
  async close(graceMs = 0, hurry?: AbortSignal): Promise<void> {
    this.stopping = true;
    if (this.bound) {
      await this.removeOwnSocket();
      await delay(BACKLOG_DRAIN_MS);
    }
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
  }

  /**
   * Unlinks the socket path if it is still the socket we bound: another daemon started meanwhile
   * may have bound its own there, which is not ours to remove.
   */
  private async removeOwnSocket(): Promise<void> {
    const { socketPath, log } = this.options;
    const now = await fs.lstat(socketPath).catch(() => undefined);
    if (!now || this.boundSocket === undefined || now.dev !== this.boundSocket.dev || now.ino !== this.boundSocket.ino) {
      log.warn('the socket path is no longer the socket this daemon bound: left as it is', { socket: socketPath });
      return;
    }
    await fs.unlink(socketPath).catch(() => undefined);
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

  /**
   * Bytes read from and replies written to all connections so far: what moved in a while says
   * whether the daemon worked in it, whatever a stalled connection still holds.
   */
  get bytesMoved(): number {
    return this.bytesMovedCount;
  }

  /** Bytes all connections hold: frames in progress, unread replies and queued requests. */
  bufferedBytes(): number {
    return this.budget.total();
  }

  private accept(socket: net.Socket): void {
    const { log, metrics, connections: limits } = this.options;
    socket.on('error', (err) => log.debug('client connection error', { error: err }));
    if (this.stopping) {
      // Queued before the socket was removed: it may have written a request already.
      this.refuse(socket, 'shutting_down', SHUTDOWN_NOTICE);
      return;
    }
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
      grew: (grown, growth) => this.budget.enforce(grown, growth),
      released: () => {
        for (const waiting of this.connections) waiting.roomMade();
      },
      refusal: (holder, bytes) => this.budget.refusal(holder, bytes),
      requests: this.requests,
      moved: (bytes) => (this.bytesMovedCount += bytes),
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
