import { execFileSync } from 'node:child_process';
import { chmod, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CodejailError } from '../../src/client/errors.js';
import { MAX_FILE_ENTRIES, collectFiles, encodeExtraFiles } from '../../src/client/files.js';
import { LimitSettings } from '../../src/client/limits.js';
import { buildJailCodeFields } from '../../src/client/request.js';

let root: string;

beforeAll(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'codejail-files-'));
  await writeFile(path.join(root, 'hello.txt'), 'hello\n');
  await writeFile(path.join(root, 'run.sh'), '#!/bin/sh\n');
  await chmod(path.join(root, 'run.sh'), 0o755);
  await mkdir(path.join(root, 'pylib', 'sub', 'deeper'), { recursive: true });
  await writeFile(path.join(root, 'pylib', 'mod.py'), 'x = 1\n');
  await writeFile(path.join(root, 'pylib', 'sub', 'deeper', 'data.bin'), Buffer.from([0, 255, 1]));
  await symlink('/etc/passwd', path.join(root, 'pylib', 'passwd'));
  await symlink('mod.py', path.join(root, 'pylib', 'alias.py'));
  await symlink('/etc/shadow', path.join(root, 'toplink'));
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('collectFiles', () => {
  it('reads a file into one entry named by its basename', async () => {
    const entries = await collectFiles([path.join(root, 'hello.txt'), path.join(root, 'run.sh')]);
    expect(entries).toEqual([
      { type: 'file', name: 'hello.txt', data: Buffer.from('hello\n'), executable: false },
      { type: 'file', name: 'run.sh', data: Buffer.from('#!/bin/sh\n'), executable: true },
    ]);
  });

  it('walks a directory recursively, parents first, named from the directory basename', async () => {
    const entries = await collectFiles([path.join(root, 'pylib') + '/']);
    expect(entries.map((e) => [e.type, e.name])).toEqual([
      ['dir', 'pylib'],
      ['symlink', 'pylib/alias.py'],
      ['file', 'pylib/mod.py'],
      ['symlink', 'pylib/passwd'],
      ['dir', 'pylib/sub'],
      ['dir', 'pylib/sub/deeper'],
      ['file', 'pylib/sub/deeper/data.bin'],
    ]);
    const data = entries.find((e) => e.name === 'pylib/sub/deeper/data.bin');
    expect(data).toMatchObject({ data: Buffer.from([0, 255, 1]) });
  });

  it('keeps symlinks as symlinks, even ones pointing outside, without reading their targets', async () => {
    const entries = await collectFiles([path.join(root, 'pylib'), path.join(root, 'toplink')]);
    expect(entries).toContainEqual({ type: 'symlink', name: 'pylib/passwd', target: '/etc/passwd' });
    expect(entries).toContainEqual({ type: 'symlink', name: 'pylib/alias.py', target: 'mod.py' });
    expect(entries).toContainEqual({ type: 'symlink', name: 'toplink', target: '/etc/shadow' });
  });

  it('resolves relative paths and names them by basename', async () => {
    const cwd = process.cwd();
    process.chdir(path.join(root, 'pylib'));
    try {
      expect((await collectFiles(['.']))[0]).toEqual({ type: 'dir', name: 'pylib' });
    } finally {
      process.chdir(cwd);
    }
  });

  it('names the local path that cannot be read', async () => {
    await expect(collectFiles([path.join(root, 'missing.py')])).rejects.toThrow(/missing\.py.*ENOENT/);
  });

  it('refuses two paths with the same basename', async () => {
    await expect(collectFiles([path.join(root, 'pylib', 'mod.py'), path.join(root, 'pylib', 'mod.py')])).rejects.toThrow(
      /two paths are named 'mod.py'/,
    );
  });

  it('deny_files_fifo: refuses a FIFO, at the top or inside a directory, without waiting for a writer', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'codejail-fifo-'));
    try {
      execFileSync('mkfifo', [path.join(dir, 'pipe')]);
      await expect(collectFiles([path.join(dir, 'pipe')])).rejects.toThrow(/'.*pipe' is not a regular file, directory or symlink/);
      await expect(collectFiles([dir])).rejects.toThrow(/'.*pipe' is not a regular file, directory or symlink/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('deny_files_over_size: refuses files holding more than the byte bound together, naming the file', async () => {
    const hello = path.join(root, 'hello.txt');
    expect(await collectFiles([hello], 6)).toHaveLength(1);
    await expect(collectFiles([hello], 5)).rejects.toThrow(/'.*hello\.txt' is 6 bytes, and the files together may hold at most 5 bytes/);
    await expect(collectFiles([hello, path.join(root, 'run.sh')], 12)).rejects.toThrow(/run\.sh' is 10 bytes/);
  });

  it('deny_files_too_many: stops walking past the protocol bound on entries', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'codejail-many-'));
    try {
      await Promise.all(Array.from({ length: MAX_FILE_ENTRIES }, (_, i) => symlink('x', path.join(dir, `l${i}`))));
      await expect(collectFiles([dir])).rejects.toThrow(/more than 10000 files, directories and symlinks/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('refuses the root directory, which has no name', async () => {
    await expect(collectFiles(['/'])).rejects.toThrow(/no name/);
  });
});

describe('encodeExtraFiles', () => {
  it('accepts plain names with string or binary contents', () => {
    expect(encodeExtraFiles([['a.txt', 'héllo'], ['b.bin', Buffer.from([0, 1])]])).toEqual([
      ['a.txt', Buffer.from('héllo', 'utf8')],
      ['b.bin', Buffer.from([0, 1])],
    ]);
  });

  it.each(['', '.', '..', 'dir/file', '/etc/passwd', 'nul\0byte'])('rejects the name %j', (name) => {
    expect(() => encodeExtraFiles([[name, 'x']])).toThrow(CodejailError);
    expect(() => encodeExtraFiles([[name, 'x']])).toThrow(/extraFiles name .* is not allowed/);
  });

  it('rejects contents that are neither string nor bytes', () => {
    expect(() => encodeExtraFiles([['a', 42 as unknown as string]])).toThrow(/contents must be a string or a Buffer/);
  });
});

describe('buildJailCodeFields', () => {
  it('sends code and stdin as bytes and only the limits that were set', async () => {
    const limits = new LimitSettings();
    limits.override('CPU', 4, 'ctx');
    const fields = await buildJailCodeFields(
      'python',
      { code: "print('é')", stdin: 'in', argv: ['a'], limitOverridesContext: 'ctx', limits: { FSIZE: 10 }, slug: 's' },
      limits,
    );
    expect(fields).toMatchObject({
      command: 'python',
      code: Buffer.from("print('é')", 'utf8'),
      stdin: Buffer.from('in'),
      argv: ['a'],
      slug: 's',
      files: [],
      extraFiles: [],
    });
    expect(fields.limits).toEqual({ CPU: 4, FSIZE: 10 });
  });

  it('refuses names written twice in the run directory', async () => {
    const limits = new LimitSettings();
    await expect(buildJailCodeFields('python', { code: 'x', extraFiles: [['jailed_code', 'y']] }, limits)).rejects.toThrow(
      /'jailed_code' would be written twice/,
    );
    await expect(
      buildJailCodeFields('python', { files: [path.join(root, 'hello.txt')], extraFiles: [['hello.txt', 'y']] }, limits),
    ).rejects.toThrow(/'hello.txt' would be written twice/);
  });

  it('validates the rest against the protocol schema', async () => {
    await expect(buildJailCodeFields('', {}, new LimitSettings())).rejects.toThrow(/jailCode: command/);
    await expect(buildJailCodeFields('python', { argv: [1 as unknown as string] }, new LimitSettings())).rejects.toThrow(
      /jailCode: argv\.0/,
    );
  });
});
