// Starts Debian's HAProxy as a plain process (not the system service) on 127.0.0.1, with a
// config written here, in front of HTTP back ends given by URL; its admin socket answers `show
// stat`, so that a test sees each back end's state as the balancer sees it.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export const HAPROXY = '/usr/sbin/haproxy';

/** Whether HAProxy is installed (scripts/install-deps.sh installs it). */
export function haveHaproxy(): boolean {
  return spawnSync(HAPROXY, ['-v'], { stdio: 'ignore' }).status === 0;
}

export interface BalancerBackend {
  /** The server's name in HAProxy (its stats, and the X-Codejail-Backend header). */
  name: string;
  /** http://127.0.0.1:<port> */
  url: string;
}

export interface BalancerOptions {
  /** Health check interval, ms. */
  interMs?: number;
  /** Failed checks in a row that mark a server DOWN. */
  fall?: number;
  /** Passed checks in a row that mark it UP again. */
  rise?: number;
  /**
   * Server errors (5xx answers, failed connections) in a row that mark a server DOWN at once,
   * between two checks; 0: only the checks do. Default 3.
   */
  errorLimit?: number;
}

export interface TestBalancer {
  /** http://127.0.0.1:<port>, the front end. */
  url: string;
  /** The config HAProxy runs with (for the report when a test fails). */
  config: string;
  /** Each server's status as HAProxy has it: 'UP', 'DOWN', 'UP 1/2', 'DOWN 1/2', 'no check'... */
  status(): Promise<Record<string, string>>;
  /** What HAProxy printed (its alerts and warnings). */
  output(): string;
  stop(): Promise<void>;
}

/** The name of the response header that says which back end answered. */
export const BACKEND_HEADER = 'x-codejail-backend';

/** A port free now on 127.0.0.1 (HAProxy reports no port it chose itself, so one is picked here). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** One command on HAProxy's admin socket; resolves with its whole answer. */
function adminCommand(socketPath: string, command: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.createConnection(socketPath);
    let answer = '';
    socket.setEncoding('utf8');
    socket.on('connect', () => socket.end(`${command}\n`));
    socket.on('data', (chunk: string) => (answer += chunk));
    socket.on('end', () => resolve(answer));
    socket.on('error', reject);
  });
}

/**
 * The config: HTTP health checks on GET /health/ (200 = the daemon behind that front end passed
 * its self-check), least connections, a request whose connection to a server fails sent to
 * another one (redispatch), and every answer naming its server.
 */
export function balancerConfig(port: number, adminSocket: string, backends: BalancerBackend[], options: BalancerOptions = {}): string {
  // A front end whose daemon is gone answers 500 at once, and so has the fewest connections:
  // with least connections it would draw most of the load until its next failed check. Watching
  // the answers marks it DOWN after a few.
  const errorLimit = options.errorLimit ?? 3;
  const observe = errorLimit > 0 ? ` observe layer7 error-limit ${errorLimit} on-error mark-down` : '';
  const servers = backends.map(({ name, url }) => {
    const { hostname, port: backendPort } = new URL(url);
    return `  server ${name} ${hostname}:${backendPort} check`;
  });
  return [
    'global',
    `  stats socket ${adminSocket} mode 600 level admin`,
    // Warnings and alerts (a server going DOWN, and why) to stderr, which the test keeps.
    '  log stderr format short local0 notice',
    '',
    'defaults',
    '  mode http',
    '  log global',
    '  timeout connect 2s',
    '  timeout client 60s',
    // Longer than a run's REALTIME ceiling is not needed here: the test's runs are short.
    '  timeout server 60s',
    '  timeout check 10s',
    // A connection refused by a stopped front end: tried again, on another server.
    '  retries 2',
    '  option redispatch 1',
    // A server connection closed without an answer is retried elsewhere too (a run is without
    // side effects outside its sandbox, so even a retry of one that did run costs only its time).
    // A reset one is not always: not when HAProxy began sending the request before all of it had
    // come (fetch writes a form's headers and body apart), and a retry may go back to the same
    // server, still UP; then HAProxy closes its client's connection without an answer. That is
    // why a stopping front end drains before it closes its listening socket, which resets the
    // connections waiting in its accept queue.
    '  retry-on conn-failure empty-response',
    // One request per server connection: no race with the front end's keep-alive timeout.
    '  option http-server-close',
    '',
    'frontend codejail',
    `  bind 127.0.0.1:${port}`,
    '  default_backend graders',
    '',
    'backend graders',
    '  balance leastconn',
    '  option httpchk GET /health/',
    '  http-check expect status 200',
    `  default-server inter ${options.interMs ?? 500} fall ${options.fall ?? 2} rise ${options.rise ?? 2}${observe}`,
    `  http-response set-header ${BACKEND_HEADER} %[srv_name]`,
    ...servers,
    '',
  ].join('\n');
}

export async function startBalancer(backends: BalancerBackend[], options: BalancerOptions = {}): Promise<TestBalancer> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cj-haproxy-'));
  const adminSocket = path.join(dir, 'admin.sock');
  const configFile = path.join(dir, 'haproxy.cfg');
  const port = await freePort();
  const config = balancerConfig(port, adminSocket, backends, options);
  fs.writeFileSync(configFile, config);
  const check = spawnSync(HAPROXY, ['-c', '-f', configFile], { encoding: 'utf8' });
  if (check.status !== 0) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw new Error(`haproxy -c refused the config:\n${check.stdout}${check.stderr}\n${config}`);
  }
  // -db: in the foreground, not a daemon, so that the test owns the process and its exit.
  const child: ChildProcess = spawn(HAPROXY, ['-db', '-f', configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));

  /** `show stat` (CSV, its header line naming the columns): each server's row, by column name. */
  const stats = async (): Promise<Record<string, Record<string, string>>> => {
    const lines = (await adminCommand(adminSocket, 'show stat')).split('\n').filter(Boolean);
    const columns = lines[0]!.replace(/^# /, '').split(',');
    const out: Record<string, Record<string, string>> = {};
    for (const line of lines.slice(1)) {
      const row = Object.fromEntries(line.split(',').map((cell, i) => [columns[i], cell]));
      if (row.pxname === 'graders' && row.svname !== 'BACKEND') out[row.svname!] = row;
    }
    return out;
  };
  const status = async () => Object.fromEntries(Object.entries(await stats()).map(([name, row]) => [name, row.status!]));

  const stop = async () => {
    // SIGTERM: HAProxy's hard stop (connections closed at once); the test has none left open.
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(killer);
    fs.rmSync(dir, { recursive: true, force: true });
  };

  // Ready once every server's last check passed (L7OK: GET /health/ answered 200) and it is UP:
  // HAProxy starts a server UP, before its first check.
  const deadline = Date.now() + 60_000;
  for (;;) {
    const states = child.exitCode === null ? await stats().catch(() => undefined) : undefined;
    if (states && backends.every(({ name }) => states[name]?.status === 'UP' && states[name]?.check_status === 'L7OK')) break;
    if (child.exitCode !== null || Date.now() > deadline) {
      await stop();
      throw new Error(`haproxy did not start with every server UP within 60 s: ${JSON.stringify(states)}\n${output}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }

  return {
    url: `http://127.0.0.1:${port}`,
    config,
    status,
    output: () => output,
    stop,
  };
}
