// A hostile review of the hardening wave (issue 12): the byte budget for all connections
// (connections.totalBufferedBytes) counts frames in progress and unread replies, not the requests
// that arrived whole and wait in the run queue. Each queued jail_code keeps its decoded code,
// files and stdin in the daemon until it runs: queueMax times maxFrameBytes, 256 x 64 MiB = 16 GiB
// by default, from one caller. Reviewed: with the 4 slots busy, 30 queued requests of 32 MiB of
// code took the daemon's RSS from 77 MB to 1.13 GB (and it stayed there after they ran).
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '../../src/client/index.js';
import { startTestDaemon, type TestDaemon } from '../helpers/daemon.js';

const MiB = 1024 * 1024;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function statusBytes(pid: number, field: string): number {
  const line = fs.readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith(`${field}:`));
  return Number(/(\d+)/.exec(line ?? '')?.[1] ?? NaN) * 1024;
}

describe.skipIf(process.getuid?.() !== 0)('review: requests waiting in the run queue', () => {
  let daemon: TestDaemon;
  beforeAll(async () => {
    daemon = await startTestDaemon({ config: { maxFrameBytes: 8 * MiB, connections: { totalBufferedBytes: 16 * MiB }, queueMax: 64 } });
  });
  afterAll(async () => {
    await daemon?.stop();
  });

  it('deny_queued_requests_holding_memory_past_the_byte_budget', async () => {
    const pid = daemon.process.pid!;
    const client = new Client({ socketPath: daemon.socketPath, maxFrameBytes: 8 * MiB });
    const runs: Array<Promise<unknown>> = [];
    try {
      // The 4 slots busy for a while.
      for (let i = 0; i < 4; i++) {
        runs.push(client.jailCode('python', { code: 'import time; time.sleep(6)', limits: { REALTIME: 8 } }).catch((err: unknown) => err));
      }
      await sleep(500);
      fs.writeFileSync(`/proc/${pid}/clear_refs`, '5');
      const baseline = statusBytes(pid, 'VmRSS');
      // 24 requests of 7 MiB of code each, sent one after the other: each frame is whole (never
      // more than one in progress), so the budget for frames in progress never sees them.
      const code = Buffer.alloc(7 * MiB, 0x23);
      code[code.length - 1] = 0x0a;
      for (let i = 0; i < 24; i++) {
        runs.push(client.jailCode('python', { code, limits: { REALTIME: 1 } }).catch((err: unknown) => err));
        await sleep(40);
      }
      await sleep(1000);
      const growth = statusBytes(pid, 'VmHWM') - baseline;
      // Held within the budget (16 MiB) and a margin for the decoder and the heap; or refused.
      expect(growth).toBeLessThan(64 * MiB);
    } finally {
      await Promise.all(runs);
      await client.close();
    }
  });
});
