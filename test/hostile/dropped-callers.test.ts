// Review (soak with fault injection): callers that drop their connection mid-run made other
// callers' runs come back -9 with no error. The cancelled run's slot went to the next run at
// once while the cancelled run's sweep went on killing every process of the slot's uid. A slot
// is handed on only once its sweep has ended; the runs of the callers who stayed are their own.
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '../../src/client/index.js';
import { encodeFrame } from '../../src/protocol/frames.js';
import { startTestDaemon, type TestDaemon } from '../helpers/daemon.js';

const isRoot = process.getuid?.() === 0;

/** Sends a jail_code request on a connection of its own and closes it after `afterMs`. */
function dropMidRun(socketPath: string, request: Record<string, unknown>, afterMs: number): Promise<void> {
  return new Promise((resolve) => {
    const socket = net.connect(socketPath);
    socket.on('error', () => {});
    socket.on('connect', () => {
      socket.write(encodeFrame({ v: 1, id: 1, op: 'jail_code', command: 'python', ...request }));
      setTimeout(() => {
        socket.destroy();
        resolve();
      }, afterMs);
    });
  });
}

describe.skipIf(!isRoot)('hostile: callers that drop their connection', () => {
  let daemon: TestDaemon;
  beforeAll(async () => {
    daemon = await startTestDaemon({ config: { slots: { count: 2 }, warm: { enabled: true } } });
  });
  afterAll(() => daemon?.stop());

  it('deny_dropped_caller_kills_other_runs: every run of a caller that stayed is its own', async () => {
    const client = new Client({ socketPath: daemon.socketPath });
    let dropping = true;
    const drops = (async () => {
      for (let i = 0; i < 40; i++) {
        const leaver =
          i % 2 === 0
            ? { code: Buffer.from('import os\nos.fork(); os.fork()\nwhile True: pass'), limits: { REALTIME: 5, CPU: 5 }, warm: false }
            : { code: Buffer.from('import time\nwhile True: time.sleep(0.01)'), limits: { REALTIME: 5 } };
        await dropMidRun(daemon.socketPath, leaver, 30 + ((i * 37) % 170));
      }
      dropping = false;
    })();
    const wrong: unknown[] = [];
    let stayed = 0;
    const stayer = async (warm: boolean) => {
      while (dropping) {
        const r = await client.jailCode('python', { code: 'import time\ntime.sleep(0.05)\nprint("mine")', limits: { REALTIME: 10 }, warm });
        stayed++;
        if (r.status !== 0 || r.stdout.toString() !== 'mine\n') wrong.push({ status: r.status, stdout: r.stdout.toString(), stderr: r.stderr.toString().slice(-200) });
      }
    };
    await Promise.all([drops, stayer(true), stayer(false)]);
    await client.close();
    expect(stayed).toBeGreaterThan(10);
    expect(wrong).toEqual([]);
  }, 180_000);
});
