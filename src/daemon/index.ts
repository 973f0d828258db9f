// Starting and stopping a daemon in-process: what main.ts (the codejaild bin) and tests use.
// Order matters and is fail-closed: config, layers, interpreter discovery, run base, self-check;
// only then does the socket exist.
import { readFileSync } from 'node:fs';
import { PROTOCOL_VERSION, type StatusResult } from '../protocol/index.js';
import { native } from '../native.js';
import { loadConfig, type DaemonConfig } from './config.js';
import { discoverCommands } from './interpreter.js';
import { detectLayers, type LayerReport, type Layers } from './layers.js';
import { createLogger, type Logger } from './log.js';
import { prepareRunBase, sweepRunBase } from './rundir.js';
import { Runner } from './runner.js';
import { runSelfCheck } from './selfcheck.js';
import { DaemonServer } from './server.js';
import { SlotPool, slotUsers } from './slots.js';

export { loadConfig, defaultConfig, parseConfig, ConfigError, DEFAULT_CONFIG_PATH } from './config.js';
export type { DaemonConfig, DaemonConfigInput } from './config.js';
export { setupHost } from './setup.js';
export { LayerError } from './layers.js';
export type { LayerReport } from './layers.js';
export { SelfCheckError } from './selfcheck.js';
export { createLogger, silentLogger } from './log.js';
export type { Logger } from './log.js';

export interface StartDaemonOptions {
  /** A loaded configuration; without it, `configFile` (or the default path) is loaded. */
  config?: DaemonConfig;
  configFile?: string;
  /** Overrides config.socket.path. */
  socketPath?: string;
  /** Run without confinement except rlimits (loudly logged). Also implied when not root. */
  unsafe?: boolean;
  /** Defaults to JSON lines on stderr at config.logLevel. */
  log?: Logger;
}

export interface DaemonHandle {
  /** The socket path clients connect to. */
  address: string;
  /** Layer -> state, as logged at start and returned by the status op. */
  layers: LayerReport;
  unsafe: boolean;
  /** Stops accepting, cancels and cleans up every run, removes the socket. Idempotent. */
  close(): Promise<void>;
}

const VERSION = readVersion();

export async function startDaemon(options: StartDaemonOptions = {}): Promise<DaemonHandle> {
  const loaded = options.config ?? loadConfig(options.configFile);
  const config: DaemonConfig = options.socketPath ? { ...loaded, socket: { ...loaded.socket, path: options.socketPath } } : loaded;
  const log = options.log ?? createLogger({ level: config.logLevel });
  const addon = native();
  const startedAt = Date.now();

  const layers = detectLayers(config, { addon, log, unsafe: options.unsafe ?? false });
  let server: DaemonServer | undefined;
  try {
    log.info('confinement layers', { layers: layers.report });
    // Orphans of a run (a daemonised grandchild) must come back to us to be reaped, not to an
    // init that may never reap them and keep the slot's uid "in use".
    addon.becomeSubreaper();

    const commands = discoverCommands(config, log);
    for (const profile of commands.values()) {
      log.info('command ready', { command: profile.name, executable: profile.executable, execute: profile.execute, read: profile.read });
    }

    await prepareRunBase(config.runBase);
    await sweepRunBase(config.runBase, log);
    if (layers.kill === 'uid') {
      // A crashed daemon may have left sandboxes running under slot uids.
      for (const slot of slotUsers(config.slots)) addon.killUid(slot.uid);
    }

    const slots = new SlotPool(slotUsers(config.slots), config.queueMax);
    const runner = new Runner({ config, layers, commands, slots, addon, log });

    const checkCommand = Object.entries(config.commands).find(([, c]) => c.kind === 'python')?.[0];
    if (checkCommand) {
      await runSelfCheck({ runner, layers, command: checkCommand, ceilings: config.ceilings, log });
    } else {
      log.warn('self-check skipped: no command of kind "python" is configured');
    }

    const status = (): StatusResult => ({
      version: VERSION,
      protocol: PROTOCOL_VERSION,
      unsafe: layers.unsafe,
      layers: layers.report,
      slots: { total: slots.total, busy: slots.busy },
      queue: { depth: slots.queued, max: slots.maxQueued },
      uptimeMs: Date.now() - startedAt,
      commands: [...commands.keys()],
      counters: { ...runner.counters },
    });
    server = new DaemonServer({
      socketPath: config.socket.path,
      group: config.socket.group,
      mode: config.socket.mode,
      maxFrameBytes: config.maxFrameBytes,
      runner,
      status,
      log,
    });
    await server.listen();
    log.info('ready', {
      socket: config.socket.path,
      version: VERSION,
      unsafe: layers.unsafe,
      layers: layers.report,
      slots: config.slots.count,
      commands: [...commands.keys()],
    });

    let closing: Promise<void> | undefined;
    const running = server;
    return {
      address: config.socket.path,
      layers: layers.report,
      unsafe: layers.unsafe,
      close: () =>
        (closing ??= (async () => {
          log.info('stopping');
          slots.close('the daemon is stopping');
          await running.close();
          releaseLayers(layers);
          log.info('stopped');
        })()),
    };
  } catch (err) {
    await server?.close().catch(() => undefined);
    releaseLayers(layers);
    throw err;
  }
}

function releaseLayers(layers: Layers): void {
  if (layers.netnsFd === undefined) return;
  native().closeFd(layers.netnsFd);
  layers.netnsFd = undefined;
}

function readVersion(): string {
  try {
    // dist/daemon/ and src/daemon/ are both two levels below the package root.
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}
