// Length-prefixed msgpack frames: a 4-byte big-endian body length, then the body. A peer that
// announces more than maxFrameBytes is cut off before anything is buffered; a complete body's
// shape is scanned (shape.ts) before msgpackr decodes it.
import { addExtension, Packr, Unpackr } from 'msgpackr';
import { DEFAULT_SHAPE_LIMITS, scanShape, type ShapeLimits } from './shape.js';

export const DEFAULT_MAX_FRAME_BYTES = 64 * 1024 * 1024;
const HEADER_BYTES = 4;

// Records, structured clones and int64 BigInts are off: a peer we do not control must not be
// able to define record shapes for later frames or hand us exotic types. The schema check
// that follows decoding rejects anything that is not plain maps, arrays, strings, numbers and bin.
const packr = new Packr({ useRecords: false, structuredClone: false, variableMapSize: true });
const unpackr = new Unpackr({ useRecords: false, structuredClone: false, mapsAsObjects: true, int64AsType: 'number' });

// msgpackr also decodes extension types of its own whatever the options: BigInt (0x42), Blob
// (0x62), Error (0x65), Set (0x73), typed arrays (0x74), RegExp (0x78) and timestamps (-1). The
// protocol uses none of them, and some cost a peer nothing to send but us much to decode (a
// 64 MiB BigInt is over a second of synchronous work), so every one of them is refused. The
// table is msgpackr's own, shared by every decoder in this process: nothing else here uses it.
const UNUSED_EXTENSION_TYPES = [0x42, 0x62, 0x65, 0x73, 0x74, 0x78, 0xff];
for (const type of UNUSED_EXTENSION_TYPES) {
  addExtension({
    type,
    unpack: () => {
      throw new Error(`msgpack extension type ${type === 0xff ? -1 : type} is not used by this protocol`);
    },
  } as Parameters<typeof addExtension>[0]);
}

export class FrameError extends Error {
  /**
   * The frames that came whole before the bad one in the same push: the peer sent them first, so
   * a reader answers them before it hangs up (a pipelining client must not lose valid requests
   * to a later bad frame).
   */
  complete: unknown[] = [];

  constructor(message: string) {
    super(message);
    this.name = 'FrameError';
  }
}

/**
 * A well-formed frame whose shape exceeds the decoder's request limits: skipped undecoded. The
 * stream is still in step (the length prefix says where the next frame starts), so the reader
 * answers it (with `id` when the scan found one) and goes on.
 */
export class RefusedFrame {
  constructor(
    readonly reason: string,
    readonly id: number | undefined,
  ) {}
}

/**
 * msgpackr packs into one buffer it keeps for the next message and grows it to fit (a string's
 * room is reserved at 3 bytes a character): one 4 MiB string left 20 MB held for good, in the
 * daemon and in `codejail serve` alike. Past this size it is given a small one again.
 */
const PACK_BUFFER_KEPT_BYTES = 1024 * 1024;

export function encodeFrame(message: unknown): Buffer {
  const body = packr.pack(message);
  const header = Buffer.allocUnsafe(HEADER_BYTES);
  header.writeUInt32BE(body.length, 0);
  const frame = Buffer.concat([header, body]);
  if (body.buffer.byteLength > PACK_BUFFER_KEPT_BYTES) packr.useBuffer(Buffer.allocUnsafeSlow(8192));
  return frame;
}

/**
 * Accumulates stream chunks and returns each complete, decoded frame. With `limits` (a server
 * reading requests), a frame over them comes out as a RefusedFrame; without, frames are held to
 * DEFAULT_SHAPE_LIMITS and one over them is a FrameError like any malformed frame.
 */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  private buffered = 0;

  constructor(
    private readonly maxFrameBytes = DEFAULT_MAX_FRAME_BYTES,
    private readonly limits?: ShapeLimits,
  ) {}

  /** Bytes received and not yet returned as frames: a frame in progress. */
  get pendingBytes(): number {
    return this.buffered;
  }

  /** Drops what was received of a frame in progress (its connection is being closed). */
  reset(): void {
    this.chunks = [];
    this.buffered = 0;
  }

  /**
   * Feeds a chunk; returns the messages it completed. Throws FrameError on a bad frame, carrying
   * the messages completed before it (`complete`).
   */
  push(chunk: Buffer): unknown[] {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    const out: unknown[] = [];
    try {
      this.decodeInto(out);
    } catch (err) {
      if (err instanceof FrameError) err.complete = out;
      throw err;
    }
    return out;
  }

  private decodeInto(out: unknown[]): void {
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
      const violation = scanShape(frame, this.limits ?? DEFAULT_SHAPE_LIMITS);
      if (violation) {
        if (violation.malformed || !this.limits) throw new FrameError(violation.reason);
        out.push(new RefusedFrame(violation.reason, violation.id));
        continue;
      }
      let message: unknown;
      try {
        message = unpackr.unpack(frame);
      } catch (err) {
        throw new FrameError(`frame is not valid msgpack: ${(err as Error).message}`);
      }
      out.push(message);
    }
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
