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
    const kept = this.accept(chunk.length);
    return kept === 0 ? undefined : kept === chunk.length ? chunk : chunk.subarray(0, kept);
  }

  /** Bytes that still fit (Infinity for an unbounded budget). */
  left(): number {
    return Math.max(0, this.maxBytes - this.kept);
  }

  /** Counts `bytes` more and returns how many of them still fit. */
  accept(bytes: number): number {
    const kept = Math.max(0, Math.min(bytes, this.maxBytes - this.kept));
    if (kept < bytes) this.truncated = true;
    this.kept += kept;
    return kept;
  }
}

export interface OutputPipe {
  /** Resolves at EOF (every writer closed the pipe) or when destroyed. */
  readonly closed: Promise<void>;
  /** What was kept so far. */
  contents(): Buffer;
  destroy(): void;
}

/** A pipe's first reads go into this much room; each larger buffer after it is GROWTH times larger. */
const FIRST_BUFFER_BYTES = 16 * 1024;
const GROWTH = 4;
/** A read gets at least this much room (or what the budget has left): below it the buffer grows first. */
const MIN_READ_BYTES = 4096;
/**
 * What one read may take once the budget cannot keep it all, as a stream read 64 KiB: the bytes
 * past the budget are read (and dropped) at this much per DROPPED_OUTPUT_PAUSE_MS, not at the
 * pipe's whole 1 MiB.
 */
const DROPPED_READ_BYTES = 64 * 1024;
/** Where reads go once the budget is spent: never kept, so one buffer serves every pipe. */
const dropped = Buffer.allocUnsafeSlow(DROPPED_READ_BYTES);

/**
 * Reads a pipe straight into one buffer that grows as output comes (net.Socket's `onread`): each
 * read takes all the pipe holds (up to its 1 MiB) into the room left, where a stream would read
 * 64 KiB at a time into a fresh buffer of its own and the output be joined at the end. Growing
 * copies what was kept into a buffer GROWTH times larger, but never past what the budget can
 * still keep, so each byte is copied less than once on average, the buffer is at most the
 * budget, and the output comes out as a view of it, without a join.
 */
export function readOutput(fd: number, budget: OutputBudget): OutputPipe {
  let buffer = Buffer.allocUnsafeSlow(Math.min(FIRST_BUFFER_BYTES, Math.max(budget.left(), 1)));
  let used = 0;
  const room = (): Buffer => {
    const left = budget.left();
    if (left === 0) return dropped;
    const free = buffer.length - used;
    if (free < MIN_READ_BYTES && left > free) {
      const larger = Buffer.allocUnsafeSlow(Math.min(buffer.length * GROWTH, used + Math.max(left, MIN_READ_BYTES)));
      buffer.copy(larger, 0, 0, used);
      buffer = larger;
    }
    return buffer.subarray(used, used + Math.min(buffer.length - used, Math.max(left, DROPPED_READ_BYTES)));
  };
  let pause: NodeJS.Timeout | undefined;
  // Node takes `onread` in the constructor (since 12; its types list it for connect() only).
  const options: net.SocketConstructorOpts & { onread: net.OnReadOpts } = {
    fd,
    readable: true,
    writable: false,
    onread: {
      buffer: room,
      callback: (bytes: number) => {
        // Past the budget the bytes stay where they were read and the next read overwrites them.
        const kept = budget.accept(bytes);
        used += kept;
        if (kept === bytes || pause) return true;
        pause = setTimeout(() => {
          pause = undefined;
          socket.resume();
        }, DROPPED_OUTPUT_PAUSE_MS);
        socket.pause();
        return true;
      },
    },
  };
  const socket = new net.Socket(options);
  const closed = new Promise<void>((resolve) => {
    // A read error (there should be none on a pipe) ends the output like EOF; 'close' follows.
    socket.on('error', () => {});
    socket.on('close', () => {
      clearTimeout(pause);
      resolve();
    });
  });
  // Flowing, so that EOF ends the stream and closes it ('data' never fires: onread has the bytes).
  socket.resume();
  return {
    closed,
    contents: () => buffer.subarray(0, used),
    destroy: () => socket.destroy(),
  };
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
