// Python environments for the sandbox: the system python3 with Debian's numpy, and a dedicated
// virtualenv (python3 -m venv --system-site-packages) configured as its own command. The daemon
// asks each interpreter for its prefix, sys.path and mapped libraries at start and grants those
// read-only, so numpy (and its BLAS) imports inside Landlock without granting more of the host.
// Needs root and apt's python3-numpy and python3-venv; skips with the reason when either is missing.
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectDenied } from '../helpers/denial.js';
import { daemonSuite } from '../helpers/suite.js';

// The system interpreter, by absolute path: `python3` on PATH may be another build (pyenv).
const SYSTEM_PYTHON = '/usr/bin/python3';
// Beneath /var/lib/codejail-test like the test run bases: a venv under /tmp could not be granted.
const VENV_PARENT = '/var/lib/codejail-test';
// One BLAS thread: the default is one per CPU, each counting against NPROC.
const BLAS_ENV = { OPENBLAS_NUM_THREADS: '1' };

function whyNotRunnable(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (the daemon drops to slot uids)';
  if (!fs.existsSync(SYSTEM_PYTHON)) return `${SYSTEM_PYTHON} is missing`;
  const probe = spawnSync(SYSTEM_PYTHON, ['-E', '-c', 'import numpy, venv'], { encoding: 'utf8' });
  if (probe.status !== 0) {
    return `${SYSTEM_PYTHON} cannot import numpy and venv (apt-get install python3-numpy python3-venv): ${probe.stderr.trim().split('\n').pop()}`;
  }
  return undefined;
}

const skipReason = whyNotRunnable();
if (skipReason) console.warn(`test/e2e/numpy.test.ts skipped: ${skipReason}`);

describe.skipIf(skipReason !== undefined)(`numpy in the system python and in a venv${skipReason ? ` (skipped: ${skipReason})` : ''}`, () => {
  let venv: string;

  beforeAll(() => {
    fs.mkdirSync(VENV_PARENT, { recursive: true, mode: 0o711 });
    venv = fs.mkdtempSync(path.join(VENV_PARENT, 'sandenv-'));
    // Traversable by the slot uids, as /opt/codejail/sandenv would be.
    fs.chmodSync(venv, 0o755);
    // --without-pip: the sandbox installs nothing, and ensurepip would take seconds.
    execFileSync(SYSTEM_PYTHON, ['-m', 'venv', '--system-site-packages', '--without-pip', venv], { stdio: 'pipe' });
    // A module only the venv has: proves its own site-packages is granted and on sys.path.
    const sitePackages = execFileSync(path.join(venv, 'bin/python'), ['-c', 'import sysconfig; print(sysconfig.get_path("purelib"))'], {
      encoding: 'utf8',
    }).trim();
    fs.writeFileSync(path.join(sitePackages, 'sandenv_only.py'), 'ANSWER = 42\n', { mode: 0o644 });
  }, 60_000);
  // Registered before the suite's daemon hooks, so it runs after the daemon has stopped.
  afterAll(() => {
    if (venv) fs.rmSync(venv, { recursive: true, force: true });
  });

  const suite = daemonSuite(
    () => ({
      config: {
        commands: {
          python: { path: SYSTEM_PYTHON, kind: 'python', args: ['-E', '-B'], env: BLAS_ENV },
          // The configured path is the venv's bin/python, a symlink: the daemon executes what it
          // resolves to and passes the venv path as argv[0], which is how Python finds pyvenv.cfg.
          sandenv: { path: path.join(venv, 'bin/python'), kind: 'python', args: ['-E', '-B'], env: BLAS_ENV },
        },
      },
    }),
    (client) => {
      // Importing numpy takes a few hundred ms of CPU; leave room for a loaded test machine.
      client.setLimit('REALTIME', 20);
      client.setLimit('CPU', 5);
    },
  );

  const NUMPY_CODE = 'import numpy\nprint(numpy.arange(3).sum())\nprint(numpy.dot(numpy.eye(2), [[1, 2], [3, 4]]).sum())';

  it.each(['python', 'sandenv'])('allow_numpy_import_in_%s with the default NPROC and VMEM', async (command) => {
    const r = await suite.client.jailCode(command, { code: NUMPY_CODE });
    expect(r.stderr.toString()).toBe('');
    expect(r.stdout.toString()).toBe('3\n10.0\n');
    expect(r.status).toBe(0);
    expect(r.limits.VMEM).toBe(1024 * 1024 * 1024);
    expect(r.limits.NPROC).toBe(15);
    expect(r.confinement).toEqual(expect.arrayContaining(['uid', 'landlock', 'seccomp']));
  });

  it('the venv command runs in the venv: its prefix, its own packages, the configured environment', async () => {
    const r = await suite.client.jailCode('sandenv', {
      code: 'import os, sys, sandenv_only\nprint(sys.prefix)\nprint(sys.base_prefix)\nprint(sandenv_only.ANSWER, os.environ["OPENBLAS_NUM_THREADS"])',
    });
    expect(r.stderr.toString()).toBe('');
    expect(r.stdout.toString()).toBe(`${venv}\n/usr\n42 1\n`);
  });

  it('the system python does not see the venv', async () => {
    const r = await suite.client.jailCode('python', { code: 'import sys\ntry:\n    import sandenv_only\nexcept ImportError:\n    print("absent", sys.prefix)' });
    expect(r.stdout.toString()).toBe('absent /usr\n');
  });

  it('the venv is granted read-only, its base prefix only through sys.path', () => {
    const ready = suite.daemon.logs.find((l) => l.msg === 'command ready' && l.command === 'sandenv');
    expect(ready).toBeDefined();
    const read = ready!.read as string[];
    expect(read).toContain(fs.realpathSync(venv));
    expect(read).not.toContain('/usr');
    expect(ready!.execute).not.toContain(fs.realpathSync(venv));
  });

  // Not deny_*: the uid layer (root owns the venv) and Landlock each refuse it on their own.
  it('the venv stays read-only to the sandbox', async () => {
    const r = await suite.client.jailCode('sandenv', {
      code: 'import sys\ntry:\n    open(sys.prefix + "/pyvenv.cfg", "a").write("x")\nexcept PermissionError:\n    print("DENIED")',
      limits: { FSIZE: 1000 },
    });
    expect(r.stdout.toString()).toBe('DENIED\n');
  });

  it('deny_landlock_venv_reads_etc_passwd', async () => {
    const r = await suite.client.jailCode('sandenv', { code: "print(open('/etc/passwd').read())" });
    expectDenied(r.stdout.toString(), '', /^root:/);
    expect(r.stderr.toString()).toContain('PermissionError');
  });

  it('deny_landlock_venv_python_execs_a_shell', async () => {
    // Cold: Landlock's execute rule is the only guard of a cold run's execve; a warm run's is
    // refused by seccomp as well (test/e2e/warm.test.ts deny_seccomp_warm_execve), so warm this
    // test would pass without Landlock and prove nothing about it.
    const r = await suite.client.jailCode('sandenv', {
      code: 'import os\ntry:\n    os.execv("/bin/sh", ["sh", "-c", "echo escaped"])\nexcept PermissionError:\n    print("DENIED")',
      warm: false,
    });
    expectDenied(r.stdout.toString(), 'DENIED\n', 'escaped\n');
  });
});
