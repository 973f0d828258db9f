import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import fs, { constants } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { OutputBudget, readOutput } from '../../src/run/pipes.js';

describe('OutputBudget', () => {
  it('shares one cap between stdout and stderr and reports truncation', () => {
    const budget = new OutputBudget(10);
    expect(budget.take(Buffer.from('123456'))?.toString()).toBe('123456');
    expect(budget.take(Buffer.from('abcdef'))?.toString()).toBe('abcd');
    expect(budget.truncated).toBe(true);
    expect(budget.take(Buffer.from('z'))).toBeUndefined();
  });
});

// readOutput reads a pipe into one buffer that grows (net.Socket's onread): the pipes here are
// FIFOs a Python child writes to, in writes of uneven sizes.
describe('readOutput', () => {
  const dirs: string[] = [];
  const children: ChildProcess[] = [];
  afterEach(() => {
    for (const child of children.splice(0)) child.kill('SIGKILL');
    for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
  });

  /** The read end of a FIFO that a Python child writes `total` bytes of a pattern to, then closes. */
  /** A FIFO in a directory of its own (removed after the test), opened for reading. */
  function fifo(): { dir: string; path: string; fd: number } {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cj-pipes-'));
    dirs.push(dir);
    const fifoPath = path.join(dir, 'p');
    execFileSync('mkfifo', [fifoPath]);
    return { dir, path: fifoPath, fd: fs.openSync(fifoPath, constants.O_RDONLY | constants.O_NONBLOCK) };
  }

  function pipeOf(total: number, hold = false): number {
    const { path: fifoPath, fd } = fifo();
    const script = [
      'import os, sys, time',
      'fd = os.open(sys.argv[1], os.O_WRONLY)',
      'total, sent, size = int(sys.argv[2]), 0, 1',
      'while sent < total:',
      '    n = min(size, total - sent)',
      '    os.write(fd, bytes((sent + i) % 251 for i in range(n)))',
      '    sent += n',
      '    size = size * 7 % 300007 + 1',
      'if sys.argv[3] == "hold": time.sleep(60)',
    ].join('\n');
    children.push(spawn('/usr/bin/python3', ['-c', script, fifoPath, String(total), hold ? 'hold' : ''], { stdio: 'ignore' }));
    return fd;
  }

  /** The read end of a FIFO a Python child floods for `seconds` (the pipe at 1 MiB, as the daemon's), then says how much it wrote in `count`. */
  function floodedPipe(seconds: number): { fd: number; count: string } {
    const { dir, path: fifoPath, fd } = fifo();
    const count = path.join(dir, 'count');
    const script = [
      'import fcntl, os, sys, time',
      'fd = os.open(sys.argv[1], os.O_WRONLY)',
      'fcntl.fcntl(fd, 1031, 1 << 20)  # F_SETPIPE_SZ',
      'chunk, sent, end = bytes(65536), 0, time.monotonic() + float(sys.argv[3])',
      'while time.monotonic() < end:',
      '    sent += os.write(fd, chunk)',
      'open(sys.argv[2], "w").write(str(sent))',
    ].join('\n');
    children.push(spawn('/usr/bin/python3', ['-c', script, fifoPath, count, String(seconds)], { stdio: 'ignore' }));
    return { fd, count };
  }

  const pattern = (total: number) => Buffer.from(Array.from({ length: total }, (_, i) => i % 251));

  it('keeps every byte of a large output, in order, across the buffer growing', async () => {
    const total = 3 * 1024 * 1024 + 12_345;
    const out = readOutput(pipeOf(total), new OutputBudget(Infinity));
    await out.closed;
    expect(out.contents().equals(pattern(total))).toBe(true);
  });

  it('gives an empty buffer for no output', async () => {
    const out = readOutput(pipeOf(0), new OutputBudget(Infinity));
    await out.closed;
    expect(out.contents().length).toBe(0);
  });

  it('keeps what the shared budget allows of two pipes, the first bytes of each, and says it truncated', async () => {
    const budget = new OutputBudget(150_000);
    const a = readOutput(pipeOf(100_000), budget);
    const b = readOutput(pipeOf(100_000), budget);
    await Promise.all([a.closed, b.closed]);
    expect(a.contents().length + b.contents().length).toBe(150_000);
    expect(a.contents().equals(pattern(a.contents().length))).toBe(true);
    expect(b.contents().equals(pattern(b.contents().length))).toBe(true);
    expect(budget.truncated).toBe(true);
  });

  it('keeps its buffer within the budget: an output of exactly the budget is not held in a buffer four times its size', async () => {
    for (const budgetBytes of [1024 * 1024, 1024 * 1024 - 4095]) {
      const out = readOutput(pipeOf(1024 * 1024), new OutputBudget(budgetBytes));
      await out.closed;
      expect(out.contents().equals(pattern(budgetBytes))).toBe(true);
      expect(out.contents().buffer.byteLength).toBeLessThanOrEqual(budgetBytes);
    }
  });

  it('reads what is past the budget 64 KiB at a time between pauses, not a full 1 MiB pipe at a time', async () => {
    // One second of flooding: at 64 KiB a read and a read per 20 ms pause, about 3 MB drain;
    // at the pipe's 1 MiB a read, about 50. Under load fewer reads happen, never more.
    const flood = floodedPipe(1);
    const out = readOutput(flood.fd, new OutputBudget(1024 * 1024));
    await out.closed;
    const sent = Number(fs.readFileSync(flood.count, 'utf8'));
    expect(out.contents().length).toBe(1024 * 1024);
    expect(sent).toBeLessThan(12 * 1024 * 1024);
  });

  it('drains a writer past its budget to its end, and closes when destroyed while a writer still holds the pipe', async () => {
    const budget = new OutputBudget(1000);
    const drained = readOutput(pipeOf(200_000), budget);
    await drained.closed;
    expect(drained.contents().equals(pattern(1000))).toBe(true);
    const held = readOutput(pipeOf(10, true), new OutputBudget(Infinity));
    held.destroy();
    await held.closed;
    expect(held.contents().length).toBeLessThanOrEqual(10);
  });
});
