// The Python package (clients/python, `import codejail`) against a real daemon: its own pytest
// suite (clients/python/tests), run by Debian's python3-pytest with CODEJAIL_SOCKET naming this
// test's daemon. pytest's exit code decides; its summary and, on failure, its output are shown.
// Runs warm and cold (vitest.config.ts), as the other daemon suites do.
// With CODEJAIL_CHECKOUT (and optionally XQUEUE_WATCHER_CHECKOUT) naming local checkouts of
// openedx/codejail and openedx/xqueue-watcher, it also runs their suites unchanged against the same
// daemon through clients/python/scripts/run-upstream-tests.sh (never in CI: they are not ours).
// Needs root and apt's python3-msgpack, python3-pytest, python3-django, python3-six and
// python3-numpy; skips with the reason when one is missing.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { measure } from '../../src/cli/bench.js';
import { startPythonClient } from '../../src/cli/bench_python.js';
import { startTestDaemon, type TestDaemon } from '../helpers/daemon.js';

const PACKAGE_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../clients/python');
// The system interpreter, by absolute path: `python3` on PATH may be another build (pyenv).
const SYSTEM_PYTHON = '/usr/bin/python3';
const MODULES = 'msgpack, pytest, django, six, numpy';
const PACKAGES = 'python3-msgpack python3-pytest python3-django python3-six python3-numpy';
// The tests' temporary files (TMPDIR) go beneath /var/lib/codejail-test, not /tmp: the sandbox's
// /tmp is empty, so a symlink into the caller's /tmp would read as missing (ENOENT) where the
// original's tests expect the sandbox to be refused it (EACCES), as it is everywhere else.
const TMP_PARENT = '/var/lib/codejail-test';

function whyNotRunnable(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (the daemon drops to slot uids)';
  if (!fs.existsSync(SYSTEM_PYTHON)) return `${SYSTEM_PYTHON} is missing`;
  const probe = spawnSync(SYSTEM_PYTHON, ['-c', `import ${MODULES}`], { encoding: 'utf8' });
  if (probe.status !== 0) {
    return `${SYSTEM_PYTHON} cannot import ${MODULES} (apt-get install ${PACKAGES}): ${probe.stderr.trim().split('\n').pop()}`;
  }
  return undefined;
}

const skipReason = whyNotRunnable();
if (skipReason) console.warn(`test/e2e/python_package.test.ts skipped: ${skipReason}`);

interface PytestRun {
  code: number | null;
  output: string;
}

const UPSTREAM_SCRIPT = path.join(PACKAGE_DIR, 'scripts/run-upstream-tests.sh');
const UPSTREAM_CHECKOUT = process.env.CODEJAIL_CHECKOUT;

function runPytest(command: string, args: string[], env: NodeJS.ProcessEnv): Promise<PytestRun> {
  return new Promise((resolve, reject) => {
    // Asynchronously: the daemon's log pipes are read by this process meanwhile.
    const child = spawn(command, args, {
      cwd: PACKAGE_DIR,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, output }));
  });
}

/** pytest's last line: "== 66 passed, 6 skipped in 13.40s ==". */
function summaryOf(output: string): string {
  const lines = output.trim().split('\n');
  return lines[lines.length - 1]?.replace(/^=+ | =+$/g, '') ?? '';
}

describe.skipIf(skipReason !== undefined)(`the Python package's tests${skipReason ? ` (skipped: ${skipReason})` : ''}`, () => {
  let daemon: TestDaemon;
  let tmpDir: string;

  beforeAll(async () => {
    daemon = await startTestDaemon({
      config: {
        // The JailedGrader-like tests (and xqueue-watcher's own) configure both.
        commands: {
          python: { path: SYSTEM_PYTHON, kind: 'python', args: ['-E', '-B'] },
          python3: { path: SYSTEM_PYTHON, kind: 'python', args: ['-E', '-B'] },
        },
        // The original keeps all output; the large-output tests write 3.8 MB to stdout and to
        // stderr, over the daemon's default OUTPUT (1 MiB).
        defaultLimits: { OUTPUT: 8 * 1024 * 1024 },
      },
    });
    fs.mkdirSync(TMP_PARENT, { recursive: true, mode: 0o711 });
    tmpDir = fs.mkdtempSync(path.join(TMP_PARENT, 'pytest-'));
  });

  afterAll(async () => {
    await daemon?.stop();
    if (tmpDir) fs.rmSync(tmpDir, { recursive: true, force: true });
  });

  function pytestEnv(): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = { ...process.env, CODEJAIL_SOCKET: daemon.socketPath, TMPDIR: tmpDir, PYTHONDONTWRITEBYTECODE: '1' };
    delete env.CODEJAIL_PROXY;
    return env;
  }

  it('pass against the daemon (clients/python/tests)', { timeout: 300_000 }, async () => {
    const run = await runPytest(SYSTEM_PYTHON, ['-m', 'pytest', '-p', 'no:cacheprovider', '-rs'], pytestEnv());
    const summary = summaryOf(run.output);
    console.log(`pytest (${path.relative(process.cwd(), PACKAGE_DIR)}): exit ${run.code}: ${summary}`);
    if (run.code !== 0) console.log(run.output);
    expect(run.code, `pytest failed:\n${run.output}`).toBe(0);
    expect(summary).toMatch(/\d+ passed/);
    expect(summary).not.toMatch(/failed|error|skipped/);
  });

  it("is codejail bench's Python row: a few round trips of safeExec('a = 17') through one python3 child", { timeout: 60_000 }, async () => {
    const started = await startPythonClient(SYSTEM_PYTHON, daemon.socketPath, PACKAGE_DIR);
    if (!('runner' in started)) throw new Error(`the row was skipped: ${started.skipped}`);
    try {
      const measured = await measure(started.runner, 5, 1);
      expect(measured).toMatchObject({ label: 'safeExec python', runs: 5, concurrency: 1 });
      expect(measured.p50Ms).toBeGreaterThan(0);
    } finally {
      started.close();
    }
  });

  it.skipIf(!UPSTREAM_CHECKOUT)(
    'the upstream suites pass unchanged (CODEJAIL_CHECKOUT, XQUEUE_WATCHER_CHECKOUT)',
    { timeout: 600_000 },
    async () => {
      const run = await runPytest('sh', [UPSTREAM_SCRIPT], pytestEnv());
      const summary = summaryOf(run.output);
      console.log(`run-upstream-tests.sh: exit ${run.code}: ${summary}`);
      if (run.code !== 0) console.log(run.output);
      expect(run.code, `the upstream suites failed:\n${run.output}`).toBe(0);
      expect(summary).not.toMatch(/failed|error/);
      // The original's own four skips and the two upstream/conftest.py names.
      expect(summary).toMatch(/\b6 skipped\b/);
    },
  );
});
