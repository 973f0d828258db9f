// The payload reader and the answer writer against Python's own json module: the same values,
// and for text json.loads refuses, the same message (the API's 400 carries it).
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { parsePythonJson, stringifyPythonJson } from '../../src/http/python_json.js';
import { PythonFloat } from '../../src/client/safe_exec.js';

const CASES = [
  '', 'Not JSON', '{"code": "x", }', '{"a" 1}', '{"a": 1 "b": 2}', '[1, 2', '"abc', '"a\\qb"', '{"a": "\t"}', '[1,]', '{',
  '  \n  x', '{"a": 1}}', '"\\u12"', 'nan', '-', '01', '1.', '-Inf', '[NaN, -Infinity, Infinity, 1e400, -0, 1.5e-3]',
  '{"a":1,"a":2}', '[true, false, null, "é", 12345678901234567890123, -9007199254740993]', '{"x": {"y": [[], {}]}}',
];

/** What Python makes of each case: DRF's rendering of the value, or json.loads's message. */
function python(cases: string[]): Array<[string, string]> {
  const script = `import json, sys
out = []
for text in json.load(sys.stdin):
    try:
        out.append(['ok', json.dumps(json.loads(text), separators=(',', ':'), ensure_ascii=False)])
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
