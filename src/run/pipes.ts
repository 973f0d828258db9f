// The parent ends of a sandbox's stdio pipes, wrapped as net.Sockets (libuv owns and closes the
// fds from then on). Output is kept up to a combined byte cap; the rest is drained and dropped
// so a chatty sandbox never blocks on a full pipe, and the result says it was truncated.
import net from 'node:net';
import type { Readable, Writable } from 'node:stream';

/** stdout and stderr share one budget, as the OUTPUT limit counts both. */
export class OutputBudget {
  private kept = 0;
  truncated = false;

  constructor(private readonly maxBytes: number) {}

  /** Returns the part of `chunk` that still fits. */
  take(chunk: Buffer): Buffer | undefined {
    const room = this.maxBytes - this.kept;
    if (room <= 0) {
      this.truncated = true;
      return undefined;
    }
    if (chunk.length > room) {
      this.truncated = true;
      chunk = chunk.subarray(0, room);
    }
    this.kept += chunk.length;
    return chunk;
  }
}

export interface OutputPipe {
  /** Resolves at EOF (every writer closed the pipe) or when destroyed. */
  readonly closed: Promise<void>;
  /** What was kept so far. */
  contents(): Buffer;
  destroy(): void;
}

export function readOutput(fd: number, budget: OutputBudget): OutputPipe {
  return collectOutput(new net.Socket({ fd, readable: true, writable: false }), budget);
}

/**
 * Past the budget, output is dropped, but reading it still costs this process a read per 64 KiB
 * (a run writing without end kept the daemon's event loop at most of a core). So once a chunk is
 * dropped, reading pauses this long before the next read: the run's writes block on the full pipe
 * meanwhile, and what it writes past its budget drains at about 3 MB/s, its time and not ours.
 */
export const DROPPED_OUTPUT_PAUSE_MS = 20;

/** Keeps what `budget` allows of a readable stream (a pipe's socket, a child_process stream). */
export function collectOutput(stream: Readable, budget: OutputBudget): OutputPipe {
  const chunks: Buffer[] = [];
  let pause: NodeJS.Timeout | undefined;
  const closed = new Promise<void>((resolve) => {
    stream.on('data', (chunk: Buffer) => {
      const kept = budget.take(chunk);
      if (kept) chunks.push(kept);
      if (kept?.length === chunk.length || pause) return;
      stream.pause();
      pause = setTimeout(() => {
        pause = undefined;
        stream.resume();
      }, DROPPED_OUTPUT_PAUSE_MS);
    });
    // A read error (there should be none on a pipe) ends the output like EOF; 'close' follows.
    stream.on('error', () => {});
    stream.on('close', () => {
      clearTimeout(pause);
      resolve();
    });
  });
  return {
    closed,
    contents: () => (chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)),
    destroy: () => stream.destroy(),
  };
}

export interface InputPipe {
  destroy(): void;
}

/**
 * Writes `data` to the sandbox's stdin and closes it. A sandbox that exits or closes stdin
 * without reading makes the write fail with EPIPE: that is its business, not an error.
 */
export function writeInput(fd: number, data: Uint8Array | undefined): InputPipe {
  return feedInput(new net.Socket({ fd, readable: false, writable: true }), data);
}

/** writeInput for a writable stream the caller already has. */
export function feedInput(stream: Writable, data: Uint8Array | undefined): InputPipe {
  stream.on('error', () => stream.destroy());
  if (data && data.length) stream.write(data);
  stream.end();
  return { destroy: () => stream.destroy() };
}
