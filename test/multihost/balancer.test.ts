// Two grader "hosts" on one machine: two daemons (each its own config: socket, slot uids, run
// base), each with its own `codejail serve`, behind Debian's HAProxy checking GET /health/. A
// bounded load through the balancer is answered correctly by both; then one host is stopped in
// the middle of a load, and every request is either answered correctly or refused with a clear
// error (an HTTP status and a body naming the cause), errors only between the stop and the moment
// the balancer marks that host DOWN, and the survivor serves everything after.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parsePythonJson } from '../../src/http/python_json.js';
import { BACKEND_HEADER, haveHaproxy, startBalancer, type TestBalancer } from '../helpers/haproxy.js';
import { startTestDaemon, type TestDaemon } from '../helpers/daemon.js';
import { SERVE_UID, startTestServe, type TestServe } from '../helpers/serve.js';

const isRoot = process.getuid?.() === 0;

/** Requests at once, from the test to the balancer. */
const CONCURRENCY = 8;
/** A request that takes longer than this has hung: it counts as lost, and fails the test. */
const HANG_MS = 60_000;
/** Slots per daemon: the two hosts together have as many as the load's concurrency. */
const SLOTS = 4;

interface Outcome {
  i: number;
  /** performance.now() when the request was sent, and when its answer (or failure) was in. */
  sentAt: number;
  doneAt: number;
  /** The server that answered (HAProxy's header), when the answer came through HAProxy. */
  backend?: string;
  status?: number;
  /** 'ok': the right answer; 'error': a clear refusal; 'lost': anything else (fails the test). */
  kind: 'ok' | 'error' | 'lost';
  detail: string;
}

/** The code each request runs, and the answer it must give: distinct per request. */
function job(i: number): { payload: string; expected: number } {
  return { payload: JSON.stringify({ code: 'out = a * b + i', globals_dict: { a: i, b: 7, i } }), expected: i * 7 + i };
}

/**
 * A clear error: a server-side status with a body that says why. The front end answers JSON
 * {"error": "..."} (its daemon unavailable or stopping, or at capacity); HAProxy's own 503 page
 * says no server is available.
 */
function clearError(status: number, text: string): string | undefined {
  if (status < 500 || status > 504) return undefined;
  try {
    const body = parsePythonJson(text) as { error?: unknown };
    if (typeof body.error === 'string' && body.error.length > 0) return body.error;
  } catch {
    // Not JSON: HAProxy's HTML.
  }
  const haproxy = /<h1>(\d{3}[^<]*)<\/h1>\s*([^<\n]+)/.exec(text);
  return haproxy ? `${haproxy[1]}: ${haproxy[2]!.trim()}` : undefined;
}

async function send(url: string, i: number): Promise<Outcome> {
  const { payload, expected } = job(i);
  const body = new FormData();
  body.append('payload', payload);
  const sentAt = performance.now();
  try {
    const res = await fetch(`${url}/api/v0/code-exec`, { method: 'POST', body, signal: AbortSignal.timeout(HANG_MS) });
    const text = await res.text();
    const base = { i, sentAt, doneAt: performance.now(), backend: res.headers.get(BACKEND_HEADER) ?? undefined, status: res.status };
    if (res.status === 200) {
      const json = parsePythonJson(text) as { globals_dict?: { out?: unknown }; emsg?: string };
      const right = json.globals_dict?.out === expected && json.emsg === undefined;
      return { ...base, kind: right ? 'ok' : 'lost', detail: right ? '' : `wrong answer: ${text.slice(0, 300)}` };
    }
    const cause = clearError(res.status, text);
    return { ...base, kind: cause ? 'error' : 'lost', detail: cause ?? `unclear ${res.status}: ${text.slice(0, 300)}` };
  } catch (err) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    return { i, sentAt, doneAt: performance.now(), kind: 'lost', detail: `no answer: ${(err as Error).message}${cause ? ` (${cause.code ?? cause.message})` : ''}` };
  }
}

/**
 * `count` requests (numbered from `first`), CONCURRENCY at a time; `onDone(done)` is called as each
 * one completes (done: how many have so far).
 */
async function load(url: string, first: number, count: number, onDone?: (done: number) => void): Promise<Outcome[]> {
  const outcomes: Outcome[] = [];
  let next = first;
  const worker = async () => {
    while (next < first + count) {
      const outcome = await send(url, next++);
      outcomes.push(outcome);
      onDone?.(outcomes.length);
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  return outcomes.sort((x, y) => x.i - y.i);
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((x, y) => x - y);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

function latencies(outcomes: Outcome[]): number[] {
  return outcomes.filter((o) => o.kind === 'ok').map((o) => o.doneAt - o.sentAt);
}

function byBackend(outcomes: Outcome[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const o of outcomes) counts[o.backend ?? '(none)'] = (counts[o.backend ?? '(none)'] ?? 0) + 1;
  return counts;
}

function report(label: string, figures: Record<string, unknown>): void {
  process.stdout.write(`[multihost] ${label}: ${JSON.stringify(figures)}\n`);
}

/**
 * Polls HAProxy until `server`'s status is `wanted` ('DOWN' also matches 'DOWN 1/2', a server
 * down and passing its first checks again); resolves with performance.now() when it was seen so.
 */
async function whenStatus(balancer: TestBalancer, server: string, wanted: 'UP' | 'DOWN', timeoutMs = 60_000): Promise<number> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const status = await balancer.status();
    if (wanted === 'UP' ? status[server] === 'UP' : status[server]?.startsWith('DOWN')) return performance.now();
    if (performance.now() > deadline) throw new Error(`${server} never went ${wanted} in HAProxy: ${JSON.stringify(status)}\n${balancer.output()}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

const whenDown = (balancer: TestBalancer, server: string) => whenStatus(balancer, server, 'DOWN');

describe.skipIf(!isRoot || !haveHaproxy())('multihost: two daemons and their HTTP fronts behind HAProxy', () => {
  let hosts: { a: TestServe; b: TestServe };
  let balancer: TestBalancer;
  /** A daemon started again in place of host a's (its socket, its slots), by a test. */
  let replacement: TestDaemon | undefined;
  let firstUid: number;

  beforeEach(async () => {
    // Two configs, as two hosts would have: each its own socket and run base (the helper's), and
    // slot uids apart (as on two hosts, where they may even be the same numbers). Above the
    // helper's range (62000-69999), which other test files' daemons use at the same time: a
    // daemon kills every process of its slot uids after each run, so no two may share one.
    firstUid = 70_000 + (process.pid % 500) * 2 * SLOTS;
    const start = (offset: number) =>
      startTestServe({
        // The front end's health follows its daemon within a second (the default reuses a
        // self-check for 60 s; a failed run forgets it at once anyway).
        config: { selfCheckTtlMs: 1000 },
        daemonConfig: { slots: { firstUid: firstUid + offset, count: SLOTS } },
      });
    const [a, b] = await Promise.all([start(0), start(SLOTS)]);
    hosts = { a, b };
    expect(a.daemon.socketPath).not.toBe(b.daemon.socketPath);
    expect(a.daemon.runBase).not.toBe(b.daemon.runBase);
    try {
      balancer = await startBalancer([
        { name: 'a', url: a.url },
        { name: 'b', url: b.url },
      ]);
    } catch (err) {
      // Why a front end's /health/ failed is in its log (and its daemon's).
      const errors = (logs: Array<Record<string, unknown>>) => logs.filter((l) => l.level !== 'info').map((l) => JSON.stringify(l));
      throw new Error(
        `${(err as Error).message}\n--- a: ${[...errors(a.logs), ...errors(a.daemon.logs)].join('\n')}\n--- b: ${[...errors(b.logs), ...errors(b.daemon.logs)].join('\n')}`,
      );
    }
  }, 120_000);

  afterEach(async () => {
    // After a failed start this is the previous test's balancer, already stopped: stop() is idempotent.
    await balancer?.stop();
    // Before host a's own stop, which removes the socket's directory they share.
    await replacement?.stop();
    replacement = undefined;
    await Promise.all([hosts?.a.stop(), hosts?.b.stop()]);
  }, 120_000);

  it('allow_balancer_spreads_a_bounded_load_over_both_hosts', async () => {
    const started = performance.now();
    const outcomes = await load(balancer.url, 0, 200);
    const seconds = (performance.now() - started) / 1000;
    const lost = outcomes.filter((o) => o.kind !== 'ok');
    expect(lost, lost.map((o) => `#${o.i} ${o.status}: ${o.detail}`).join('\n')).toEqual([]);
    const served = byBackend(outcomes);
    expect(served.a).toBeGreaterThan(0);
    expect(served.b).toBeGreaterThan(0);
    expect(served.a! + served.b!).toBe(200);
    const ms = latencies(outcomes);
    report('steady load', {
      requests: 200,
      concurrency: CONCURRENCY,
      ok: outcomes.length,
      served,
      seconds: Number(seconds.toFixed(2)),
      perSecond: Number((200 / seconds).toFixed(1)),
      p50ms: Math.round(percentile(ms, 50)),
      p95ms: Math.round(percentile(ms, 95)),
    });
  }, 300_000);

  // What stops on host a, 40 answers into a load of 200, and how it ends.
  const stops: Array<[string, 'daemon' | 'serve', NodeJS.Signals, { code: number | null; signal: NodeJS.Signals | null }]> = [
    // The daemon drains: runs in a slot finish, queued ones are refused (shutting_down); its front
    // end stays up, and its /health/ turns 503 once the daemon no longer answers.
    ['allow_balancer_fails_over_when_a_daemon_stops_mid_load', 'daemon', 'SIGTERM', { code: 0, signal: null }],
    // A crash: the runs in flight on it are lost with its connection (connection_lost).
    ['allow_balancer_fails_over_when_a_daemon_is_killed_mid_load', 'daemon', 'SIGKILL', { code: null, signal: 'SIGKILL' }],
    // The front end stops: it drains first (its /health/ fails and it still serves what comes,
    // until HAProxy has it DOWN and sends nothing more), then stops accepting (a connection refused
    // after that is sent elsewhere: redispatch) and lets the requests it holds finish. Every
    // request is answered: closing the listening socket while HAProxy still sent reset the
    // connections in its accept queue, and lost 1-2 of these 300 now and then.
    ['allow_balancer_fails_over_when_a_front_end_stops_mid_load', 'serve', 'SIGTERM', { code: 0, signal: null }],
  ];

  it.each(stops)('%s', async (_name, target, signal, exit) => {
    const victim = target === 'daemon' ? hosts.a.daemon.process : hosts.a.process;
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      victim.once('exit', (code, sig) => resolve({ code, signal: sig })),
    );
    let stoppedAt: number | undefined;
    let downAt: Promise<number> | undefined;
    const during = await load(balancer.url, 0, 200, (done) => {
      if (done === 40 && stoppedAt === undefined) {
        stoppedAt = performance.now();
        victim.kill(signal);
        downAt = whenDown(balancer, 'a');
      }
    });
    const down = await downAt!;
    expect(await exited).toEqual(exit);
    // Then the survivor serves the rest: a second bounded load, with host a DOWN.
    const after = await load(balancer.url, 1000, 100);

    const all = [...during, ...after];
    const lost = all.filter((o) => o.kind === 'lost');
    const described = lost.map((o) => `#${o.i} ${o.status}: ${o.detail}`).join('\n');
    expect(lost, described).toEqual([]);
    expect(all.length).toBe(300);
    // Errors only in the failover window: in flight at the stop or sent after it, and sent before
    // HAProxy had marked a DOWN (a request sent later goes to b, whatever happens to a).
    const errors = all.filter((o) => o.kind === 'error');
    for (const e of errors) {
      expect(e.doneAt, `#${e.i} failed before the stop: ${e.detail}`).toBeGreaterThanOrEqual(stoppedAt!);
      expect(e.sentAt, `#${e.i} failed after a was DOWN: ${e.detail}`).toBeLessThanOrEqual(down);
      expect(e.backend, `#${e.i}: ${e.detail}`).toBe('a');
    }
    // Everything sent once a was DOWN was answered, by b.
    const afterDown = all.filter((o) => o.sentAt > down);
    expect(afterDown.length).toBeGreaterThanOrEqual(100);
    expect(afterDown.every((o) => o.kind === 'ok' && o.backend === 'b')).toBe(true);
    // And a stays out, since what its health check asks fails: its /health/ answers 503 while
    // its daemon is gone, and its port refuses connections once its front end is.
    const status = await balancer.status();
    expect(status.b).toBe('UP');
    expect(status.a).toMatch(/^DOWN/);
    const health = await fetch(`${hosts.a.url}/health/`).then(
      async (res) => `${res.status} ${await res.text()}`,
      (err: Error) => `no connection: ${(err.cause as NodeJS.ErrnoException | undefined)?.code ?? err.message}`,
    );
    expect(health).toBe(target === 'daemon' ? '503 {"status":"UNAVAILABLE"}' : 'no connection: ECONNREFUSED');

    const causes: Record<string, number> = {};
    for (const e of errors) causes[`${e.status} ${e.detail}`] = (causes[`${e.status} ${e.detail}`] ?? 0) + 1;
    const lastError = Math.max(stoppedAt!, ...errors.map((e) => e.doneAt));
    const ms = latencies(all);
    report(`${target} ${signal} mid-load`, {
      requests: all.length,
      ok: all.filter((o) => o.kind === 'ok').length,
      errors: errors.length,
      lost: lost.length,
      causes,
      servedDuring: byBackend(during),
      servedAfter: byBackend(after),
      failoverMs: Math.round(down - stoppedAt!),
      errorWindowMs: Math.round(lastError - stoppedAt!),
      p50ms: Math.round(percentile(ms, 50)),
      p95ms: Math.round(percentile(ms, 95)),
    });
  }, 300_000);

  it('allow_balancer_takes_a_host_back_when_its_daemon_returns', async () => {
    // Host a's daemon stops; once HAProxy has it DOWN, a daemon is started again on its socket
    // (as systemd or the kubelet would restart it), and the balancer sends to a again.
    const exited = new Promise<void>((resolve) => hosts.a.daemon.process.once('exit', () => resolve()));
    hosts.a.daemon.process.kill('SIGTERM');
    await exited;
    await whenDown(balancer, 'a');
    const during = await load(balancer.url, 0, 40);
    expect(during.every((o) => o.kind === 'ok' && o.backend === 'b')).toBe(true);

    const restartedAt = performance.now();
    replacement = await startTestDaemon({
      config: {
        socket: { path: hosts.a.daemon.socketPath, group: 'root', mode: '0666' },
        allow: { uids: [0, SERVE_UID] },
        slots: { firstUid, count: SLOTS },
      },
    });
    const upAt = await whenStatus(balancer, 'a', 'UP');
    const after = await load(balancer.url, 1000, 100);
    const lost = after.filter((o) => o.kind !== 'ok');
    expect(lost, lost.map((o) => `#${o.i} ${o.status}: ${o.detail}`).join('\n')).toEqual([]);
    const served = byBackend(after);
    expect(served.a).toBeGreaterThan(0);
    expect(served.b).toBeGreaterThan(0);
    report('daemon back', { backUpMs: Math.round(upAt - restartedAt), served });
  }, 300_000);
});
