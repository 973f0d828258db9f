#!/usr/bin/env node
// codejaild: the root daemon. Loads the config, checks the confinement layers (fail closed),
// self-checks, then serves the Unix socket (its own, or one systemd passed in) until SIGTERM.
// Speaks the sd_notify protocol (systemd.ts): READY, STATUS, WATCHDOG (only while healthy),
// RELOADING on SIGHUP and STOPPING while it drains.
import { parseArgs } from 'node:util';
import { PACKAGE_VERSION } from '../package.js';
import { createLogger, LOG_LEVELS, type LogLevel } from '../log.js';
import { startDaemon, type DaemonHandle } from './index.js';
import { listenFdFromEnv, notifySystemd, startWatchdog, statusLine } from './systemd.js';
import { CODEJAILD_USAGE as USAGE } from './usage.js';

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
    const listenFd = listenFdFromEnv(bootLog);
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
    const expected = ['ConfigError', 'LayerError', 'SelfCheckError', 'ActivationError', 'InstanceError'].includes((err as Error).name);
    bootLog.error(`codejaild cannot start: ${(err as Error).message}`, expected ? {} : { stack: (err as Error).stack });
    notifySystemd(`STATUS=cannot start: ${statusLine((err as Error).message)}`, bootLog);
    return 1;
  }

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
    // The real handlers go on before `remember` comes off: removing a signal's last listener
    // closes Node's watcher for it, and a signal already caught but not yet delivered (one sent
    // right at "ready") would be lost with it, leaving a daemon that ignores its SIGTERM.
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
    process.on('SIGHUP', reload);
    for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.off(signal, remember);
    if (early) stop(early);
  });
}

main().then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`codejaild: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exit(1);
  },
);
