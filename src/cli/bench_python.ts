// The Python package's row of `codejail bench` (issue 21): safeExec('a = 17') through
// clients/python's `import codejail`, timed from this process as the TypeScript client's rows
// are. One long-lived python3 child imports the package and configures "python" once; for each
// line it reads on stdin it calls codejail.safe_exec.safe_exec('a = 17', g) and writes one line
// back. Each round trip (the line out, the run, the line back) is one run, so the row and the
// TypeScript client's safeExec row both include the same Node side, and their difference is what
// the Python package costs over the TypeScript client.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BenchRunner } from './bench_runner.js';

/** clients/python beside dist/ (or src/), where `import codejail` is found; absent in the npm package. */
export const PYTHON_PACKAGE_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../clients/python');

export const PYTHON_CLIENT_LABEL = 'safeExec python';

/**
 * The child: "ready" once the package is imported and configured, or one "missing ..." line
 * when an import fails (the row is then skipped with that reason); then "ok" or "error ..." per
 * line read.
 */
export const PYTHON_CLIENT_SCRIPT = `import sys
try:
    import codejail.jail_code
    import codejail.safe_exec
except ImportError as exc:
    sys.stdout.write("missing %s\\n" % exc)
    sys.exit(0)
codejail.jail_code.configure("python", sys.executable)
sys.stdout.write("ready\\n")
sys.stdout.flush()
for line in sys.stdin:
    g = {}
    try:
        codejail.safe_exec.safe_exec("a = 17", g)
        reply = "ok" if g.get("a") == 17 else "error 'a = 17' left %r" % (g,)
    except Exception as exc:
        reply = "error %s: %s" % (type(exc).__name__, " ".join(str(exc).split())[:500])
    sys.stdout.write(reply + "\\n")
    sys.stdout.flush()
`;

/** The row's runner and how to end its child, or why the row is skipped. */
export type PythonClientStart = { runner: BenchRunner; close(): void } | { skipped: string };

/**
 * Starts the child with `python` (PYTHONPATH at `packageDir`, CODEJAIL_SOCKET at `socketPath`).
 * Resolves with a skip reason when the interpreter, the package or one of its imports (msgpack)
 * is missing; rejects when the child fails otherwise before it is ready.
 */
export function startPythonClient(python: string, socketPath: string, packageDir: string = PYTHON_PACKAGE_DIR): Promise<PythonClientStart> {
  if (!existsSync(python)) return Promise.resolve({ skipped: `${python} not found` });
  if (!existsSync(path.join(packageDir, 'codejail'))) return Promise.resolve({ skipped: `the Python package is not here (${packageDir})` });
  // No other environment: the child's own PYTHONPATH and site-packages (Debian's msgpack) only.
  const child: ChildProcessWithoutNullStreams = spawn(python, ['-c', PYTHON_CLIENT_SCRIPT], {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { PYTHONPATH: packageDir, CODEJAIL_SOCKET: socketPath, PATH: process.env.PATH ?? '/usr/bin:/bin' },
  });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr = (stderr + chunk).slice(-2000)));
  child.stdout.setEncoding('utf8');
  // Replies come back in the order the lines went out: one waiter per line sent.
  const waiting: Array<{ resolve(line: string): void; reject(error: Error): void }> = [];
  let buffered = '';
  let failure: Error | undefined;
  const fail = (error: Error) => {
    failure ??= error;
    for (const waiter of waiting.splice(0)) waiter.reject(failure);
  };
  child.stdout.on('data', (chunk: string) => {
    buffered += chunk;
    let end;
    while ((end = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, end);
      buffered = buffered.slice(end + 1);
      waiting.shift()?.resolve(line);
    }
  });
  child.on('error', (error) => fail(error));
  child.on('close', (code, signal) => fail(new Error(`${python} (the Python client) exited: ${code ?? signal}, stderr ${JSON.stringify(stderr)}`)));
  child.stdin.on('error', () => {}); // A child gone mid-write: 'close' says why.
  const nextLine = () =>
    new Promise<string>((resolve, reject) => (failure ? reject(failure) : waiting.push({ resolve, reject })));

  const close = () => {
    child.stdin.end();
    child.kill();
  };
  return nextLine().then(
    (first) => {
      if (first === 'ready') {
        const runner: BenchRunner = {
          label: PYTHON_CLIENT_LABEL,
          warm: true,
          runOnce: async () => {
            const reply = nextLine();
            child.stdin.write('\n');
            const line = await reply;
            if (line !== 'ok') throw new Error(`${PYTHON_CLIENT_LABEL}: ${line}`);
          },
        };
        return { runner, close };
      }
      close();
      if (first.startsWith('missing ')) return { skipped: `${python} cannot import the package: ${first.slice('missing '.length)} (Debian: python3-msgpack)` };
      throw new Error(`the Python client said ${JSON.stringify(first)}, stderr ${JSON.stringify(stderr)}`);
    },
    (error: Error) => {
      close();
      throw error;
    },
  );
}
