// A client that sends requests faster than it reads replies: the daemon stops reading its
// requests once a frame's worth of replies is unread (nothing is lost, other clients are still
// served), and hands out the rest once the client reads. Without the pause, the same client
// trips the daemon's cap on the bytes a connection holds and is cut off after a few hundred
// replies (seen by disabling the pause): this test fails then.
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '../../src/client/index.js';
import { encodeFrame, FrameDecoder, PROTOCOL_VERSION } from '../../src/protocol/index.js';
import { startTestDaemon, type TestDaemon } from '../helpers/daemon.js';

const REQUESTS = 5000;

describe.skipIf(process.getuid?.() !== 0)('reply backpressure', () => {
  let daemon: TestDaemon;
  beforeAll(async () => {
    // The smallest frame the config allows, so a few hundred status replies exceed it.
    daemon = await startTestDaemon({ config: { maxFrameBytes: 64 * 1024 } });
  });
  afterAll(async () => {
    await daemon?.stop();
  });

  it('support_pipelined_requests_wait_for_an_unread_client_and_none_is_lost', async () => {
    const socket = net.connect(daemon.socketPath);
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    socket.pause(); // read nothing yet
    const frames = Array.from({ length: REQUESTS }, (_, i) => encodeFrame({ v: PROTOCOL_VERSION, id: i + 1, op: 'status' }));
    socket.write(Buffer.concat(frames));
    await new Promise((resolve) => setTimeout(resolve, 300));

    // The daemon is not stuck on this client: another one is served meanwhile.
    const other = new Client({ socketPath: daemon.socketPath });
    expect((await other.status()).protocol).toBe(PROTOCOL_VERSION);
    await other.close();

    const decoder = new FrameDecoder(64 * 1024);
    const ids = new Set<number>();
    await new Promise<void>((resolve, reject) => {
      socket.on('data', (chunk: Buffer) => {
        for (const reply of decoder.push(chunk) as Array<{ id: number; ok: boolean }>) {
          expect(reply.ok).toBe(true);
          ids.add(reply.id);
        }
        if (ids.size === REQUESTS) resolve();
      });
      socket.once('close', () => reject(new Error(`closed after ${ids.size} replies`)));
      socket.resume();
    });
    socket.destroy();
    expect(ids.size).toBe(REQUESTS);
    expect(daemon.logs.some((l) => String(l.msg).startsWith('connection closed'))).toBe(false);
  });
});
