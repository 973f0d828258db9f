// The request's files written into a run directory (src/run/run_files.ts, native/runfiles.cc).
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { native } from '../../src/native.js';
import { createRunDir, mountsBeneath, type RunDir } from '../../src/run/rundir.js';
import { nameProblem, writeRunFiles } from '../../src/run/run_files.js';

describe('nameProblem', () => {
  it.each([
    ['hello.txt', undefined],
    ['a/b/c.py', undefined],
    ['.hidden', undefined],
    ['', 'is empty'],
    ['/etc/passwd', 'is absolute'],
    ['../x', "has an empty, '.' or '..' component"],
    ['a/../../x', "has an empty, '.' or '..' component"],
    ['a//b', "has an empty, '.' or '..' component"],
    ['./a', "has an empty, '.' or '..' component"],
    ['a\0b', 'contains NUL'],
    ['tmp/x', 'is inside the reserved directory "tmp"'],
    ['tmp', 'is inside the reserved directory "tmp"'],
    [Array(33).fill('d').join('/'), 'is nested more than 32 levels'],
    [`${'p'.repeat(256)}/x`, 'has a component longer than 255 bytes'],
    ['é'.repeat(128), 'has a component longer than 255 bytes'],
    ['p'.repeat(255), undefined],
  ])('%j -> %s', (name, problem) => {
    expect(nameProblem(name)).toBe(problem);
  });
});

// Small files go to the run directory in batches, one native call each (native/runfiles.cc),
// with the writing thread's fsgid switched to the slot's group for the batch.
describe.skipIf(process.getuid?.() !== 0)('the batched file writer, as root', () => {
  const SLOT_GID = 64_321;
  let base: string;
  let dir: RunDir;
  beforeEach(async () => {
    base = fs.mkdtempSync(path.join(os.tmpdir(), 'cj-batch-'));
    dir = await createRunDir(base, undefined);
  });
  afterEach(async () => {
    for (const mount of mountsBeneath(base)) await native().unmountRunDisk(mount);
    fs.rmSync(base, { recursive: true, force: true });
  });

  it('writes every file root:slot-group with its mode, in the request\'s order, across batches and beside a large file', async () => {
    const extraFiles = Array.from({ length: 700 }, (_, i) => [`f${i}.txt`, Buffer.from(`file ${i}`)] as [string, Buffer]);
    await writeRunFiles(
      dir,
      {
        code: Buffer.from('print(1)'),
        files: [
          { type: 'file', name: 'lib/m.py', data: Buffer.from('x = 1') },
          { type: 'file', name: 'big.bin', data: Buffer.alloc(300 * 1024, 7) },
          { type: 'file', name: 'run.sh', data: Buffer.from('#!/bin/sh'), executable: true },
          { type: 'file', name: 'empty', data: Buffer.alloc(0) },
        ],
        extraFiles,
      },
      { uid: 1234, gid: SLOT_GID },
    );
    const expected: Array<[string, number, number]> = [
      ['jailed_code', 0o640, 8],
      ['lib/m.py', 0o640, 5],
      ['big.bin', 0o640, 300 * 1024],
      ['run.sh', 0o750, 9],
      ['empty', 0o640, 0],
      ['f0.txt', 0o640, 6],
      ['f699.txt', 0o640, 8],
    ];
    for (const [name, mode, size] of expected) {
      const stat = fs.lstatSync(path.join(dir.path, name));
      expect({ name, uid: stat.uid, gid: stat.gid, mode: stat.mode & 0o7777, size: stat.size }).toEqual({ name, uid: 0, gid: SLOT_GID, mode, size });
    }
    expect(fs.readFileSync(path.join(dir.path, 'f699.txt'), 'utf8')).toBe('file 699');
    expect(fs.readdirSync(dir.path).filter((name) => name.endsWith('.txt'))).toHaveLength(700);
  });

  it('keeps the order: a batched file and a later entry of the same name or beneath it fail as they would unbatched', async () => {
    const owner = { uid: 1234, gid: SLOT_GID };
    await expect(
      writeRunFiles(dir, { files: [{ type: 'file', name: 'a', data: Buffer.from('1') }, { type: 'dir', name: 'a' }], extraFiles: [] }, owner),
    ).rejects.toThrow(/files\[1\] "a": already exists/);
    await expect(
      writeRunFiles(dir, { files: [{ type: 'file', name: 'b', data: Buffer.from('1') }, { type: 'file', name: 'b/c', data: Buffer.from('1') }], extraFiles: [] }, owner),
    ).rejects.toThrow(/files\[1\] "b\/c": its parent "b" is not a directory/);
    await expect(
      writeRunFiles(dir, { files: [{ type: 'file', name: 'd', data: Buffer.from('1') }, { type: 'symlink', name: 'd', target: '/etc' }], extraFiles: [] }, owner),
    ).rejects.toThrow(/files\[1\] "d": already exists/);
    await expect(writeRunFiles(dir, { files: [], extraFiles: [['e', Buffer.from('1')], ['e', Buffer.from('2')]] }, owner)).rejects.toThrow(
      /extraFiles\[1\] "e": already exists/,
    );
  });

  it('gives each file its own mode whatever the umask: the mode is set, not left to the umask', async () => {
    const previous = process.umask(0o077);
    try {
      await writeRunFiles(
        dir,
        { code: Buffer.from('1'), files: [{ type: 'file', name: 'run.sh', data: Buffer.from('2'), executable: true }], extraFiles: [['x', Buffer.from('3')]] },
        { uid: 1234, gid: SLOT_GID },
      );
    } finally {
      process.umask(previous);
    }
    const mode = (name: string) => fs.statSync(path.join(dir.path, name)).mode & 0o7777;
    expect([mode('jailed_code'), mode('run.sh'), mode('x')]).toEqual([0o640, 0o750, 0o640]);
  });

  it('names the file that did not fit, and the files before it are written', async () => {
    const small = path.join(base, 'small');
    fs.mkdirSync(small);
    native().mountRunDisk(small, { sizeBytes: 64 * 1024, inodes: 1000, mode: 0o750, uid: 0, gid: 0 });
    const extraFiles = Array.from({ length: 40 }, (_, i) => [`f${i}`, Buffer.alloc(4096, 1)] as [string, Buffer]);
    const error = await writeRunFiles({ id: 'small', path: small, tmp: path.join(small, 'tmp') }, { files: [], extraFiles }, { uid: 1234, gid: SLOT_GID }).catch(
      (err: Error) => err,
    );
    expect(error).toBeInstanceOf(Error);
    const index = Number(/extraFiles\[(\d+)\] "f\d+": does not fit: .*\(ENOSPC\)/.exec((error as Error).message)?.[1]);
    expect(index).toBeGreaterThan(0);
    expect(index).toBeLessThan(40);
    expect(fs.readdirSync(small)).toContain(`f${index - 1}`);
  });

  it('deny_batched_writer_leaves_the_daemon_in_the_slot_group: the daemon\'s own files are root:root after a batch, written or failed', async () => {
    const probe = (name: string) => {
      const file = path.join(base, name);
      fs.writeFileSync(file, 'daemon');
      return fs.statSync(file).gid;
    };
    // Batches of four files or more switch the fsgid (fewer are chowned).
    const four = (first: string) => ['a', 'b', 'c'].map((name) => [name + first, Buffer.from('1')] as [string, Buffer]).concat([[first, Buffer.from('1')]]);
    await writeRunFiles(dir, { files: [], extraFiles: four('x') }, { uid: 1234, gid: SLOT_GID });
    expect(fs.statSync(path.join(dir.path, 'x')).gid).toBe(SLOT_GID); // the allow side: the switch happened
    expect(probe('after-written')).toBe(0);
    await expect(writeRunFiles(dir, { files: [], extraFiles: [['y1', Buffer.from('1')], ['y2', Buffer.from('1')], ['y3', Buffer.from('1')], ['x', Buffer.from('2')]] }, { uid: 1234, gid: SLOT_GID })).rejects.toThrow(/extraFiles\[3\] "x": already exists/);
    expect(probe('after-failed')).toBe(0);
  });

  // openat2's resolve flags, and the walk used where openat2 is filtered (systemd's
  // RestrictSUIDSGID=, as the shipped unit sets) or missing.
  it.each([
    ['openat2', false],
    ['the walk', true],
  ])('deny_batched_writer_leaves_the_run_directory (%s): the native writer refuses a symlinked parent, "..", an absolute name and a mount crossing on its own', (_, forceWalk) => {
    const write = (name: string) => {
      try {
        native().writeRunFiles(dir.path, [name], [Buffer.from('x')], [0o640], { uid: 0, gid: SLOT_GID }, forceWalk);
        return 'written';
      } catch (err) {
        return (err as NodeJS.ErrnoException).code;
      }
    };
    fs.mkdirSync(path.join(dir.path, 'real', 'deeper'), { recursive: true });
    fs.symlinkSync(path.join(dir.path, 'real'), path.join(dir.path, 'link'));
    fs.mkdirSync(path.join(dir.path, 'mnt'));
    native().mountRunDisk(path.join(dir.path, 'mnt'), { sizeBytes: 1 << 20, inodes: 100, mode: 0o755, uid: 0, gid: 0 });
    expect(write('real/deeper/ok')).toBe('written'); // the allow side: real parents
    expect(fs.statSync(path.join(dir.path, 'real', 'deeper', 'ok')).gid).toBe(SLOT_GID);
    expect(write('link/through')).toBe('ELOOP');
    expect(write('real/../link/through')).toMatch(/^(ELOOP|EXDEV)$/);
    expect(fs.existsSync(path.join(dir.path, 'real', 'through'))).toBe(false);
    expect(write('../escaped')).toBe('EXDEV');
    expect(write('real/../../escaped')).toBe('EXDEV');
    expect(fs.existsSync(path.join(base, 'escaped'))).toBe(false);
    expect(write(path.join(base, 'absolute'))).toBe('EXDEV');
    expect(fs.existsSync(path.join(base, 'absolute'))).toBe(false);
    expect(write('mnt/crossed')).toBe('EXDEV');
    expect(fs.readdirSync(path.join(dir.path, 'mnt'))).toEqual([]);
    // A bind mount of the same file system: the same device, another mount.
    const outside = path.join(base, 'outside');
    fs.mkdirSync(outside);
    fs.mkdirSync(path.join(dir.path, 'bind'));
    execFileSync('mount', ['--bind', outside, path.join(dir.path, 'bind')]);
    expect(fs.statSync(path.join(dir.path, 'bind')).dev).toBe(fs.statSync(dir.path).dev);
    expect(write('bind/crossed')).toBe('EXDEV');
    expect(fs.readdirSync(outside)).toEqual([]);
  });
});
