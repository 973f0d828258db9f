// The parent ends of a sandbox's stdio pipes, wrapped as net.Sockets (libuv owns and closes the
// fds from then on). Output is kept up to a combined byte cap; the rest is drained and dropped
// so a chatty sandbox never blocks on a full pipe, and the result says it was truncated.
import net from 'node:net';

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
  const socket = new net.Socket({ fd, readable: true, writable: false });
  const chunks: Buffer[] = [];
  const closed = new Promise<void>((resolve) => {
    socket.on('data', (chunk: Buffer) => {
      const kept = budget.take(chunk);
      if (kept) chunks.push(kept);
    });
    // A read error (there should be none on a pipe) ends the output like EOF; 'close' follows.
    socket.on('error', () => {});
    socket.on('close', () => resolve());
  });
  return {
    closed,
    contents: () => (chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)),
    destroy: () => socket.destroy(),
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
  const socket = new net.Socket({ fd, readable: false, writable: true });
  socket.on('error', () => socket.destroy());
  if (data && data.length) socket.write(data);
  socket.end();
  return { destroy: () => socket.destroy() };
}
