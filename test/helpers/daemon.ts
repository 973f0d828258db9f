// Starts a real codejaild (the compiled dist/, as root) on a private socket and run base, for
// the end-to-end suites. CODEJAIL_SABOTAGE turns the named layers off in its config, so that the
// sabotage script can show a deny_* test failing without its layer. CODEJAIL_TEST_RUN_PATH=cold
// turns the warm templates off (warm.enabled: false), so that the same suites prove the cold path
// too (vitest.config.ts runs test/e2e and test/hostile under both); =held turns warm.holdAhead
// on (src/run/held.ts), a third pass; by default runs go warm, as the product's do.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { runBaseClaimFile } from '../../src/daemon/instance.js';
import { LAYER_NAMES } from '../../src/layers/index.js';
import { followLogLines } from './log_lines.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const DAEMON_MAIN = path.join(root, 'dist/daemon/main.js');

/**
 * The path this process's test daemons run python on: 'cold' turns the warm templates off;
 * 'held' turns warm.holdAhead on (each idle slot holds its next warm run, started ahead).
 */
export const TEST_RUN_PATH: 'warm' | 'cold' | 'held' =
  process.env.CODEJAIL_TEST_RUN_PATH === 'cold' ? 'cold' : process.env.CODEJAIL_TEST_RUN_PATH === 'held' ? 'held' : 'warm';

/** Every layer the daemon's config can turn off: each one in the registry. */
export const DAEMON_LAYERS: readonly string[] = LAYER_NAMES;

export interface TestDaemon {
  socketPath: string;
  runBase: string;
  /** The first of its slots' uids (its config's slots.firstUid). */
  firstUid: number;
  /** Every log line the daemon printed so far, parsed. */
  logs: Array<Record<string, unknown>>;
  process: ChildProcess;
  stop(): Promise<number | null>;
}

export interface TestDaemonOptions {
  /** Config keys merged over the test defaults. */
  config?: Record<string, unknown>;
  extraArgs?: string[];
  /** Resolve once the daemon exits instead of once it is ready (start-up failure tests). */
  expectExit?: boolean;
  /** Extra environment variables of the daemon (NOTIFY_SOCKET, WATCHDOG_USEC...). */
  env?: Record<string, string>;
  /**
   * A listening socket's fd in this process, passed as the daemon's fd 3 with LISTEN_FDS=1 and
   * LISTEN_PID set to the daemon's own pid (a shell sets it to $$ and execs node), as systemd's
   * socket activation does.
   */
  listenFd?: number;
  /**
   * Blocks the daemon's event loop this long right after it starts a run slugged
   * 'test-block-loop' (a switch of daemon_test_hooks.mjs, preloaded for it).
   */
  blockLoopMs?: number;
}

/** The test daemon's switches, loaded into it by `node --import` when a test asks for one. */
export const DAEMON_TEST_HOOKS = path.join(root, 'test/helpers/daemon_test_hooks.mjs');

let instance = 0;

export async function startTestDaemon(options: TestDaemonOptions = {}): Promise<TestDaemon> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cj-daemon-'));
  const socketPath = path.join(dir, 'codejail.sock');
  const runBase = path.join('/var/lib/codejail-test', `${process.pid}-${instance++}`);
  const sabotaged = (process.env.CODEJAIL_SABOTAGE ?? '').split(',').filter(Boolean);
  const layers: Record<string, string> = {};
  for (const layer of DAEMON_LAYERS) if (sabotaged.includes(layer)) layers[layer] = 'off';
  // Each test daemon gets its own slot uids, so parallel test files never share a uid.
  // Never a range holding a uid something else runs as: the serve tests' front end (64917) or
  // nobody (65534); a slot's sweep kills every process of its uids.
  let firstUid = 62000 + (process.pid % 500) * 16 + (instance % 4) * 4;
  if ([64_917, 65_534].some((uid) => uid >= firstUid && uid < firstUid + 4)) firstUid += 16_000; // 78000 up: clear of the multihost tests (70000-77999)

  const config = {
    runBase,
    ...options.config,
    // Merged, so that a test asking for fewer slots keeps its private uids.
    slots: { firstUid, count: 4, ...((options.config?.slots as object) ?? {}) },
    // Merged, not replaced, so a test can change the socket's mode and keep its private path.
    socket: { path: socketPath, group: 'codejail', mode: '0660', ...((options.config?.socket as object) ?? {}) },
    layers: { ...layers, ...((options.config?.layers as object) ?? {}) },
    // A test that sets warm settings of its own keeps them; `enabled` only if it says so.
    warm: {
      ...(TEST_RUN_PATH === 'cold' ? { enabled: false } : TEST_RUN_PATH === 'held' ? { holdAhead: true } : {}),
      ...((options.config?.warm as object) ?? {}),
    },
  };
  const configFile = path.join(dir, 'config.json');
  fs.writeFileSync(configFile, JSON.stringify(config));
  const hooks = options.blockLoopMs ? ['--import', pathToFileURL(DAEMON_TEST_HOOKS).href] : [];
  const daemonArgs = [...hooks, DAEMON_MAIN, '--config', configFile, ...(options.extraArgs ?? [])];
  const env: NodeJS.ProcessEnv = { ...process.env, HONEY_BOO_BOO: 'daemon secret', ...options.env };
  if (options.blockLoopMs) env.CODEJAIL_TEST_BLOCK_LOOP_MS = String(options.blockLoopMs);
  const child =
    options.listenFd === undefined
      ? spawn(process.execPath, daemonArgs, { stdio: ['ignore', 'pipe', 'pipe'], env })
      : spawn('/bin/sh', ['-c', 'LISTEN_PID=$$ exec "$0" "$@"', process.execPath, ...daemonArgs], {
          stdio: ['ignore', 'pipe', 'pipe', options.listenFd],
          env: { ...env, LISTEN_FDS: '1' },
        });
  const logs: Array<Record<string, unknown>> = [];
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const ready = new Promise<void>((resolve, reject) => {
    followLogLines([child.stderr, child.stdout], (line) => {
      logs.push(line);
      if (line.msg === 'ready') resolve();
    });
    void exited.then((code) =>
      options.expectExit ? resolve() : reject(new Error(`codejaild exited with ${code} before ready:\n${logs.map((l) => JSON.stringify(l)).join('\n')}`)),
    );
  });
  await ready;
  return {
    socketPath,
    runBase,
    firstUid: config.slots.firstUid,
    logs,
    process: child,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const code = await exited;
      // A daemon that was killed leaves its run disks, its runBase bind mount and its claim on
      // the run base (<runBase>.codejaild.pid) behind.
      spawnSync('umount', ['--recursive', '--lazy', runBase], { stdio: 'ignore' });
      fs.rmSync(dir, { recursive: true, force: true });
      fs.rmSync(runBase, { recursive: true, force: true });
      fs.rmSync(runBaseClaimFile(runBase), { force: true });
      return code;
    },
  };
}
