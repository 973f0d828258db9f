import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { discoverCommand, elfInterpreter, grantProblem, reachProblem } from '../../src/run/commands.js';
import type { Logger } from '../../src/log.js';

describe('elfInterpreter', () => {
  it('reads PT_INTERP of a dynamically linked executable', () => {
    const interp = elfInterpreter(fs.realpathSync(process.execPath));
    expect(interp).toMatch(/^\/lib.*\/ld-linux-.*\.so\.\d$/);
  });

  it('returns undefined for a script', () => {
    expect(elfInterpreter('/etc/hostname')).toBeUndefined();
    expect(elfInterpreter('/nonexistent')).toBeUndefined();
  });
});

describe('grantProblem', () => {
  const runBase = '/var/lib/codejail/runs';
  it.each(['/', '/etc', '/tmp', '/home', '/proc', '/usr/bin', '/usr', '/var', '/var/lib/codejail', runBase])('refuses %s', (p) => {
    expect(grantProblem(p, runBase)).toBeDefined();
  });
  it.each(['/tmp/x', '/home/u/venv', `${runBase}/abc`, '/proc/self'])('refuses beneath a private place: %s', (p) => {
    expect(grantProblem(p, runBase)).toBeDefined();
  });
  it.each(['/usr/lib/python3.11', '/usr/lib/x86_64-linux-gnu', '/etc/python3.11/sitecustomize.py', '/opt/py/lib'])('allows %s', (p) => {
    expect(grantProblem(p, runBase)).toBeUndefined();
  });
});

describe('reachProblem', () => {
  const runBase = '/var/lib/codejail/runs';
  it.each([
    ['/home/u/venv/bin/python', "is beneath /home, which the runs' mount namespace shows empty"],
    ['/root/.pyenv/versions/3.12.1/bin/python3.12', "is beneath /root, which the runs' mount namespace shows empty"],
    ['/tmp/venv', "is beneath /tmp, which the runs' mount namespace shows empty"],
    ['/proc/self/exe', 'is beneath /proc, which sandboxes are never granted'],
    [`${runBase}/x/python`, `is beneath ${runBase}, which sandboxes are never granted`],
  ])('refuses %s', (p, reason) => {
    expect(reachProblem(p, runBase)).toBe(reason);
  });
  it('a run base beneath /tmp keeps /tmp in the namespace, but nothing beneath it is granted', () => {
    expect(reachProblem('/tmp/venv', '/tmp/codejail/runs')).toBe('is beneath /tmp, which sandboxes are never granted');
  });
  it.each(['/usr/bin/python3', '/usr/local/bin/python3', '/opt/venv/bin/python'])('allows %s', (p) => {
    expect(reachProblem(p, runBase)).toBeUndefined();
  });
  it.skipIf(process.getuid?.() !== 0)('refuses a path behind a directory others may not enter, naming it and its mode', () => {
    const dir = fs.mkdtempSync('/var/lib/cj-reach-');
    try {
      expect(reachProblem(path.join(dir, 'venv/bin/python'), runBase)).toBe(`is beneath ${dir}, which the slot users may not enter (mode 0700)`);
      fs.chmodSync(dir, 0o711);
      expect(reachProblem(path.join(dir, 'venv/bin/python'), runBase)).toBeUndefined();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('discoverCommand (kind python)', () => {
  const runBase = '/var/lib/codejail/runs';
  // Where runs could reach the fake interpreters (not beneath /tmp, nor a 0700 directory).
  const scratch = fs.mkdtempSync(path.join(process.getuid?.() === 0 ? '/var/lib' : os.tmpdir(), 'cj-discover-'));
  fs.chmodSync(scratch, 0o755);
  afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }));

  const warnings: Array<Record<string, unknown>> = [];
  const log: Logger = { debug() {}, info() {}, error() {}, warn: (_msg, fields) => void warnings.push(fields ?? {}) };

  /** An "interpreter" that answers the discovery script with `facts`, whatever it is asked. */
  function fakePython(facts: Record<string, unknown>): string {
    const file = path.join(scratch, `python-${warnings.length}-${Math.random().toString(16).slice(2)}`);
    fs.writeFileSync(file, `#!/bin/sh\ncat <<'EOF'\n${JSON.stringify(facts)}\nEOF\n`, { mode: 0o755 });
    return file;
  }
  const command = (file: string) => ({ path: file, kind: 'python' as const, args: [], env: {}, read: [], execute: [], preload: [] });

  // A prefix that exists everywhere and may be granted (the test tree may live beneath /tmp).
  const prefix = '/usr/share';

  it('grants a venv prefix, sys.path and mapped files, but nothing a host-wide rule forbids', () => {
    const file = fakePython({
      prefix,
      base_prefix: '/usr',
      path: ['', '/usr/lib/python3', '/tmp'],
      executable: '/usr/bin/python3',
      modules: [],
      mapped: ['/usr/share/no-such-lib.so (deleted)', '/root', '/usr/lib/python3'],
    });
    const profile = discoverCommand('sandenv', command(file), runBase, log);
    expect(profile.read).toEqual(expect.arrayContaining([prefix, '/usr/lib/python3']));
    for (const refused of ['/root', '/tmp', '/usr']) expect(profile.read).not.toContain(refused);
    expect(warnings.map((w) => w.path)).toEqual(expect.arrayContaining(['/root', '/tmp']));
  });

  it('refuses a venv prefix that runs cannot reach, naming it and why', () => {
    const file = fakePython({ prefix: '/home/u/venv', base_prefix: '/usr', path: [], executable: '/usr/bin/python3', modules: [], mapped: [] });
    expect(() => discoverCommand('sandenv', command(file), runBase, log)).toThrow(
      "commands.sandenv.path: its virtualenv /home/u/venv is beneath /home, which the runs' mount namespace shows empty, so no run could use it",
    );
  });

  it('does not grant the prefix of an interpreter that is not in a venv', () => {
    const file = fakePython({ prefix, base_prefix: prefix, path: [], executable: '/usr/bin/python3', modules: [], mapped: [] });
    expect(discoverCommand('plain', command(file), runBase, log).read).not.toContain(prefix);
  });

  it.skipIf(process.getuid?.() !== 0)('refuses a configured read path that is a symlink to a forbidden directory', () => {
    // The link must itself live somewhere grantable (not beneath /tmp, where scratch is).
    const link = `/usr/local/share/cj-test-etc-link-${process.pid}`;
    fs.symlinkSync('/etc', link);
    try {
      const bash = { path: '/bin/bash', kind: 'binary' as const, args: [], env: {}, read: [link], execute: [], preload: [] };
      expect(() => discoverCommand('bash', bash, runBase, log)).toThrow(`commands.bash.read: ${link} (/etc) would grant /etc`);
    } finally {
      fs.unlinkSync(link);
    }
  });

  it('refuses output that is not the discovery JSON, naming the command', () => {
    const file = fakePython({ prefix: '/usr', path: [] });
    expect(() => discoverCommand('odd', command(file), runBase, log)).toThrow(/commands\.odd: .* printed something other than the expected JSON/);
  });

  it('grants the real interpreter its stdlib, and only what may be granted', () => {
    const profile = discoverCommand('python', { ...command('/usr/bin/python3'), args: ['-E', '-B'] }, runBase, log);
    const osModule = execFileSync('/usr/bin/python3', ['-E', '-c', 'import os; print(os.path.realpath(os.__file__))'], { encoding: 'utf8' }).trim();
    expect(profile.read.some((grant) => osModule.startsWith(`${grant}/`))).toBe(true);
    expect(profile.execute).toContain(fs.realpathSync('/usr/bin/python3'));
    for (const grant of [...profile.read, ...profile.execute]) expect(grantProblem(grant, runBase), grant).toBeUndefined();
  });
});
