// The urlencoded reader against what Django's QueryDict gives (urllib's parse_qsl with blank
// values kept, the body as UTF-8 or else ISO-8859-1, %-escapes as UTF-8 with U+FFFD), and its
// cost: linear, with escapes costing no more than the same bytes without.
import { describe, expect, it } from 'vitest';
import { readUrlencoded, UrlencodedFieldError } from '../../src/http/urlencoded.js';

const LIMITS = { maxFieldBytes: 8 * 1024 * 1024, maxFieldNameBytes: 200 };
const read = (body: string | Buffer) => readUrlencoded(Buffer.from(body as string), LIMITS);

describe('urlencoded bodies as Django reads them', () => {
  it('support_urlencoded_fields_as_parse_qsl_gives_them', () => {
    // Each expected list is what CPython 3.11's parse_qsl(keep_blank_values=True) returned.
    expect(read('a=1=2&b&=&&c=%41+x&=')).toEqual([['a', '1=2'], ['b', ''], ['', ''], ['c', 'A x'], ['', '']]);
    expect(read('a+b=c%2Bd')).toEqual([['a b', 'c+d']]);
    expect(read('x=%zz%4&y=%')).toEqual([['x', '%zz%4'], ['y', '%']]);
    expect(read('k=%E2%82c&k2=a%ffb')).toEqual([['k', '\ufffdc'], ['k2', 'a\ufffdb']]);
    expect(read('')).toEqual([]);
    expect(read('&')).toEqual([]);
    // Bytes that are not UTF-8: the whole body is ISO-8859-1, its escapes still UTF-8.
    expect(read(Buffer.from([0x61, 0x3d, 0xc3, 0xa9, 0xff, 0x25, 0x43, 0x33, 0x25, 0x41, 0x39]))).toEqual([['a', 'Ã©ÿé']]);
  });

  it('support_urlencoded_raw_utf8_is_read_as_utf8', () => {
    // busboy gave "Ã©" for a raw "é" in a field with no %-escape of a byte over 0x7f.
    expect(read('payload=é')).toEqual([['payload', 'é']]);
  });

  it('deny_urlencoded_field_over_its_limits', () => {
    const small = { maxFieldBytes: 4, maxFieldNameBytes: 3 };
    expect(readUrlencoded(Buffer.from('abc=%41%41%41%41'), small)).toEqual([['abc', 'AAAA']]);
    expect(() => readUrlencoded(Buffer.from('abc=%41%41%41%41A'), small)).toThrow(new UrlencodedFieldError(413, "Field 'abc' is larger than 4 bytes"));
    expect(() => readUrlencoded(Buffer.from('abcd=1'), small)).toThrow(new UrlencodedFieldError(400, 'A field name is longer than 3 bytes'));
  });

  it('deny_urlencoded_escapes_cost_more_than_plain_bytes', () => {
    // Found by the soak: busboy decoded 8 MiB of "%5Cn" (JSON "\n" escapes) a character at a
    // time, 1.6 s and 126 MB of heap per request; the same bytes without escapes took 20 ms.
    const escaped = Buffer.from(`payload=${'%5Cn'.repeat(2 * 1024 * 1024)}`);
    const plain = Buffer.from(`payload=${'y'.repeat(8 * 1024 * 1024)}`);
    const time = (body: Buffer) => {
      const t = performance.now();
      readUrlencoded(Buffer.from(body), LIMITS);
      return performance.now() - t;
    };
    time(escaped);
    time(plain);
    const [e, p] = [Math.min(time(escaped), time(escaped)), Math.min(time(plain), time(plain))];
    expect(e / p, `${e} ms with escapes, ${p} ms without`).toBeLessThan(4);
    const [[, value]] = readUrlencoded(escaped, LIMITS) as [[string, string]];
    expect(value.length).toBe(4 * 1024 * 1024);
  });
});
