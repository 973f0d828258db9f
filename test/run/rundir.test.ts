import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/log.js';
import { native } from '../../src/native.js';
import { createRunDir, isSelfBindMount, mountPoints, mountsBeneath, nameProblem, printableName, removeRunDir, sweepRunBase, writeRunFiles, type RunDir } from '../../src/run/rundir.js';

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

describe('run directories (without ownership changes)', () => {
  let base: string;
  let dir: RunDir;
  beforeEach(async () => {
    base = fs.mkdtempSync(path.join(os.tmpdir(), 'cj-rundir-'));
    dir = await createRunDir(base, undefined);
  });
  afterEach(() => fs.rmSync(base, { recursive: true, force: true }));

  it('is an unguessable directory with a private tmp/', () => {
    expect(path.basename(dir.path)).toMatch(/^[0-9a-f]{32}$/);
    expect(fs.statSync(dir.path).mode & 0o777).toBe(0o750);
    expect(fs.statSync(dir.tmp).mode & 0o777).toBe(0o700);
  });

  it('writes code, files, dirs, symlinks and extra files', async () => {
    await writeRunFiles(
      dir,
      {
        code: Buffer.from('print(1)'),
        files: [
          { type: 'dir', name: 'lib' },
          { type: 'file', name: 'lib/sub/m.py', data: Buffer.from('x = 1') },
          { type: 'file', name: 'run.sh', data: Buffer.from('#!/bin/sh'), executable: true },
          { type: 'symlink', name: 'lib/link', target: '/etc/passwd' },
        ],
        extraFiles: [['data.bin', Buffer.from([0, 255])]],
      },
      undefined,
    );
    expect(fs.readFileSync(path.join(dir.path, 'jailed_code'), 'utf8')).toBe('print(1)');
    expect(fs.readFileSync(path.join(dir.path, 'lib/sub/m.py'), 'utf8')).toBe('x = 1');
    expect(fs.statSync(path.join(dir.path, 'lib/sub/m.py')).mode & 0o777).toBe(0o640);
    expect(fs.statSync(path.join(dir.path, 'run.sh')).mode & 0o777).toBe(0o750);
    expect(fs.statSync(path.join(dir.path, 'lib/sub')).mode & 0o777).toBe(0o750);
    expect(fs.readlinkSync(path.join(dir.path, 'lib/link'))).toBe('/etc/passwd');
    expect(fs.readFileSync(path.join(dir.path, 'data.bin'))).toEqual(Buffer.from([0, 255]));
  });

  it('never writes through a symlink the same request created', async () => {
    const outside = fs.mkdtempSync(path.join(os.tmpdir(), 'cj-outside-'));
    try {
      await expect(
        writeRunFiles(
          dir,
          {
            files: [
              { type: 'symlink', name: 'a', target: outside },
              { type: 'file', name: 'a/passwd', data: Buffer.from('pwned') },
            ],
            extraFiles: [],
          },
          undefined,
        ),
      ).rejects.toMatchObject({ code: 'bad_request', message: expect.stringContaining('its parent "a" is a symlink') });
      expect(fs.readdirSync(outside)).toEqual([]);
    } finally {
      fs.rmSync(outside, { recursive: true, force: true });
    }
  });

  it('does not follow a symlink in the final component either', async () => {
    const target = path.join(base, 'victim');
    fs.writeFileSync(target, 'original');
    await expect(
      writeRunFiles(
        dir,
        { files: [{ type: 'symlink', name: 'f', target }, { type: 'file', name: 'f', data: Buffer.from('pwned') }], extraFiles: [] },
        undefined,
      ),
    ).rejects.toMatchObject({ message: expect.stringContaining('already exists') });
    expect(fs.readFileSync(target, 'utf8')).toBe('original');
  });

  it('refuses bad names and duplicates with the entry index', async () => {
    const write = (files: Parameters<typeof writeRunFiles>[1]['files'], extraFiles: Array<[string, Buffer]> = []) =>
      writeRunFiles(dir, { files, extraFiles }, undefined);
    await expect(write([{ type: 'file', name: '../x', data: Buffer.alloc(0) }])).rejects.toThrow(/files\[0\] "..\/x"/);
    await expect(write([], [['a/b', Buffer.alloc(0)]])).rejects.toThrow(/extraFiles\[0\].*plain name/);
    await expect(
      writeRunFiles(dir, { code: Buffer.from('1'), files: [{ type: 'file', name: 'jailed_code', data: Buffer.alloc(0) }], extraFiles: [] }, undefined),
    ).rejects.toThrow(/files\[0\] "jailed_code": already exists/);
  });

  it('removes everything, even chmod 0 directories, without following symlinks', async () => {
    const keep = path.join(base, 'keep.txt');
    fs.writeFileSync(keep, 'keep');
    fs.mkdirSync(path.join(dir.tmp, 'a/b'), { recursive: true });
    fs.symlinkSync(keep, path.join(dir.tmp, 'a/link'));
    fs.chmodSync(path.join(dir.tmp, 'a/b'), 0);
    fs.chmodSync(path.join(dir.tmp, 'a'), 0);
    await removeRunDir(dir);
    expect(fs.existsSync(dir.path)).toBe(false);
    expect(fs.readFileSync(keep, 'utf8')).toBe('keep');
  });

  it('sweeps what a crashed daemon left', async () => {
    fs.rmSync(path.join(base, 'keep.txt'), { force: true });
    expect(await sweepRunBase(base, silentLogger)).toBe(1);
    expect(fs.readdirSync(base)).toEqual([]);
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

describe('removal of hostile trees', () => {
  it('removes a tree nested deeper than PATH_MAX', async () => {
    const base = fs.mkdtempSync(path.join(os.tmpdir(), 'cj-deep-'));
    try {
      const dir = await createRunDir(base, undefined);
      // Build 3000 levels with relative mkdir from a process whose cwd walks down (no long paths).
      const { execFileSync } = await import('node:child_process');
      execFileSync('/usr/bin/python3', ['-c', 'import os\nfor i in range(3000):\n    os.mkdir("d"); os.chdir("d")\nopen("f","w").write("x")'], { cwd: dir.tmp });
      await removeRunDir(dir);
      expect(fs.readdirSync(base)).toEqual([]);
    } finally {
      fs.rmSync(base, { recursive: true, force: true });
    }
  });
});

describe('mount points and names from the sandbox', () => {
  const mountinfo = [
    '22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/vda rw',
    '90 22 8:1 /var/lib/runs /var/lib/runs rw shared:40 - ext4 /dev/vda rw',
    '91 90 0:50 / /var/lib/runs/ab rw,nosuid,nodev,noexec shared:41 - tmpfs codejail-run rw,size=65536k',
    '92 90 0:51 / /var/lib/runs/a\\040b rw shared:42 - tmpfs codejail-run rw',
    '93 91 0:52 / /var/lib/runs/ab/deeper rw shared:43 - tmpfs codejail-run rw',
    '94 22 0:53 / /var/lib/runsother rw shared:44 - tmpfs x rw',
  ].join('\n');
  it('lists the mounts beneath a directory, deepest first, with octal escapes decoded', () => {
    expect(mountsBeneath('/var/lib/runs', mountinfo)).toEqual(['/var/lib/runs/ab/deeper', '/var/lib/runs/a b', '/var/lib/runs/ab']);
    expect(mountPoints(mountinfo)).toContain('/var/lib/runs');
  });
  it('tells a bind of the run base onto itself (a killed daemon left it) from a file system mounted there', () => {
    expect(isSelfBindMount('/var/lib/runs', mountinfo)).toBe(true);
    // The topmost mount counts: a tmpfs over the bind is an operator's.
    expect(isSelfBindMount('/var/lib/runs', `${mountinfo}\n95 90 0:60 / /var/lib/runs rw - tmpfs x rw`)).toBe(false);
    // Another directory bound there, or a file system of its own, is not ours either.
    expect(isSelfBindMount('/var/lib/runs', mountinfo.replace('8:1 /var/lib/runs /var/lib/runs', '8:1 /srv/elsewhere /var/lib/runs'))).toBe(false);
    expect(isSelfBindMount('/var/lib/runsother', mountinfo)).toBe(false);
    expect(isSelfBindMount('/var/lib/nothing', mountinfo)).toBe(false);
    // Beneath a mount of a subtree: the root it shows plus the path within it.
    const nested = ['22 1 8:1 / / rw - ext4 /dev/vda rw', '30 22 8:2 /data /srv rw - ext4 /dev/vdb rw', '31 30 8:2 /data/runs /srv/runs rw - ext4 /dev/vdb rw'].join('\n');
    expect(isSelfBindMount('/srv/runs', nested)).toBe(true);
  });
  it('prints a name that is not UTF-8 with \\x escapes', () => {
    expect(printableName(Buffer.from('plain'))).toBe('plain');
    expect(printableName(Buffer.from([0x62, 0xff, 0x5c]))).toBe('b\\xff\\x5c');
  });
  it('sweeps leftovers whose names are not UTF-8', async () => {
    const base = fs.mkdtempSync(path.join(os.tmpdir(), 'cj-sweep-'));
    try {
      const dir = Buffer.from(`${base}/d\xff`, 'latin1');
      fs.mkdirSync(dir);
      fs.writeFileSync(Buffer.concat([dir, Buffer.from('/f\xfe', 'latin1')]), 'x');
      expect(await sweepRunBase(base, silentLogger)).toBe(1);
      expect(fs.readdirSync(base)).toEqual([]);
    } finally {
      fs.rmSync(base, { recursive: true, force: true });
    }
  });
});
