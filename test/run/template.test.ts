// Template's reading of its children's reports, against a stand-in for the process and its
// channel (the real addon for everything else): what a report means for the run it names.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { native } from '../../src/native.js';
import type { CommandProfile } from '../../src/run/commands.js';
import { Template, WarmStartError } from '../../src/run/template.js';

const addon = native();
const ESRCH = 3;
const EPERM = 1;

/** The step number the addon names `name`. */
function stepNumber(name: string): number {
  for (let step = 0; step < 64; step++) if (addon.stepName(step) === name) return step;
  throw new Error(`no step is named ${name}`);
}

function failReport(token: number, step: number, errno: number): Buffer {
  const report = Buffer.alloc(16);
  report.write('FAIL', 0, 'latin1');
  report.writeUInt32LE(token, 4);
  report.writeInt32LE(step, 8);
  report.writeInt32LE(errno, 12);
  return report;
}

const fifoDir = fs.mkdtempSync(path.join(os.tmpdir(), 'template-test-'));
let fifos = 0;
/** A stream fd (a FIFO opened both ways) for the template's stdio, which it wraps in sockets. */
function streamFd(): number {
  const fifo = path.join(fifoDir, `fifo${fifos++}`);
  execFileSync('mkfifo', [fifo]);
  return fs.openSync(fifo, fs.constants.O_RDWR | fs.constants.O_NONBLOCK);
}
afterAll(() => fs.rmSync(fifoDir, { recursive: true, force: true }));

/** A Template whose process and channel are stand-ins: `deliver` plays a message on its channel. */
function templateWithFakeChannel(): { template: Template; deliver(data: Buffer): void; opened: number[] } {
  let onMessage!: (data: Buffer | null, fds: number[]) => void;
  const opened: number[] = [];
  const pair = () => {
    const fds = addon.channelPair();
    opened.push(...fds);
    return fds;
  };
  const fake = Object.assign(Object.create(addon) as typeof addon, {
    spawn: () => ({ pid: 2 ** 22 + 1, pidfd: -1, stdin: streamFd(), stdout: streamFd(), stderr: streamFd() }),
    watchExit: () => {},
    watchChannel: (_fd: number, message: typeof onMessage) => {
      onMessage = message;
      return 1;
    },
    unwatchChannel: () => {},
    pidfdSignal: () => {},
    sendWarmRun: () => {
      const [stdin] = pair();
      const [stdout] = pair();
      const [stderr] = pair();
      return { stdin, stdout, stderr };
    },
    channelSend: () => {},
  });
  const log = { info() {}, warn() {}, error() {}, debug() {} } as never;
  const profile = { name: 'python', kind: 'python', executable: '/usr/bin/python3', path: '/usr/bin/python3', args: [], env: {}, preload: [] } as unknown as CommandProfile;
  const template = new Template(profile, { addon: fake, log, ownNetns: false });
  return { template, deliver: (data) => onMessage(data, []), opened };
}

describe('Template: a child that reports a failed set-up', () => {
  let opened: number[] = [];
  afterEach(() => {
    for (const fd of opened) {
      try {
        addon.closeFd(fd);
      } catch {
        // Closed by the template already.
      }
    }
  });

  const start = (template: Template) =>
    template.start({ file: '/usr/bin/python3', argv: [], env: [] } as never, { mode: 'main', argv: [], env: [], result: false }, undefined, {} as never);

  // Review of issue 16: a template killed while a child was setting itself up made the child fail
  // its parent check (pdeathsig: ESRCH, its parent is gone). That said nothing of the run's plan,
  // but the run failed setup_failed instead of going cold (2 of 175 runs, killing the template
  // every second under load).
  it('its parent gone (pdeathsig, ESRCH) is the template failing: the run may start cold', async () => {
    const fake = templateWithFakeChannel();
    opened = fake.opened;
    const started = start(fake.template);
    fake.deliver(failReport(1, stepNumber('pdeathsig'), ESRCH));
    const err = await started.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(WarmStartError);
    expect((err as WarmStartError).templateFailed).toBe(true);
  });

  it('any other step that failed stays the run failing', async () => {
    const fake = templateWithFakeChannel();
    opened = fake.opened;
    const started = start(fake.template);
    fake.deliver(failReport(1, stepNumber('setresuid'), EPERM));
    const err = await started.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toMatchObject({ step: 'setresuid', templateFailed: false });
  });
});
