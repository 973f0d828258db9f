// The globals codec of safe_exec: the tagged JSON both directions use, so that every value
// means one thing:
//   strings and finite numbers are themselves; null, true, false;
//   ["l", ...items]                 a list (array)
//   ["d", k1, v1, k2, v2, ...]      a dict (plain object)
//   ["i", "digits"]                 an int outside +-(2^53 - 1) (BigInt)
//   ["f", "nan"|"inf"|"-inf"|text]  a float JSON cannot carry as itself, or a whole-number
//                                   float (2.0) that JSON text would read back as an int
//   ["b", "<base64>"]               bytes (Buffer/Uint8Array inputs)
//
// The result is written by the sandbox, so it is hostile input to the caller's process: before
// anything costlier than one pass over its bytes, it is held to ResultBounds (size, nesting,
// number of values, digits of an int), and a result over a bound is a ResultBoundError naming it
// (safeExec's SafeExecError then names the bound).
import { PythonFloat, intDigits, intFromText, setOnFresh } from './python_values.js';

/**
 * What a result may hold. The sandbox writes it, so each bound keeps what decoding it costs the
 * caller's event loop to one linear pass with small constants: V8's BigInt() of a 30-million-digit
 * string alone takes seconds, deep nesting would overflow the decoder's stack, and each value is
 * an allocation.
 */
export interface ResultBounds {
  /** Bytes of the tagged JSON. */
  maxBytes: number;
  /** Nesting of lists and dicts; the globals dict is depth 1 (Python's json stops near 1000). */
  maxDepth: number;
  /** JSON values of the tagged encoding: tags, keys and items together. */
  maxValues: number;
  /** Decimal digits of one int, as Python's default sys.get_int_max_str_digits() (3.11+). */
  maxIntDigits: number;
}

export const DEFAULT_RESULT_BOUNDS: Readonly<ResultBounds> = Object.freeze({
  maxBytes: 16 * 1024 * 1024,
  maxDepth: 1000,
  maxValues: 200_000,
  maxIntDigits: 4300,
});

// --- Encoding (JS -> Python) --------------------------------------------------------------------

/** Marks a value that cannot be sent; the top-level entry holding it is dropped. */
class Unrepresentable extends Error {}

function isPlainObject(value: object): boolean {
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function encodeNumber(value: number): unknown {
  if (Number.isNaN(value)) return ['f', 'nan'];
  if (value === Infinity) return ['f', 'inf'];
  if (value === -Infinity) return ['f', '-inf'];
  // A safe integer arrives as a Python int; any other number as a float. An integer-valued
  // number beyond the safe range would read back as an int from its JSON text, so it is tagged.
  if (Number.isInteger(value) && !Number.isSafeInteger(value)) return ['f', String(value)];
  return value;
}

function encodeValue(value: unknown, seen: Set<object>): unknown {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return value;
    case 'number':
      return encodeNumber(value);
    case 'bigint':
      return ['i', value.toString()];
    case 'object':
      if (value instanceof PythonFloat) return ['f', value.toString()];
      break;
    default:
      // undefined, functions, symbols.
      throw new Unrepresentable();
  }
  if (value === null) return null;
  if (value instanceof Uint8Array) {
    return ['b', Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64')];
  }
  // A cycle cannot be sent (json.dumps refuses one too).
  if (seen.has(value)) throw new Unrepresentable();
  seen.add(value);
  try {
    if (Array.isArray(value)) {
      const out: unknown[] = ['l'];
      // Indexes, not for-of, so that holes are seen (as undefined: unrepresentable).
      for (let i = 0; i < value.length; i++) out.push(encodeValue(value[i], seen));
      return out;
    }
    if (isPlainObject(value)) {
      const out: unknown[] = ['d'];
      for (const key of Object.keys(value)) {
        out.push(key, encodeValue((value as Record<string, unknown>)[key], seen));
      }
      return out;
    }
    // Dates, Maps, class instances, other typed arrays...
    throw new Unrepresentable();
  } finally {
    seen.delete(value);
  }
}

/**
 * The tagged form of `globals` sent to the harness: a tagged dict of the entries that can be
 * represented. Entries holding anything else (functions, symbols, undefined, Dates, class
 * instances other than Buffer/Uint8Array, cycles), at any depth, are left out, as the
 * original's json_safe leaves out what JSON cannot carry.
 */
export function encodeGlobals(obj: Record<string, unknown>): unknown[] {
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) {
    throw new TypeError('safeExec: globals must be an object');
  }
  const out: unknown[] = ['d'];
  for (const key of Object.keys(obj)) {
    let encoded: unknown;
    try {
      encoded = encodeValue(obj[key], new Set());
    } catch (err) {
      if (err instanceof Unrepresentable) continue;
      throw err;
    }
    out.push(key, encoded);
  }
  return out;
}

// --- Decoding (Python -> JS) --------------------------------------------------------------------

function keyString(key: unknown): string {
  if (typeof key === 'string') return key;
  if (key instanceof PythonFloat) return key.toString();
  if (typeof key === 'number' || typeof key === 'bigint' || typeof key === 'boolean' || key === null) return String(key);
  throw new Error(`a dict key that is not a string, number or null: ${describe(key)}`);
}

function decodeFloat(text: string): number {
  if (text === 'nan') return NaN;
  if (text === 'inf') return Infinity;
  if (text === '-inf') return -Infinity;
  const value = Number(text);
  if (text.trim() === '' || Number.isNaN(value)) throw new Error(`a bad float: ${preview(text)}`);
  return value;
}

/**
 * How a whole-number float of the result (Python's 2.0) comes back: as a number (2, the default:
 * what JavaScript code expects) or as a PythonFloat (what a caller that writes Python's JSON, as
 * `codejail serve` does, needs to write 2.0 again).
 */
export type WholeFloats = 'number' | 'python';

/** A result over one of its bounds (decodeResult throws it; safeExec names the bound). */
export class ResultBoundError extends Error {
  constructor(
    message: string,
    readonly bound: keyof ResultBounds,
  ) {
    super(message);
    this.name = 'ResultBoundError';
  }
}

/** At most 40 characters of hostile text, quoted: an error message must not copy a whole result. */
function preview(text: string): string {
  return JSON.stringify(text.length > 40 ? `${text.slice(0, 40)}...` : text);
}

function describe(value: unknown): string {
  if (Array.isArray(value)) return `a list of ${value.length} items` + (typeof value[0] === 'string' ? ` tagged ${preview(value[0])}` : '');
  return value === null ? 'null' : typeof value;
}

/** Refuses the text of a tagged int that is too long or not an int. */
function checkIntText(text: string, bounds: ResultBounds): void {
  // Before the regex and BigInt(): BigInt's cost is not linear in the digits.
  const digits = intDigits(text);
  if (digits > bounds.maxIntDigits) {
    throw new ResultBoundError(`an int of ${digits} digits, more than the ${bounds.maxIntDigits} allowed`, 'maxIntDigits');
  }
  if (!/^-?\d+$/.test(text)) throw new Error(`a bad int: ${preview(text)}`);
}

function decodeInt(text: string, bounds: ResultBounds): number | bigint {
  checkIntText(text, bounds);
  return intFromText(text);
}

/**
 * A dict key. A tagged int key becomes its digits without the trip through BigInt: turning a
 * BigInt back into a string costs about 100 us for 4300 digits, and a result may hold thousands.
 */
function decodeKey(key: unknown, bounds: ResultBounds): string {
  if (Array.isArray(key) && key.length === 2 && key[0] === 'i' && typeof key[1] === 'string') {
    const text: string = key[1];
    checkIntText(text, bounds);
    // As String(BigInt(text)) would write it: no leading zeros, no "-0" (Python writes none).
    const negative = text.startsWith('-');
    const digits = (negative ? text.slice(1) : text).replace(/^0+(?=\d)/, '');
    return negative && digits !== '0' ? `-${digits}` : digits;
  }
  // A float key is written as Python's json.dumps writes it: 2.0 as "2.0".
  return keyString(decodeValue(key, bounds, 'python'));
}

function decodeValue(value: unknown, bounds: ResultBounds, wholeFloats: WholeFloats): unknown {
  if (value === null || typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') {
    return value;
  }
  if (Array.isArray(value) && value.length > 0) {
    const [tag] = value;
    if (tag === 'l') {
      const out: unknown[] = new Array(value.length - 1);
      for (let i = 1; i < value.length; i++) out[i - 1] = decodeValue(value[i], bounds, wholeFloats);
      return out;
    }
    if (tag === 'd' && value.length % 2 === 1) {
      const out: Record<string, unknown> = {};
      for (let i = 1; i < value.length; i += 2) {
        const key = decodeKey(value[i], bounds);
        const item = decodeValue(value[i + 1], bounds, wholeFloats);
        setOnFresh(out, key, item);
      }
      return out;
    }
    if (value.length === 2 && typeof value[1] === 'string') {
      if (tag === 'i') return decodeInt(value[1], bounds);
      if (tag === 'f') {
        const float = decodeFloat(value[1]);
        return wholeFloats === 'python' && Number.isInteger(float) ? new PythonFloat(float) : float;
      }
      if (tag === 'b') return Buffer.from(value[1], 'base64');
    }
  }
  throw new Error(`not a tagged value: ${describe(value)}`);
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const OPEN_LIST = 0x5b;
const OPEN_OBJECT = 0x7b;
const CLOSE_LIST = 0x5d;
const CLOSE_OBJECT = 0x7d;

/**
 * One pass over the JSON text, before JSON.parse: refuses nesting deeper than maxDepth and more
 * than maxValues values (the whole text is one; outside strings, each opening [ or { starts its
 * first value and each comma the next: exact but for an empty [] or {}, counted as one), so
 * that the parse that follows allocates at most maxValues values and the decoder recurses at
 * most maxDepth deep. Malformed text is left to JSON.parse to refuse.
 */
function checkShape(text: string, bounds: ResultBounds): void {
  let depth = 0;
  let values = 1;
  // The next quote and backslash at or after a string's position (-1: none left), each found by
  // indexOf, which runs at memchr's speed where a loop over charCodeAt took 10 ms a megabyte:
  // a string's contents are skipped, not read. Each is searched again only once passed, so the
  // text is searched once whatever it holds.
  let quote = -2;
  let backslash = -2;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      // A string: it ends at the first quote not escaped (a backslash escapes the next character).
      let from = i + 1;
      for (;;) {
        if (quote !== -1 && quote < from) quote = text.indexOf('"', from);
        if (backslash !== -1 && backslash < from) backslash = text.indexOf('\\', from);
        if (quote === -1) {
          i = text.length;
          break;
        }
        if (backslash === -1 || backslash > quote) {
          i = quote;
          break;
        }
        from = backslash + 2;
      }
    } else if (c === OPEN_LIST || c === OPEN_OBJECT) {
      if (++depth > bounds.maxDepth) {
        throw new ResultBoundError(`lists or dicts nested more than ${bounds.maxDepth} deep`, 'maxDepth');
      }
      if (++values > bounds.maxValues) throw tooManyValues(bounds);
    } else if (c === CLOSE_LIST || c === CLOSE_OBJECT) {
      depth--;
    } else if (c === COMMA) {
      if (++values > bounds.maxValues) throw tooManyValues(bounds);
    }
  }
}

function tooManyValues(bounds: ResultBounds): ResultBoundError {
  return new ResultBoundError(`more than ${bounds.maxValues} values`, 'maxValues');
}

/**
 * The globals the harness reported: its tagged JSON (bytes or text) as a plain object. Throws a
 * ResultBoundError for a result over `bounds`, before decoding it.
 */
export function decodeResult(
  bytes: Uint8Array | string,
  bounds: ResultBounds = DEFAULT_RESULT_BOUNDS,
  wholeFloats: WholeFloats = 'number',
): Record<string, unknown> {
  const size = typeof bytes === 'string' ? Buffer.byteLength(bytes, 'utf8') : bytes.byteLength;
  if (size > bounds.maxBytes) {
    throw new ResultBoundError(`${size} bytes, more than the ${bounds.maxBytes} allowed`, 'maxBytes');
  }
  const text = typeof bytes === 'string' ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8');
  checkShape(text, bounds);
  const decoded = decodeValue(JSON.parse(text), bounds, wholeFloats);
  if (decoded === null || typeof decoded !== 'object' || Array.isArray(decoded) || decoded instanceof Uint8Array) {
    throw new Error('the result is not a dict');
  }
  return decoded as Record<string, unknown>;
}

/** The default bounds with the caller's changes, each a positive integer. */
export function resultBounds(given: Partial<ResultBounds> | undefined): ResultBounds {
  const bounds = { ...DEFAULT_RESULT_BOUNDS, ...given };
  for (const [name, value] of Object.entries(bounds)) {
    if (!Number.isSafeInteger(value) || value < 1) throw new TypeError(`safeExec: resultBounds.${name} must be a positive integer`);
  }
  return bounds;
}
