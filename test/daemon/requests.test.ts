// What each request does (server/requests.ts), without a socket: a fake connection records the
// replies, a fake runner stands in for the sandboxes.
import { describe, expect, it } from 'vitest';
import type { JailCodeResult, Request } from '../../src/protocol/index.js';
import { RequestError } from '../../src/protocol/errors.js';
import type { Logger } from '../../src/log.js';
import type { RunOrigin } from '../../src/daemon/runner.js';
import type { Verdict } from '../../src/daemon/metrics.js';
import type { ServerOptions } from '../../src/daemon/server/index.js';
import { errorVerdict, Requests, resultVerdict, type RequestOrigin } from '../../src/daemon/server/requests.js';
import { ThrottledLog } from '../../src/daemon/server/throttle.js';

interface Line {
  level: string;
  msg: string;
  fields?: Record<string, unknown>;
}

function setUp(
  run: (signal: AbortSignal, origin?: RunOrigin) => Promise<JailCodeResult>,
  check: () => Promise<unknown> = async () => ({ ok: true }),
  refusal?: (bytes: number) => string | undefined,
) {
  const lines: Line[] = [];
  const record = (level: string) => (msg: string, fields?: Record<string, unknown>) => void lines.push({ level, msg, fields });
  const log = { debug: record('debug'), info: record('info'), warn: record('warn'), error: record('error') } as unknown as Logger;
  const runs: Array<{ verdict: Verdict; seconds: number }> = [];
  const options = {
    log,
    runner: { run: (_request: unknown, signal: AbortSignal, origin?: RunOrigin) => run(signal, origin) },
    metrics: { recordRun: (verdict: Verdict, seconds: number) => runs.push({ verdict, seconds }) },
    status: () => ({ version: 'test' }),
    renderMetrics: () => 'text',
    check,
  } as unknown as ServerOptions;
  const replies: Array<{ id: number; ok: boolean; result?: unknown; code?: string; message?: string }> = [];
  const work: Array<Promise<void>> = [];
  const origin: RequestOrigin = {
    id: 7,
    runs: new Map(),
    caller: { uid: 1000 },
    callerFields: () => ({ uid: 1000, pid: 42 }),
    replyOk: (id, result) => void replies.push({ id, ok: true, result }),
    replyError: (id, code, message) => void replies.push({ id, ok: false, code, message }),
    track: (promise) => void work.push(promise),
    holdQueued: (bytes) => {
      const refused = refusal?.(bytes);
      if (refused !== undefined) throw new RequestError('overloaded', refused);
      held.bytes += bytes;
      let once = true;
      return () => {
        if (once) held.bytes -= bytes;
        once = false;
      };
    },
  };
  /** Bytes the origin holds for queued requests. */
  const held = { bytes: 0 };
  const requests = new Requests(options, new ThrottledLog(log));
  const settle = () => Promise.all(work);
  return { requests, origin, lines, runs, replies, settle, held };
}

const finished = { runId: 'r1', status: 0, timedOut: false, oomKilled: false, limits: {}, usage: {}, truncated: false } as unknown as JailCodeResult;
const jailCode = (id: number, payload: Record<string, unknown> = {}) =>
  ({ op: 'jail_code', id, command: 'python', slug: 'test', limits: {}, files: [], extraFiles: [], argv: [], ...payload }) as unknown as Request;

describe('requests', () => {
  it('support_a_run_ends_with_one_info_line_its_verdict_and_its_reply', async () => {
    const t = setUp(async () => finished);
    t.requests.dispatch(jailCode(1), t.origin);
    await t.settle();
    expect(t.replies).toEqual([{ id: 1, ok: true, result: finished }]);
    const ended = t.lines.filter((l) => l.msg === 'run ended');
    expect(ended).toHaveLength(1);
    expect(ended[0]).toMatchObject({ level: 'info', fields: { id: 1, connection: 7, slug: 'test', caller: { uid: 1000, pid: 42 }, verdict: 'ok', runId: 'r1' } });
    expect(t.runs.map((r) => r.verdict)).toEqual(['ok']);
    expect(t.origin.runs.size).toBe(0);
  });

  it('support_a_run_takes_its_callers_share_of_the_queue: the runner is told whose run it is', async () => {
    const callers: Array<number | undefined> = [];
    const t = setUp(async (_signal, origin) => (callers.push(origin?.caller), finished));
    t.requests.dispatch(jailCode(1), t.origin);
    await t.settle();
    expect(callers).toEqual([1000]);
  });

  it('deny_a_second_run_on_a_request_id_in_flight', async () => {
    let finish!: (result: JailCodeResult) => void;
    const t = setUp(() => new Promise((resolve) => (finish = resolve)));
    t.requests.dispatch(jailCode(3), t.origin);
    t.requests.dispatch(jailCode(3), t.origin);
    expect(t.replies).toEqual([{ id: 3, ok: false, code: 'bad_request', message: 'request id 3 is already in flight on this connection' }]);
    finish(finished);
    await t.settle();
    expect(t.replies.map((r) => r.ok)).toEqual([false, true]);
  });

  it('support_cancel_aborts_the_run_it_names_and_says_whether_there_was_one', async () => {
    const t = setUp((signal) => new Promise((_resolve, reject) => signal.addEventListener('abort', () => reject(signal.reason))));
    t.requests.dispatch(jailCode(5), t.origin);
    t.requests.dispatch({ op: 'cancel', id: 6, target: 5 } as Request, t.origin);
    t.requests.dispatch({ op: 'cancel', id: 8, target: 99 } as Request, t.origin);
    await t.settle();
    expect(t.replies).toEqual([
      { id: 6, ok: true, result: { cancelled: true } },
      { id: 8, ok: true, result: { cancelled: false } },
      { id: 5, ok: false, code: 'cancelled', message: 'cancelled by request 6' },
    ]);
    expect(t.runs.map((r) => r.verdict)).toEqual(['cancelled']);
  });

  it('support_an_unexpected_failure_is_logged_and_answered_internal', async () => {
    const t = setUp(
      async () => finished,
      async () => {
        throw new Error('boom');
      },
    );
    t.requests.dispatch({ op: 'check', id: 9 } as Request, t.origin);
    await t.settle();
    expect(t.replies).toEqual([{ id: 9, ok: false, code: 'internal', message: 'internal error in the daemon (logged)' }]);
    expect(t.lines.some((l) => l.level === 'error' && l.msg === 'a request failed unexpectedly')).toBe(true);
  });

  it('support_a_queued_request_holds_its_payload_until_its_run_starts', async () => {
    let start!: () => void;
    let finish!: (result: JailCodeResult) => void;
    const t = setUp(
      (_signal, origin) =>
        new Promise((resolve) => {
          start = origin!.started!;
          finish = resolve;
        }),
    );
    const payload = {
      code: Buffer.alloc(1000),
      stdin: Buffer.alloc(200),
      files: [{ type: 'file', name: 'a.txt', data: Buffer.alloc(30) }, { type: 'dir', name: 'd' }, { type: 'symlink', name: 'l', target: 'a.txt' }],
      extraFiles: [['x', Buffer.alloc(4)]],
      argv: ['ab', 'é'],
    };
    t.requests.dispatch(jailCode(1, payload), t.origin);
    // 1000 + 200 + (5 + 30) + 1 + (1 + 5) + (1 + 4) + (2 + 2)
    expect(t.held.bytes).toBe(1251);
    start();
    expect(t.held.bytes).toBe(0);
    finish(finished);
    await t.settle();
    expect(t.held.bytes).toBe(0);
    expect(t.replies.map((r) => r.ok)).toEqual([true]);
  });

  it('support_a_queued_request_cancelled_or_refused_holds_nothing', async () => {
    const t = setUp((signal) => new Promise((_resolve, reject) => signal.addEventListener('abort', () => reject(signal.reason))));
    t.requests.dispatch(jailCode(5, { code: Buffer.alloc(100) }), t.origin);
    expect(t.held.bytes).toBe(100);
    t.requests.dispatch({ op: 'cancel', id: 6, target: 5 } as Request, t.origin);
    await t.settle();
    expect(t.held.bytes).toBe(0);
  });

  it('deny_a_request_past_a_byte_cap_is_refused_overloaded_naming_it', async () => {
    let ran = false;
    const t = setUp(
      async () => {
        ran = true;
        return finished;
      },
      undefined,
      (bytes) => (bytes > 10 ? `${bytes} bytes, more than connections.perUidBufferedBytes` : undefined),
    );
    t.requests.dispatch(jailCode(2, { code: Buffer.alloc(11) }), t.origin);
    await t.settle();
    expect(ran).toBe(false);
    expect(t.replies).toEqual([{ id: 2, ok: false, code: 'overloaded', message: '11 bytes, more than connections.perUidBufferedBytes' }]);
    expect(t.runs.map((r) => r.verdict)).toEqual(['rejected']);
    expect(t.origin.runs.size).toBe(0);
    expect(t.held.bytes).toBe(0);
  });

  it('support_verdicts_of_results_and_errors', () => {
    const result = (fields: Partial<JailCodeResult>) => ({ ...finished, ...fields }) as JailCodeResult;
    expect(resultVerdict(result({ timedOut: true, status: -9 }))).toBe('timeout');
    expect(resultVerdict(result({ oomKilled: true, status: -9 }))).toBe('oom');
    expect(resultVerdict(result({ status: 0 }))).toBe('ok');
    expect(resultVerdict(result({ status: 2 }))).toBe('exit');
    expect(resultVerdict(result({ status: -11 }))).toBe('signal');
    expect(errorVerdict(new Error('bug'))).toBe('error');
    expect(errorVerdict(new RequestError('setup_failed', ''))).toBe('setup_failed');
    for (const code of ['cancelled', 'shutting_down', 'forbidden'] as const) expect(errorVerdict(new RequestError(code, ''))).toBe('cancelled');
    expect(errorVerdict(new RequestError('internal', ''))).toBe('error');
    expect(errorVerdict(new RequestError('template_lost', ''))).toBe('error');
    for (const code of ['overloaded', 'unknown_command', 'bad_request'] as const) expect(errorVerdict(new RequestError(code, ''))).toBe('rejected');
  });
});
