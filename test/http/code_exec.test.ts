// `codejail serve` over HTTP with Node's fetch and FormData: codejail-service's API, each answer
// and each message as that service gives it, against a real daemon.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parsePythonJson } from '../../src/http/python_json.js';
import { makeZip, startTestServe, type TestServe } from '../helpers/serve.js';

const isRoot = process.getuid?.() === 0;

function form(payload: unknown, files: Record<string, Uint8Array> = {}): FormData {
  const body = new FormData();
  body.append('payload', typeof payload === 'string' ? payload : JSON.stringify(payload));
  for (const [name, data] of Object.entries(files)) body.append(name, new Blob([data]), name);
  return body;
}

async function post(serve: TestServe, body: FormData | URLSearchParams | string, headers: Record<string, string> = {}) {
  const res = await fetch(`${serve.url}/api/v0/code-exec`, { method: 'POST', body, headers });
  const text = await res.text();
  return { status: res.status, headers: res.headers, text, json: parsePythonJson(text) as Record<string, any> };
}

describe.skipIf(!isRoot)('http: POST /api/v0/code-exec', () => {
  let serve: TestServe;
  beforeAll(async () => {
    serve = await startTestServe({
      config: { maxBodyBytes: 256 * 1024, maxFileBytes: 128 * 1024, limitOverrides: { 'course-v1:slow': { REALTIME: 4 } } },
    });
  }, 30_000);
  afterAll(async () => {
    await serve?.stop();
  }, 30_000);

  it('support_http_code_ran_returns_its_globals', async () => {
    const res = await post(serve, form({ code: 'out = x + 1', globals_dict: { x: 41 } }));
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/json');
    expect(res.json).toEqual({ globals_dict: { x: 41, out: 42 } });
  });

  it('support_http_form_urlencoded', async () => {
    const body = new URLSearchParams({ payload: JSON.stringify({ code: 's = "é" * 2', globals_dict: {} }) });
    const res = await post(serve, body);
    expect(res.status).toBe(200);
    expect(res.json).toEqual({ globals_dict: { s: 'éé' } });
  });

  it('support_http_code_failed_returns_input_globals_and_emsg', async () => {
    const res = await post(serve, form({ code: 'x = 2\nraise ValueError("boom")', globals_dict: { x: 1, keep: [1, 'a'] } }));
    expect(res.status).toBe(200);
    expect(res.json.globals_dict).toEqual({ x: 1, keep: [1, 'a'] });
    expect(res.json.emsg).toMatch(/^Couldn't execute jailed code: stdout: b'', stderr: b'Traceback/);
    expect(res.json.emsg).toContain('ValueError: boom');
  });

  it('support_http_nan_and_infinity_both_ways', async () => {
    const payload = '{"code": "out = [a, b, c, a + 1]", "globals_dict": {"a": NaN, "b": Infinity, "c": -Infinity}}';
    const res = await post(serve, form(payload));
    expect(res.status).toBe(200);
    expect(res.text).toContain('"out":[NaN,Infinity,-Infinity,NaN]');
    const out = res.json.globals_dict.out as number[];
    expect(Number.isNaN(out[0])).toBe(true);
    expect(out.slice(1, 3)).toEqual([Infinity, -Infinity]);
  });

  it('support_http_whole_number_floats_stay_floats_both_ways', async () => {
    // Python's json keeps 2.0 a float: the code sees a float, and the answer writes 2.0 again.
    const payload = '{"code": "kinds = [type(x).__name__, type(y).__name__]\\nz = x * 2\\nw = y * 1.0\\nk = {2.0: 1}", "globals_dict": {"x": 2.0, "y": 3, "big": 1e16}}';
    const res = await post(serve, form(payload));
    expect(res.status).toBe(200);
    expect(res.text).toBe('{"globals_dict":{"x":2.0,"y":3,"big":1e+16,"kinds":["float","int"],"z":4.0,"w":3.0,"k":{"2.0":1}}}');
  });

  it('support_http_big_ints_keep_their_digits', async () => {
    const res = await post(serve, form('{"code": "out = n * 10", "globals_dict": {"n": 123456789012345678901234567890}}'));
    expect(res.status).toBe(200);
    expect(res.text).toContain('"out":1234567890123456789012345678900');
  });

  it('support_http_python_lib_zip_on_python_path', async () => {
    const zip = makeZip({ 'course_lib.py': 'def triple(n):\n    return 3 * n\n' });
    const payload = { code: 'import course_lib\nresult = course_lib.triple(7)', globals_dict: {}, python_path: ['python_lib.zip'] };
    const res = await post(serve, form(payload, { 'python_lib.zip': zip }));
    expect(res.status).toBe(200);
    expect(res.json).toEqual({ globals_dict: { result: 21 } });
  });

  it('support_http_repeated_names_last_wins', async () => {
    const body = new FormData();
    body.append('payload', JSON.stringify({ code: 'first = 1', globals_dict: {} }));
    body.append('python_lib.zip', new Blob([makeZip({ 'm.py': 'V = "old"\n' })]), 'python_lib.zip');
    body.append('payload', JSON.stringify({ code: 'import m\nv = m.V', globals_dict: {}, python_path: ['python_lib.zip'] }));
    body.append('python_lib.zip', new Blob([makeZip({ 'm.py': 'V = "new"\n' })]), 'python_lib.zip');
    const res = await post(serve, body);
    expect(res.json).toEqual({ globals_dict: { v: 'new' } });
  });

  it('support_http_optional_fields_may_be_null', async () => {
    const payload = { code: 'y = 1', globals_dict: {}, python_path: null, limit_overrides_context: null, slug: null, unsafely: false };
    const res = await post(serve, form(payload));
    expect(res.status).toBe(200);
    expect(res.json).toEqual({ globals_dict: { y: 1 } });
  });

  it('support_http_limit_overrides_context_selects_configured_limits', async () => {
    const code = 'import time\ntime.sleep(1.3)\ndone = 1';
    const slow = await post(serve, form({ code, globals_dict: {}, limit_overrides_context: 'course-v1:slow', slug: 'p1' }));
    expect(slow.json).toEqual({ globals_dict: { done: 1 } });
    // The default REALTIME (1 s) kills the same code.
    const killed = await post(serve, form({ code, globals_dict: {} }));
    expect(killed.json.emsg).toMatch(/with status code: -9$/);
  });

  it.each([
    ['no payload', () => new URLSearchParams({ other: '1' }), "Missing 'payload' parameter in POST body"],
    ['payload not JSON', () => form(''), 'Unable to parse payload JSON: Expecting value: line 1 column 1 (char 0)'],
    ['payload with a trailing comma', () => form('{"code": "x", }'), 'Unable to parse payload JSON: Expecting property name enclosed in double quotes: line 1 column 15 (char 14)'],
    ['payload not an object', () => form('[]'), "Payload JSON did not match schema at path $: [] is not of type 'object'"],
    ['code missing', () => form({ globals_dict: {} }), "Payload JSON did not match schema at path $: 'code' is a required property"],
    ['globals_dict missing', () => form({ code: '' }), "Payload JSON did not match schema at path $: 'globals_dict' is a required property"],
    ['code not a string', () => form({ code: 1, globals_dict: {} }), "Payload JSON did not match schema at path $.code: 1 is not of type 'string'"],
    ['globals_dict a list', () => form({ code: '', globals_dict: [] }), "Payload JSON did not match schema at path $.globals_dict: [] is not of type 'object'"],
    ['slug a number', () => form({ code: '', globals_dict: {}, slug: 3 }), 'Payload JSON did not match schema at path $.slug: 3 is not valid under any of the given schemas'],
    ['unsafely a string', () => form({ code: '', globals_dict: {}, unsafely: 'yes' }), "Payload JSON did not match schema at path $.unsafely: 'yes' is not of type 'boolean'"],
    ['python_path other', () => form({ code: '', globals_dict: {}, python_path: ['python_lib.zip', '/etc'] }), "Only allowed entry in 'python_path' is 'python_lib.zip'"],
    ['file named other', () => form({ code: '', globals_dict: {} }, { 'other.zip': Buffer.from('x') }), "Only allowed name for uploaded file is 'python_lib.zip'"],
    ['unsafely true', () => form({ code: '', globals_dict: {}, unsafely: true }), 'Refusing codejail execution with unsafely=true'],
  ])('support_http_400_%s', async (_name, body, message) => {
    const res = await post(serve, body());
    expect(res.status).toBe(400);
    expect(res.headers.get('content-type')).toBe('application/json');
    expect(res.json).toEqual({ error: message });
  });

  it('support_http_413_for_a_body_or_file_over_its_limit', async () => {
    const big = await post(serve, form({ code: '', globals_dict: { s: 'x'.repeat(300 * 1024) } }));
    expect(big.status).toBe(413);
    expect(big.json.error).toMatch(/larger than/);
    const file = await post(serve, form({ code: '', globals_dict: {} }, { 'python_lib.zip': Buffer.alloc(200 * 1024) }));
    expect(file.status).toBe(413);
    // The service still answers after refusing them.
    expect((await post(serve, form({ code: 'z = 3', globals_dict: {} }))).json).toEqual({ globals_dict: { z: 3 } });
  });

  it('deny_http_lone_surrogate_in_globals_is_the_500_codejail_service_gives', async () => {
    // Found by a review: this came back 200 {"globals_dict": {}}, no emsg, the input dropped in
    // silence. What codejail-service does, worked out with CPython 3.11: json.loads keeps the
    // lone surrogate; the original's json_safe keeps it too (json.dumps writes \ud800, which
    // json.loads reads back); the run succeeds and globals_dict is {"s": "\ud800", "y":
    // "\ud800"}; then DRF's JSONRenderer (ensure_ascii off) encodes its text as UTF-8 and raises
    // UnicodeEncodeError ('surrogates not allowed'): Django answers 500. The same 500 here, with
    // a JSON body naming the cause, and no run: the input's globals are in every answer.
    const expected = {
      error: "Couldn't render the result: globals_dict: a string holds a lone surrogate (a \\ud800-\\udfff escape without its pair), which UTF-8 cannot encode",
    };
    for (const payload of [
      '{"code": "y = s", "globals_dict": {"s": "\\ud800"}}',
      '{"code": "raise ValueError()", "globals_dict": {"s": ["ok", {"k": "\\udc00a"}]}}',
      '{"code": "y = 1", "globals_dict": {"\\ud800": 1}}',
    ]) {
      const res = await post(serve, form(payload));
      expect({ payload, status: res.status, json: res.json }).toEqual({ payload, status: 500, json: expected });
    }
    // A surrogate pair is one character, and fine.
    const pair = await post(serve, form('{"code": "n = len(s)", "globals_dict": {"s": "\\ud83d\\ude00"}}'));
    expect(pair.text).toBe('{"globals_dict":{"s":"\u{1F600}","n":1}}');
  });

  it('support_http_invalid_utf8_in_a_form_is_read_as_django_reads_it', async () => {
    // What Django (codejail-service's framework; checked with its QueryDict and MultiPartParser)
    // makes of bytes that are not UTF-8: in a multipart field, and in a %-escape of an urlencoded
    // body, each bad sequence becomes U+FFFD; raw in an urlencoded body, the whole body is read
    // as ISO-8859-1 (its %-escapes still as UTF-8).
    const code = 'c = [ord(x) for x in s]\ndel s';
    const payload = (s: Buffer) => Buffer.concat([Buffer.from(`{"code": ${JSON.stringify(code)}, "globals_dict": {"s": "`), s, Buffer.from('"}}')]);
    const bad = Buffer.from([0x61, 0xff, 0x62, 0xe2, 0x82, 0x63]);
    const multipart = Buffer.concat([
      Buffer.from('--B\r\nContent-Disposition: form-data; name="payload"\r\n\r\n'),
      payload(bad),
      Buffer.from('\r\n--B--\r\n'),
    ]);
    const fromMultipart = await post(serve, new Uint8Array(multipart) as unknown as string, { 'content-type': 'multipart/form-data; boundary=B' });
    expect(fromMultipart.json).toEqual({ globals_dict: { c: [0x61, 0xfffd, 0x62, 0xfffd, 0x63] } });
    const escaped = `payload=${[...payload(bad)].map((b) => `%${b.toString(16).padStart(2, '0')}`).join('')}`;
    const fromEscapes = await post(serve, escaped, { 'content-type': 'application/x-www-form-urlencoded' });
    expect(fromEscapes.json).toEqual({ globals_dict: { c: [0x61, 0xfffd, 0x62, 0xfffd, 0x63] } });
    // Raw: "é" as UTF-8 (c3 a9), then ff, then "é" %-escaped.
    const raw = Buffer.concat([Buffer.from('payload='), payload(Buffer.concat([Buffer.from([0xc3, 0xa9, 0xff]), Buffer.from('%C3%A9')]))]);
    const fromRaw = await post(serve, new Uint8Array(raw) as unknown as string, { 'content-type': 'application/x-www-form-urlencoded' });
    expect(fromRaw.json).toEqual({ globals_dict: { c: [0xc3, 0xa9, 0xff, 0xe9] } });
  });

  it('support_http_415_for_a_body_that_is_not_a_form', async () => {
    const res = await post(serve, '{"payload": "{}"}', { 'content-type': 'application/json' });
    expect(res.status).toBe(415);
  });

  it('support_http_health_ok', async () => {
    const res = await fetch(`${serve.url}/health/`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: 'OK' });
  });

  it('support_http_access_log_and_metrics', async () => {
    await post(serve, form({ code: 'a = 1', globals_dict: {} }));
    const line = serve.logs.find((l) => l.msg === 'http request' && l.path === '/api/v0/code-exec' && l.status === 200);
    expect(line).toMatchObject({ level: 'info', method: 'POST', outcome: 'executed.success' });
    expect(typeof line!.time).toBe('string');
    const metrics = await (await fetch(`${serve.url}/metrics`)).text();
    expect(metrics).toMatch(/codejail_http_requests_total\{route="code_exec",status="200"\} [1-9]/);
    expect(metrics).toMatch(/codejail_http_code_exec_total\{status="executed.success"\} [1-9]/);
  });

  it('support_http_capacity_follows_the_daemon_slots_and_queue', async () => {
    const { Client } = await import('../../src/client/index.js');
    const client = new Client({ socketPath: serve.daemon.socketPath });
    try {
      const status = await client.status();
      const metrics = await (await fetch(`${serve.url}/metrics`)).text();
      expect(metrics).toContain(`\ncodejail_http_code_exec_max_in_flight ${status.slots.total + status.queue.max}\n`);
    } finally {
      await client.close();
    }
  });

  it('support_http_unknown_route_404', async () => {
    expect((await fetch(`${serve.url}/api/v1/code-exec`, { method: 'POST' })).status).toBe(404);
    expect((await fetch(`${serve.url}/api/v0/code-exec`)).status).toBe(405);
  });
});

describe.skipIf(!isRoot)('http: code-exec while the daemon is gone', () => {
  it('support_http_unreachable_daemon_is_503_with_retry_after_every_time', async () => {
    // Reported by the multihost tests: once the daemon was gone, the first answer said "see its
    // logs" and every later one "not correctly configured" (a 500 a balancer would not retry).
    const serve = await startTestServe({ config: { selfCheckTtlMs: 60_000 } });
    try {
      expect((await post(serve, form({ code: 'a = 1', globals_dict: {} }))).status).toBe(200);
      await serve.daemon.stop();
      for (let i = 0; i < 3; i++) {
        const res = await post(serve, form({ code: 'a = 1', globals_dict: {} }));
        expect(res.status).toBe(503);
        expect(res.headers.get('retry-after')).toBe('1');
        expect(res.json.error).toMatch(/^Codejail service is unavailable: its daemon (went away|cannot be reached); retry later$/);
      }
    } finally {
      await serve.stop();
    }
  }, 60_000);
});
