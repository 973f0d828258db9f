// The byte budget per caller uid (issue 12, review findings 1 and 4): requests waiting in the run
// queue hold their payload against their uid's cap (connections.perUidBufferedBytes) and the
// daemon's budget. Past it a request is refused 'overloaded', naming the cap, and nobody is
// closed to make room for it: the runs already queued still run.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '../../src/client/index.js';
import { startTestDaemon, type TestDaemon } from '../helpers/daemon.js';

const KiB = 1024;

describe.skipIf(process.getuid?.() !== 0)('the byte budget: requests waiting in the run queue', () => {
  let daemon: TestDaemon;
  beforeAll(async () => {
    // One uid may hold one frame's worth: 65 540 bytes.
    daemon = await startTestDaemon({ config: { maxFrameBytes: 64 * KiB, connections: { perUidBufferedBytes: 64 * KiB + 4 }, queueMax: 64 } });
  });
  afterAll(async () => {
    await daemon?.stop();
  });

  // The 4 slots busy; then 12 requests of 8 000 bytes of code, each one whole before the next (a
  // status request after each answers once it was handled). Reviewed: all 12 waited in the queue
  // holding their code, counted nowhere (queueMax x maxFrameBytes from one caller).
  it('deny_queued_requests_past_the_uid_cap_and_allow_those_within_it_to_run', async () => {
    const client = new Client({ socketPath: daemon.socketPath });
    try {
      const busy = Array.from({ length: 4 }, () => client.jailCode('python', { code: 'import time; time.sleep(2)', limits: { REALTIME: 10 } }));
      await client.status();
      const code = Buffer.from(`print(1)\n#${'x'.repeat(8000 - 11)}\n`);
      expect(code.length).toBe(8000);
      const queued: Array<Promise<unknown>> = [];
      for (let i = 0; i < 12; i++) {
        queued.push(client.jailCode('python', { code }).catch((err: unknown) => err));
        await client.status();
      }
      const results = (await Promise.all(queued)) as Array<{ stdout?: Buffer; code?: string; message?: string }>;
      // 8 x 8 000 bytes fit in 65 540; the 9th and later are refused, naming the cap.
      expect(results.slice(0, 8).map((r) => r.stdout?.toString())).toEqual(Array(8).fill('1\n'));
      for (const refused of results.slice(8)) {
        expect(refused).toMatchObject({ code: 'overloaded' });
        expect(refused.message).toMatch(/uid 0 would then hold 72000 bytes, more than the 65540 one caller may \(connections\.perUidBufferedBytes\)/);
      }
      for (const run of await Promise.all(busy)) expect(run.status).toBe(0);
      // Once they ran, the uid holds nothing: a request of the same size is admitted again.
      expect((await client.jailCode('python', { code })).stdout.toString()).toBe('1\n');
      const metrics = await client.metrics();
      expect(metrics).toMatch(/^codejail_connections_closed_total\{reason="buffer_uid_limit"\} 0$/m);
      expect(metrics).toMatch(/^codejail_buffered_bytes 0$/m);
    } finally {
      await client.close();
    }
  });
});
