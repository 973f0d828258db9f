// The payload reader and the answer writer against Python's own json module: the same values,
// and for text json.loads refuses, the same message (the API's 400 carries it).
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { parsePythonJson, stringifyPythonJson } from '../../src/http/python_json.js';
import { PythonFloat } from '../../src/client/python_values.js';

const CASES = [
  '', 'Not JSON', '{"code": "x", }', '{"a" 1}', '{"a": 1 "b": 2}', '[1, 2', '"abc', '"a\\qb"', '{"a": "\t"}', '[1,]', '{',
  '  \n  x', '{"a": 1}}', '"\\u12"', 'nan', '-', '01', '1.', '-Inf', '[NaN, -Infinity, Infinity, 1e400, -0, 1.5e-3]',
  '{"a":1,"a":2}', '[true, false, null, "é", 12345678901234567890123, -9007199254740993]', '{"x": {"y": [[], {}]}}', '{"\\u2028": "a\u2029b"}',
];

/** What Python makes of each case: DRF's rendering of the value, or json.loads's message. */
function python(cases: string[]): Array<[string, string]> {
  const script = `import json, sys
out = []
for text in json.load(sys.stdin):
    try:
        # As DRF's JSONRenderer writes it.
        out.append(['ok', json.dumps(json.loads(text), separators=(',', ':'), ensure_ascii=False).replace('\u2028', '\\\\u2028').replace('\u2029', '\\\\u2029')])
    except json.JSONDecodeError as e:
        out.append(['err', str(e)])
print(json.dumps(out))`;
  return JSON.parse(execFileSync('/usr/bin/python3', ['-c', script], { input: JSON.stringify(cases), encoding: 'utf8' }));
}

describe('http: JSON as Python reads and writes it', () => {
  it('support_http_json_matches_python', () => {
    const expected = python(CASES);
    CASES.forEach((text, i) => {
      let mine: [string, string];
      try {
        mine = ['ok', stringifyPythonJson(parsePythonJson(text))];
      } catch (err) {
        mine = ['err', (err as Error).message];
      }
      expect({ text, result: mine }).toEqual({ text, result: expected[i] });
    });
  });

  it('deny_http_json_proto_key_is_data', () => {
    const value = parsePythonJson('{"__proto__": {"admin": true}}') as Record<string, unknown>;
    expect(Object.getPrototypeOf(value)).toBe(Object.prototype);
    expect(Object.keys(value)).toEqual(['__proto__']);
    expect(stringifyPythonJson(value)).toBe('{"__proto__":{"admin":true}}');
  });
});

describe('whole-number floats', () => {
  it('support_http_json_whole_number_floats_read_and_written_as_python_does', () => {
    const value = parsePythonJson('{"a": 2.0, "b": 2, "c": -0.0, "d": 1e16, "e": 2.5, "f": 1E2}') as Record<string, unknown>;
    expect(value.a).toBeInstanceOf(PythonFloat);
    expect(value.b).toBe(2);
    expect(value.e).toBe(2.5);
    // As Python's json.dumps writes them back.
    expect(stringifyPythonJson(value)).toBe('{"a":2.0,"b":2,"c":-0.0,"d":1e+16,"e":2.5,"f":100.0}');
  });
});

describe('what reading costs', () => {
  /** The least of 3 timings of parsing `text`, in ms (the least is the one load disturbed least). */
  function parseMs(text: string): number {
    let best = Infinity;
    for (let i = 0; i < 3; i++) {
      const start = performance.now();
      parsePythonJson(text);
      best = Math.min(best, performance.now() - start);
    }
    return best;
  }

  it('deny_http_json_escapes_cost_about_what_json_parse_pays_for_the_same_text', () => {
    // Found by a review: a string of 6 MiB of "\n" escapes cost the reader 550 ms and 135 MB (a
    // string grown escape by escape). Timed against a baseline measured in the same test (a
    // ratio, not ms): a long escaped string against V8's JSON.parse of the same text, and many
    // short escaped strings against as many plain ones of the same size (no cost per string).
    const size = 4 * 1024 * 1024;
    const ratios: Record<string, number> = {};
    for (const [shape, text] of Object.entries({
      'newline escapes': `{"s": "${'\\n'.repeat(size / 2)}"}`,
      'unicode escapes': `{"s": "${'\\u00e9\\ud800'.repeat(Math.floor(size / 12))}"}`,
    })) {
      parseMs(text);
      const native = Math.min(...[0, 1, 2].map(() => {
        const start = performance.now();
        JSON.parse(text);
        return performance.now() - start;
      }));
      ratios[shape] = parseMs(text) / Math.max(native, 0.5);
    }
    const count = Math.floor(size / 5);
    const [escaped, plain] = [`[${Array(count).fill('"\\n"').join(',')}]`, `[${Array(count).fill('"ab"').join(',')}]`];
    parseMs(plain);
    ratios['short escaped strings'] = parseMs(escaped) / Math.max(parseMs(plain), 0.5);
    for (const [shape, ratio] of Object.entries(ratios)) expect({ shape, ratio: ratio < 4 ? 'below 4' : ratio }).toEqual({ shape, ratio: 'below 4' });
    // And the decoding is right.
    expect(parsePythonJson('"a\\nb\\u00e9\\ud83d\\ude00\\ud800\\"\\\\\\/"')).toBe('a\nbé😀\ud800"\\/');
  }, 60_000);
});
