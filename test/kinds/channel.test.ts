// The warm template channel is written once (src/kinds/channel.ts); the template's Python and the
// native sources that build or read its messages are parsed here and must say the same: the same
// 4-byte kinds, the same sizes, the same offsets.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { CHANNEL, CHANNEL_LAYOUT, GO_RECORD } from '../../src/kinds/channel.js';
import { python } from '../../src/kinds/python.js';

const root = path.resolve(__dirname, '../..');
const read = (file: string) => readFileSync(path.join(root, file), 'utf8');
const messages = Object.values(CHANNEL);
const kindsFrom = (...senders: string[]) => messages.filter((m) => senders.includes(m.from)).map((m) => m.kind).sort();
const byKind = (kind: string) => messages.find((m) => m.kind === kind);

/** Bytes of a Python struct format in standard sizes ('=', no padding). */
function structSize(format: string): number {
  const SIZES: Record<string, number> = { x: 1, c: 1, b: 1, B: 1, h: 2, H: 2, i: 4, I: 4, l: 4, L: 4, q: 8, Q: 8 };
  expect(format[0], `${format}: standard sizes only`).toBe('=');
  let size = 0;
  for (const [, count, code] of format.slice(1).matchAll(/(\d*)([a-zA-Z])/g)) {
    const n = count ? Number(count) : 1;
    size += code === 's' ? n : n * SIZES[code!]!;
  }
  return size;
}

/** Bytes of a C struct of fixed-width fields (char x[n], (u)int32_t, (u)int64_t), none padded. */
function cStructSize(body: string): number {
  let size = 0;
  for (const line of body.split(';').map((l) => l.replace(/\/\/.*$/gm, '').trim()).filter(Boolean)) {
    const field = /^(char|u?int(8|16|32|64)_t)\s+\w+(\[(\d+)\])?$/.exec(line);
    expect(field, `unexpected field: ${line}`).not.toBeNull();
    const width = field![1] === 'char' ? 1 : Number(field![2]) / 8;
    size += width * (field![4] ? Number(field![4]) : 1);
  }
  return size;
}

describe('the warm template channel (src/kinds/channel.ts)', () => {
  it('kinds are 4 bytes and unique', () => {
    for (const m of messages) expect(Buffer.byteLength(m.kind, 'latin1')).toBe(4);
    expect(new Set(messages.map((m) => m.kind)).size).toBe(messages.length);
  });

  describe(`the python template (${python.template!.script}) agrees`, () => {
    const py = read(python.template!.script);
    const constant = (name: string) => {
      const match = new RegExp(`^${name} = (?:struct\\.Struct\\("([^"]+)"\\)|(\\d+))`, 'm').exec(py);
      expect(match, `${name} in ${python.template!.script}`).not.toBeNull();
      return match![1] !== undefined ? structSize(match![1]) : Number(match![2]);
    };

    it('names every kind the daemon and the template send, and no other', () => {
      const used = [...new Set([...py.matchAll(/b"([A-Z0-9]{4})"/g)].map((m) => m[1]!))].sort();
      for (const kind of used) expect(byKind(kind), `${kind} (python) is not in CHANNEL`).toBeDefined();
      for (const kind of kindsFrom('daemon', 'template')) expect(used).toContain(kind);
    });

    it('reads RUN1 and writes OKAY/FAIL and EXIT in the layouts written here', () => {
      expect(constant('HEADER')).toBe(CHANNEL.run.bytes);
      expect(constant('REPORT')).toBe(CHANNEL.fail.bytes);
      expect(constant('EXIT_HEAD')).toBe(CHANNEL_LAYOUT.exitStatusAt);
      expect(constant('EXIT_HEAD') + constant('WAIT_STATUS_BYTES')).toBe(CHANNEL_LAYOUT.exitRusageAt);
      expect(constant('RUSAGE_BYTES')).toBe(CHANNEL_LAYOUT.rusageBytes);
      expect(CHANNEL_LAYOUT.exitRusageAt + CHANNEL_LAYOUT.rusageBytes).toBe(CHANNEL.exit.bytes);
    });
  });

  describe('native/ agrees', () => {
    const sources = readdirSync(path.join(root, 'native'))
      .filter((f) => /\.(h|cc)$/.test(f))
      .map((f) => read(path.join('native', f)))
      .join('\n');
    // A message's kind is written as a char[4] initializer: WarmReport okay = {{'O', 'K', 'A', 'Y'}, ...
    const written = [...sources.matchAll(/(\w+)\s+\w+\s*=?\s*\{\{'(.)',\s*'(.)',\s*'(.)',\s*'(.)'\}/g)].map((m) => ({
      struct: m[1]!,
      kind: m.slice(2, 6).join(''),
    }));

    it('writes the kinds the daemon sends through it (RUN1, HLD1) and a child sends, and no other', () => {
      expect([...new Set(written.map((w) => w.kind))].sort()).toEqual(['HLD1', 'RUN1', ...kindsFrom('child')].sort());
    });

    it('reads a held run\'s go record in the layout written here', () => {
      const body = /struct GoRecord \{([^}]*)\};/.exec(sources);
      expect(body, 'struct GoRecord').not.toBeNull();
      expect(cStructSize(body![1]!)).toBe(GO_RECORD.headBytes);
      expect(sources).toContain(`"${GO_RECORD.kind}"`);
    });

    it('each written message is as long as written here', () => {
      for (const { struct, kind } of written) {
        const body = new RegExp(`struct ${struct} \\{([^}]*)\\};`).exec(sources);
        expect(body, `struct ${struct}`).not.toBeNull();
        const message = byKind(kind);
        // Only a binary message has a size; a struct written for any other kind is a mismatch.
        if (message?.body !== 'binary') throw new Error(`${kind} (struct ${struct}) is not a binary message in CHANNEL`);
        expect(cStructSize(body![1]!), `${kind} (struct ${struct})`).toBe(message.bytes);
      }
    });
  });

  it('src/run/template.ts names no kind but through CHANNEL', () => {
    const source = read('src/run/template.ts');
    expect([...source.matchAll(/'([A-Z][A-Z0-9]{3})'/g)].map((m) => m[1])).toEqual([]);
  });
});
