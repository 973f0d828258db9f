// JSON as Python's json module reads and writes it, which is what edx-platform sends and expects:
// the literals NaN, Infinity and -Infinity are numbers both ways, an int keeps all its digits
// (a BigInt past 2^53), a repeated key keeps its last value, and a parse error says what
// json.loads would say ("Expecting value: line 1 column 1 (char 0)"), since the API's 400
// message carries it. JSON.parse refuses the literals and rounds big ints, so the reader is our
// own: one pass, iterative over the text, recursive only as deep as the nesting it has bounded.
import { PythonFloat, intDigits, intFromText, setOnFresh } from '../client/python_values.js';

/** A payload that json.loads would refuse; the message is json.loads's. */
export class PythonJsonError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PythonJsonError';
  }
}

export interface ReadBounds {
  /** Nesting of arrays and objects (Python's own recursion limit is near 1000). */
  maxDepth: number;
  /** Decimal digits of one int (Python's sys.get_int_max_str_digits() default, 3.11+). */
  maxIntDigits: number;
}

export const DEFAULT_READ_BOUNDS: Readonly<ReadBounds> = Object.freeze({ maxDepth: 500, maxIntDigits: 4300 });

const NUMBER = /-?(?:0|[1-9]\d*)(\.\d+)?([eE][-+]?\d+)?/y;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const ESCAPE_OR_CONTROL = /[\\\x00-\x1f]/;
const HEX4 = /^[0-9a-fA-F]{4}$/;
const SIMPLE_ESCAPES = '"\\/bfnrt';

class Reader {
  private i = 0;

  constructor(
    private readonly text: string,
    private readonly bounds: ReadBounds,
  ) {}

  read(): unknown {
    this.skipSpace();
    const value = this.value(0);
    this.skipSpace();
    if (this.i !== this.text.length) throw this.error('Extra data', this.i);
    return value;
  }

  /** json's errmsg: the message, then where, as line, column (1-based) and char (0-based). */
  private error(message: string, at: number): PythonJsonError {
    const before = this.text.slice(0, at);
    const line = before.split('\n').length;
    const column = at - before.lastIndexOf('\n');
    return new PythonJsonError(`${message}: line ${line} column ${column} (char ${at})`);
  }

  private skipSpace(): void {
    const text = this.text;
    let i = this.i;
    for (;;) {
      const c = text.charCodeAt(i);
      if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) break;
      i++;
    }
    this.i = i;
  }

  private startsWith(word: string): boolean {
    return this.text.startsWith(word, this.i);
  }

  private value(depth: number): unknown {
    const c = this.text.charCodeAt(this.i);
    if (c === QUOTE) return this.string();
    if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      if (depth >= this.bounds.maxDepth) {
        throw new PythonJsonError(`arrays and objects nested more than ${this.bounds.maxDepth} deep at char ${this.i}`);
      }
      return c === 0x7b ? this.object(depth + 1) : this.array(depth + 1);
    }
    // A literal only where its first letter is (a number is read without trying six words).
    if (c < 0x30 || c > 0x39) {
      for (const [word, value] of LITERALS) {
        if (this.startsWith(word)) {
          this.i += word.length;
          return value;
        }
      }
    }
    NUMBER.lastIndex = this.i;
    const match = NUMBER.exec(this.text);
    if (match) {
      this.i += match[0].length;
      return this.number(match[0], match[1] !== undefined || match[2] !== undefined);
    }
    throw this.error('Expecting value', this.i);
  }

  private number(text: string, isFloat: boolean): number | bigint | PythonFloat {
    if (isFloat) {
      // 2.0 is a float to Python: kept as one, so that the code sees a float and the answer
      // writes 2.0 again.
      const value = Number(text);
      return Number.isInteger(value) ? new PythonFloat(value) : value;
    }
    const digits = intDigits(text);
    if (digits > this.bounds.maxIntDigits) {
      // Python's own refusal, before the costly conversion.
      throw new PythonJsonError(`Exceeds the limit (${this.bounds.maxIntDigits} digits) for integer string conversion: value has ${digits} digits`);
    }
    return intFromText(text);
  }

  /**
   * A string from its opening quote. Its end is found with indexOf (a quote after an even run of
   * backslashes); text without escapes or control characters is a slice of it, and text with
   * escapes is decoded by JSON.parse, whose string syntax is json.loads's (the same escapes, no
   * control characters, lone surrogates kept). Both are linear and native: decoding escape by
   * escape into a growing string (a rope per escape) made 6 MiB of "\\n" cost half a second
   * and 135 MB. Text either refuses is scanned again only to name the error as json.loads does.
   */
  private string(): string {
    const text = this.text;
    const start = this.i;
    let end = start;
    for (;;) {
      end = text.indexOf('"', end + 1);
      if (end < 0) throw this.stringError(start);
      let backslashes = 0;
      while (text.charCodeAt(end - 1 - backslashes) === BACKSLASH) backslashes++;
      if (backslashes % 2 === 0) break;
    }
    const inside = text.slice(start + 1, end);
    if (!ESCAPE_OR_CONTROL.test(inside)) {
      this.i = end + 1;
      return inside;
    }
    let value: string;
    try {
      value = JSON.parse(text.slice(start, end + 1)) as string;
    } catch {
      throw this.stringError(start);
    }
    this.i = end + 1;
    return value;
  }

  /** json.loads's error for the string at `start`, which JSON.parse refused or never ends. */
  private stringError(start: number): PythonJsonError {
    const text = this.text;
    for (let i = start + 1; i < text.length; ) {
      const c = text.charCodeAt(i);
      if (c === QUOTE) break;
      if (c < 0x20) return this.error('Invalid control character at', i);
      if (c !== BACKSLASH) {
        i++;
        continue;
      }
      if (i + 1 >= text.length) break;
      const escape = text[i + 1]!;
      if (escape === 'u') {
        if (!HEX4.test(text.slice(i + 2, i + 6))) return this.error('Invalid \\uXXXX escape', i + 1);
        i += 6;
      } else {
        if (!SIMPLE_ESCAPES.includes(escape)) return this.error('Invalid \\escape', i);
        i += 2;
      }
    }
    return this.error('Unterminated string starting at', start);
  }

  private object(depth: number): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    this.i++;
    this.skipSpace();
    if (this.text[this.i] === '}') {
      this.i++;
      return out;
    }
    for (;;) {
      if (this.text[this.i] !== '"') throw this.error('Expecting property name enclosed in double quotes', this.i);
      const key = this.string();
      this.skipSpace();
      if (this.text[this.i] !== ':') throw this.error("Expecting ':' delimiter", this.i);
      this.i++;
      this.skipSpace();
      const value = this.value(depth);
      // __proto__ too is data, never the object's prototype.
      setOnFresh(out, key, value);
      this.skipSpace();
      const c = this.text[this.i];
      this.i++;
      if (c === '}') return out;
      if (c !== ',') throw this.error("Expecting ',' delimiter", this.i - 1);
      this.skipSpace();
    }
  }

  private array(depth: number): unknown[] {
    const out: unknown[] = [];
    this.i++;
    this.skipSpace();
    if (this.text[this.i] === ']') {
      this.i++;
      return out;
    }
    for (;;) {
      out.push(this.value(depth));
      this.skipSpace();
      const c = this.text[this.i];
      this.i++;
      if (c === ']') return out;
      if (c !== ',') throw this.error("Expecting ',' delimiter", this.i - 1);
      this.skipSpace();
    }
  }
}

const LITERALS: ReadonlyArray<readonly [string, unknown]> = [
  ['null', null],
  ['true', true],
  ['false', false],
  ['NaN', NaN],
  ['Infinity', Infinity],
  ['-Infinity', -Infinity],
];

/**
 * Values (and keys) in JSON text, counted in one pass without parsing: outside strings, each
 * opening [ or { and each comma or colon starts one (an empty [] or {} counts as one). What the
 * parsed value will hold is bounded by this and the text's length, before anything is allocated.
 */
export function countJsonValues(text: string): number {
  let values = 1;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === BACKSLASH) i++;
      else if (c === QUOTE) inString = false;
    } else if (c === QUOTE) inString = true;
    else if (c === 0x5b || c === 0x7b || c === 0x2c || c === 0x3a) values++;
  }
  return values;
}

/** String.prototype.isWellFormed (Node 20; not yet in TypeScript's ES2022 library): no lone surrogate. */
function wellFormed(text: string): boolean {
  return (text as unknown as { isWellFormed(): boolean }).isWellFormed();
}

/** A string JSON can hold but UTF-8 cannot: it has a lone surrogate (\ud800 with no pair). */
export class UnencodableString extends Error {
  constructor() {
    super('a string holds a lone surrogate (a \\ud800-\\udfff escape without its pair), which UTF-8 cannot encode');
    this.name = 'UnencodableString';
  }
}

/** Whether a string or key anywhere in `value` (as parsePythonJson returns) has a lone surrogate. */
export function holdsLoneSurrogate(value: unknown): boolean {
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const v = stack.pop();
    if (typeof v === 'string') {
      if (!wellFormed(v)) return true;
    } else if (Array.isArray(v)) {
      for (const item of v) stack.push(item);
    } else if (v !== null && typeof v === 'object' && !(v instanceof PythonFloat)) {
      for (const key of Object.keys(v)) {
        if (!wellFormed(key)) return true;
        stack.push((v as Record<string, unknown>)[key]);
      }
    }
  }
  return false;
}

/** json.loads(text): throws PythonJsonError with json.loads's message for text it would refuse. */
export function parsePythonJson(text: string, bounds: ReadBounds = DEFAULT_READ_BOUNDS): unknown {
  return new Reader(text, bounds).read();
}

/** DRF's renderer escapes U+2028 and U+2029 (JSON allows them raw; JavaScript source did not). */
function drfEscapes(json: string): string {
  return json.replace(/\u2028/g, '\\u2028').replace(/\u2029/g, '\\u2029');
}

/**
 * JSON text as codejail-service answers (Django REST framework's renderer: json.dumps with
 * compact separators, non-ASCII as itself, allow_nan) for what safeExec returns (plain objects,
 * arrays, strings, numbers, BigInts, booleans, null): NaN, Infinity and -Infinity as those
 * literals, a BigInt as its digits. The values come from the sandbox, so nothing here
 * recurses: an explicit stack walks them. A string with a lone surrogate throws
 * UnencodableString: the renderer's UTF-8 encoding fails on it (codejail-service answers 500).
 */
export function stringifyPythonJson(value: unknown): string {
  const parts: string[] = [];
  // Each entry is a value to write or a piece of punctuation already decided.
  const stack: Array<{ value: unknown } | string> = [{ value }];
  while (stack.length > 0) {
    const item = stack.pop()!;
    if (typeof item === 'string') {
      parts.push(item);
      continue;
    }
    const v = item.value;
    if (v instanceof PythonFloat) {
      parts.push(v.toString());
    } else if (typeof v === 'number') {
      parts.push(Number.isNaN(v) ? 'NaN' : v === Infinity ? 'Infinity' : v === -Infinity ? '-Infinity' : JSON.stringify(v));
    } else if (typeof v === 'bigint') {
      parts.push(v.toString());
    } else if (typeof v === 'string') {
      if (!wellFormed(v)) throw new UnencodableString();
      parts.push(drfEscapes(JSON.stringify(v)));
    } else if (typeof v === 'boolean' || v === null) {
      parts.push(JSON.stringify(v));
    } else if (Array.isArray(v)) {
      parts.push('[');
      stack.push(']');
      for (let i = v.length - 1; i >= 0; i--) {
        stack.push({ value: v[i] });
        if (i > 0) stack.push(',');
      }
    } else if (typeof v === 'object' && !(v instanceof Uint8Array)) {
      const keys = Object.keys(v);
      parts.push('{');
      stack.push('}');
      for (let i = keys.length - 1; i >= 0; i--) {
        if (!wellFormed(keys[i]!)) throw new UnencodableString();
        stack.push({ value: (v as Record<string, unknown>)[keys[i]!] });
        stack.push(`${drfEscapes(JSON.stringify(keys[i]))}:`);
        if (i > 0) stack.push(',');
      }
    } else {
      // Bytes and anything else JSON has no form for: what the original's json_safe drops.
      parts.push('null');
    }
  }
  return parts.join('');
}
