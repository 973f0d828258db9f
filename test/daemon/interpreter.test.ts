import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { elfInterpreter, grantProblem } from '../../src/daemon/interpreter.js';

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
