// Running under systemd: the socket it may pass in (LISTEN_FDS, checked to be a listening Unix
// stream socket), the sd_notify datagrams (READY, STATUS, RELOADING, STOPPING) and the watchdog
// loop that pings only while the daemon is healthy. Installing the units is setup's business
// (src/setup/systemd_units.ts).
import { readlinkSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { native } from '../native.js';
import type { Logger } from '../log.js';

/** systemd passes activated sockets from fd 3 on (SD_LISTEN_FDS_START). */
const SD_LISTEN_FDS_START = 3;

/** Linux's numbers for the one kind of socket the daemon serves (<sys/socket.h>). */
const AF_UNIX = 1;
const SOCK_STREAM = 1;

/** A socket systemd passed that the daemon cannot serve: said in full, no stack needed. */
export class ActivationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ActivationError';
  }
}

/**
 * The listening socket systemd passed (socket activation), or undefined to bind our own. Like
 * sd_listen_fds(unset_environment=1), the variables are removed: they describe this process
 * only and must not reach anything it starts.
 */
export function listenFdFromEnv(log: Logger): number | undefined {
  const { LISTEN_FDS: fds, LISTEN_PID: pid } = process.env;
  delete process.env.LISTEN_FDS;
  delete process.env.LISTEN_PID;
  delete process.env.LISTEN_FDNAMES;
  if (fds === undefined) return undefined;
  if (pid === undefined || Number(pid) !== process.pid) {
    // Inherited from a parent that was activated itself: those fds are not ours.
    log.warn('LISTEN_FDS is set for another process; binding the socket path instead', { listenPid: pid ?? null, pid: process.pid });
    return undefined;
  }
  const count = Number(fds);
  if (!Number.isInteger(count) || count < 1) throw new ActivationError(`LISTEN_FDS=${JSON.stringify(fds)} is not a positive count of sockets`);
  if (count > 1) {
    throw new ActivationError(`systemd passed ${count} sockets (LISTEN_FDS=${count}); codejaild serves exactly one: check ListenStream= in codejaild.socket`);
  }
  return SD_LISTEN_FDS_START;
}

/**
 * Checks that `fd` is a listening Unix stream socket and returns its path. Peer credentials, and
 * so authorization, exist only on Unix sockets: a TCP socket from a wrong ListenStream= would
 * otherwise be served. The kernel says what the socket is (getsockopt SO_DOMAIN, SO_TYPE,
 * SO_ACCEPTCONN, then getsockname), through the addon.
 */
export function describeListeningUnixSocket(fd: number): string {
  const fail = (why: string) =>
    new Error(`fd ${fd} passed by systemd (LISTEN_FDS) ${why}; codejaild needs a listening Unix stream socket: check ListenStream= in codejaild.socket`);
  let info;
  try {
    info = native().socketInfo(fd);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOTSOCK') throw fail(`is not a socket (${whatFdIs(fd)})`);
    throw fail(`is not open (${code ?? (err as Error).message})`);
  }
  if (info.domain !== AF_UNIX) throw fail('is not a Unix socket');
  if (info.type !== SOCK_STREAM) throw fail('is not a stream socket');
  if (!info.listening) throw fail('is not listening');
  return info.path ?? '(unnamed)';
}

/** What an fd that is not a socket is open on, for the error message: a path, pipe:[n]... */
function whatFdIs(fd: number): string {
  try {
    return readlinkSync(`/proc/self/fd/${fd}`);
  } catch {
    return 'unknown';
  }
}

/** A STATUS= value: a newline would start another KEY=value assignment. */
export function statusLine(text: string): string {
  return text.replace(/\s*\n\s*/g, ' ').slice(0, 1000);
}

/** sd_notify: a datagram to $NOTIFY_SOCKET, when systemd (Type=notify) gave us one. */
export function notifySystemd(message: string, log: Logger): void {
  const socket = process.env.NOTIFY_SOCKET;
  if (!socket) return;
  try {
    native().notify(socket, message);
  } catch (err) {
    log.warn('could not notify systemd', { message, error: (err as Error).message });
  }
}

/** What the watchdog asks of the daemon (DaemonHandle's health and describe). */
export interface Watched {
  health(): { healthy: boolean; reason?: string };
  /** One line for STATUS=. */
  describe(): string;
}

/**
 * WATCHDOG=1 at half of WATCHDOG_USEC, but only while the daemon is healthy: the event loop
 * keeps time, not every slot is quarantined, and the last self-check passed. Skipping the ping
 * is the point: systemd then restarts a daemon that can no longer run code safely, and the
 * restart's self-check decides whether it may serve again. Also refreshes STATUS=. Returns the
 * function that stops it.
 */
export function startWatchdog(daemon: Watched, log: Logger): () => void {
  if (!process.env.NOTIFY_SOCKET) return () => {};
  const usec = Number(process.env.WATCHDOG_USEC);
  const forUs = process.env.WATCHDOG_PID === undefined || Number(process.env.WATCHDOG_PID) === process.pid;
  const watchdog = Number.isFinite(usec) && usec > 0 && forUs;
  // Without a watchdog, STATUS= is still worth refreshing now and then for `systemctl status`.
  const intervalMs = watchdog ? Math.max(1, Math.floor(usec / 2000)) : 10_000;
  let expected = performance.now() + intervalMs;
  let lastProblem: string | undefined;
  const timer = setInterval(() => {
    const now = performance.now();
    const lateMs = now - expected;
    expected = now + intervalMs;
    let health = daemon.health();
    // A tick a whole interval late means the event loop was stuck that long: requests were not
    // being served, and the next stall may outlast the watchdog.
    if (health.healthy && lateMs > intervalMs) health = { healthy: false, reason: `the event loop was blocked for ${Math.round(lateMs)} ms` };
    if (health.healthy) {
      if (lastProblem !== undefined) log.info('healthy again', { was: lastProblem });
      lastProblem = undefined;
      notifySystemd(`${watchdog ? 'WATCHDOG=1\n' : ''}STATUS=${daemon.describe()}`, log);
      return;
    }
    if (health.reason !== lastProblem) log.error(`unhealthy${watchdog ? ', not pinging the watchdog' : ''}: ${health.reason}`, {});
    lastProblem = health.reason;
    notifySystemd(`STATUS=unhealthy: ${health.reason}`, log);
  }, intervalMs);
  // The socket server keeps the process alive; this timer alone must not.
  timer.unref();
  return () => clearInterval(timer);
}
