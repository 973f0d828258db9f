// A linear scan of a frame's raw msgpack before msgpackr decodes it. Decoding trusts headers:
// msgpackr allocates an array of the length a header announces, so a 12-byte frame announcing 33
// million elements costs hundreds of megabytes, and a well-formed 8 MB frame of eight million
// elements costs the schema check minutes. The scan reads headers only (str and bin contents are
// skipped, never looked at), keeps no more state than one counter per open container, and stops
// at the first problem, so its cost is bounded by the frame's size whatever the frame says.

/** Caps on a frame's shape. */
export interface ShapeLimits {
  /** Containers (arrays, maps) nested inside one another, the outermost one counting 1. */
  maxDepth: number;
  /** Array items plus map entries (a key and its value count once), over the whole frame. */
  maxElements: number;
  /** Entries of any one map. */
  maxMapEntries: number;
  /** What the caps are of, as refusals name it ("a request"). */
  subject: string;
}

/**
 * Caps of a request, derived from the protocol (schema.ts). Depth: a request map holding a
 * `files` array of entry maps, or an `extraFiles` array of [name, bytes] arrays, is 3 deep.
 * Elements: the largest valid request has 12 top-level entries, 10 000 files of up to 4 entries
 * each (50 000), 10 000 extraFiles pairs (30 000), 4 096 argv strings and 6 limits: 84 114. Map
 * entries: the request map has 12 keys at most, the others fewer. The caps leave room above each
 * (a test builds that largest request from the schema's own maxima), and bound what decoding and
 * validating any frame may cost to about what the largest valid one does.
 */
export const REQUEST_SHAPE_LIMITS: ShapeLimits = { maxDepth: 8, maxElements: 100_000, maxMapEntries: 16, subject: 'a request' };

/**
 * Caps of frames from a peer the protocol does not bound further (the client reading replies):
 * the depth bound keeps msgpackr's recursion off the stack's edge; replies hold few elements but
 * their count is not what makes them large.
 */
export const DEFAULT_SHAPE_LIMITS: ShapeLimits = {
  maxDepth: 32,
  maxElements: Number.MAX_SAFE_INTEGER,
  maxMapEntries: Number.MAX_SAFE_INTEGER,
  subject: 'a frame',
};

/** Why a frame was refused. `malformed`: not msgpack this protocol can hold (closes the stream). */
export interface ShapeViolation {
  malformed: boolean;
  reason: string;
  /** The top-level map's "id", when the scan read a valid one before it stopped. */
  id?: number;
}

// The one key the scan looks for: fixstr of length 2, "id".
const ID_KEY = [0xa2, 0x69, 0x64] as const;

/**
 * Checks the shape of one msgpack value filling `body` exactly. Returns undefined when the frame
 * is within `limits`, else the first violation found. Every header's declared length is checked
 * against the bytes that actually follow it, counting one byte at least for each value still
 * announced and not yet read.
 */
export function scanShape(body: Uint8Array, limits: ShapeLimits): ShapeViolation | undefined {
  const end = body.length;
  // Items still to read in each open container (a map's count is keys plus values); the frame
  // itself is an implicit container of one value.
  const open: number[] = [1];
  // Values announced by headers read so far and not read yet: each needs one byte at least.
  let announced = 1;
  let elements = 0;
  let pos = 0;
  // Looking for the top-level map's "id": at a key of it, and whether that key was "id".
  let topMap = false;
  let idNext = false;
  let id: number | undefined;
  const fail = (malformed: boolean, reason: string): ShapeViolation =>
    id === undefined ? { malformed, reason } : { malformed, reason, id };

  while (open.length > 0) {
    const top = open.length - 1;
    if (open[top] === 0) {
      open.pop();
      continue;
    }
    if (pos >= end) return fail(true, 'frame is not valid msgpack: it ends inside a value');
    const atTopKey = topMap && top === 1 && open[top]! % 2 === 0;
    const atTopValue = topMap && top === 1 && !atTopKey;
    open[top]!--;
    announced--;
    const start = pos;
    const type = body[pos++]!;
    // Bytes of str/bin payload that follow the header, and a container's entries (-1: none).
    let skip = 0;
    let entries = -1;
    let isMap = false;
    if (type <= 0x7f || type >= 0xe0 || type === 0xc0 || type === 0xc2 || type === 0xc3) {
      // fixint, negative fixint, nil, false, true: the header is the value.
    } else if (type <= 0x8f) {
      entries = type & 0x0f;
      isMap = true;
    } else if (type <= 0x9f) {
      entries = type & 0x0f;
    } else if (type <= 0xbf) {
      skip = type & 0x1f;
    } else {
      const width = type === 0xc1 ? undefined : HEADER_WIDTH[type - 0xc1];
      if (width === undefined) return fail(true, `frame is not valid msgpack: byte 0x${type.toString(16)} at offset ${start} is not a type`);
      if (pos + width > end) return fail(true, `frame is not valid msgpack: it ends inside the value at offset ${start}`);
      const length = readLength(body, pos, width);
      pos += width;
      if (type >= 0xc7 && type <= 0xc9) {
        // ext 8/16/32: the length, then the type byte.
        return fail(true, `msgpack extension type ${extType(body, pos)} is not used by this protocol`);
      }
      if (type >= 0xd4 && type <= 0xd8) {
        // fixext 1/2/4/8/16: the type byte was the "width" just read.
        return fail(true, `msgpack extension type ${extType(body, start + 1)} is not used by this protocol`);
      }
      if (type <= 0xc6 || (type >= 0xd9 && type <= 0xdb)) skip = length; // bin, str
      else if (type === 0xdc || type === 0xdd) entries = length; // array 16/32
      else if (type >= 0xde) {
        entries = length; // map 16/32
        isMap = true;
      } else if (atTopValue && idNext) id = uintValue(body, start, type); // a number, just skipped
    }
    if (atTopValue && idNext && type <= 0x7f) id = type;
    if (atTopValue) idNext = false;
    if (atTopKey) idNext = type === ID_KEY[0] && body[pos] === ID_KEY[1] && body[pos + 1] === ID_KEY[2];
    if (skip > end - pos - announced) {
      return fail(true, `frame is not valid msgpack: a value at offset ${start} announces ${skip} bytes, but ${end - pos - announced} at most can follow`);
    }
    pos += skip;
    if (entries < 0) continue;
    // Each item announced takes one byte at least, on top of what was announced before.
    const items = isMap ? entries * 2 : entries;
    if (items > end - pos - announced) {
      const what = isMap ? `a map at offset ${start} announces ${entries} entries` : `an array at offset ${start} announces ${entries} items`;
      return fail(true, `frame is not valid msgpack: ${what}, more than the ${end - pos} bytes that follow can hold`);
    }
    if (isMap && entries > limits.maxMapEntries) {
      return fail(false, `frame has a map of ${entries} entries at offset ${start}, more than the ${limits.maxMapEntries} a map of ${limits.subject} may have`);
    }
    elements += entries;
    if (elements > limits.maxElements) {
      return fail(false, `frame holds more than ${limits.maxElements} elements (array items and map entries), the most ${limits.subject} may have`);
    }
    if (open.length > limits.maxDepth) {
      return fail(false, `frame nests arrays and maps more than ${limits.maxDepth} deep, the most ${limits.subject} may`);
    }
    if (open.length === 1 && isMap) topMap = true;
    announced += items;
    open.push(items);
  }
  if (pos < end) return fail(true, `frame is not valid msgpack: ${end - pos} bytes follow its message`);
  return undefined;
}

// Bytes after the type byte of 0xc1..0xdf. For str/bin/ext/array/map they hold a big-endian
// length; for numbers, the number itself; for fixext, the extension's type.
const HEADER_WIDTH: Array<number | undefined> = [
  undefined, 0, 0, // 0xc1 never used, 0xc2 false, 0xc3 true
  1, 2, 4, // 0xc4-0xc6 bin
  1, 2, 4, // 0xc7-0xc9 ext (the type byte follows)
  4, 8, // 0xca-0xcb float
  1, 2, 4, 8, // 0xcc-0xcf uint
  1, 2, 4, 8, // 0xd0-0xd3 int
  1, 1, 1, 1, 1, // 0xd4-0xd8 fixext (the type byte, then the data)
  1, 2, 4, // 0xd9-0xdb str
  2, 4, // 0xdc-0xdd array
  2, 4, // 0xde-0xdf map
];

/** The signed type byte of an extension at `pos`, or '?' past the end. */
function extType(body: Uint8Array, pos: number): number | string {
  return pos < body.length ? (body[pos]! << 24) >> 24 : '?';
}

function readLength(body: Uint8Array, pos: number, bytes: number): number {
  let n = 0;
  for (let i = 0; i < bytes; i++) n = n * 256 + body[pos + i]!;
  return n;
}

/** An unsigned integer value of a uint 8/16/32 header at `start`, else undefined. */
function uintValue(body: Uint8Array, start: number, type: number): number | undefined {
  switch (type) {
    case 0xcc:
      return body[start + 1];
    case 0xcd:
      return readLength(body, start + 1, 2);
    case 0xce:
      return readLength(body, start + 1, 4);
    default:
      return undefined;
  }
}
