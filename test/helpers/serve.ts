// Starts a test daemon and `codejail serve` (the compiled dist/) in front of it, as an
// unprivileged uid the daemon's allow list admits, on 127.0.0.1 and a free port.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startTestDaemon, type TestDaemon } from './daemon.js';
import { followLogLines } from './log_lines.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const CLI_MAIN = path.join(root, 'dist/cli/main.js');
/** The uid `codejail serve` runs as: nobody's account, no groups. */
export const SERVE_UID = 64_917;

export interface TestServe {
  daemon: TestDaemon;
  /** http://127.0.0.1:<port> */
  url: string;
  /** The service's working directory (a python_lib.zip left there must never be read). */
  cwd: string;
  logs: Array<Record<string, unknown>>;
  process: ChildProcess;
  stop(): Promise<void>;
}

export interface TestServeOptions {
  /** Keys of serve's --config file. */
  config?: Record<string, unknown>;
  /** Daemon config keys merged over the test defaults. */
  daemonConfig?: Record<string, unknown>;
}

export async function startTestServe(options: TestServeOptions = {}): Promise<TestServe> {
  const daemon = await startTestDaemon({
    config: { socket: { group: 'root', mode: '0666' }, allow: { uids: [0, SERVE_UID] }, ...options.daemonConfig },
  });
  fs.chmodSync(path.dirname(daemon.socketPath), 0o755);
  const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'cj-serve-'));
  fs.chmodSync(cwd, 0o755);
  const configFile = path.join(cwd, 'serve.json');
  fs.writeFileSync(configFile, JSON.stringify({ listen: '127.0.0.1:0', ...options.config }));
  const child = spawn(process.execPath, [CLI_MAIN, 'serve', '--socket', daemon.socketPath, '--config', configFile], {
    uid: SERVE_UID,
    gid: SERVE_UID,
    cwd,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: Array<Record<string, unknown>> = [];
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  let stderr = '';
  const ready = new Promise<string>((resolve, reject) => {
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    followLogLines([child.stderr], (line) => {
      logs.push(line);
      if (line.msg === 'ready') resolve(`http://${line.listen as string}`);
    });
    void exited.then(() => reject(new Error(`codejail serve exited before ready:\n${stderr}`)));
  });
  let url: string;
  try {
    url = await ready;
  } catch (err) {
    await daemon.stop();
    throw err;
  }
  return {
    daemon,
    url,
    cwd,
    logs,
    process: child,
    async stop() {
      try {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
        // It lets requests in flight finish for up to 10 s; past that it is stuck: kill it.
        const killer = setTimeout(() => child.kill('SIGKILL'), 15_000);
        await exited;
        clearTimeout(killer);
      } finally {
        await daemon.stop();
        fs.rmSync(cwd, { recursive: true, force: true });
      }
    },
  };
}

/** A zip (made by Python's zipfile) holding `modules`: name -> source. */
export function makeZip(modules: Record<string, string>): Buffer {
  const script = `import io, json, sys, zipfile
buf = io.BytesIO()
with zipfile.ZipFile(buf, 'w') as z:
    for name, source in json.load(sys.stdin).items():
        z.writestr(name, source)
sys.stdout.buffer.write(buf.getvalue())`;
  const out = spawnSync('/usr/bin/python3', ['-c', script], { input: JSON.stringify(modules) });
  if (out.status !== 0) throw new Error(`makeZip: ${out.stderr}`);
  return out.stdout;
}
