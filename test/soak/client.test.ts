// Soak, fault and fuzz through the client (issue 17 item 6): a private daemon under a mixed load,
// warm and cold, every limit hit; while it runs, a daemon SIGKILL and restart, template SIGKILLs
// and a SIGSTOP, dropped connections, a SIGHUP storm, a queue overflow and a socket fuzz. Then,
// once idle, nothing may be left. One table of figures is printed; each check is its own test.
import { afterAll, beforeAll, describe, it } from 'vitest';
import { Client } from '../../src/client/index.js';
import { dropConnections, killTemplate, queueOverflow, sighupStorm, stopTemplate } from './faults.js';
import { fuzzFrames } from './frames_fuzz.js';
import { Random, SCALE, SEED, scaled } from './knobs.js';
import { startClientLoad, Tally } from './load.js';
import { dropHeldRuns, fdCount, heldNow, idleRss, mountsUnder, rssKb, rssWhere, runDirEntries, settle, slotProcesses, slotRangeOf, sleep, stableValue, StallMonitor, withTimeout } from './probes.js';
import { TEST_RUN_PATH } from '../helpers/daemon.js';
import { RestartableDaemon } from './restartable.js';
import { Summary } from './summary.js';
import { classify, makeFixtures, mixWeights, type Fixtures } from './workload.js';

/** A caller-visible stall past this is a failure: a 2-core runner under the whole suite's load. */
const MAX_STALL_MS = Number(process.env.CODEJAIL_SOAK_MAX_STALL_MS ?? 2500);
const CONCURRENCY = 8;

const CHECKS = [
  'wrong results',
  'lost requests',
  'status pings that failed',
  'longest event-loop stall (ms)',
  'frames owed a reply, none came',
  'frame connections left hanging',
  'frame replies duplicated or undecodable',
  'leaked slot processes',
  'leaked run directories',
  'leaked mounts',
  'leaked daemon fds',
  'daemon RSS once idle / after warm-up',
  'CLONE_PARENT runs: runs after them not answered right',
  'held pass: no run was taken held',
] as const;

async function statusOf(socketPath: string) {
  const client = new Client({ socketPath });
  try {
    return await client.status();
  } finally {
    await client.close();
  }
}

async function waitIdle(socketPath: string, ms: number): Promise<boolean> {
  const client = new Client({ socketPath });
  try {
    const until = Date.now() + ms;
    while (Date.now() < until) {
      try {
        const s = await withTimeout(client.status(), 5000);
        if (s.slots.busy === 0 && s.queue.depth === 0) return true;
      } catch {
        /* not up yet */
      }
      await sleep(100);
    }
    return false;
  } finally {
    await client.close();
  }
}


describe.sequential('soak through the client', () => {
  const rng = new Random(SEED).fork('client');
  const summary = new Summary('through the client');
  let daemon: RestartableDaemon;
  let fixtures: Fixtures;

  beforeAll(async () => {
    fixtures = makeFixtures(rng.fork('fixtures'));
    // A small queue, so that the overflow fault overflows it without minutes of queued runs; a
    // REALTIME that a run slowed by a loaded 2-core host still finishes within.
    daemon = await RestartableDaemon.start({ config: { queueMax: 32, defaultLimits: { REALTIME: 10 } } });
  });

  afterAll(async () => {
    summary.print();
    await daemon?.stop();
    fixtures?.remove();
  });

  it('runs the load, the faults and the fuzz, then settles', async () => {
    const probe = new Client({ socketPath: daemon.socketPath });
    const status = await probe.status();
    await probe.close();
    const diskOn = (status.layers.disk ?? '').startsWith('active');
    const weights = mixWeights(diskOn);
    const ctx = { rng, fixtures };
    const tally = new Tally();
    const merge = (from: Tally) => tally.merge(from);
    const events: string[] = [];
    const t0 = Date.now();
    const stamp = (what: string) => events.push(`${((Date.now() - t0) / 1000).toFixed(1)}s ${what}`);

    const monitorClient = new Client({ socketPath: daemon.socketPath });
    const monitor = new StallMonitor(() => monitorClient.status());

    // A daemon SIGKILLed under load, restarted on the same socket: the runs in flight get a
    // clear error (the connection is lost), and the new daemon finds what the old one left.
    const first = startClientLoad(daemon.socketPath, ctx, weights, CONCURRENCY);
    await sleep(2500);
    monitor.enter('daemon restart');
    monitor.pause(true);
    const t = Date.now();
    await daemon.killAndRestart();
    stamp(`daemon SIGKILLed and back in ${Date.now() - t} ms`);
    monitor.pause(false);
    await sleep(3000);
    monitor.enter('warm-up');
    await first.stop();
    merge(first.tally);

    // Warm-up on the new daemon, then the baselines, taken idle and stable. The warm-up does a
    // little of everything the measured part does, so that the heap has grown to its working
    // size before its level is read: under the frame fuzz the daemon's RSS climbs for about 3000
    // connections (70 to 100 MB) and then stays flat (measured over 8000), hence 2400 here.
    const warmUp = startClientLoad(daemon.socketPath, ctx, weights, CONCURRENCY, scaled(200, 30));
    const warmBurst = new Tally();
    await queueOverflow(daemon.socketPath, 50, warmBurst);
    const warmFuzz = await fuzzFrames(daemon.socketPath, rng.fork('warm-up frames'), scaled(2400, 150));
    await warmUp.finished;
    merge(warmUp.tally);
    merge(warmBurst);
    await waitIdle(daemon.socketPath, 30_000);
    await dropHeldRuns(daemon.socketPath, daemon.pid);
    await settle(() => slotProcesses(slotRangeOf(daemon.first)).length, (n) => n === 0, 20_000);
    const baseFds = (await stableValue(() => fdCount(daemon.pid))) ?? 0;
    const baseRss = await idleRss(daemon.pid);
    stamp(`baseline: ${baseFds} fds, ${baseRss} kB (${rssWhere(daemon.pid)})`);

    // The main load, with the faults one after another while it runs, and the fuzz last.
    const total = scaled(2000, 40);
    monitor.enter('load');
    const main = startClientLoad(daemon.socketPath, ctx, weights, CONCURRENCY);
    const faults = (async () => {
      const pid = () => daemon.pid;
      await sleep(2000);
      monitor.enter('template SIGKILL');
      stamp(`template SIGKILL: ${await killTemplate(pid, 2)}`);
      await sleep(1500);
      monitor.enter('template SIGSTOP');
      stamp(`template SIGSTOP: ${await stopTemplate(pid, 3000)}`);
      await sleep(1500);
      monitor.enter('SIGHUP storm');
      stamp(`SIGHUP storm: ${await sighupStorm(pid, 10, 300)}`);
      await sleep(1500);
      monitor.enter('dropped connections');
      stamp(`dropped connections: ${await dropConnections(daemon.socketPath, rng.fork('drops'), scaled(60, 6))}`);
      await sleep(1500);
      monitor.enter('queue overflow');
      const burst = new Tally();
      stamp(`queue overflow: ${await queueOverflow(daemon.socketPath, scaled(150, 50), burst)}`);
      merge(burst);
      monitor.enter('frame fuzz');
      const fuzz = await fuzzFrames(daemon.socketPath, rng.fork('frames'), scaled(800, 30));
      monitor.enter('load');
      stamp(`frame fuzz: ${fuzz.connections} connections, ${fuzz.frames} frames`);
      return fuzz;
    })();
    const fuzz = await faults;
    while (main.issued < total) await sleep(200);
    await main.stop();
    merge(main.tally);
    stamp(`load done: ${tally.requests} requests`);
    const stall = await monitor.stop();
    await monitorClient.close();

    // Settled: nothing left of any run.
    const idle = await waitIdle(daemon.socketPath, 60_000);
    const range = slotRangeOf(daemon.first);
    // A held run (the held pass, warm.holdAhead) stays between runs by design: not a leftover.
    const held = () => heldNow(daemon.socketPath);
    const leftover = await settle(async () => slotProcesses(range, await held()), (p) => p.length === 0, 20_000);
    const dirs = await settle(async () => runDirEntries(daemon.runBase, undefined, await held()), (d) => d.length === 0, 20_000);
    const mounts = await settle(
      async () => {
        const now = await held();
        return mountsUnder(daemon.runBase, daemon.pid, now) + mountsUnder(daemon.runBase, 'self', now);
      },
      (n) => n === 0,
      10_000,
    );
    await dropHeldRuns(daemon.socketPath, daemon.pid);
    const fds = (await settle(() => fdCount(daemon.pid), (n) => n !== null && n <= baseFds, 15_000)) ?? 0;
    await settle(() => rssKb(daemon.pid) ?? 0, (kb) => kb <= baseRss * 1.2, 20_000, 500);
    const endRss = await idleRss(daemon.pid);
    const endWhere = rssWhere(daemon.pid);
    stamp(`settled (idle: ${idle}): ${endRss} kB (${endWhere})`);
    // The held pass tests held runs only if runs were taken held (since the daemon's restart).
    const heldRuns = TEST_RUN_PATH === 'held' ? (await withTimeout(statusOf(daemon.socketPath), 5000)).held : undefined;

    // Last, as it may take slots out of service for good (issue 16 item 3): warm runs that leave
    // a CLONE_PARENT child, then as many ordinary runs: each must be answered right.
    const cloneParent = new Tally();
    const c = new Client({ socketPath: daemon.socketPath });
    const code = 'import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\npid = libc.syscall(56, 0x8000 | 17, 0, 0, 0, 0)\nif pid == 0:\n    os._exit(0)\nprint("done")';
    await Promise.all(
      Array.from({ length: range.count * 2 }, async () => {
        try {
          const r = await withTimeout(c.jailCode('python', { code }), 30_000);
          cloneParent.add('clone_parent', r.status === 0 && r.stdout.toString() === 'done\n' ? 'correct' : 'wrong', `status_${r.status}`);
        } catch (err) {
          const { outcome, code: why } = classify(err);
          cloneParent.add('clone_parent', outcome, why);
        }
      }),
    );
    await Promise.all(
      Array.from({ length: range.count * 2 }, async (_, i) => {
        try {
          const r = await withTimeout(c.jailCode('python', { code: `print(${i} * 3)` }), 30_000);
          cloneParent.add('after_clone_parent', r.status === 0 && r.stdout.toString() === `${i * 3}\n` ? 'correct' : 'wrong', `status_${r.status}`);
        } catch (err) {
          const { outcome, code: why } = classify(err);
          cloneParent.add('after_clone_parent', outcome, why);
        }
      }),
    );
    await c.close();
    const after = cloneParent.byKind.after_clone_parent!;
    stamp(`CLONE_PARENT: ${cloneParent.table()}`);

    summary.note('requests (correct/clear error/wrong/lost by kind)', tally.table());
    summary.note('codes seen (errors and wrong results)', tally.codes);
    summary.note('latency of correct runs, ms', { p50: tally.p(50), p99: tally.p(99) });
    summary.note('status pings, ms', stall);
    summary.note('frame fuzz', fuzz);
    summary.note('frame fuzz in the warm-up', warmFuzz);
    summary.note('events', events.join('; '));
    summary.note('daemon restarts', daemon.restarts);
    summary.note('disk layer', diskOn ? 'on: DISK in the mix' : 'off: no DISK runs');
    summary.note('wall, s', Math.round((Date.now() - t0) / 1000));
    summary.zero('wrong results', tally.total('wrong'), tally.failures.filter((f) => f.includes(' wrong ')).slice(0, 5).join(' | '));
    summary.zero('lost requests', tally.total('lost'), tally.failures.filter((f) => f.includes(' lost ')).slice(0, 5).join(' | '));
    summary.zero('status pings that failed', stall.failures);
    summary.atMost('longest event-loop stall (ms)', stall.max, MAX_STALL_MS, `<= ${MAX_STALL_MS} ms`);
    summary.zero('frames owed a reply, none came', fuzz.unansweredBeforeBadFrame, fuzz.example);
    summary.zero('frame connections left hanging', fuzz.hung);
    summary.zero('frame replies duplicated or undecodable', fuzz.duplicated, fuzz.duplicateExample);
    summary.zero('leaked slot processes', leftover.length, JSON.stringify(leftover.slice(0, 5)));
    summary.zero('leaked run directories', dirs.length, dirs.slice(0, 5).join(' '));
    summary.zero('leaked mounts', mounts);
    summary.zero('leaked daemon fds', Math.max(0, fds - baseFds), `${fds} fds against ${baseFds} after the warm-up`);
    summary.atMost('daemon RSS once idle / after warm-up', endRss / baseRss, 1.2, `<= 1.2 (${baseRss} kB after the warm-up)`, `${endRss} kB (${endWhere})`);
    summary.zero('held pass: no run was taken held', TEST_RUN_PATH === 'held' && !(heldRuns && heldRuns.used > 0) ? 1 : 0, JSON.stringify(heldRuns ?? 'not the held pass'));
    summary.zero('CLONE_PARENT runs: runs after them not answered right', after.wrong + after.lost + after.clear_error, `${cloneParent.table()} codes ${JSON.stringify(cloneParent.codes)}`);
  }, Math.max(1, SCALE) * 20 * 60_000);

  for (const name of CHECKS) it(`check: ${name}`, () => summary.assert(name));
});
