// safeExec: the original CodeJail's safe_exec. The daemon's safe_exec request runs
// python/safe_exec_harness.py, which reads {globals, code, python_path} on stdin, runs
// exec(code, g) and writes the JSON-safe globals to a result channel (fd 3) that is not stdout.
// Without a daemon (unsafe mode), the same harness goes as jailCode's code, with that stdin.
//
// Both directions use a tagged JSON encoding, so that every value means one thing:
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
// number of values, digits of an int), and a result over a bound is a SafeExecError naming it.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Limits, Usage } from '../protocol/index.js';
import type { ExtraFile } from './files.js';
import type { SafeExecCall } from './request.js';

/** Where the harness lives: <root>/python/, two levels above src/client/ and dist/client/. */
const HARNESS_URL = new URL('../../python/safe_exec_harness.py', import.meta.url);

export interface SafeExecOptions {
  /** Paths on this machine copied into the run directory by basename, as jailCode's `files`. */
  files?: readonly string[];
  /**
   * Directories or zip files whose basenames are added to sys.path in the run directory. Each is
   * copied like `files` unless `extraFiles` already provides that name.
   */
  pythonPath?: readonly string[];
  /** [plain name, contents] pairs created in the run directory. */
  extraFiles?: readonly ExtraFile[];
  /** Selects the limits registered with overrideLimit() for this context. */
  limitOverridesContext?: string;
  /** A label for the daemon's logs. */
  slug?: string;
  /** Limits for this call only. */
  limits?: Partial<Limits>;
  /**
   * How whole-number floats (Python's 2.0) come back: numbers (default), or PythonFloat objects,
   * which also go in as floats. Inputs may always hold PythonFloats.
   */
  wholeFloats?: WholeFloats;
  /** Raises or lowers the bounds on the result (DEFAULT_RESULT_BOUNDS) for this call. */
  resultBounds?: Partial<ResultBounds>;
  /** The daemon's command that runs the harness: one of kind python. Default 'python'. */
  command?: string;
  /**
   * false: a cold run (a fresh interpreter) even where the daemon runs the command warm (forked
   * from its template). Default: the command's own way.
   */
  warm?: boolean;
  /** Ask the daemon for the run's per-stage timings (`usage.stages`, given to onUsage). */
  profile?: boolean;
  /** Called with what the run cost (and its stages, with `profile`) once it ended, failed or not. */
  onUsage?: (usage: Usage) => void;
}

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

/**
 * What safeExec runs through: a client that sends safe_exec requests (the Client), or anything
 * with a jailCode that takes `resultChannel` and returns the channel's bytes as `result`, which
 * then runs the harness as its code (harnessJailCodeOptions).
 */
export interface SafeExecClient {
  jailCode(command: string, options: any): Promise<any>;
  /** Runs the call as a safe_exec request; resolves with the run's result, as jailCode does. */
  sendSafeExec?(call: SafeExecCall): Promise<any>;
}

/** What a failed run left: its output, its status, and how it ended. */
export interface SafeExecFailure {
  stdout: Buffer;
  stderr: Buffer;
  status: number;
  /** REALTIME ran out and the run was killed (then status is -9). */
  timedOut?: boolean;
  /** Output past the OUTPUT limit was dropped. */
  truncated?: boolean;
}

/**
 * The Python code failed (or did not report its globals). Like the original's SafeExecException:
 * for a run that failed, the message is exactly the original's, and how the run ended (timed out,
 * output truncated) is in the fields, not the message.
 */
export class SafeExecError extends Error {
  readonly stdout: Buffer;
  readonly stderr: Buffer;
  readonly status: number;
  readonly timedOut: boolean;
  readonly truncated: boolean;

  constructor(message: string, fields: SafeExecFailure, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SafeExecError';
    this.stdout = fields.stdout;
    this.stderr = fields.stderr;
    this.status = fields.status;
    this.timedOut = fields.timedOut ?? false;
    this.truncated = fields.truncated ?? false;
  }
}

let harness: string | undefined;

/** The harness's source, read once. */
export function harnessSource(): string {
  harness ??= readFileSync(HARNESS_URL, 'utf8');
  return harness;
}

/**
 * jailCode's options that run `call` without a safe_exec request: the harness as the code, its
 * request on stdin (as the daemon composes it, src/daemon/safe_exec.ts) and the result channel.
 */
export function harnessJailCodeOptions(call: SafeExecCall): Record<string, unknown> {
  const tail = `,"code":${JSON.stringify(call.code)},"python_path":${JSON.stringify(call.pythonPath)}}`;
  return {
    code: harnessSource(),
    stdin: Buffer.concat([Buffer.from('{"globals":'), call.globals, Buffer.from(tail)]),
    files: call.files,
    extraFiles: call.extraFiles,
    argv: [],
    limitOverridesContext: call.limitOverridesContext,
    slug: call.slug,
    limits: call.limits,
    resultChannel: true,
    warm: call.warm,
    profile: call.profile,
  };
}

// --- Encoding (JS -> Python) --------------------------------------------------------------------

/** Marks a value that cannot be sent; the top-level entry holding it is dropped. */
class Unrepresentable extends Error {}

function isPlainObject(value: object): boolean {
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/**
 * A Python float whose value is a whole number (2.0), kept apart from the int 2 where a caller
 * asks for it (`wholeFloats: 'python'`): a JavaScript number cannot tell them apart, and
 * codejail-service's callers see the difference in the JSON they get back.
 */
export class PythonFloat {
  constructor(readonly value: number) {}

  valueOf(): number {
    return this.value;
  }

  /** As Python's repr() writes a whole-number float: 2.0, -0.0, 1e+16. */
  toString(): string {
    const v = this.value;
    if (Object.is(v, -0)) return '-0.0';
    if (Math.abs(v) >= 1e16) return v.toExponential();
    return `${v}.0`;
  }
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

function setOwn(target: object, key: string, value: unknown): void {
  // defineProperty, so that a key named __proto__ is an ordinary property, not the prototype.
  Object.defineProperty(target, key, { value, writable: true, enumerable: true, configurable: true });
}

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
  const digits = text.length - (text.startsWith('-') ? 1 : 0);
  if (digits > bounds.maxIntDigits) {
    throw new ResultBoundError(`an int of ${digits} digits, more than the ${bounds.maxIntDigits} allowed`, 'maxIntDigits');
  }
  if (!/^-?\d+$/.test(text)) throw new Error(`a bad int: ${preview(text)}`);
}

function decodeInt(text: string, bounds: ResultBounds): number | bigint {
  checkIntText(text, bounds);
  const big = BigInt(text);
  return big >= BigInt(Number.MIN_SAFE_INTEGER) && big <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(big) : big;
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
        // On this fresh plain object an assignment makes an own property for every key but
        // __proto__ (an accessor of Object.prototype), and costs a third of defineProperty.
        if (key === '__proto__') setOwn(out, key, item);
        else out[key] = item;
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
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === BACKSLASH) i++;
      else if (c === QUOTE) inString = false;
    } else if (c === QUOTE) {
      inString = true;
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
function resultBounds(given: Partial<ResultBounds> | undefined): ResultBounds {
  const bounds = { ...DEFAULT_RESULT_BOUNDS, ...given };
  for (const [name, value] of Object.entries(bounds)) {
    if (!Number.isSafeInteger(value) || value < 1) throw new TypeError(`safeExec: resultBounds.${name} must be a positive integer`);
  }
  return bounds;
}

// --- safeExec -------------------------------------------------------------------------------------

function asBuffer(value: unknown): Buffer {
  if (Buffer.isBuffer(value)) return value;
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  if (typeof value === 'string') return Buffer.from(value, 'utf8');
  return Buffer.alloc(0);
}

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

/** A run's output and status, as the original's message writes them. */
function runDetails(run: { stdout: Uint8Array; stderr: Uint8Array; status: number }): string {
  return `stdout: ${pythonBytesRepr(run.stdout)}, stderr: ${pythonBytesRepr(run.stderr)} with status code: ${run.status}`;
}

/** The original's SafeExecException message for a run that failed: nothing else. */
export function failureMessage(run: { stdout: Uint8Array; stderr: Uint8Array; status: number }): string {
  return `Couldn't execute jailed code: ${runDetails(run)}`;
}

/**
 * Runs `code` with `exec(code, g)` in the sandbox, `g` built from `globals` (only the entries
 * that can be represented). On success, resolves with the JSON-safe globals afterwards and makes
 * `globals` hold exactly them (keys the result lacks are deleted). If the code raises (or the run
 * fails otherwise), rejects with SafeExecError, whose message holds the sandbox's stdout and
 * stderr (so the traceback) as the original's does, and leaves `globals` as it was. The harness
 * discards what the code prints to sys.stdout, and no program can be started from the run.
 */
export async function safeExec(
  client: SafeExecClient,
  code: string,
  globals: Record<string, unknown>,
  options: SafeExecOptions = {},
): Promise<Record<string, unknown>> {
  if (typeof code !== 'string') throw new TypeError('safeExec: code must be a string');
  const bounds = resultBounds(options.resultBounds);
  const pythonPath = options.pythonPath ?? [];
  const extraFiles = options.extraFiles ?? [];
  const files = [...(options.files ?? [])];

  const extraNames = new Set(extraFiles.map((pair) => pair[0]));
  const givenFiles = new Set(files.map((file) => path.resolve(file)));
  const pythonPathNames: string[] = [];
  for (const entry of pythonPath) {
    const name = path.basename(entry);
    pythonPathNames.push(name);
    // Copied like `files`, unless extraFiles provides it (or files already sends that path).
    if (!extraNames.has(name) && !givenFiles.has(path.resolve(entry))) files.push(entry);
  }

  const call: SafeExecCall = {
    command: options.command ?? 'python',
    code,
    globals: Buffer.from(JSON.stringify(encodeGlobals(globals)), 'utf8'),
    pythonPath: pythonPathNames,
    files,
    extraFiles,
    limitOverridesContext: options.limitOverridesContext,
    slug: options.slug,
    limits: options.limits,
    warm: options.warm,
    profile: options.profile,
  };
  const res = client.sendSafeExec ? await client.sendSafeExec(call) : await client.jailCode(call.command, harnessJailCodeOptions(call));
  if (res?.usage !== undefined) options.onUsage?.(res.usage);

  const stdout = asBuffer(res?.stdout);
  const stderr = asBuffer(res?.stderr);
  const status: number = typeof res?.status === 'number' ? res.status : -1;
  const fields: SafeExecFailure = { stdout, stderr, status, timedOut: res?.timedOut === true, truncated: res?.truncated === true };
  const details = runDetails(fields);

  if (status !== 0) throw new SafeExecError(failureMessage(fields), fields);
  // The run succeeded but its globals cannot be had: the original would fail parsing its stdout;
  // here the message says why, then the run's output as for a failed run.
  if (res?.result === undefined || res?.result === null || asBuffer(res.result).length === 0) {
    throw new SafeExecError(`Couldn't execute jailed code: it ended without reporting its globals: ${details}`, fields);
  }
  let result: Record<string, unknown>;
  try {
    result = decodeResult(asBuffer(res.result), bounds, options.wholeFloats);
  } catch (err) {
    if (err instanceof ResultBoundError) {
      const bound = `${err.message}: resultBounds.${err.bound}`;
      throw new SafeExecError(
        `Couldn't execute jailed code: its globals are over a bound of the result (${bound}): ${details}`,
        fields,
        { cause: err },
      );
    }
    throw new SafeExecError(
      `Couldn't execute jailed code: its globals could not be decoded (${(err as Error).message}): ${details}`,
      fields,
      { cause: err },
    );
  }

  for (const key of Object.keys(globals)) {
    if (!Object.prototype.hasOwnProperty.call(result, key)) delete globals[key];
  }
  for (const key of Object.keys(result)) setOwn(globals, key, result[key]);
  return result;
}
