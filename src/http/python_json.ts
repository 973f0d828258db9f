// JSON as Python's json module reads and writes it, which is what edx-platform sends and expects:
// the literals NaN, Infinity and -Infinity are numbers both ways, an int keeps all its digits
// (a BigInt past 2^53), a repeated key keeps its last value, and a parse error says what
// json.loads would say ("Expecting value: line 1 column 1 (char 0)"), since the API's 400
// message carries it. JSON.parse refuses the literals and rounds big ints, so the reader is our
// own: one pass, iterative over the text, recursive only as deep as the nesting it has bounded.
import { PythonFloat } from '../client/safe_exec.js';

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

const WHITESPACE = new Set([0x20, 0x09, 0x0a, 0x0d]);
const NUMBER = /-?(?:0|[1-9]\d*)(\.\d+)?([eE][-+]?\d+)?/y;
const ESCAPES: Record<string, string> = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' };

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
    while (this.i < this.text.length && WHITESPACE.has(this.text.charCodeAt(this.i))) this.i++;
  }

  private startsWith(word: string): boolean {
    return this.text.startsWith(word, this.i);
  }

  private value(depth: number): unknown {
    const c = this.text[this.i];
    if (c === '"') return this.string();
    if (c === '{' || c === '[') {
      if (depth >= this.bounds.maxDepth) {
        throw new PythonJsonError(`arrays and objects nested more than ${this.bounds.maxDepth} deep at char ${this.i}`);
      }
      return c === '{' ? this.object(depth + 1) : this.array(depth + 1);
    }
    for (const [word, value] of LITERALS) {
      if (this.startsWith(word)) {
        this.i += word.length;
        return value;
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
    const digits = text.length - (text.startsWith('-') ? 1 : 0);
    if (digits > this.bounds.maxIntDigits) {
      // Python's own refusal, before the costly conversion.
      throw new PythonJsonError(`Exceeds the limit (${this.bounds.maxIntDigits} digits) for integer string conversion: value has ${digits} digits`);
    }
    const value = Number(text);
    return Number.isSafeInteger(value) ? value : BigInt(text);
  }

  private string(): string {
    const start = this.i;
    this.i++;
    let out = '';
    let chunkStart = this.i;
    for (;;) {
      if (this.i >= this.text.length) throw this.error('Unterminated string starting at', start);
      const c = this.text.charCodeAt(this.i);
      if (c === 0x22) {
        out += this.text.slice(chunkStart, this.i);
        this.i++;
        return out;
      }
      if (c < 0x20) throw this.error('Invalid control character at', this.i);
      if (c !== 0x5c) {
        this.i++;
        continue;
      }
      out += this.text.slice(chunkStart, this.i);
      const escape = this.text[this.i + 1];
      if (escape === undefined) throw this.error('Unterminated string starting at', start);
      if (escape === 'u') {
        const hex = this.text.slice(this.i + 2, this.i + 6);
        if (!/^[0-9a-fA-F]{4}$/.test(hex)) throw this.error('Invalid \\uXXXX escape', this.i + 1);
        out += String.fromCharCode(parseInt(hex, 16));
        this.i += 6;
      } else {
        const replacement = ESCAPES[escape];
        if (replacement === undefined) throw this.error('Invalid \\escape', this.i);
        out += replacement;
        this.i += 2;
      }
      chunkStart = this.i;
    }
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
      // defineProperty: a key named __proto__ is data, not the object's prototype.
      Object.defineProperty(out, key, { value: this.value(depth), writable: true, enumerable: true, configurable: true });
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

/** json.loads(text): throws PythonJsonError with json.loads's message for text it would refuse. */
export function parsePythonJson(text: string, bounds: ReadBounds = DEFAULT_READ_BOUNDS): unknown {
  return new Reader(text, bounds).read();
}

/**
 * JSON text as codejail-service answers (Django REST framework's renderer: json.dumps with
 * compact separators, non-ASCII as itself, allow_nan) for what safeExec returns (plain objects,
 * arrays, strings, numbers, BigInts, booleans, null): NaN, Infinity and -Infinity as those
 * literals, a BigInt as its digits. The values come from the sandbox, so nothing here
 * recurses: an explicit stack walks them.
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
    } else if (typeof v === 'string' || typeof v === 'boolean' || v === null) {
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
        stack.push({ value: (v as Record<string, unknown>)[keys[i]!] });
        stack.push(`${JSON.stringify(keys[i])}:`);
        if (i > 0) stack.push(',');
      }
    } else {
      // Bytes and anything else JSON has no form for: what the original's json_safe drops.
      parts.push('null');
    }
  }
  return parts.join('');
}
