#!/usr/bin/env node
// codejaild: the root daemon. Loads the config, checks the confinement layers (fail closed),
// self-checks, then serves the Unix socket until SIGINT/SIGTERM.
import { parseArgs } from 'node:util';
import { native } from '../native.js';
import { createLogger, type Logger } from './log.js';
import { startDaemon, type DaemonHandle } from './index.js';

const USAGE = `usage: codejaild [--config FILE] [--socket PATH] [--unsafe]

Runs untrusted code for codejail clients in layered Linux sandboxes. Must run as root.

  --config FILE   JSON configuration (default /etc/codejail/config.json, if it exists)
  --socket PATH   listen here instead of the configured socket path
  --unsafe        run code WITHOUT confinement (rlimits only); for development only
  --help          show this help
`;

async function main(): Promise<number> {
  let values: { config?: string; socket?: string; unsafe?: boolean; help?: boolean };
  try {
    ({ values } = parseArgs({
      options: {
        config: { type: 'string' },
        socket: { type: 'string' },
        unsafe: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
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

  // Start-up failures are logged in the same JSON form as everything else, so the journal
  // shows exactly which layer, key or check stopped the daemon.
  const bootLog = createLogger();
  let daemon: DaemonHandle;
  try {
    daemon = await startDaemon({ configFile: values.config, socketPath: values.socket, unsafe: values.unsafe });
  } catch (err) {
    // Config, layer and self-check errors say everything in their message; anything else is a
    // bug or a host problem, and its stack helps.
    const expected = ['ConfigError', 'LayerError', 'SelfCheckError'].includes((err as Error).name);
    bootLog.error(`codejaild cannot start: ${(err as Error).message}`, expected ? {} : { stack: (err as Error).stack });
    return 1;
  }

  notifySystemd('READY=1', bootLog);
  return new Promise<number>((resolve) => {
    const stop = (signal: NodeJS.Signals) => {
      bootLog.info('signal received, stopping', { signal });
      notifySystemd('STOPPING=1', bootLog);
      daemon.close().then(
        () => resolve(0),
        (err) => {
          bootLog.error('clean shutdown failed', { error: err });
          resolve(1);
        },
      );
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
}

/** Type=notify units: tell systemd when the socket is really being served (after the self-check). */
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
