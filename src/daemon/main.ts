#!/usr/bin/env node
// codejaild: the root daemon. Loads the config, checks the confinement layers (fail closed),
// self-checks, then serves the Unix socket (its own, or one systemd passed in) until SIGTERM.
// Speaks the sd_notify protocol: READY, STATUS, WATCHDOG (only while healthy), RELOADING on
// SIGHUP and STOPPING while it drains.
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { native } from '../native.js';
import { PACKAGE_VERSION } from '../package.js';
import { createLogger, LOG_LEVELS, type LogLevel, type Logger } from './log.js';
import { startDaemon, type DaemonHandle } from './index.js';

const USAGE = `usage: codejaild [--config FILE] [--socket PATH] [--log-level LEVEL] [--unsafe]

Runs untrusted code for codejail clients in layered Linux sandboxes. Must run as root.

  --config FILE      JSON configuration (default /etc/codejail/config.json, if it exists)
  --socket PATH      listen here instead of the configured socket path
  --log-level LEVEL  debug, info, warn or error, instead of the configured logLevel
  --unsafe           run code WITHOUT confinement (rlimits only); for development only
  --version          print the version and exit
  --help             show this help

Signals: SIGTERM/SIGINT stop (running work may finish for shutdownGraceMs), SIGHUP reloads the
configuration file. Under systemd the socket may be passed in (LISTEN_FDS) and NOTIFY_SOCKET /
WATCHDOG_USEC are honoured.
`;

/** systemd passes activated sockets from fd 3 on (SD_LISTEN_FDS_START). */
const SD_LISTEN_FDS_START = 3;

async function main(): Promise<number> {
  let values: { config?: string; socket?: string; 'log-level'?: string; unsafe?: boolean; help?: boolean; version?: boolean };
  try {
    ({ values } = parseArgs({
      options: {
        config: { type: 'string' },
        socket: { type: 'string' },
        'log-level': { type: 'string' },
        unsafe: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean', short: 'V' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    process.stderr.write(`codejaild: ${(err as Error).message}\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (values.version) {
    process.stdout.write(`codejaild ${PACKAGE_VERSION}\n`);
    return 0;
  }
  const logLevel = values['log-level'];
  if (logLevel !== undefined && !(LOG_LEVELS as readonly string[]).includes(logLevel)) {
    process.stderr.write(`codejaild: --log-level must be one of ${LOG_LEVELS.join(', ')}, not '${logLevel}'\n${USAGE}`);
    return 2;
  }

  // Start-up failures are logged in the same JSON form as everything else, so the journal
  // shows exactly which layer, key or check stopped the daemon.
  const bootLog = createLogger({ level: (logLevel as LogLevel | undefined) ?? 'info' });
  // A SIGHUP or SIGTERM during the self-check must not kill the process with Node's default
  // action: remember it and act once the daemon is up.
  let early: NodeJS.Signals | undefined;
  const remember = (signal: NodeJS.Signals) => {
    if (signal !== 'SIGHUP') early = signal;
  };
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, remember);

  let daemon: DaemonHandle;
  try {
    const listenFd = inheritedSocket(bootLog);
    notifySystemd('STATUS=starting: checking layers and running the self-check', bootLog);
    daemon = await startDaemon({
      configFile: values.config,
      socketPath: values.socket,
      unsafe: values.unsafe,
      logLevel: logLevel as LogLevel | undefined,
      listenFd,
    });
  } catch (err) {
    // Config, layer and self-check errors say everything in their message; anything else is a
    // bug or a host problem, and its stack helps.
    const expected = ['ConfigError', 'LayerError', 'SelfCheckError', 'ActivationError'].includes((err as Error).name);
    bootLog.error(`codejaild cannot start: ${(err as Error).message}`, expected ? {} : { stack: (err as Error).stack });
    notifySystemd(`STATUS=cannot start: ${oneLine((err as Error).message)}`, bootLog);
    return 1;
  }
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.off(signal, remember);

  // From here on, the daemon's own logger: it honours logLevel and its reloads.
  const log = daemon.log;
  notifySystemd(`READY=1\nSTATUS=${daemon.describe()}`, log);
  const stopWatchdog = startWatchdog(daemon, log);

  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: NodeJS.Signals) => {
      if (stopping) {
        // Someone insists (a second Ctrl-C): cancel what still runs instead of waiting for it.
        log.warn('second stop signal: cancelling the runs still in flight', { signal });
        void daemon.close(0);
        return;
      }
      stopping = true;
      log.info('signal received, stopping', { signal });
      stopWatchdog();
      notifySystemd(`STOPPING=1\nSTATUS=stopping: letting the runs in flight finish`, log);
      daemon.close().then(
        () => resolve(0),
        (err) => {
          log.error('clean shutdown failed', { error: err });
          resolve(1);
        },
      );
    };
    const reload = () => {
      if (stopping) return;
      notifySystemd(`RELOADING=1\nSTATUS=reloading the configuration`, log);
      try {
        const report = daemon.reload();
        if (report.needsRestart.length > 0) {
          log.warn(`configuration reloaded; ${report.needsRestart.join(', ')} changed and needs a restart (the old values stay in force)`, {
            applied: report.applied,
            needsRestart: report.needsRestart,
          });
        } else {
          log.info('configuration reloaded', { applied: report.applied });
        }
      } catch (err) {
        log.error(`configuration reload failed, the old configuration stays in force: ${(err as Error).message}`, {});
      }
      notifySystemd(`READY=1\nSTATUS=${daemon.describe()}`, log);
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
    process.on('SIGHUP', reload);
    if (early) stop(early);
  });
}

class ActivationError extends Error {
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
function inheritedSocket(log: Logger): number | undefined {
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
 * WATCHDOG=1 at half of WATCHDOG_USEC, but only while the daemon is healthy: the event loop
 * keeps time, not every slot is quarantined, and the last self-check passed. Skipping the ping
 * is the point: systemd then restarts a daemon that can no longer run code safely, and the
 * restart's self-check decides whether it may serve again. Also refreshes STATUS=.
 */
function startWatchdog(daemon: DaemonHandle, log: Logger): () => void {
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

/** A STATUS= value: a newline would start another KEY=value assignment. */
function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, ' ').slice(0, 1000);
}

/** sd_notify: a datagram to $NOTIFY_SOCKET, when systemd (Type=notify) gave us one. */
function notifySystemd(message: string, log: Logger): void {
  const socket = process.env.NOTIFY_SOCKET;
  if (!socket) return;
  try {
    native().notify(socket, message);
  } catch (err) {
    log.warn('could not notify systemd', { message, error: (err as Error).message });
  }
}

main().then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`codejaild: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exit(1);
  },
);
