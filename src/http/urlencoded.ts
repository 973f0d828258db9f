// An application/x-www-form-urlencoded body read as Django's QueryDict reads it (codejail-service's
// framework), in one pass over its bytes. busboy built each field a character at a time for its
// %-escapes: 8 MiB of `%5Cn` (a payload of JSON "\n" escapes) cost 1.6 s of event loop and 126 MB
// of heap per request. Here a field's bytes are decoded into the body's own buffer (an escape
// only shrinks) and become a string once; a body that is not UTF-8 takes one copy, at most twice
// its size.
import { isUtf8 } from 'node:buffer';

export interface UrlencodedLimits {
  /** Decoded bytes of one field's value. */
  maxFieldBytes: number;
  /** Decoded bytes of one field's name. */
  maxFieldNameBytes: number;
}

/** A field over its limit: `status` 413 (a value too large) or 400 (a name too long). */
export class UrlencodedFieldError extends Error {
  constructor(
    readonly status: 400 | 413,
    message: string,
  ) {
    super(message);
    this.name = 'UrlencodedFieldError';
  }
}

const AMPERSAND = 0x26;
const EQUALS = 0x3d;
const PLUS = 0x2b;
const PERCENT = 0x25;
const SPACE = 0x20;

/** Each byte's value as a hex digit, or -1. */
const HEX = new Int8Array(256).fill(-1);
for (let digit = 0; digit < 16; digit++) {
  HEX['0123456789abcdef'.charCodeAt(digit)] = digit;
  HEX['0123456789ABCDEF'.charCodeAt(digit)] = digit;
}

/**
 * `body` as Django reads it: its bytes as UTF-8 when they are, else each as the ISO-8859-1
 * character it is, which as UTF-8 is two bytes for 0x80 and above (so that the %-escapes, still
 * UTF-8, decode as Django's unquote decodes them). The buffer returned may be `body` itself.
 */
function asDjangoReadsIt(body: Buffer): Buffer {
  if (isUtf8(body)) return body;
  let high = 0;
  for (const byte of body) if (byte >= 0x80) high++;
  const out = Buffer.allocUnsafe(body.length + high);
  let at = 0;
  for (const byte of body) {
    if (byte < 0x80) {
      out[at++] = byte;
    } else {
      out[at++] = 0xc0 | (byte >> 6);
      out[at++] = 0x80 | (byte & 0x3f);
    }
  }
  return out;
}

/** Bytes a body that is not UTF-8 adds when read (its copy): what the caller must have room for. */
export function urlencodedExtraBytes(body: Buffer): number {
  if (isUtf8(body)) return 0;
  let high = 0;
  for (const byte of body) if (byte >= 0x80) high++;
  return body.length + high;
}

/**
 * The fields of `body`, in order, as Django's QueryDict(body) gives them (urllib's parse_qsl with
 * blank values kept): pairs split on '&' (empty ones skipped), the name from the value at the
 * first '=' (none: an empty value), '+' a space, each run of %-escapes the UTF-8 it encodes (a bad
 * sequence is U+FFFD), and a '%' not followed by two hex digits kept as it is. Throws
 * UrlencodedFieldError for the first field over `limits`. `body` is overwritten.
 */
export function readUrlencoded(body: Buffer, limits: UrlencodedLimits): Array<[string, string]> {
  const bytes = asDjangoReadsIt(body);
  const fields: Array<[string, string]> = [];
  const length = bytes.length;
  let read = 0;
  while (read < length) {
    // One pair: its name and value are decoded in place, from where the pair starts.
    let write = read;
    const nameStart = write;
    let nameEnd = -1;
    while (read < length) {
      const byte = bytes[read]!;
      if (byte === AMPERSAND) break;
      if (byte === EQUALS && nameEnd < 0) {
        nameEnd = write;
        read++;
        continue;
      }
      if (byte === PLUS) {
        bytes[write++] = SPACE;
        read++;
      } else if (byte === PERCENT && read + 2 < length && (HEX[bytes[read + 1]!]! | HEX[bytes[read + 2]!]!) >= 0) {
        bytes[write++] = (HEX[bytes[read + 1]!]! << 4) | HEX[bytes[read + 2]!]!;
        read += 3;
      } else {
        bytes[write++] = byte;
        read++;
      }
    }
    const pairEnd = write;
    // Past the '&' (or the end).
    read++;
    if (pairEnd === nameStart && nameEnd < 0) continue;
    if (nameEnd < 0) nameEnd = pairEnd;
    if (nameEnd - nameStart > limits.maxFieldNameBytes) {
      throw new UrlencodedFieldError(400, `A field name is longer than ${limits.maxFieldNameBytes} bytes`);
    }
    const name = bytes.toString('utf8', nameStart, nameEnd);
    if (pairEnd - nameEnd > limits.maxFieldBytes) {
      throw new UrlencodedFieldError(413, `Field '${name}' is larger than ${limits.maxFieldBytes} bytes`);
    }
    fields.push([name, bytes.toString('utf8', nameEnd, pairEnd)]);
  }
  return fields;
}
