// Length-prefixed msgpack frames: a 4-byte big-endian body length, then the body. A peer that
// announces more than maxFrameBytes is cut off before anything is buffered; a complete body's
// shape is scanned (shape.ts) before msgpackr decodes it.
import { addExtension, Packr, RESERVE_START_SPACE, Unpackr } from 'msgpackr';
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

/** Room a frame may hold past its own bytes and still be sent from the buffer it was packed in. */
const PACK_SLACK_BYTES = 64 * 1024;

/**
 * The bytes of the binary values of a message, down to its third level (a request's code,
 * stdin, globals, files' and extraFiles' data; a reply's stdout, stderr and result): a frame
 * needs at least as much room.
 */
function binaryBytes(value: unknown, depth = 0): number {
  if (value instanceof Uint8Array) return value.byteLength;
  if (depth === 3 || value === null || typeof value !== 'object') return 0;
  let total = 0;
  if (Array.isArray(value)) for (const item of value) total += binaryBytes(item, depth + 1);
  else for (const key in value) total += binaryBytes((value as Record<string, unknown>)[key], depth + 1);
  return total;
}

/**
 * The frame: the header in the 4 bytes msgpackr reserves before the body, so that the body is
 * not copied behind it. A large message is packed into a buffer of its own sized to its binary
 * values (msgpackr would grow one to 2 to 4 times its size, copying what it holds each time) and
 * sent from it; the packer then takes a small buffer again. A frame whose buffer is still much
 * larger than it (large strings), and a small one, are copied to their size, so that what a
 * connection holds is what its frames measure.
 */
export function encodeFrame(message: unknown): Buffer {
  const room = HEADER_BYTES + binaryBytes(message) + PACK_SLACK_BYTES;
  if (room > PACK_BUFFER_KEPT_BYTES) packr.useBuffer(Buffer.allocUnsafeSlow(room));
  let frame: Buffer;
  try {
    frame = packr.pack(message, RESERVE_START_SPACE | HEADER_BYTES);
  } catch (err) {
    packr.useBuffer(Buffer.allocUnsafeSlow(8192));
    throw err;
  }
  frame.writeUInt32BE(frame.length - HEADER_BYTES, 0);
  // In the buffer the packer keeps (up to 1 MiB), shared with the frames packed after it: a frame
  // waiting for a reader that does not read would hold all of it. Copied, as frames always were.
  if (frame.buffer.byteLength <= PACK_BUFFER_KEPT_BYTES) return Buffer.from(frame);
  if (frame.buffer.byteLength > frame.length + PACK_SLACK_BYTES) frame = Buffer.from(frame);
  packr.useBuffer(Buffer.allocUnsafeSlow(8192));
  return frame;
}

/**
 * A frame at least this large, from a peer trusted with the length it announces, is assembled in
 * one buffer of its size as its chunks come, rather than joined once it is whole: the copy then
 * happens while the rest is still on its way, not between the last byte and the decode (0.36 to
 * 3.4 ms for 8 MB here, scripts/frames-bench.mjs).
 */
const ASSEMBLE_FROM_BYTES = 256 * 1024;

/**
 * Accumulates stream chunks and returns each complete, decoded frame. With `limits` (a server
 * reading requests), a frame over them comes out as a RefusedFrame; without, frames are held to
 * DEFAULT_SHAPE_LIMITS and one over them is a FrameError like any malformed frame.
 *
 * `trustAnnouncedLength` (a client reading its own daemon's replies) lets a large frame's buffer
 * be allocated when its header comes. A server must not: a peer could announce the maximum on
 * each of its connections and send nothing more, and each announcement would cost us that much.
 */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  /** Bytes received and not yet returned as frames, in `chunks` and in `assembling`. */
  private buffered = 0;
  /** A large frame (header included) being filled, and how much of it has come. */
  private assembling: Buffer | undefined;
  private assembled = 0;

  constructor(
    private readonly maxFrameBytes = DEFAULT_MAX_FRAME_BYTES,
    private readonly limits?: ShapeLimits,
    private readonly trustAnnouncedLength = false,
  ) {}

  /** Bytes received and not yet returned as frames: a frame in progress. */
  get pendingBytes(): number {
    return this.buffered;
  }

  /** Drops what was received of a frame in progress (its connection is being closed). */
  reset(): void {
    this.chunks = [];
    this.buffered = 0;
    this.assembling = undefined;
    this.assembled = 0;
  }

  /**
   * Feeds a chunk; returns the messages it completed. Throws FrameError on a bad frame, carrying
   * the messages completed before it (`complete`).
   */
  push(chunk: Buffer): unknown[] {
    const out: unknown[] = [];
    try {
      if (this.assembling) this.fill(chunk, out);
      else this.keep(chunk);
      // While a frame is still being assembled, nothing else has come.
      if (!this.assembling) this.decodeInto(out);
    } catch (err) {
      if (err instanceof FrameError) err.complete = out;
      throw err;
    }
    return out;
  }

  private keep(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
  }

  /**
   * Copies what `chunk` holds of the frame being assembled and keeps the rest; decodes the frame
   * once whole (the rest is kept first, so a bad frame leaves it counted, as a joined one would).
   */
  private fill(chunk: Buffer, out: unknown[]): void {
    const frame = this.assembling!;
    const taken = chunk.copy(frame, this.assembled);
    this.assembled += taken;
    this.buffered += taken;
    this.keep(chunk.subarray(taken));
    if (this.assembled < frame.length) return;
    this.assembling = undefined;
    this.assembled = 0;
    this.buffered -= frame.length;
    this.decodeFrame(frame.subarray(HEADER_BYTES), out);
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
      if (this.buffered < HEADER_BYTES + length) {
        if (this.trustAnnouncedLength && length >= ASSEMBLE_FROM_BYTES) this.startAssembling(HEADER_BYTES + length);
        break;
      }
      this.decodeFrame(this.take(HEADER_BYTES + length).subarray(HEADER_BYTES), out);
    }
  }

  private decodeFrame(frame: Buffer, out: unknown[]): void {
    const violation = scanShape(frame, this.limits ?? DEFAULT_SHAPE_LIMITS);
    if (violation) {
      if (violation.malformed || !this.limits) throw new FrameError(violation.reason);
      out.push(new RefusedFrame(violation.reason, violation.id));
      return;
    }
    let message: unknown;
    try {
      message = unpackr.unpack(frame);
    } catch (err) {
      throw new FrameError(`frame is not valid msgpack: ${(err as Error).message}`);
    }
    out.push(message);
  }

  /** Moves what has come of an incomplete frame (all that is buffered) into a buffer of its size. */
  private startAssembling(size: number): void {
    const frame = Buffer.allocUnsafeSlow(size);
    let at = 0;
    for (const chunk of this.chunks) at += chunk.copy(frame, at);
    this.chunks = [];
    this.assembling = frame;
    this.assembled = at;
  }

  private peek(n: number): Buffer {
    if (this.chunks[0]!.length >= n) return this.chunks[0]!;
    const joined = Buffer.concat(this.chunks);
    this.chunks = [joined];
    return joined;
  }

  /**
   * The next `n` bytes. What is left after them is copied into a buffer of its own size once it
   * is under half of the memory its view would keep: a view keeps the whole joined buffer (a
   * frame of up to the maximum, or a 64 KiB read) alive while `pendingBytes` counts only what is
   * left. Each copy is at most half the buffer it replaces, so copying stays linear.
   */
  private take(n: number): Buffer {
    const joined = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    const left = joined.length - n;
    if (left === 0) this.chunks = [];
    else if (left * 2 >= joined.buffer.byteLength) this.chunks = [joined.subarray(n)];
    else {
      // Not Buffer.from: under 4 KiB it is a view of Node's shared 8 KiB pool.
      const own = Buffer.allocUnsafeSlow(left);
      joined.copy(own, 0, n);
      this.chunks = [own];
    }
    this.buffered -= n;
    return joined.subarray(0, n);
  }
}
