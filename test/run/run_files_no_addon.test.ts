// An unsafe client (no owner: not root) may run without the native addon built (src/client/unsafe.ts
// starts runs with prlimit then): writing its run directory must not need the addon.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, expect, it, vi } from 'vitest';
import { createRunDir } from '../../src/run/rundir.js';
import { writeRunFiles } from '../../src/run/run_files.js';

vi.mock('../../src/native.js', () => ({
  native: () => {
    throw new Error('codejail: the native addon is not built');
  },
}));

const bases: string[] = [];
afterEach(() => {
  for (const base of bases.splice(0)) fs.rmSync(base, { recursive: true, force: true });
});

it('writes code, small and large files and extra files without the addon when there is no owner', async () => {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'cj-noaddon-'));
  bases.push(base);
  const dir = await createRunDir(base, undefined);
  await writeRunFiles(
    dir,
    {
      code: Buffer.from('print(1)'),
      files: [
        { type: 'file', name: 'lib/m.py', data: Buffer.from('x = 1') },
        { type: 'file', name: 'big.bin', data: Buffer.alloc(300 * 1024, 1) },
      ],
      extraFiles: [['data.txt', Buffer.from('d')]],
    },
    undefined,
  );
  expect(fs.readFileSync(path.join(dir.path, 'jailed_code'), 'utf8')).toBe('print(1)');
  expect(fs.readFileSync(path.join(dir.path, 'lib/m.py'), 'utf8')).toBe('x = 1');
  expect(fs.statSync(path.join(dir.path, 'big.bin')).size).toBe(300 * 1024);
  expect(fs.readFileSync(path.join(dir.path, 'data.txt'), 'utf8')).toBe('d');
});
