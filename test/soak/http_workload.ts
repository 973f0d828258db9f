// What the soak sends `codejail serve`: requests that must run (each with the one answer it must
// get, as codejail-service renders it) and malformed ones (each with the 4xx it must get).
import { parsePythonJson } from '../../src/http/python_json.js';
import { CODE_EXEC, httpRequest, multipart, multipartBody, urlencoded, type HttpAnswer } from './http_raw.js';
import type { Random } from './knobs.js';

const P = (o: unknown) => JSON.stringify(o);

export interface GoodRequest {
  request: Buffer;
  /** null if the answer is the right one, else what is wrong with it. */
  check(answer: { status: number; body: string }): string | null;
}

type Json = Record<string, any>;
function json(body: string): Json | null {
  try {
    return parsePythonJson(body) as Json;
  } catch {
    return null;
  }
}
const expectThat = (ok: boolean, what: string) => (ok ? null : what);

export function goodKinds(zip: Buffer): Record<string, (rng: Random) => GoodRequest> {
  return {
    good: (rng) => {
      const a = rng.int(1e6);
      return {
        request: urlencoded({ payload: P({ code: 'x = a + 1', globals_dict: { a } }) }),
        check: (r) => expectThat(r.status === 200 && json(r.body)?.globals_dict?.x === a + 1 && !json(r.body)?.emsg, 'x = a + 1'),
      };
    },
    exception: (rng) => {
      const k = rng.int(1e6);
      return {
        request: urlencoded({ payload: P({ code: `raise ValueError("e${k}")`, globals_dict: { k } }) }),
        check: (r) => {
          const j = json(r.body);
          return expectThat(r.status === 200 && j?.emsg?.startsWith("Couldn't execute jailed code") && j.emsg.includes(`ValueError: e${k}`) && j.globals_dict?.k === k, 'an exception, its emsg');
        },
      };
    },
    roundtrip: (rng) => {
      const s = rng.bytes(6).toString('hex');
      const text = `{"code": "y = [f * 2, s.upper(), n]", "globals_dict": {"f": 2.0, "s": "é${s}", "n": {"a": [null, true, 1.5, 12345678901234567890]}, "big": 123456789012345678901234567890}}`;
      const want = `{"globals_dict":{"f":2.0,"s":"é${s}","n":{"a":[null,true,1.5,12345678901234567890]},"big":123456789012345678901234567890,"y":[4.0,"É${s.toUpperCase()}",{"a":[null,true,1.5,12345678901234567890]}]}}`;
      return { request: multipart([{ name: 'payload', value: text }]), check: (r) => expectThat(r.status === 200 && r.body === want, 'floats, big ints and unicode round trip') };
    },
    zip: (rng) => {
      const x = rng.int(1000);
      return {
        request: multipart([
          { name: 'payload', value: P({ code: `import zmod\nr = zmod.g(${x})`, globals_dict: {}, python_path: ['python_lib.zip'] }) },
          { name: 'python_lib.zip', filename: 'python_lib.zip', value: zip },
        ]),
        check: (r) => expectThat(r.status === 200 && JSON.stringify(json(r.body)?.globals_dict?.r) === JSON.stringify([x, 'from zip']), 'a module from python_lib.zip'),
      };
    },
    realtime_hit: () => ({
      request: urlencoded({ payload: P({ code: 'import time\ntime.sleep(30)', globals_dict: {} }) }),
      check: (r) => expectThat(r.status === 200 && /status code: -9$/.test(json(r.body)?.emsg ?? ''), 'REALTIME: -9 in emsg'),
    }),
    context_limit_hit: () => ({
      request: urlencoded({ payload: P({ code: 'import time\ntime.sleep(30)', globals_dict: {}, limit_overrides_context: 'ctx-fast', slug: 'soak' }) }),
      check: (r) => expectThat(r.status === 200 && /status code: -9$/.test(json(r.body)?.emsg ?? ''), "a context's REALTIME: -9 in emsg"),
    }),
    memory_hit: () => ({
      request: urlencoded({ payload: P({ code: 'x = bytearray(3*1024**3)', globals_dict: {} }) }),
      check: (r) => expectThat(r.status === 200 && (json(r.body)?.emsg ?? '').includes('MemoryError'), 'VMEM: MemoryError'),
    }),
    output_hit: () => ({
      request: urlencoded({ payload: P({ code: 'import sys\nsys.stderr.write("e"*1200000)\nraise SystemExit(3)', globals_dict: {} }) }),
      check: (r) => expectThat(r.status === 200 && /status code: 3$/.test(json(r.body)?.emsg ?? ''), 'OUTPUT: status 3 in emsg'),
    }),
  };
}

export const GOOD_WEIGHTS = { good: 40, exception: 15, roundtrip: 20, zip: 15, realtime_hit: 3, context_limit_hit: 3, memory_hit: 2, output_hit: 2 };

export interface BadRequest {
  request: Buffer;
  /** The statuses it may get. */
  expect: number[];
}

const badJson = ['{', '{"code": "a=1", "globals_dict": {}', '[1,2', '{"code": \'x\'}', 'nul', '{"a":1,}', '"\\ud800', '\x00', '{"code":"a=1","globals_dict":{}}garbage', '1e', '{"code": "a", "globals_dict": {"x": NaNx}}', '', ' '];
const schemaBad = [{}, { code: 1, globals_dict: {} }, { code: 'a=1' }, { code: 'a=1', globals_dict: [] }, { code: 'a=1', globals_dict: {}, python_path: 'x' }, { code: 'a=1', globals_dict: {}, limit_overrides_context: 5 }, { code: 'a=1', globals_dict: {}, slug: [] }, { code: 'a=1', globals_dict: {}, unsafely: 'yes' }, [], 'str', 5, null];

export function badKinds(zip: Buffer): Record<string, (rng: Random) => BadRequest> {
  return {
    missing_payload: () => ({ request: urlencoded({ foo: 'bar', code: 'a=1' }), expect: [400] }),
    bad_json: (rng) => ({ request: urlencoded({ payload: rng.chance(0.7) ? rng.pick(badJson) : rng.bytes(rng.int(200)).toString('latin1') }), expect: [400] }),
    schema: (rng) => ({ request: urlencoded({ payload: P(rng.pick(schemaBad)) }), expect: [400] }),
    python_path_escape: () => ({ request: urlencoded({ payload: P({ code: 'a=1', globals_dict: {}, python_path: ['../../etc/passwd'] }) }), expect: [400] }),
    wrong_content_type: (rng) => ({
      request: httpRequest('POST', CODE_EXEC, rng.pick(['text/plain', 'application/json', 'application/xml', 'multipart/form-data', 'multipart/mixed; boundary=x', 'application/x-www-form-urlencoded; charset=utf-16']), 'payload=%7B%7D'),
      expect: [415, 400],
    }),
    truncated_before_file: (rng) => {
      const m = multipartBody([{ name: 'payload', value: P({ code: 'a=1', globals_dict: {} }) }, { name: 'python_lib.zip', filename: 'python_lib.zip', value: zip }]);
      const cut = m.body.subarray(0, 20 + rng.int(Math.max(1, m.body.indexOf('python_lib.zip') - 150)));
      return { request: httpRequest('POST', CODE_EXEC, m.contentType, cut), expect: [400] };
    },
    unknown_file: () => ({ request: multipart([{ name: 'payload', value: P({ code: 'a=1', globals_dict: {} }) }, { name: 'evil.zip', filename: 'evil.zip', value: zip }]), expect: [400] }),
    many_parts: (rng) => ({ request: multipart(Array.from({ length: 20 + rng.int(100) }, (_, i) => ({ name: `f${i}`, value: 'v' }))), expect: [413, 400] }),
    random_body: (rng) => ({ request: httpRequest('POST', CODE_EXEC, rng.pick(['application/x-www-form-urlencoded', 'multipart/form-data; boundary=zz']), rng.bytes(rng.int(4000))), expect: [400, 415] }),
    mutated: (rng) => {
      const b = Buffer.from(`payload=${encodeURIComponent(P({ code: 'a = 1', globals_dict: { b: [1, 2, 'x'] } }))}`);
      for (let i = 1 + rng.int(4); i > 0; i--) b[rng.int(b.length)] = rng.int(256);
      return { request: httpRequest('POST', CODE_EXEC, 'application/x-www-form-urlencoded', b), expect: [200, 400, 413, 415] };
    },
    bad_method_or_path: (rng) => ({ request: httpRequest(rng.pick(['GET', 'PUT', 'DELETE', 'PATCH', 'POST']), rng.pick(['/api/v0/code-exec', '/', '/api/v1/x', '/%00', '/../../etc/passwd']), 'text/plain', 'x'), expect: [400, 404, 405] }),
    garbage: (rng) => ({ request: Buffer.concat([rng.bytes(1 + rng.int(300)), Buffer.from('\r\n\r\n')]), expect: [400] }),
    bad_chunked: () => ({ request: Buffer.from(`POST ${CODE_EXEC} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n`), expect: [400] }),
    header_bomb: (rng) => ({ request: httpRequest('POST', CODE_EXEC, 'application/x-www-form-urlencoded', 'a=b', `X-Big: ${'a'.repeat(20000 + rng.int(50000))}\r\n`), expect: [431, 400] }),
    deep_json: (rng) => {
      const d = rng.pick([10, 1000, 5000, 100000]);
      return { request: urlencoded({ payload: rng.chance(0.5) ? '['.repeat(d) + ']'.repeat(d) : `{"code": "a=1", "globals_dict": {"x": ${'['.repeat(d)}${']'.repeat(d)}}}` }), expect: [400, 200] };
    },
    huge_number: (rng) => ({ request: urlencoded({ payload: `{"code": "a=1", "globals_dict": {"x": ${rng.pick(['1e400', '-1e400', '9'.repeat(5000), '9'.repeat(200000), '1.' + '5'.repeat(100000), 'NaN', '-Infinity'])}}}` }), expect: [400, 200] }),
  };
}

/** Real requests' outcomes by kind: right, refused (503/429), wrong, or lost (no answer). */
export class HttpTally {
  readonly byKind: Record<string, { correct: number; refused: number; wrong: number; lost: number }> = {};
  readonly statuses: Record<string, number> = {};
  readonly failures: string[] = [];
  readonly latencies: number[] = [];
  add(kind: string, answer: HttpAnswer, verdict: string | null, ms: number): void {
    const row = (this.byKind[kind] ??= { correct: 0, refused: 0, wrong: 0, lost: 0 });
    const key = 'error' in answer ? answer.error : String(answer.status);
    this.statuses[key] = (this.statuses[key] ?? 0) + 1;
    if ('error' in answer) {
      row.lost++;
      if (this.failures.length < 20) this.failures.push(`${kind}: ${answer.error}`);
    } else if (verdict === null) {
      row.correct++;
      this.latencies.push(ms);
    } else if (answer.status === 503 || answer.status === 429) {
      row.refused++;
    } else {
      row.wrong++;
      if (this.failures.length < 20) this.failures.push(`${kind}: ${verdict}: ${answer.status} ${answer.body.slice(0, 200)}`);
    }
  }
  total(k: 'correct' | 'refused' | 'wrong' | 'lost'): number {
    return Object.values(this.byKind).reduce((s, r) => s + r[k], 0);
  }
  table(): string {
    return Object.entries(this.byKind)
      .map(([k, r]) => `${k}=${r.correct}/${r.refused}/${r.wrong}/${r.lost}`)
      .join(' ');
  }
}
