// Python's repr() of a bytes object, as the original CodeJail's SafeExecException message shows a
// run's output.

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const SINGLE_QUOTE = 0x27;

const HEX_DIGITS = Buffer.from('0123456789abcdef', 'latin1');

/** Bytes repr() writes for byte `c` with `quote` as the quote: 1, 2 (\\ \' \t \n \r) or 4 (\xhh). */
function escapedLength(c: number, quote: number): number {
  if (c === quote || c === BACKSLASH || c === 0x09 || c === 0x0a || c === 0x0d) return 2;
  return c < 0x20 || c >= 0x7f ? 4 : 1;
}

/**
 * `bytes` written as Python's repr() writes a bytes object (Objects/bytesobject.c), as the
 * original's message shows a run's output: b'...', or b"..." when the bytes hold a ' and no ";
 * that quote and the backslash escaped; tab, newline and carriage return as \t \n \r; any other
 * byte below 0x20 or from 0x7f as \xhh (lower-case hex); the rest as themselves. Written byte by
 * byte into one buffer: the output of a run may be megabytes, and this runs in the caller.
 */
export function pythonBytesRepr(bytes: Uint8Array): string {
  const quote = bytes.includes(SINGLE_QUOTE) && !bytes.includes(QUOTE) ? QUOTE : SINGLE_QUOTE;
  let length = 3;
  for (let i = 0; i < bytes.length; i++) length += escapedLength(bytes[i]!, quote);
  const out = Buffer.allocUnsafe(length);
  let o = 0;
  out[o++] = 0x62; // b
  out[o++] = quote;
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes[i]!;
    switch (escapedLength(c, quote)) {
      case 1:
        out[o++] = c;
        break;
      case 2:
        out[o++] = BACKSLASH;
        out[o++] = c === 0x09 ? 0x74 : c === 0x0a ? 0x6e : c === 0x0d ? 0x72 : c; // t n r, or the byte
        break;
      default:
        out[o++] = BACKSLASH;
        out[o++] = 0x78; // x
        out[o++] = HEX_DIGITS[c >> 4]!;
        out[o++] = HEX_DIGITS[c & 15]!;
    }
  }
  out[o++] = quote;
  return out.toString('latin1');
}
