// Length-prefixed msgpack frames: a 4-byte big-endian body length, then the body. A peer that
// announces more than maxFrameBytes is cut off before anything is buffered.
import { Packr, Unpackr } from 'msgpackr';

export const DEFAULT_MAX_FRAME_BYTES = 64 * 1024 * 1024;
const HEADER_BYTES = 4;

// Records, structured clones and int64 BigInts are off: a peer we do not control must not be
// able to define record shapes for later frames or hand us exotic types. The schema check
// that follows decoding rejects anything that is not plain maps, arrays, strings, numbers and bin.
const packr = new Packr({ useRecords: false, structuredClone: false, variableMapSize: true });
const unpackr = new Unpackr({ useRecords: false, structuredClone: false, mapsAsObjects: true, int64AsType: 'number' });

export class FrameError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FrameError';
  }
}

export function encodeFrame(message: unknown): Buffer {
  const body = packr.pack(message);
  const header = Buffer.allocUnsafe(HEADER_BYTES);
  header.writeUInt32BE(body.length, 0);
  return Buffer.concat([header, body]);
}

/** Accumulates stream chunks and returns each complete, decoded frame. */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  private buffered = 0;

  constructor(private readonly maxFrameBytes = DEFAULT_MAX_FRAME_BYTES) {}

  /** Feeds a chunk; returns the messages it completed. Throws FrameError on a bad frame. */
  push(chunk: Buffer): unknown[] {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    const out: unknown[] = [];
    for (;;) {
      if (this.buffered < HEADER_BYTES) break;
      const head = this.peek(HEADER_BYTES);
      const length = head.readUInt32BE(0);
      if (length > this.maxFrameBytes) {
        throw new FrameError(`frame of ${length} bytes exceeds the maximum of ${this.maxFrameBytes}`);
      }
      if (length === 0) throw new FrameError('empty frame');
      if (this.buffered < HEADER_BYTES + length) break;
      const frame = this.take(HEADER_BYTES + length).subarray(HEADER_BYTES);
      let message: unknown;
      try {
        message = unpackr.unpack(frame);
      } catch (err) {
        throw new FrameError(`frame is not valid msgpack: ${(err as Error).message}`);
      }
      out.push(message);
    }
    return out;
  }

  private peek(n: number): Buffer {
    if (this.chunks[0]!.length >= n) return this.chunks[0]!;
    const joined = Buffer.concat(this.chunks);
    this.chunks = [joined];
    return joined;
  }

  private take(n: number): Buffer {
    const joined = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    this.chunks = joined.length > n ? [joined.subarray(n)] : [];
    this.buffered -= n;
    return joined.subarray(0, n);
  }
}
