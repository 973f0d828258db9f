// Hostile callers of `codejail serve`, the network-facing HTTP API: what they may make this
// process read, hold, or wait for, and that a daemon that is down or full is reported as such.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '../../src/client/index.js';
import { parsePythonJson } from '../../src/http/python_json.js';
import { CLI_MAIN, makeZip, startTestServe, type TestServe } from '../helpers/serve.js';

const isRoot = process.getuid?.() === 0;

async function post(url: string, payload: string, files: Record<string, Uint8Array> = {}) {
  const body = new FormData();
  body.append('payload', payload);
  for (const [name, data] of Object.entries(files)) body.append(name, new Blob([data]), name);
  const res = await fetch(`${url}/api/v0/code-exec`, { method: 'POST', body });
  const text = await res.text();
  return { status: res.status, headers: res.headers, json: parsePythonJson(text) as Record<string, any> };
}

interface RawReply {
  /** The answer's status, if one came. */
  status?: number;
  text: string;
  /** 'hung' (no close within timeoutMs), or the socket's error code (EPIPE, ECONNRESET). */
  error?: string;
}

/**
 * Sends `data` on a connection of its own (from `localAddress`: any of 127/8), then, with
 * `end`, half-closes it; resolves once the server closes it, with what it answered.
 */
function rawRequest(port: number, data: Buffer, options: { end?: boolean; localAddress?: string; timeoutMs?: number } = {}): Promise<RawReply> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: '127.0.0.1', localAddress: options.localAddress });
    const chunks: Buffer[] = [];
    let error: string | undefined;
    const timer = setTimeout(() => {
      error = 'hung';
      socket.destroy();
    }, options.timeoutMs ?? 15_000);
    socket.on('data', (chunk) => chunks.push(chunk));
    socket.on('error', (err: NodeJS.ErrnoException) => (error ??= err.code ?? err.message));
    socket.on('close', () => {
      clearTimeout(timer);
      const text = Buffer.concat(chunks).toString('latin1');
      const status = /^HTTP\/1\.1 (\d{3}) /.exec(text)?.[1];
      resolve({ status: status === undefined ? undefined : Number(status), text, error });
    });
    socket.write(data);
    if (options.end) socket.end();
  });
}

/** A request's head and body as one buffer: a POST to code-exec with this Content-Length. */
function rawPost(contentType: string, body: Buffer, contentLength = body.length): Buffer {
  const head = `POST /api/v0/code-exec HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: ${contentType}\r\nContent-Length: ${contentLength}\r\n\r\n`;
  return Buffer.concat([Buffer.from(head, 'latin1'), body]);
}

/** A multipart body as edx-platform's requests library writes one: `payload`, then the files. */
function multipartBody(boundary: string, payload: string, files: Record<string, Buffer>): Buffer {
  const parts: Buffer[] = [Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="payload"\r\n\r\n${payload}\r\n`)];
  for (const [name, data] of Object.entries(files)) {
    parts.push(Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${name}"; filename="${name}"\r\nContent-Type: application/zip\r\n\r\n`), data, Buffer.from('\r\n'));
  }
  parts.push(Buffer.from(`--${boundary}--\r\n`));
  return Buffer.concat(parts);
}

async function metric(url: string, name: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const match = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  if (!match) throw new Error(`no metric ${name}`);
  return Number(match[1]);
}

async function waitFor(what: string, test: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await test())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Resolves when the server closes `socket`, with how long that took. */
function closed(socket: net.Socket): Promise<number> {
  const start = Date.now();
  return new Promise((resolve) => {
    socket.on('close', () => resolve(Date.now() - start));
    socket.on('error', () => {});
    socket.resume();
  });
}

describe.skipIf(!isRoot)('hostile: codejail serve', () => {
  let serve: TestServe;
  beforeAll(async () => {
    serve = await startTestServe({ config: { maxInFlight: 1, headersTimeoutMs: 1000, requestTimeoutMs: 2000 } });
  }, 30_000);
  afterAll(async () => {
    await serve?.stop();
  }, 30_000);

  it('deny_http_serve_refuses_to_run_as_root', () => {
    const run = spawnSync(process.execPath, [CLI_MAIN, 'serve', '--listen', '127.0.0.1:0'], { encoding: 'utf8', timeout: 20_000 });
    expect(run.status).toBe(1);
    expect(run.stderr).toMatch(/refusing to run as root/);
  });

  it('deny_http_python_path_without_upload_reads_no_file_of_the_server', async () => {
    // The original copies python_path entries from its own disk: a python_lib.zip in the
    // service's working directory would be read and run for any caller naming it.
    fs.writeFileSync(path.join(serve.cwd, 'python_lib.zip'), makeZip({ 'server_secret.py': 'TOKEN = "from the server"\n' }));
    const payload = JSON.stringify({ code: 'import server_secret\nt = server_secret.TOKEN', globals_dict: {}, python_path: ['python_lib.zip'] });
    const res = await post(serve.url, payload);
    expect(res.status).toBe(200);
    expect(res.json.globals_dict).toEqual({});
    expect(res.json.emsg).toContain("ModuleNotFoundError: No module named \\'server_secret\\'");
  });

  it('deny_http_upload_named_as_a_path_is_refused', async () => {
    const res = await post(serve.url, JSON.stringify({ code: '', globals_dict: {} }), { '../../etc/cron.d/x': Buffer.from('x') });
    expect(res.status).toBe(400);
    expect(res.json).toEqual({ error: "Only allowed name for uploaded file is 'python_lib.zip'" });
  });

  it('deny_http_deep_nesting_in_payload_is_a_400_not_a_crash', async () => {
    const res = await post(serve.url, `{"code": "", "globals_dict": {"x": ${'['.repeat(200_000)}}}`);
    expect(res.status).toBe(400);
    expect(res.json.error).toMatch(/^Unable to parse payload JSON: arrays and objects nested more than \d+ deep/);
  });

  it('deny_http_huge_int_in_payload_is_refused_before_conversion', async () => {
    const res = await post(serve.url, `{"code": "", "globals_dict": {"x": ${'9'.repeat(100_000)}}}`);
    expect(res.status).toBe(400);
    expect(res.json.error).toMatch(/Exceeds the limit \(4300 digits\)/);
  });

  it('deny_http_proto_key_stays_a_key', async () => {
    const res = await post(serve.url, '{"code": "k = sorted(globals_dict_keys)", "globals_dict": {"__proto__": {"polluted": 1}, "globals_dict_keys": ["__proto__"]}}');
    expect(res.status).toBe(200);
    expect(Object.keys(res.json.globals_dict)).toEqual(expect.arrayContaining(['__proto__', 'k']));
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('deny_http_declared_body_over_limit_refused_before_reading', async () => {
    // Content-Length far over the limit and no body sent: the answer comes at once, and what
    // the caller sends after it is dropped, up to twice maxBodyBytes; then the connection is cut.
    const socket = net.connect(Number(new URL(serve.url).port), '127.0.0.1');
    socket.on('error', () => {});
    const head = new Promise<string>((resolve) => socket.once('data', (chunk) => resolve(String(chunk))));
    socket.write('POST /api/v0/code-exec HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 10000000000\r\n\r\npayload=');
    expect(await head).toMatch(/^HTTP\/1.1 413 /);
    const cut = closed(socket);
    const chunk = Buffer.alloc(256 * 1024, 'a');
    // maxBodyBytes is 32 MiB: past 64 MiB dropped, the connection is cut.
    for (let i = 0; i < 4 * 64 + 8 && !socket.destroyed; i++) socket.write(chunk);
    expect(await cut).toBeLessThan(15_000);
  });

  it('deny_http_slow_headers_are_cut_off', async () => {
    const socket = net.connect(Number(new URL(serve.url).port), '127.0.0.1');
    socket.write('POST /api/v0/code-exec HTTP/1.1\r\nHost: x\r\n');
    // headersTimeoutMs is 1000: bound generously for a loaded machine.
    expect(await closed(socket)).toBeLessThan(15_000);
  });

  it('deny_http_slow_body_is_cut_off', async () => {
    const socket = net.connect(Number(new URL(serve.url).port), '127.0.0.1');
    socket.write('POST /api/v0/code-exec HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\npayload=');
    // requestTimeoutMs is 2000.
    expect(await closed(socket)).toBeLessThan(15_000);
  });

  it('deny_http_requests_over_capacity_get_503_with_retry_after', async () => {
    // maxInFlight is 1: a second request while the first runs is refused at once, not queued here.
    const first = post(serve.url, JSON.stringify({ code: 'import time\ntime.sleep(0.6)\ndone = 1', globals_dict: {} }));
    await waitFor('the first request to run', async () => (await metric(serve.url, 'codejail_http_code_exec_in_flight')) === 1);
    const refused = await post(serve.url, JSON.stringify({ code: '', globals_dict: {} }));
    expect(refused.status).toBe(503);
    expect(refused.headers.get('retry-after')).toBe('1');
    expect(refused.json).toEqual({ error: 'Codejail service is at capacity; retry later' });
    expect((await first).json).toEqual({ globals_dict: { done: 1 } });
    expect((await post(serve.url, JSON.stringify({ code: 'a = 1', globals_dict: {} }))).status).toBe(200);
  });

  it('deny_http_multipart_truncated_at_every_offset_is_answered_and_serve_lives', async () => {
    // Found by a soak: a body ending inside the python_lib.zip part errored busboy's file stream
    // with no handler, and the process exited. Every offset, the body complete as HTTP (its
    // Content-Length says where it ends) and cut short as a connection (the caller closes).
    const port = Number(new URL(serve.url).port);
    const boundary = 'e3b0c44298fc1c149afbf4c8996fb924';
    const payload = JSON.stringify({ code: 'import course_lib\nr = course_lib.triple(7)', globals_dict: { n: 1 }, python_path: ['python_lib.zip'] });
    const body = multipartBody(boundary, payload, { 'python_lib.zip': makeZip({ 'course_lib.py': 'def triple(n):\n    return 3 * n\n' }) });
    const contentType = `multipart/form-data; boundary=${boundary}`;
    // From here on the form is whole (only the closing CRLF is missing): it runs.
    const whole = body.lastIndexOf(`--${boundary}--`) + boundary.length + 4;
    const wrong: unknown[] = [];
    for (let cut = 0; cut < body.length; cut++) {
      const asHttp = await rawRequest(port, rawPost(contentType, body.subarray(0, cut)));
      const expected = cut < whole ? 400 : 200;
      if (asHttp.status !== expected) wrong.push({ cut, asHttp: asHttp.status, error: asHttp.error });
      // The caller stops sending and half-closes: 400, or a close with no answer; never a hang.
      const asConnection = await rawRequest(port, rawPost(contentType, body.subarray(0, cut), body.length), { end: true });
      if (asConnection.error === 'hung' || (asConnection.status !== undefined && asConnection.status !== 400)) {
        wrong.push({ cut, asConnection: asConnection.status, error: asConnection.error });
      }
      if (wrong.length > 5) break;
    }
    expect(wrong).toEqual([]);
    expect(serve.process.exitCode).toBeNull();
    const good = await rawRequest(port, rawPost(contentType, body));
    expect(good.status).toBe(200);
    expect(good.text).toMatch(/\{"globals_dict":\{"n":1,"r":21\}\}$/);
  }, 180_000);
});

describe.skipIf(!isRoot)('hostile: codejail serve, bodies and bytes bounded (limits scaled down)', () => {
  let serve: TestServe;
  let port: number;
  const limits = {
    // Large enough that a body over it does not fit in the sockets' buffers (so that a close
    // with bytes unread is seen), small enough to send in a blink.
    maxBodyBytes: 8 * 1024 * 1024,
    maxFieldBytes: 2 * 1024 * 1024,
    maxFileBytes: 1024 * 1024,
    maxInFlight: 2,
    maxBodiesReading: 8,
    maxBodiesReadingPerAddress: 3,
    maxBytesInFlight: 10 * 1024 * 1024,
    headersTimeoutMs: 2000,
    requestTimeoutMs: 4000,
  };
  const formType = 'application/x-www-form-urlencoded';
  const urlencoded = (payload: unknown) => Buffer.from(`payload=${encodeURIComponent(JSON.stringify(payload))}`);
  beforeAll(async () => {
    // REALTIME 10: the first payload's run holds its bytes while three seconds pass (longer than
    // the default second of REALTIME allows on a loaded runner).
    serve = await startTestServe({ config: limits, daemonConfig: { defaultLimits: { REALTIME: 10 } } });
    port = Number(new URL(serve.url).port);
  }, 30_000);
  afterAll(async () => {
    await serve?.stop();
  }, 30_000);

  it('deny_http_body_over_limit_sent_whole_gets_413_not_a_broken_pipe', async () => {
    // Found by a soak: a body over maxBodyBytes, with its Content-Length, sent whole before the
    // answer is read (as most clients do): the caller saw a broken pipe, not the 413.
    for (let i = 0; i < 3; i++) {
      const reply = await rawRequest(port, rawPost(formType, Buffer.alloc(limits.maxBodyBytes + 4 * 1024 * 1024, 0x61)));
      expect({ status: reply.status, error: reply.error }).toEqual({ status: 413, error: undefined });
      expect(reply.text).toMatch(/\r\nconnection: close\r\n/i);
      expect(reply.text).toMatch(/\{"error":"Request body larger than 8388608 bytes"\}$/);
    }
    // Undeclared (chunked) and over the limit: the same, once the limit is passed.
    const chunked = Buffer.concat([
      Buffer.from(`POST /api/v0/code-exec HTTP/1.1\r\nHost: x\r\nContent-Type: ${formType}\r\nTransfer-Encoding: chunked\r\n\r\n`),
      ...Array.from({ length: 144 }, () => Buffer.concat([Buffer.from(`${(64 * 1024).toString(16)}\r\n`), Buffer.alloc(64 * 1024, 0x61), Buffer.from('\r\n')])),
      Buffer.from('0\r\n\r\n'),
    ]);
    const reply = await rawRequest(port, chunked);
    expect({ status: reply.status, error: reply.error }).toEqual({ status: 413, error: undefined });
  });

  it('deny_http_body_declared_over_limit_with_expect_100_continue_is_refused_before_it_is_sent', async () => {
    const socket = net.connect(port, '127.0.0.1');
    socket.on('error', () => {});
    let text = '';
    socket.on('data', (chunk) => (text += chunk));
    const ended = closed(socket);
    socket.write(`POST /api/v0/code-exec HTTP/1.1\r\nHost: x\r\nContent-Type: ${formType}\r\nContent-Length: ${limits.maxBodyBytes + 1}\r\nExpect: 100-continue\r\n\r\n`);
    await ended;
    expect(text).toMatch(/^HTTP\/1.1 413 /);
    expect(text).not.toMatch(/100 Continue/);
    // Within the limit: 100 Continue, then the answer.
    const body = urlencoded({ code: 'c = 1', globals_dict: {} });
    const ok = new Promise<string>((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      let got = '';
      s.on('data', (chunk) => {
        got += chunk;
        if (got === 'HTTP/1.1 100 Continue\r\n\r\n') s.write(body);
      });
      s.on('close', () => resolve(got));
      s.write(`POST /api/v0/code-exec HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: ${formType}\r\nContent-Length: ${body.length}\r\nExpect: 100-continue\r\n\r\n`);
    });
    expect(await ok).toMatch(/^HTTP\/1.1 100 Continue\r\n\r\nHTTP\/1.1 200 [^]*\{"globals_dict":\{"c":1\}\}$/);
  });

  it('deny_http_slow_bodies_hold_no_place_and_are_bounded_per_address_and_in_all', async () => {
    // Found by a review: connections sending headers then a body byte now and then held every
    // place (maxInFlight), and every real request got 503. A place is taken once the body has
    // arrived; those still sending are bounded by address (maxBodiesReadingPerAddress) and in
    // all (maxBodiesReading), and cut off at requestTimeoutMs.
    const slow = (localAddress: string) => {
      const socket = net.connect({ port, host: '127.0.0.1', localAddress });
      socket.on('error', () => {});
      let text = '';
      socket.on('data', (chunk) => (text += chunk));
      const done = new Promise<string>((resolve) => socket.on('close', () => resolve(text)));
      socket.write(`POST /api/v0/code-exec HTTP/1.1\r\nHost: x\r\nContent-Type: ${formType}\r\nContent-Length: 100000\r\n\r\np`);
      return done;
    };
    const started = Date.now();
    const attackers: Array<Promise<string>> = [];
    for (const address of ['127.0.0.2', '127.0.0.3']) {
      for (let i = 0; i < 5; i++) attackers.push(slow(address));
    }
    // Two of each address are refused at once.
    const refused = await Promise.race([Promise.all([attackers[3], attackers[4], attackers[8], attackers[9]]), new Promise((r) => setTimeout(() => r('not yet'), 3000))]);
    // A real request, from another address, runs: the slow ones hold no place in flight.
    const real = await rawRequest(port, rawPost(formType, urlencoded({ code: 'r = 1', globals_dict: {} })));
    expect(real.text).toMatch(/^HTTP\/1.1 200 [^]*\{"globals_dict":\{"r":1\}\}$/);
    expect(refused).toEqual(Array(4).fill(expect.stringMatching(/^HTTP\/1.1 429 [^]*retry-after: 1[^]*"error":"Too many requests from this address are still sending their body; retry later"/i)));
    expect(await metric(serve.url, 'codejail_http_code_exec_bodies_reading')).toBe(6);
    // Two more from a third address fill maxBodiesReading (8): the next, from anywhere, is 503.
    attackers.push(slow('127.0.0.4'), slow('127.0.0.4'));
    await waitFor('8 bodies being read', async () => (await metric(serve.url, 'codejail_http_code_exec_bodies_reading')) === 8);
    const full = await rawRequest(port, rawPost(formType, urlencoded({ code: 'r = 2', globals_dict: {} })), { localAddress: '127.0.0.5' });
    expect(full.text).toMatch(/^HTTP\/1.1 503 [^]*\{"error":"Codejail service is at capacity; retry later"\}$/);
    // requestTimeoutMs (4 s) cuts the slow ones off; then everyone is served again.
    await Promise.all(attackers);
    expect(Date.now() - started).toBeLessThan(15_000);
    expect(await metric(serve.url, 'codejail_http_code_exec_bodies_reading')).toBe(0);
    const after = await rawRequest(port, rawPost(formType, urlencoded({ code: 'r = 3', globals_dict: {} })), { localAddress: '127.0.0.2' });
    expect(after.status).toBe(200);
  }, 30_000);

  it('deny_http_payload_bytes_in_flight_are_capped', async () => {
    // Found by a review: 30 concurrent 8 MiB payloads of escapes took serve to 3.96 GB. What a
    // payload may cost once parsed (4 bytes a character, 96 a value) is charged with its body
    // against maxBytesInFlight (10 MiB here): one payload of 1.2 MB (2.4 MB as a form) fits, two
    // do not.
    const big = (code: string) => urlencoded({ code, globals_dict: { s: '\n'.repeat(600 * 1000) } });
    // It sleeps long enough to be still in flight once the next two requests are answered, even
    // on a loaded runner (a second or less of sleep was not, there).
    const first = rawRequest(port, rawPost(formType, big('import time\ntime.sleep(3)\nt = 1\ndel s')));
    await waitFor('the first to run', async () => (await metric(serve.url, 'codejail_http_code_exec_in_flight')) === 1);
    const held = await metric(serve.url, 'codejail_http_bytes_in_flight').catch(() => undefined);
    const second = await rawRequest(port, rawPost(formType, big('t = 2\ndel s')));
    expect(second.text).toMatch(/^HTTP\/1.1 503 [^]*retry-after: 1[^]*\{"error":"Codejail service is at capacity; retry later"\}$/i);
    expect(held).toBeGreaterThan(5 * 1024 * 1024);
    // A small one still fits beside it.
    expect((await rawRequest(port, rawPost(formType, urlencoded({ code: 't = 3', globals_dict: {} })))).status).toBe(200);
    expect((await first).text).toMatch(/\{"globals_dict":\{"t":1\}\}$/);
    await waitFor('the bytes to be given back', async () => (await metric(serve.url, 'codejail_http_bytes_in_flight')) === 0);
  }, 30_000);
});

describe.skipIf(!isRoot)('hostile: codejail serve without its daemon', () => {
  let serve: TestServe;
  beforeAll(async () => {
    serve = await startTestServe({ config: { selfCheckTtlMs: 0 } });
  }, 30_000);
  afterAll(async () => {
    await serve?.stop();
  }, 30_000);

  it('support_http_daemon_down_is_503_on_health_and_on_code_exec', async () => {
    expect((await fetch(`${serve.url}/health/`)).status).toBe(200);
    serve.daemon.process.kill('SIGKILL');
    await new Promise((resolve) => serve.daemon.process.once('exit', resolve));
    const health = await fetch(`${serve.url}/health/`);
    expect(health.status).toBe(503);
    expect(await health.json()).toEqual({ status: 'UNAVAILABLE' });
    const res = await post(serve.url, JSON.stringify({ code: 'a = 1', globals_dict: {} }));
    // A balancer routes around a 503 and a caller may retry it; 500 stays for a failed self-check.
    expect(res.status).toBe(503);
    expect(res.json.error).toMatch(/^Codejail service is unavailable: its daemon/);
  });
});

// Issue 16 item 3: with no slot free for the daemon's check, /health/ hung instead of failing.
describe.skipIf(!isRoot)('hostile: codejail serve whose daemon cannot run its check', () => {
  let serve: TestServe;
  beforeAll(async () => {
    serve = await startTestServe({ config: { selfCheckTtlMs: 0, healthTimeoutMs: 1000 }, daemonConfig: { slots: { count: 1 } } });
  }, 30_000);
  afterAll(async () => {
    await serve?.stop();
  }, 30_000);

  it('deny_http_health_waits_no_longer_than_health_timeout_for_a_check_stuck_behind_runs', async () => {
    expect((await fetch(`${serve.url}/health/`)).status).toBe(200);
    const client = new Client({ socketPath: serve.daemon.socketPath });
    // The one slot is taken for a while: the daemon's check waits in the queue behind it.
    const sleeper = client.jailCode('python', { code: 'import time\ntime.sleep(15)', limits: { REALTIME: 30 } }).catch(() => undefined);
    try {
      const deadline = Date.now() + 10_000;
      while ((await client.status()).slots.busy === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
      const started = performance.now();
      const health = await fetch(`${serve.url}/health/`);
      const waitedMs = performance.now() - started;
      expect(health.status).toBe(503);
      expect(await health.json()).toEqual({ status: 'UNAVAILABLE' });
      // Bounded by healthTimeoutMs (1 s), far from the sleeper's 15 s.
      expect(waitedMs).toBeLessThan(8000);
    } finally {
      await client.close();
      await sleeper;
    }
  }, 40_000);
});
