// A configured interpreter or virtualenv that runs cannot reach stops the daemon at its start,
// naming the path and why, instead of runs that fail (a child's "No such file or directory") or,
// worse, run quietly without the virtualenv (its pyvenv.cfg unseen in the runs' namespace).
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '../../src/client/index.js';
import { startTestDaemon } from '../helpers/daemon.js';

const isRoot = process.getuid?.() === 0;

/** Starts a daemon whose command "python" is `pythonPath`; returns its exit status and its log. */
async function startWith(pythonPath: string): Promise<{ code: number | null; log: string }> {
  const daemon = await startTestDaemon({
    config: { commands: { python: { path: pythonPath, kind: 'python', args: ['-E', '-B'] } } },
    expectExit: true,
  });
  const code = await daemon.stop();
  return { code, log: daemon.logs.map((l) => JSON.stringify(l)).join('\n') };
}

describe.skipIf(!isRoot)('an interpreter or virtualenv that runs cannot reach stops the start', () => {
  const made: string[] = [];
  const venvIn = (parent: string): string => {
    const dir = fs.mkdtempSync(path.join(parent, 'cj-reach-'));
    made.push(dir);
    fs.chmodSync(dir, 0o755);
    execFileSync('/usr/bin/python3', ['-m', 'venv', '--without-pip', path.join(dir, 'venv')], { stdio: 'pipe' });
    return path.join(dir, 'venv');
  };
  beforeAll(() => fs.mkdirSync('/var/lib/codejail-test', { recursive: true }));
  afterAll(() => {
    for (const dir of made) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('a virtualenv beneath /tmp: named, with the reason', async () => {
    const venv = venvIn('/tmp');
    const { code, log } = await startWith(path.join(venv, 'bin/python'));
    expect(code).not.toBe(0);
    expect(log).toContain(`commands.python.path: ${venv}/bin/python is beneath /tmp, which the runs' mount namespace shows empty, so no run could start it`);
  });

  it('an interpreter beneath /root (a pyenv build, say): named, with the reason', async () => {
    const dir = fs.mkdtempSync('/root/cj-reach-');
    made.push(dir);
    const python = path.join(dir, 'python3');
    fs.linkSync(fs.realpathSync('/usr/bin/python3'), python);
    const { code, log } = await startWith(python);
    expect(code).not.toBe(0);
    expect(log).toContain(`commands.python.path: ${python} is beneath /root, which the runs' mount namespace shows empty`);
  });

  it('a virtualenv behind a directory the slot users may not enter: named, with its mode', async () => {
    const venv = venvIn('/var/lib/codejail-test');
    fs.chmodSync(path.dirname(venv), 0o700);
    const { code, log } = await startWith(path.join(venv, 'bin/python'));
    expect(code).not.toBe(0);
    expect(log).toContain(`is beneath ${path.dirname(venv)}, which the slot users may not enter (mode 0700)`);
  });

  it('allow_reachable_virtualenv: a virtualenv runs can reach serves warm and cold runs inside it', async () => {
    const venv = venvIn('/var/lib/codejail-test');
    const daemon = await startTestDaemon({ config: { commands: { python: { path: path.join(venv, 'bin/python'), kind: 'python', args: ['-E', '-B'] } } } });
    try {
      const client = new Client({ socketPath: daemon.socketPath });
      try {
        for (const warm of [true, false]) {
          const r = await client.jailCode('python', { code: 'import sys; print(sys.prefix)', warm });
          expect([r.status, r.stdout.toString()], r.stderr.toString()).toEqual([0, `${venv}\n`]);
        }
      } finally {
        await client.close();
      }
    } finally {
      await daemon.stop();
    }
  });
});
