// Running under systemd without systemd: socket activation (a listening socket on fd 3 with
// LISTEN_FDS/LISTEN_PID) and the sd_notify datagrams (a small python3 receiver stands in for
// systemd's NOTIFY_SOCKET, since Node cannot bind Unix datagram sockets).
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Client } from '../../src/client/index.js';
import { startTestDaemon, type TestDaemon } from '../helpers/daemon.js';

const isRoot = process.getuid?.() === 0;

async function until(what: string, test: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!test()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cj-activation-'));
  cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

describe.skipIf(!isRoot)('socket activation', () => {
  it('serves the listening socket passed as fd 3, and leaves it in place when it stops', async () => {
    const dir = tempDir();
    const socketPath = path.join(dir, 'activated.sock');
    // Node unlinks a socket path when its server closes: bind under a temporary name, hand the
    // fd to the daemon, then move the name away before closing our copy of the fd.
    const bindPath = `${socketPath}.binding`;
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(bindPath, resolve));
    const fd = (server as unknown as { _handle: { fd: number } })._handle.fd;
    const started = startTestDaemon({ listenFd: fd });
    fs.renameSync(bindPath, socketPath);
    server.close();
    const daemon = await started;
    cleanups.push(() => daemon.stop());

    expect(daemon.logs.find((l) => l.msg === 'ready')).toMatchObject({ activated: true });
    expect(daemon.logs.some((l) => l.msg === 'serving the socket passed by systemd')).toBe(true);
    // It did not bind the configured path.
    expect(fs.existsSync(daemon.socketPath)).toBe(false);

    const client = new Client({ socketPath });
    try {
      const result = await client.jailCode('python', { code: 'print(6 * 7)' });
      expect(result.stdout.toString()).toBe('42\n');
    } finally {
      await client.close();
    }
    expect(await daemon.stop()).toBe(0);
    // The socket belongs to the .socket unit: the daemon must not remove it.
    expect(fs.statSync(socketPath).isSocket()).toBe(true);
  });

  it('refuses to start on a passed socket that is not a Unix stream socket', async () => {
    const tcp = net.createServer();
    await new Promise<void>((resolve) => tcp.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise((resolve) => tcp.close(resolve)));
    const fd = (tcp as unknown as { _handle: { fd: number } })._handle.fd;
    const daemon = await startTestDaemon({ listenFd: fd, expectExit: true });
    expect(await daemon.stop()).toBe(1);
    const failure = daemon.logs.find((l) => String(l.msg).startsWith('codejaild cannot start'));
    expect(String(failure?.msg)).toMatch(/fd 3 passed by systemd \(LISTEN_FDS\) is not a Unix socket/);
  });

  it('ignores LISTEN_FDS meant for another process and binds its own socket', async () => {
    const daemon = await startTestDaemon({ env: { LISTEN_FDS: '1', LISTEN_PID: '1' } });
    cleanups.push(() => daemon.stop());
    expect(daemon.logs.some((l) => l.msg === 'LISTEN_FDS is set for another process; binding the socket path instead')).toBe(true);
    const client = new Client({ socketPath: daemon.socketPath });
    try {
      expect((await client.status()).slots.total).toBe(4);
    } finally {
      await client.close();
    }
  });
});

/** A Unix datagram socket that records every message, like systemd's notify socket. */
async function notifyReceiver(): Promise<{ path: string; messages: string[]; process: ChildProcess }> {
  const socketPath = path.join(tempDir(), 'notify.sock');
  const script = [
    'import json, socket, sys',
    's = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)',
    's.bind(sys.argv[1])',
    'print("listening", flush=True)',
    'while True:',
    '    print(json.dumps(s.recv(4096).decode()), flush=True)',
  ].join('\n');
  const child = spawn('python3', ['-c', script, socketPath], { stdio: ['ignore', 'pipe', 'inherit'] });
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGKILL');
      }),
  );
  const messages: string[] = [];
  let buffered = '';
  let listening = false;
  child.stdout!.on('data', (chunk: Buffer) => {
    buffered += chunk.toString();
    let nl;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      if (line === 'listening') listening = true;
      else messages.push(JSON.parse(line) as string);
    }
  });
  await until('the notify receiver', () => listening);
  return { path: socketPath, messages, process: child };
}

describe.skipIf(!isRoot)('sd_notify', () => {
  it('sends STATUS, READY, WATCHDOG while healthy, RELOADING on SIGHUP and STOPPING on SIGTERM', async () => {
    const receiver = await notifyReceiver();
    // 200 ms watchdog: a ping every 100 ms.
    const daemon = await startTestDaemon({ env: { NOTIFY_SOCKET: receiver.path, WATCHDOG_USEC: '200000' } });
    cleanups.push(() => daemon.stop());
    const { messages } = receiver;
    const count = (prefix: string) => messages.filter((m) => m.startsWith(prefix) || m.includes(`\n${prefix}`)).length;

    await until('READY=1', () => count('READY=1') === 1);
    const starting = messages.findIndex((m) => m.startsWith('STATUS=starting'));
    const ready = messages.findIndex((m) => m.startsWith('READY=1'));
    expect(starting).toBeGreaterThanOrEqual(0);
    expect(starting).toBeLessThan(ready);
    expect(messages[ready]).toMatch(/^READY=1\nSTATUS=serving: 0\/4 slots busy, 0 queued/);
    await until('watchdog pings', () => count('WATCHDOG=1') >= 3);

    // A stalled event loop is unhealthy: the tick that notices it does not ping, and says why.
    daemon.process.kill('SIGSTOP');
    await new Promise((r) => setTimeout(r, 600));
    const pingsBefore = count('WATCHDOG=1');
    daemon.process.kill('SIGCONT');
    await until('the unhealthy status', () => messages.some((m) => m.startsWith('STATUS=unhealthy: the event loop was blocked')));
    await until('pings to resume', () => count('WATCHDOG=1') > pingsBefore);
    expect(daemon.logs.some((l) => l.level === 'error' && /^unhealthy, not pinging the watchdog/.test(String(l.msg)))).toBe(true);

    daemon.process.kill('SIGHUP');
    await until('RELOADING=1 then READY=1', () => count('RELOADING=1') === 1 && count('READY=1') === 2);
    expect(messages.findIndex((m) => m.startsWith('RELOADING=1'))).toBeLessThan(messages.findLastIndex((m) => m.startsWith('READY=1')));

    expect(await daemon.stop()).toBe(0);
    await until('STOPPING=1', () => count('STOPPING=1') === 1);
  });

  it('stops pinging the watchdog while the self-check fails, and resumes once it passes', async () => {
    const receiver = await notifyReceiver();
    const daemon = await startTestDaemon({ env: { NOTIFY_SOCKET: receiver.path, WATCHDOG_USEC: '200000' } });
    cleanups.push(() => daemon.stop());
    const client = new Client({ socketPath: daemon.socketPath });
    cleanups.push(() => client.close());
    const { messages } = receiver;
    const pings = () => messages.filter((m) => m.startsWith('WATCHDOG=1')).length;
    await until('watchdog pings', () => pings() >= 2);

    // 10 MB of address space by default: no Python starts, so the "print(1) runs" probe fails.
    const configFile = path.join(path.dirname(daemon.socketPath), 'config.json');
    const good = fs.readFileSync(configFile, 'utf8');
    fs.writeFileSync(configFile, JSON.stringify({ ...JSON.parse(good), defaultLimits: { VMEM: 10_000_000 } }));
    daemon.process.kill('SIGHUP');
    await until('the reload', () => daemon.logs.some((l) => l.msg === 'configuration reloaded'));
    const failed = await client.check();
    expect(failed.ok).toBe(false);
    expect(failed.probes[0]).toMatchObject({ name: 'print(1) runs', outcome: 'failed' });
    await until('the unhealthy status', () => messages.some((m) => m === 'STATUS=unhealthy: the last self-check failed'));
    const silentFrom = pings();
    await new Promise((r) => setTimeout(r, 400));
    expect(pings()).toBe(silentFrom);
    expect(await client.metrics()).toMatch(/^codejail_selfcheck_ok 0$/m);

    fs.writeFileSync(configFile, good);
    daemon.process.kill('SIGHUP');
    await until('the second reload', () => daemon.logs.filter((l) => l.msg === 'configuration reloaded').length === 2);
    expect((await client.check()).ok).toBe(true);
    await until('pings to resume', () => pings() > silentFrom);
  });
});
