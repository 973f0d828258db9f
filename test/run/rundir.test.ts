import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/log.js';
import { createRunDir, isSelfBindMount, mountPoints, mountsBeneath, printableName, removeRunDir, sweepRunBase, type RunDir } from '../../src/run/rundir.js';
import { writeRunFiles } from '../../src/run/run_files.js';

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
