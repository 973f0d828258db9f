// The listen backlog (issue 12, finding 3): connections the kernel queues for accept(). A
// connect() finding it full fails at once with EAGAIN; node's default, 511, left too little room
// for a burst. The daemon listens with 1024, on its own socket and on one systemd passed (node
// listens on that one again, and ignores options.backlog with an fd).
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startTestDaemon, type TestDaemon } from '../helpers/daemon.js';

const isRoot = process.getuid?.() === 0;

const daemons: TestDaemon[] = [];
const dirs: string[] = [];
afterEach(async () => {
  for (const daemon of daemons.splice(0)) await daemon.stop();
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

/** The backlog of the listening Unix socket at `socketPath`: ss shows it as its Send-Q. */
function listenBacklog(socketPath: string): number {
  const line = execFileSync('ss', ['-xlH'], { encoding: 'utf8' })
    .split('\n')
    .find((l) => l.split(/\s+/).includes(socketPath));
  if (!line) throw new Error(`no listening socket at ${socketPath}`);
  // Netid State Recv-Q Send-Q Local...
  return Number(line.trim().split(/\s+/)[3]);
}

describe.skipIf(!isRoot)('the listen backlog', () => {
  it('support_listen_backlog_for_bursts: 1024 on the socket the daemon binds', async () => {
    const daemon = await startTestDaemon();
    daemons.push(daemon);
    expect(listenBacklog(daemon.socketPath)).toBe(1024);
  });

  it('support_listen_backlog_for_bursts: 1024 on a socket systemd passed (listened with 512)', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cj-backlog-'));
    dirs.push(dir);
    const socketPath = path.join(dir, 'activated.sock');
    // As in activation.test.ts: bind under a temporary name, hand the fd over, move the name.
    const bindPath = `${socketPath}.binding`;
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen({ path: bindPath, backlog: 512 }, resolve));
    const fd = (server as unknown as { _handle: { fd: number } })._handle.fd;
    const started = startTestDaemon({ listenFd: fd });
    fs.renameSync(bindPath, socketPath);
    server.close();
    daemons.push(await started);
    // The kernel names a socket by the path it was bound to.
    expect(listenBacklog(bindPath)).toBe(1024);
  });
});
