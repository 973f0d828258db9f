// Hostile callers of `codejail serve`, the network-facing HTTP API: what they may make this
// process read, hold, or wait for, and that a daemon that is down or full is reported as such.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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
    // maxInFlight is 1: a second request while the first is in this service (here: still
    // sending its body) is refused at once, before its body is read, not queued here.
    const body = `payload=${encodeURIComponent(JSON.stringify({ code: 'done = 1', globals_dict: {} }))}`;
    const socket = net.connect(Number(new URL(serve.url).port), '127.0.0.1');
    const first = new Promise<string>((resolve) => {
      let text = '';
      socket.on('data', (chunk) => (text += chunk));
      socket.on('close', () => resolve(text));
    });
    socket.write(`POST /api/v0/code-exec HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: ${body.length}\r\n\r\n${body.slice(0, 10)}`);
    const deadline = Date.now() + 10_000;
    while (!/codejail_http_code_exec_in_flight 1/.test(await (await fetch(`${serve.url}/metrics`)).text())) {
      if (Date.now() > deadline) throw new Error('the first request never started');
      await new Promise((r) => setTimeout(r, 20));
    }
    const refused = await post(serve.url, JSON.stringify({ code: '', globals_dict: {} }));
    expect(refused.status).toBe(503);
    expect(refused.headers.get('retry-after')).toBe('1');
    expect(refused.json).toEqual({ error: 'Codejail service is at capacity; retry later' });
    socket.write(body.slice(10));
    expect(await first).toMatch(/^HTTP\/1.1 200 [^]*\{"globals_dict":\{"done":1\}\}$/);
    expect((await post(serve.url, JSON.stringify({ code: 'a = 1', globals_dict: {} }))).status).toBe(200);
  });
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
