// The client is a thin library: importing the package's main entry must load nothing of the
// daemon (src/daemon) and not its logger (pino). Every module a fresh Node process resolves while
// importing dist/client/index.js is listed through a module resolve hook.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** The URLs of every module resolved while importing `entry` in a new process. */
function modulesLoadedBy(entry: string): string[] {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cj-imports-'));
  try {
    const hooks = path.join(dir, 'hooks.mjs');
    fs.writeFileSync(
      hooks,
      `export async function resolve(specifier, context, next) {
         const resolved = await next(specifier, context);
         process.stderr.write('RESOLVED ' + resolved.url + '\\n');
         return resolved;
       }`,
    );
    const register = path.join(dir, 'register.mjs');
    fs.writeFileSync(register, `import { register } from 'node:module';\nregister(${JSON.stringify(new URL(`file://${hooks}`).href)});\n`);
    const result = spawnSync(process.execPath, ['--import', register, '--input-type=module', '-e', `await import(${JSON.stringify(entry)});`], {
      encoding: 'utf8',
    });
    expect(result.status, result.stderr).toBe(0);
    return result.stderr
      .split('\n')
      .filter((line) => line.startsWith('RESOLVED '))
      .map((line) => line.slice('RESOLVED '.length));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

describe('the client entry point', () => {
  it('loads no daemon module and no pino', () => {
    const loaded = modulesLoadedBy(path.join(root, 'dist/client/index.js'));
    expect(loaded.some((url) => url.includes('/dist/client/'))).toBe(true); // the hook saw the client
    expect(loaded.filter((url) => url.includes('/dist/daemon/'))).toEqual([]);
    expect(loaded.filter((url) => /\/node_modules\/pino\//.test(url))).toEqual([]);
  });
});
