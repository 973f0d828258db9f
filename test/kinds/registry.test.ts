// The kinds registry (src/kinds/index.ts): a kind is its module and its KINDS line, and nothing
// else in src/ may know a kind by its name.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/daemon/config.js';
import { KIND_NAMES, KINDS, kindNamed } from '../../src/kinds/index.js';

const root = path.resolve(__dirname, '../..');
const packageFiles: string[] = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')).files;
const shipped = (file: string) => packageFiles.some((entry) => file === entry || file.startsWith(`${entry}/`));

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    return entry.isDirectory() ? sourceFiles(full) : entry.name.endsWith('.ts') ? [full] : [];
  });
}

describe('the kinds registry', () => {
  it('names each kind once; the first (the default kind) is python', () => {
    expect(new Set(KIND_NAMES).size).toBe(KINDS.length);
    expect(KIND_NAMES[0]).toBe('python');
    for (const name of KIND_NAMES) expect(kindNamed(name).name).toBe(name);
  });

  it("each kind's template script and harness exist and are shipped", () => {
    for (const kind of KINDS) {
      for (const file of [kind.template?.script, kind.harness].filter((f): f is string => f !== undefined)) {
        expect(existsSync(path.join(root, file)), `${kind.name}: ${file}`).toBe(true);
        expect(shipped(file), `${kind.name}: ${file} is in package.json "files"`).toBe(true);
      }
    }
  });

  it('the config takes every kind and no other; warm and preload only for a kind with a template', () => {
    const command = (extra: object) => ({ commands: { c: { path: '/usr/bin/python3', ...extra } } });
    for (const kind of KINDS) {
      expect(parseConfig(command({ kind: kind.name })).commands.c!.kind).toBe(kind.name);
      const warm = () => parseConfig(command({ kind: kind.name, warm: true, preload: ['json'] }));
      if (kind.template) expect(warm).not.toThrow();
      else expect(warm).toThrow(/warm and preload apply to commands of kind "python" only/);
    }
    expect(() => parseConfig(command({ kind: 'ruby' }))).toThrow(/commands\.c\.kind/);
    expect(parseConfig(command({})).commands.c!.kind).toBe(KIND_NAMES[0]);
  });

  it('outside src/kinds/, src/ compares no kind with a name', () => {
    const named = sourceFiles(path.join(root, 'src'))
      .filter((file) => !file.includes(`${path.sep}kinds${path.sep}`))
      .flatMap((file) =>
        [...readFileSync(file, 'utf8').matchAll(/kind\s*[!=]==\s*'(\w+)'|'(\w+)'\s*[!=]==\s*\w*kind\b/gi)]
          .filter((m) => KIND_NAMES.includes((m[1] ?? m[2]) as never))
          .map((m) => `${path.relative(root, file)}: ${m[0]}`),
      );
    expect(named).toEqual([]);
  });
});
