// The listener's own path: what a daemon that cannot bind it leaves there. It binds only a path
// that holds nothing or a stale socket, and removes on the way out only the socket it bound.
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Client } from '../../src/client/index.js';
import { startTestDaemon, type TestDaemon } from '../helpers/daemon.js';

const isRoot = process.getuid?.() === 0;

const daemons: TestDaemon[] = [];
afterEach(async () => {
  for (const daemon of daemons.splice(0).reverse()) await daemon.stop();
});

async function start(...args: Parameters<typeof startTestDaemon>): Promise<TestDaemon> {
  const daemon = await startTestDaemon(...args);
  daemons.push(daemon);
  return daemon;
}

describe.skipIf(!isRoot)('the socket path', () => {
  it('deny_a_second_daemon_removing_the_socket_of_the_one_serving', async () => {
    const serving = await start();
    const second = await start({ extraArgs: ['--socket', serving.socketPath], expectExit: true });
    expect(await second.stop()).toBe(1);
    expect(second.logs.some((l) => String(l.msg).includes(`another daemon is already listening on ${serving.socketPath}`))).toBe(true);
    expect(fs.statSync(serving.socketPath).isSocket()).toBe(true);
    const client = new Client({ socketPath: serving.socketPath });
    try {
      expect((await client.status()).slots.total).toBe(4);
    } finally {
      await client.close();
    }
  });

  it('deny_removing_a_file_that_is_not_a_socket_at_the_socket_path', async () => {
    const first = await start();
    const notASocket = path.join(path.dirname(first.socketPath), 'not-a-socket');
    fs.writeFileSync(notASocket, 'precious');
    const daemon = await start({ extraArgs: ['--socket', notASocket], expectExit: true });
    expect(await daemon.stop()).toBe(1);
    expect(daemon.logs.some((l) => String(l.msg).includes(`${notASocket} exists and is not a socket; refusing to replace it`))).toBe(true);
    expect(fs.readFileSync(notASocket, 'utf8')).toBe('precious');
  });
});
