// The client's connect() when the daemon's listen backlog is full (issue 12, finding 3): a
// non-blocking connect to a Unix socket then fails at once with EAGAIN, which must be tried
// again for a while rather than reported 'unavailable'. A listener that does not accept (a
// Python socket with backlog 0) stands in for a daemon whose backlog is full.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Connection } from '../../src/client/connection.js';
import { DEFAULT_MAX_FRAME_BYTES, PROTOCOL_VERSION, encodeFrame } from '../../src/protocol/index.js';

/**
 * Listens with backlog 0 and accepts nothing until a line on stdin; then accepts everything
 * queued, hangs up on connections that send nothing, and answers the first frame of the others
 * with the frame given (hex) as argv[2].
 */
const LISTENER = `
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(sys.argv[1])
s.listen(0)
print('listening', flush=True)
sys.stdin.readline()
reply = bytes.fromhex(sys.argv[2])
while True:
    c, _ = s.accept()
    header = c.recv(4, socket.MSG_WAITALL)
    if len(header) < 4:
        c.close()
        continue
    c.recv(int.from_bytes(header, 'big'), socket.MSG_WAITALL)
    c.sendall(reply)
    sys.stdin.readline()
    break
`;

let dir: string;
let socketPath: string;
let listener: ChildProcess | undefined;
const fillers: net.Socket[] = [];

beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'cj-retry-'));
  socketPath = path.join(dir, 'd.sock');
});

afterEach(() => {
  for (const socket of fillers.splice(0)) socket.destroy();
  listener?.kill();
  listener = undefined;
  rmSync(dir, { recursive: true, force: true });
});

async function startListener(reply: Buffer): Promise<ChildProcess> {
  const child = spawn('python3', ['-c', LISTENER, socketPath, reply.toString('hex')], { stdio: ['pipe', 'pipe', 'inherit'] });
  listener = child;
  await new Promise<void>((resolve, reject) => {
    child.stdout!.once('data', () => resolve());
    child.once('exit', (code) => reject(new Error(`the listener exited with ${code}`)));
  });
  return child;
}

/** Connects until a connect fails with EAGAIN: the backlog is then full. */
async function fillBacklog(): Promise<void> {
  for (let i = 0; i < 64; i++) {
    const outcome = await new Promise<string>((resolve) => {
      const socket = net.connect(socketPath);
      fillers.push(socket);
      socket.once('connect', () => resolve('connected'));
      socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
    });
    if (outcome === 'EAGAIN') return;
    if (outcome !== 'connected') throw new Error(`filling the backlog: ${outcome}`);
  }
  throw new Error('the backlog never filled');
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('Connection while the listen backlog is full', () => {
  it('support_connect_tried_again_while_the_daemon_backlog_is_full: the request goes through once there is room', async () => {
    const result = { version: 'test' };
    const child = await startListener(encodeFrame({ v: PROTOCOL_VERSION, id: 1, ok: true, result }));
    await fillBacklog();
    const connection = new Connection(socketPath, DEFAULT_MAX_FRAME_BYTES);
    let settled: unknown;
    const request = connection.request('status', {}).then(
      (value) => (settled = { value }),
      (err: { code?: string }) => (settled = { code: err.code }),
    );
    // Reviewed: 'unavailable' (EAGAIN) at once. Now the client keeps trying meanwhile.
    await sleep(300);
    expect(settled).toBeUndefined();
    // The listener accepts (hanging up on the fillers): the next attempt finds room.
    for (const socket of fillers.splice(0)) socket.destroy();
    child.stdin!.write('go\n');
    await request;
    expect(settled).toEqual({ value: result });
    child.stdin!.end();
    await connection.close();
  });

  it('support_close_while_waiting_to_connect_again: the request fails "closed" and nothing is left', async () => {
    await startListener(Buffer.alloc(0));
    await fillBacklog();
    const connection = new Connection(socketPath, DEFAULT_MAX_FRAME_BYTES);
    const request = connection.request('status', {});
    await sleep(100);
    await connection.close();
    await expect(request).rejects.toMatchObject({ code: 'closed' });
    expect(connection.usable).toBe(false);
  });
});
