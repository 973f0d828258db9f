// A test daemon that can be SIGKILLed and started again on the same config (socket, run base,
// slot uids), as systemd would restart it: the fault "daemon SIGKILL and restart".
import { spawn, type ChildProcess } from 'node:child_process';
import { startTestDaemon, type TestDaemon, type TestDaemonOptions } from '../helpers/daemon.js';
import { followLogLines } from '../helpers/log_lines.js';

export class RestartableDaemon {
  private current: ChildProcess;
  restarts = 0;

  private constructor(readonly first: TestDaemon) {
    this.current = first.process;
  }

  static async start(options: TestDaemonOptions): Promise<RestartableDaemon> {
    return new RestartableDaemon(await startTestDaemon(options));
  }

  get pid(): number {
    return this.current.pid!;
  }
  get socketPath(): string {
    return this.first.socketPath;
  }
  get runBase(): string {
    return this.first.runBase;
  }
  get logs(): Array<Record<string, unknown>> {
    return this.first.logs;
  }

  /** SIGKILL, then the same command line again; resolves once the new daemon logs 'ready'. */
  async killAndRestart(): Promise<void> {
    const old = this.current;
    const exited = new Promise<void>((resolve) => (old.exitCode !== null || old.signalCode !== null ? resolve() : old.once('exit', () => resolve())));
    old.kill('SIGKILL');
    await exited;
    const [command, ...args] = this.first.process.spawnargs;
    const child = spawn(command!, args, { stdio: ['ignore', 'pipe', 'pipe'], env: process.env });
    this.current = child;
    this.restarts++;
    await new Promise<void>((resolve, reject) => {
      followLogLines([child.stdout, child.stderr], (line) => {
        this.first.logs.push(line);
        if (line.msg === 'ready') resolve();
      });
      child.once('exit', (code) => reject(new Error(`the restarted codejaild exited with ${code} before ready`)));
    });
  }

  async stop(): Promise<void> {
    const child = this.current;
    if (child !== this.first.process && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGTERM');
      await exited;
    }
    await this.first.stop();
  }
}
