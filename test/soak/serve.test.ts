// Soak, fault and fuzz through `codejail serve` (issue 17 item 6): a mixed load of real requests,
// each with the answer it must get, beside malformed ones, with the template killed and stopped
// and callers hanging up under it; slow headers and slow bodies held open while real requests
// must still be served; escape-heavy JSON; then, once idle, serve's and the daemon's RSS near
// their level after the warm-up and nothing left of any run; last, a multipart cut at many
// offsets, each of which must get a 400 from a serve still running.
import { afterAll, beforeAll, describe, it } from 'vitest';
import { makeZip, startTestServe, type TestServe } from '../helpers/serve.js';
import { killTemplate, stopTemplate } from './faults.js';
import { badKinds, goodKinds, GOOD_WEIGHTS, HttpTally, type GoodRequest } from './http_workload.js';
import { CODE_EXEC, httpRequest, multipartBody, rawHttp, urlencoded, type HttpAnswer } from './http_raw.js';
import { Random, SCALE, SEED, scaled } from './knobs.js';
import { dropHeldRuns, fdCount, heldNow, idleRss, mountsUnder, percentile, rssKb, rssWhere, runDirEntries, settle, slotProcesses, slotRangeOf, sleep, stableValue, StallMonitor, peakRssDuring } from './probes.js';
import { Summary } from './summary.js';

/** serve's refusals of a run that met a fault or a full queue (src/http/server.ts). */
const RUN_REFUSED = /lost the run in flight|at capacity/;
const MAX_STALL_MS = Number(process.env.CODEJAIL_SOAK_MAX_STALL_MS ?? 2500);

const CHECKS = [
  'wrong answers',
  'lost requests',
  'malformed requests not answered 4xx',
  'real requests refused while slow bodies are held',
  'slow bodies from one address held beyond its share',
  'escape-heavy JSON not answered right',
  'escape-heavy JSON: time / same size without escapes',
  'escape-heavy JSON: serve peak RSS / same size without escapes',
  'longest event-loop stall (ms)',
  'leaked slot processes',
  'leaked run directories',
  'leaked mounts',
  'leaked daemon fds',
  'serve RSS once idle / after warm-up',
  'daemon RSS once idle / after warm-up',
  'truncated multiparts not answered 400',
  'serve exits',
] as const;



describe.sequential('soak through codejail serve', () => {
  const rng = new Random(SEED).fork('serve');
  const summary = new Summary('through codejail serve');
  let serve: TestServe;
  let port: number;
  let zip: Buffer;

  beforeAll(async () => {
    zip = makeZip({ 'zmod.py': 'def g(x):\n    return [x, "from zip"]\n' });
    serve = await startTestServe({
      config: { limits: { REALTIME: 4 }, limitOverrides: { 'ctx-fast': { REALTIME: 0.5 } } },
      // A small queue: serve's capacity follows it (slots + queue), and slow bodies must not take it.
      daemonConfig: { queueMax: 60, defaultLimits: { REALTIME: 10 } },
    });
    port = Number(new URL(serve.url).port);
  });

  afterAll(async () => {
    summary.print();
    await serve?.stop();
  });

  it('runs the load, the slow clients and the fuzz, then settles', async () => {
    const servePid = serve.process.pid!;
    const daemonPid = serve.daemon.process.pid!;
    const good = goodKinds(zip);
    const bad = badKinds(zip);
    const tally = new HttpTally();
    const malformed = { n: 0, notFourXx: 0, lost: 0, refused: 0, statuses: {} as Record<string, number>, examples: [] as string[] };
    const events: string[] = [];
    const t0 = Date.now();
    const stamp = (what: string) => events.push(`${((Date.now() - t0) / 1000).toFixed(1)}s ${what}`);

    const runGood = async (r: Random, kind: string, label = kind) => {
      const { request, check }: GoodRequest = good[kind]!(r);
      const t = performance.now();
      const answer = await rawHttp(port, request, { timeoutMs: 90_000 });
      tally.add(label, answer, 'error' in answer ? 'no answer' : check(answer), performance.now() - t);
    };
    const runBad = async (r: Random) => {
      const kind = r.pick(Object.keys(bad));
      const { request, expect } = bad[kind]!(r);
      const answer = await rawHttp(port, request, { timeoutMs: 30_000 });
      malformed.n++;
      const key = `${kind}:${'error' in answer ? answer.error : answer.status}`;
      malformed.statuses[key] = (malformed.statuses[key] ?? 0) + 1;
      // A connection serve closes on bytes that are not HTTP is an answer the client sees.
      if ('error' in answer) {
        if (answer.error === 'hung') malformed.lost++;
      } else if (expect.includes(200) && answer.status === 503 && RUN_REFUSED.test(answer.body)) {
        // Some 'malformed' kinds are valid requests that run (a huge number, deep JSON, a mutated
        // byte that missed): such a run can meet the template SIGKILL or a full queue, as a real
        // request does, and get the same refusal. A seed hit it: huge_number -> 503 'lost the run'.
        malformed.refused++;
      } else if (!expect.includes(answer.status) && !(answer.status >= 400 && answer.status < 500)) {
        malformed.notFourXx++;
        if (malformed.examples.length < 5) malformed.examples.push(`${kind} -> ${answer.status} ${answer.body.slice(0, 120)}`);
      }
    };
    const pool = async (n: number, concurrency: number, label: string, job: (r: Random) => Promise<void>) => {
      let next = 0;
      await Promise.all(
        Array.from({ length: concurrency }, async (_, w) => {
          const r = rng.fork(`${label}-${w}`);
          while (next < n) {
            next++;
            await job(r);
          }
        }),
      );
    };
    const mixed = (r: Random) => runGood(r, r.weighted(GOOD_WEIGHTS));

    // Warm-up: a little of everything, large payloads too (as many at once, and as large, as the
    // escape-heavy ones are once decoded and sent on to the daemon: 4 MiB of JSON each, without
    // the escapes), then serve's and the daemon's levels, idle.
    await Promise.all([pool(scaled(300, 20), 8, 'warm-good', mixed), pool(scaled(600, 40), 4, 'warm-bad', runBad)]);
    const escapeHeavyAtOnce = scaled(6, 3);
    const plainLarge = peakRssDuring(servePid, Promise.all(
      Array.from({ length: escapeHeavyAtOnce }, async () => {
        const answer = await rawHttp(port, urlencoded({ payload: `{"code": "n = len(s)", "globals_dict": {"s": "${'y'.repeat(4 * 1024 * 1024)}"}}` }), { timeoutMs: 90_000 });
        tally.add('warm_up_large', answer, 'error' in answer || answer.status !== 200 || !answer.body.includes(`"n":${4 * 1024 * 1024}`) ? 'a 4 MiB string' : null, 0);
      }),
    ));
    const plain = await plainLarge;
    await dropHeldRuns(serve.daemon.socketPath, daemonPid);
    await settle(() => slotProcesses(slotRangeOf(serve.daemon)).length, (n) => n === 0, 20_000);
    const baseFds = (await stableValue(() => fdCount(daemonPid))) ?? 0;
    const baseServeRss = await idleRss(servePid);
    const baseDaemonRss = await idleRss(daemonPid);
    stamp(`baseline: serve ${baseServeRss} kB (${rssWhere(servePid)}), daemon ${baseDaemonRss} kB (${rssWhere(daemonPid)}), ${baseFds} daemon fds`);

    // A GET of an unknown path: serve answers it at once, so its latency is serve's event loop.
    const monitor = new StallMonitor(() => rawHttp(port, httpRequest('GET', '/soak-ping', null, ''), { timeoutMs: 30_000 }).then((a) => {
      if ('error' in a) throw new Error(a.error);
    }));

    // The mixed load with the malformed requests beside it, and faults under it: the template
    // SIGKILLed and SIGSTOPped, callers hanging up on their requests mid-run.
    const faults = (async () => {
      await sleep(1500);
      monitor.enter('template SIGKILL');
      stamp(`template SIGKILL: ${await killTemplate(() => daemonPid, 1)}`);
      monitor.enter('template SIGSTOP');
      stamp(`template SIGSTOP: ${await stopTemplate(() => daemonPid, 2000)}`);
      monitor.enter('callers hanging up');
      const hangUp = urlencoded({ payload: JSON.stringify({ code: 'import time\ntime.sleep(2)', globals_dict: {} }) });
      for (let i = 0; i < scaled(20, 5); i++) await rawHttp(port, hangUp, { closeAfterMs: 100 + rng.int(200) });
      stamp('HTTP callers hung up mid-run');
      monitor.enter('load');
    })();
    await Promise.all([pool(scaled(600, 30), 8, 'good', mixed), pool(scaled(3000, 100), 8, 'bad', runBad), faults]);
    stamp(`load: ${tally.total('correct')} right, ${malformed.n} malformed`);

    // Slow clients: more connections dribbling a body (or headers) than serve has places, held
    // while real requests come; each real one must be served, not refused (issue 16 item 5).
    // The slow bodies come from other addresses than the real requests (serve bounds bodies
    // still arriving per address, maxBodiesReadingPerAddress, 32 by default), 20 from each of
    // four; a fifth address floods with more than its share, and all but 32 of those must be
    // refused (429) at once.
    monitor.enter('slow clients');
    const slow: Array<Promise<HttpAnswer>> = [];
    const slowBody = httpRequest('POST', CODE_EXEC, 'application/x-www-form-urlencoded', 'payload=' + 'y'.repeat(3000));
    const heldFor = 12_000;
    const bodyAt = slowBody.indexOf('\r\n\r\n') + 4;
    const dribbleBody = (localAddress: string) => rawHttp(port, slowBody, { dribble: { bytes: 1, ms: 1500, from: bodyAt }, closeAfterMs: heldFor, timeoutMs: heldFor + 5000, localAddress });
    for (let i = 0; i < 80; i++) slow.push(dribbleBody(`127.0.0.${2 + (i % 4)}`));
    for (let i = 0; i < 10; i++) slow.push(rawHttp(port, urlencoded({ payload: '{}' }), { dribble: { bytes: 1, ms: 500 }, closeAfterMs: heldFor, timeoutMs: heldFor + 5000 }));
    const perAddress = 32;
    const flood = Array.from({ length: perAddress + 8 }, () => dribbleBody('127.0.0.6'));
    await sleep(2000);
    await pool(scaled(40, 16), 4, 'under-slow', (r) => runGood(r, r.pick(['good', 'exception', 'zip']), 'under_slow_clients'));
    await Promise.all(slow);
    const floodAnswers = await Promise.all(flood);
    const floodStatuses: Record<string, number> = {};
    for (const a of floodAnswers) {
      const key = 'error' in a ? a.error : String(a.status);
      floodStatuses[key] = (floodStatuses[key] ?? 0) + 1;
    }
    // Held to the end: no answer while the client kept sending.
    const floodHeld = floodAnswers.filter((a) => 'error' in a).length;
    const underSlow = tally.byKind.under_slow_clients!;
    stamp(`slow clients: 80 bodies from 4 addresses, 10 headers held ${heldFor} ms; real requests ${underSlow.correct} served, ${underSlow.refused} refused; a flood of ${flood.length} from one address: ${JSON.stringify(floodStatuses)}`);

    // Escape-heavy JSON: a string of 2 MiB decoded from 4 MiB of "\n" escapes, a few at once
    // (issue 16 item 6: the reader's cost must be linear, its RSS back once idle).
    monitor.enter('escape-heavy JSON');
    const escapes = { right: 0, notRight: 0, statuses: {} as Record<string, number>, ms: 0 };
    const chars = 2 * 1024 * 1024;
    const escaped = await peakRssDuring(servePid, Promise.all(
      Array.from({ length: escapeHeavyAtOnce }, async () => {
        const payload = `{"code": "n = len(s)", "globals_dict": {"s": "${'\\n'.repeat(chars)}"}}`;
        const answer = await rawHttp(port, urlencoded({ payload }), { timeoutMs: 90_000 });
        const key = 'error' in answer ? answer.error : String(answer.status);
        escapes.statuses[key] = (escapes.statuses[key] ?? 0) + 1;
        if (!('error' in answer) && answer.status === 200 && answer.body.includes(`"n":${chars}`)) escapes.right++;
        else escapes.notRight++;
      }),
    ));
    escapes.ms = escaped.ms;
    stamp(`escape-heavy JSON: ${JSON.stringify(escapes)}, serve's peak ${escaped.peakKb} kB; the same size without escapes: ${plain.ms} ms, peak ${plain.peakKb} kB`);
    const stall = await monitor.stop();

    // Settled.
    const range = slotRangeOf(serve.daemon);
    // A held run (the held pass, warm.holdAhead) stays between runs by design: not a leftover.
    const held = () => heldNow(serve.daemon.socketPath);
    const leftover = await settle(async () => slotProcesses(range, await held()), (p) => p.length === 0, 20_000);
    const dirs = await settle(async () => runDirEntries(serve.daemon.runBase, undefined, await held()), (d) => d.length === 0, 20_000);
    const mounts = await settle(
      async () => {
        const now = await held();
        return mountsUnder(serve.daemon.runBase, daemonPid, now) + mountsUnder(serve.daemon.runBase, 'self', now);
      },
      (n) => n === 0,
      10_000,
    );
    await dropHeldRuns(serve.daemon.socketPath, daemonPid);
    const fds = (await settle(() => fdCount(daemonPid), (n) => n !== null && n <= baseFds, 15_000)) ?? 0;
    await settle(() => rssKb(servePid) ?? Infinity, (kb) => kb <= baseServeRss * 1.2, 20_000, 500);
    const endServeRss = await idleRss(servePid);
    const endServeWhere = rssWhere(servePid);
    await settle(() => rssKb(daemonPid) ?? Infinity, (kb) => kb <= baseDaemonRss * 1.2, 10_000, 500);
    const endDaemonRss = await idleRss(daemonPid);
    const endDaemonWhere = rssWhere(daemonPid);
    stamp(`settled: daemon ${endDaemonRss} kB (${endDaemonWhere})`);

    // Last, as on a serve with the bug it ends serve (issue 16 item 1): a multipart whose
    // python_lib.zip part is cut at many offsets, sent with the Content-Length of what is there.
    const whole = multipartBody([
      { name: 'payload', value: JSON.stringify({ code: 'a = 1', globals_dict: {} }) },
      { name: 'python_lib.zip', filename: 'python_lib.zip', value: zip },
    ]);
    const cuts = scaled(300, 30);
    const stride = Math.max(1, Math.floor(whole.body.length / cuts));
    const truncated = { sent: 0, not400: 0, statuses: {} as Record<string, number>, firstBad: '' };
    for (let at = 1; at < whole.body.length - 4; at += stride) {
      if (serve.process.exitCode !== null || serve.process.signalCode !== null) break;
      const answer = await rawHttp(port, httpRequest('POST', CODE_EXEC, whole.contentType, whole.body.subarray(0, at)), { timeoutMs: 30_000 });
      truncated.sent++;
      const key = 'error' in answer ? answer.error : String(answer.status);
      truncated.statuses[key] = (truncated.statuses[key] ?? 0) + 1;
      if ('error' in answer || answer.status !== 400) {
        truncated.not400++;
        truncated.firstBad ||= `cut at byte ${at} of ${whole.body.length}: ${key}`;
      }
    }
    const offsetsLeft = serve.process.exitCode !== null || serve.process.signalCode !== null ? Math.ceil((whole.body.length - 4) / stride) - truncated.sent : 0;
    stamp(`truncated multiparts: ${truncated.sent} sent${offsetsLeft ? `, ${offsetsLeft} left unsent: serve exited` : ''}`);

    summary.note('real requests (correct/refused/wrong/lost by kind)', tally.table());
    summary.note('statuses of real requests', tally.statuses);
    summary.note('latency of right answers, ms', { p50: Math.round(percentile(tally.latencies, 50)), p99: Math.round(percentile(tally.latencies, 99)) });
    summary.note('malformed requests', { n: malformed.n, hung: malformed.lost, refusedWhileRunning: malformed.refused, statuses: malformed.statuses });
    summary.note('GET pings, ms', stall);
    summary.note('truncated multiparts', truncated);
    summary.note('events', events.join('; '));
    summary.note('wall, s', Math.round((Date.now() - t0) / 1000));
    summary.zero('wrong answers', tally.total('wrong'), tally.failures.filter((f) => !f.includes(': no answer')).slice(0, 5).join(' | '));
    summary.zero('lost requests', tally.total('lost') + malformed.lost, tally.failures.filter((f) => /hung|closed|unparsable/.test(f)).slice(0, 5).join(' | '));
    summary.zero('malformed requests not answered 4xx', malformed.notFourXx, malformed.examples.join(' | '));
    summary.zero('real requests refused while slow bodies are held', underSlow.refused, `${underSlow.correct} served, ${underSlow.refused} refused (503/429)`);
    summary.zero('slow bodies from one address held beyond its share', Math.max(0, floodHeld - perAddress) + (flood.length - floodHeld - (floodStatuses['429'] ?? 0)), `${perAddress} may be held, the rest answered 429: ${JSON.stringify(floodStatuses)}`);
    summary.zero('escape-heavy JSON not answered right', escapes.notRight, JSON.stringify(escapes));
    // The same bytes of JSON text, with and without escapes: the reader's cost is linear in its
    // input, so neither its time nor serve's memory may be much more for the escapes.
    summary.atMost('escape-heavy JSON: time / same size without escapes', escaped.ms / plain.ms, 3, '<= 3', `${escaped.ms} ms against ${plain.ms} ms`);
    summary.atMost('escape-heavy JSON: serve peak RSS / same size without escapes', escaped.peakKb / plain.peakKb, 1.5, '<= 1.5', `${escaped.peakKb} kB against ${plain.peakKb} kB`);
    summary.atMost('longest event-loop stall (ms)', stall.max, MAX_STALL_MS, `<= ${MAX_STALL_MS} ms`);
    summary.zero('leaked slot processes', leftover.length, JSON.stringify(leftover.slice(0, 5)));
    summary.zero('leaked run directories', dirs.length, dirs.slice(0, 5).join(' '));
    summary.zero('leaked mounts', mounts);
    summary.zero('leaked daemon fds', Math.max(0, fds - baseFds), `${fds} fds against ${baseFds} after the warm-up`);
    summary.atMost('serve RSS once idle / after warm-up', endServeRss / baseServeRss, 1.2, `<= 1.2 (${baseServeRss} kB after the warm-up)`, `${endServeRss} kB (${endServeWhere})`);
    summary.atMost('daemon RSS once idle / after warm-up', endDaemonRss / baseDaemonRss, 1.2, `<= 1.2 (${baseDaemonRss} kB after the warm-up)`, `${endDaemonRss} kB (${endDaemonWhere})`);
    summary.zero('truncated multiparts not answered 400', truncated.not400 + offsetsLeft, truncated.firstBad);
    summary.zero('serve exits', serve.process.exitCode !== null || serve.process.signalCode !== null ? 1 : 0, `exit ${serve.process.exitCode} ${serve.process.signalCode}`);
  }, Math.max(1, SCALE) * 20 * 60_000);

  for (const name of CHECKS) it(`check: ${name}`, () => summary.assert(name));
});
