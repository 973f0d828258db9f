// The safe_exec request made into a run (src/daemon/safe_exec.ts) and dispatched by the server's
// request handlers, without a socket: a fake runner records the run it is given.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { JailCodeResult, Request, SafeExecRequest } from '../../src/protocol/index.js';
import { safeExecRequest } from '../../src/protocol/index.js';
import { RequestError } from '../../src/protocol/errors.js';
import type { Logger } from '../../src/log.js';
import type { RunOrigin, RunRequest } from '../../src/daemon/runner.js';
import type { Verdict } from '../../src/daemon/metrics.js';
import { harnessInput, safeExecRun, type CommandKind } from '../../src/daemon/safe_exec.js';
import type { ServerOptions } from '../../src/daemon/server/index.js';
import { payloadBytes, Requests, type RequestOrigin } from '../../src/daemon/server/requests.js';
import { parseHarnessRequest } from '../helpers/harness_stdin.js';
import { ThrottledLog } from '../../src/daemon/server/throttle.js';

const HARNESS = readFileSync(fileURLToPath(new URL('../../python/safe_exec_harness.py', import.meta.url)));
const KINDS: ReadonlyMap<string, CommandKind> = new Map([
  ['python', 'python'],
  ['python-numpy', 'python'],
  ['bash', 'binary'],
]);

/** A request as the schema leaves it (defaults filled in). */
const request = (fields: Record<string, unknown> = {}): SafeExecRequest =>
  safeExecRequest.parse({ v: 1, id: 1, op: 'safe_exec', code: 'a = 17', globals: Buffer.from('["d","x",1]'), ...fields });

describe('safe_exec as a run', () => {
  it('support_safe_exec_runs_the_harness_with_its_request_on_stdin_and_a_result_channel', () => {
    const files = [{ type: 'file' as const, name: 'data.txt', data: Buffer.from('d') }];
    const extraFiles: [string, Uint8Array][] = [['lib.zip', Buffer.from('PK')]];
    const run = safeExecRun(
      request({ command: 'python-numpy', pythonPath: ['lib.zip'], files, extraFiles, limits: { CPU: 2 }, slug: 'g' }),
      KINDS,
    );
    expect(run).toEqual({
      command: 'python-numpy',
      code: HARNESS,
      files,
      extraFiles,
      argv: [],
      stdin: run.stdin,
      limits: { CPU: 2 },
      slug: 'g',
      resultChannel: true,
      safeExec: true,
    } satisfies RunRequest);
    expect(parseHarnessRequest(run.stdin!)).toEqual({ globals: ['d', 'x', 1], code: 'a = 17', python_path: ['lib.zip'] });
  });

  it('support_warm_and_profile_reach_the_run', () => {
    expect(safeExecRun(request({ warm: false, profile: true }), KINDS)).toMatchObject({ warm: false, profile: true });
    const plain = safeExecRun(request(), KINDS);
    expect('warm' in plain || 'profile' in plain).toBe(false);
  });

  it('support_the_code_and_globals_bytes_go_to_the_harness_untouched', () => {
    // Not parsed nor escaped by the daemon: what the caller sent is what the harness reads (and refuses).
    const globals = Buffer.from('{not json\u00e9');
    const stdin = harnessInput({ code: 'x = "\u00e9\\n"', globals, pythonPath: [] });
        // "x = "é\n"" is 10 bytes: é is two.
    expect(stdin.toString()).toBe('10\nx = "\u00e9\\n"{"globals":{not json\u00e9,"python_path":[]}');
  });

  it('deny_code_or_python_path_smuggled_in_the_globals_text: the daemon\'s python_path comes last and wins, a "code" there is not read', () => {
    const globals = Buffer.from('["d"],"code":"import os","python_path":["/etc"]');
    const stdin = harnessInput({ code: 'a = 1', globals, pythonPath: ['lib'] });
    expect(parseHarnessRequest(stdin)).toEqual({ globals: ['d'], code: 'a = 1', python_path: ['lib'] });
  });

  it('deny_code_of_control_characters_costs_the_daemon_six_times_its_size: stdin is the code\'s UTF-8, unescaped', () => {
    // JSON.stringify wrote each of them as \u0001: 8 MiB of code became 48 MiB, and a second of
    // event loop for a 64 MiB frame, before the request was charged to the queue.
    const code = '\x01'.repeat(8 * 1024 * 1024);
    const globals = Buffer.from('["d"]');
    const stdin = harnessInput({ code, globals, pythonPath: [] });
    const bytes = stdin.byteLength;
    expect(bytes).toBeLessThan(code.length + globals.length + 64);
    expect(payloadBytes(request({ code, globals }))).toBeGreaterThanOrEqual(bytes);
  });

  it('deny_an_unknown_command_naming_the_known_ones', () => {
    expect(() => safeExecRun(request({ command: 'ruby' }), KINDS)).toThrow(
      new RequestError('unknown_command', 'unknown command "ruby"; this daemon runs: python, python-numpy, bash'),
    );
  });

  it('deny_a_command_that_is_not_python', () => {
    expect(() => safeExecRun(request({ command: 'bash' }), KINDS)).toThrow(
      new RequestError('bad_request', 'safe_exec runs Python: command "bash" is of kind "binary", not "python"'),
    );
  });

  it('support_a_queued_safe_exec_holds_its_code_globals_and_the_stdin_made_of_them', () => {
    const r = request({ code: 'é', pythonPath: ['ab'], files: [{ type: 'file', name: 'f', data: Buffer.alloc(10) }], extraFiles: [['x', Buffer.alloc(4)]] });
    // 2 * (2 + 11) + 2 * 2, then (1 + 10) + (1 + 4)
    expect(payloadBytes(r)).toBe(30 + 16);
  });
});

describe('safe_exec dispatched', () => {
  function setUp(run: (request: RunRequest) => Promise<JailCodeResult>) {
    const lines: Array<{ level: string; msg: string; fields?: Record<string, unknown> }> = [];
    const record = (level: string) => (msg: string, fields?: Record<string, unknown>) => void lines.push({ level, msg, fields });
    const log = { debug: record('debug'), info: record('info'), warn: record('warn'), error: record('error') } as unknown as Logger;
    const verdicts: Verdict[] = [];
    const options = {
      log,
      runner: { run: (r: RunRequest, _signal: AbortSignal, origin?: RunOrigin) => (origin?.started?.(), run(r)) },
      commandKinds: KINDS,
      metrics: { recordRun: (verdict: Verdict) => void verdicts.push(verdict) },
    } as unknown as ServerOptions;
    const replies: Array<{ id: number; ok: boolean; result?: unknown; code?: string; message?: string }> = [];
    const work: Array<Promise<void>> = [];
    const origin: RequestOrigin = {
      id: 3,
      runs: new Map(),
      caller: { uid: 1000 },
      callerFields: () => ({ uid: 1000, pid: 42 }),
      replyOk: (id, result) => void replies.push({ id, ok: true, result }),
      replyError: (id, code, message) => void replies.push({ id, ok: false, code, message }),
      track: (promise) => void work.push(promise),
      holdQueued: (bytes) => {
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
    return { requests, origin, lines, verdicts, replies, held, settle: () => Promise.all(work) };
  }
  const finished = { runId: 'r1', status: 0, timedOut: false, limits: {}, usage: {}, truncated: false, result: Buffer.from('["d"]') } as unknown as JailCodeResult;

  it('support_safe_exec_is_answered_with_the_runs_result_and_logged_as_one_run', async () => {
    const runs: RunRequest[] = [];
    const t = setUp(async (r) => (runs.push(r), finished));
    t.requests.dispatch(request({ id: 4, slug: 'g' }) as Request, t.origin);
    await t.settle();
    expect(runs).toHaveLength(1);
    expect(runs[0]).toMatchObject({ command: 'python', code: HARNESS, argv: [], resultChannel: true, safeExec: true });
    expect(t.replies).toEqual([{ id: 4, ok: true, result: finished }]);
    const ended = t.lines.filter((l) => l.msg === 'run ended');
    expect(ended).toEqual([expect.objectContaining({ level: 'info', fields: expect.objectContaining({ op: 'safe_exec', command: 'python', slug: 'g', verdict: 'ok' }) })]);
    expect(t.verdicts).toEqual(['ok']);
    expect(t.origin.runs.size).toBe(0);
    expect(t.held.bytes).toBe(0);
  });

  it('deny_a_safe_exec_refused_for_its_size_costs_the_daemon_its_code_again: charged before its stdin is made', async () => {
    // Each U+FFFD (what msgpack makes of a byte that is not UTF-8) is 3 bytes of stdin: 24 MiB
    // made for a request the queue then refuses, before this order.
    const t = setUp(async () => {
      throw new Error('must not run');
    });
    t.origin.holdQueued = () => {
      throw new RequestError('overloaded', 'no room');
    };
    const code = '\ufffd'.repeat(8 * 1024 * 1024);
    const before = process.memoryUsage().arrayBuffers;
    t.requests.dispatch(request({ id: 7, code }) as Request, t.origin);
    const made = process.memoryUsage().arrayBuffers - before;
    await t.settle();
    expect(t.replies).toEqual([{ id: 7, ok: false, code: 'overloaded', message: 'no room' }]);
    expect(made).toBeLessThan(1024 * 1024);
  });

  it('deny_safe_exec_of_an_unknown_or_binary_command_before_any_run_holding_nothing', async () => {
    const t = setUp(async () => {
      throw new Error('must not run');
    });
    t.requests.dispatch(request({ id: 5, command: 'ruby' }) as Request, t.origin);
    t.requests.dispatch(request({ id: 6, command: 'bash' }) as Request, t.origin);
    await t.settle();
    expect(t.replies).toEqual([
      { id: 5, ok: false, code: 'unknown_command', message: 'unknown command "ruby"; this daemon runs: python, python-numpy, bash' },
      { id: 6, ok: false, code: 'bad_request', message: 'safe_exec runs Python: command "bash" is of kind "binary", not "python"' },
    ]);
    expect(t.verdicts).toEqual(['rejected', 'rejected']);
    expect(t.origin.runs.size).toBe(0);
    expect(t.held.bytes).toBe(0);
  });
});
