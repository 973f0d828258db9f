// The faults the soak injects while its load runs. Each returns what it did, for the summary.
import net from 'node:net';
import { Client } from '../../src/client/index.js';
import { encodeFrame } from '../../src/protocol/index.js';
import type { Random } from './knobs.js';
import { settle, sleep, templatePids, withTimeout } from './probes.js';
import { ANSWER_TIMEOUT_MS, Tally } from './load.js';
import { classify, Wrong } from './workload.js';

/** SIGKILLs the daemon's template `times` times, each time once its replacement is up. */
export async function killTemplate(daemonPid: () => number, times: number): Promise<string> {
  const respawnMs: number[] = [];
  for (let i = 0; i < times; i++) {
    const [template] = await settle(() => templatePids(daemonPid()), (t) => t.length > 0, 15_000);
    if (template === undefined) return `no template to kill (${i} killed)`;
    process.kill(template, 'SIGKILL');
    const t0 = Date.now();
    await settle(() => templatePids(daemonPid()).filter((p) => p !== template), (t) => t.length > 0, 15_000, 20);
    respawnMs.push(Date.now() - t0);
    await sleep(1500);
  }
  return `killed ${times}, back in ${respawnMs.join('/')} ms`;
}

/** SIGSTOPs the template for `ms`, then SIGCONTs it if it is still there. */
export async function stopTemplate(daemonPid: () => number, ms: number): Promise<string> {
  const [template] = await settle(() => templatePids(daemonPid()), (t) => t.length > 0, 15_000);
  if (template === undefined) return 'no template to stop';
  process.kill(template, 'SIGSTOP');
  await sleep(ms);
  try {
    process.kill(template, 'SIGCONT');
    return `stopped ${ms} ms, continued`;
  } catch {
    return `stopped ${ms} ms, replaced meanwhile`;
  }
}

export async function sighupStorm(daemonPid: () => number, count: number, gapMs: number): Promise<string> {
  for (let i = 0; i < count; i++) {
    process.kill(daemonPid(), 'SIGHUP');
    await sleep(gapMs);
  }
  return `${count} SIGHUPs ${gapMs} ms apart`;
}

/**
 * Connections that send a run and hang up 30-230 ms later, one at a time: the daemon must
 * cancel that run and nothing else (issue 16 item 2 saw other callers' runs come back -9).
 */
export async function dropConnections(socketPath: string, rng: Random, count: number): Promise<string> {
  for (let i = 0; i < count; i++) {
    const request = [
      { v: 1, id: 1, op: 'jail_code', command: 'python', code: Buffer.from('import time\nwhile True: time.sleep(0.01)'), limits: { REALTIME: 5 } },
      { v: 1, id: 1, op: 'jail_code', command: 'python', code: Buffer.from('import os\nos.fork(); os.fork()\nwhile True: pass'), limits: { REALTIME: 5, CPU: 5 }, warm: false },
      { v: 1, id: 1, op: 'safe_exec', command: 'python', code: 'import time\ntime.sleep(3)', globals: Buffer.from('{}') },
    ][i % 3];
    const after = 30 + rng.int(200);
    await new Promise<void>((resolve) => {
      const socket = net.connect(socketPath);
      socket.on('error', () => resolve());
      socket.on('connect', () => {
        socket.write(encodeFrame(request));
        setTimeout(() => {
          socket.destroy();
          resolve();
        }, after);
      });
    });
  }
  return `${count} connections dropped mid-run`;
}

/**
 * A burst of short runs, far more than the slots and queue hold, from a few connections:
 * each must come back right or refused as 'overloaded', and the daemon serve on.
 */
export async function queueOverflow(socketPath: string, count: number, tally: Tally): Promise<string> {
  const clients = Array.from({ length: 4 }, () => new Client({ socketPath }));
  let maxDepth = 0;
  let polling = true;
  const poller = (async () => {
    const c = new Client({ socketPath });
    while (polling) {
      try {
        maxDepth = Math.max(maxDepth, (await c.status()).queue.depth);
      } catch {
        /* counted by the stall monitor */
      }
      await sleep(100);
    }
    await c.close();
  })();
  await Promise.all(
    Array.from({ length: count }, async (_, i) => {
      try {
        const r = await withTimeout(clients[i % 4]!.jailCode('python', { code: 'import time\ntime.sleep(0.1)\nprint("q")', limits: { REALTIME: 5 } }), ANSWER_TIMEOUT_MS);
        if (r.status === 0 && r.stdout.toString() === 'q\n') tally.add('queue_burst', 'correct');
        else throw new Wrong(`queue burst run: status ${r.status} stdout ${JSON.stringify(r.stdout.toString())}`);
      } catch (err) {
        const { outcome, code } = classify(err);
        tally.add('queue_burst', outcome, code, (err as Error).message);
      }
    }),
  );
  polling = false;
  await poller;
  await Promise.all(clients.map((c) => c.close()));
  const row = tally.byKind.queue_burst!;
  return `${count} at once: ${row.correct} ran, ${tally.codes.overloaded ?? 0} overloaded so far, queue depth up to ${maxDepth}`;
}
