// safeExec: the original CodeJail's safe_exec on top of jailCode. The jailed code is
// python/safe_exec_harness.py; it reads {code, globals, python_path} on stdin, runs
// exec(code, g) and writes the JSON-safe globals to a result channel (fd 3) that is not stdout.
//
// Both directions use a tagged JSON encoding, so that every value means one thing:
//   strings and finite numbers are themselves; null, true, false;
//   ["l", ...items]                 a list (array)
//   ["d", k1, v1, k2, v2, ...]      a dict (plain object)
//   ["i", "digits"]                 an int outside +-(2^53 - 1) (BigInt)
//   ["f", "nan"|"inf"|"-inf"|text]  a float JSON cannot carry as itself
//   ["b", "<base64>"]               bytes (Buffer/Uint8Array inputs)
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Limits } from '../protocol/index.js';
import type { ExtraFile } from './files.js';

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
}

/** Anything with a jailCode that takes `resultChannel` and returns the channel's bytes as `result`. */
export interface SafeExecClient {
  jailCode(command: string, options: any): Promise<any>;
}

/** The Python code failed (or did not report its globals). Like the original's SafeExecException. */
export class SafeExecError extends Error {
  readonly stdout: Buffer;
  readonly stderr: Buffer;
  readonly status: number;

  constructor(message: string, fields: { stdout: Buffer; stderr: Buffer; status: number }, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SafeExecError';
    this.stdout = fields.stdout;
    this.stderr = fields.stderr;
    this.status = fields.status;
  }
}

let harness: string | undefined;

/** The harness's source, read once. */
export function harnessSource(): string {
  harness ??= readFileSync(HARNESS_URL, 'utf8');
  return harness;
}

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
  if (typeof key === 'number' || typeof key === 'bigint' || typeof key === 'boolean' || key === null) return String(key);
  throw new Error(`a dict key that is not a string, number or null: ${JSON.stringify(key)}`);
}

function decodeFloat(text: string): number {
  if (text === 'nan') return NaN;
  if (text === 'inf') return Infinity;
  if (text === '-inf') return -Infinity;
  const value = Number(text);
  if (text.trim() === '' || Number.isNaN(value)) throw new Error(`a bad float: ${JSON.stringify(text)}`);
  return value;
}

function decodeValue(value: unknown): unknown {
  if (value === null || typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') {
    return value;
  }
  if (Array.isArray(value) && value.length > 0) {
    const [tag] = value;
    if (tag === 'l') return value.slice(1).map(decodeValue);
    if (tag === 'd' && value.length % 2 === 1) {
      const out: Record<string, unknown> = {};
      for (let i = 1; i < value.length; i += 2) setOwn(out, keyString(decodeValue(value[i])), decodeValue(value[i + 1]));
      return out;
    }
    if (value.length === 2 && typeof value[1] === 'string') {
      if (tag === 'i') {
        if (!/^-?\d+$/.test(value[1])) throw new Error(`a bad int: ${JSON.stringify(value[1])}`);
        const big = BigInt(value[1]);
        return big >= BigInt(Number.MIN_SAFE_INTEGER) && big <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(big) : big;
      }
      if (tag === 'f') return decodeFloat(value[1]);
      if (tag === 'b') return Buffer.from(value[1], 'base64');
    }
  }
  throw new Error(`not a tagged value: ${JSON.stringify(value)?.slice(0, 100)}`);
}

/** The globals the harness reported: its tagged JSON (bytes or text) as a plain object. */
export function decodeResult(bytes: Uint8Array | string): Record<string, unknown> {
  const text = typeof bytes === 'string' ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8');
  const decoded = decodeValue(JSON.parse(text));
  if (decoded === null || typeof decoded !== 'object' || Array.isArray(decoded) || decoded instanceof Uint8Array) {
    throw new Error('the result is not a dict');
  }
  return decoded as Record<string, unknown>;
}

// --- safeExec -------------------------------------------------------------------------------------

function asBuffer(value: unknown): Buffer {
  if (Buffer.isBuffer(value)) return value;
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  if (typeof value === 'string') return Buffer.from(value, 'utf8');
  return Buffer.alloc(0);
}

/** Like Python's repr of the output in the original's message: quoted, escapes visible. */
function quote(bytes: Buffer): string {
  return JSON.stringify(bytes.toString('utf8'));
}

/**
 * Runs `code` with `exec(code, g)` in the sandbox, `g` built from `globals` (only the entries
 * that can be represented). On success, resolves with the JSON-safe globals afterwards and makes
 * `globals` hold exactly them (keys the result lacks are deleted). If the code raises (or the run
 * fails otherwise), rejects with SafeExecError, whose message holds the sandbox's stdout and
 * stderr (so the traceback), and leaves `globals` as it was.
 */
export async function safeExec(
  client: SafeExecClient,
  code: string,
  globals: Record<string, unknown>,
  options: SafeExecOptions = {},
): Promise<Record<string, unknown>> {
  if (typeof code !== 'string') throw new TypeError('safeExec: code must be a string');
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

  const stdin = JSON.stringify({ code, globals: encodeGlobals(globals), python_path: pythonPathNames });
  const res = await client.jailCode('python', {
    code: harnessSource(),
    stdin,
    files,
    extraFiles,
    argv: [],
    limitOverridesContext: options.limitOverridesContext,
    slug: options.slug,
    limits: options.limits,
    resultChannel: true,
  });

  const stdout = asBuffer(res?.stdout);
  const stderr = asBuffer(res?.stderr);
  const status: number = typeof res?.status === 'number' ? res.status : -1;
  const fields = { stdout, stderr, status };
  const details = `stdout: ${quote(stdout)}, stderr: ${quote(stderr)} with status code: ${status}`;
  const notes = [res?.timedOut ? ' (the run timed out)' : '', res?.truncated ? ' (output was truncated)' : ''].join('');

  if (status !== 0) throw new SafeExecError(`Couldn't execute jailed code${notes}: ${details}`, fields);
  if (res?.result === undefined || res?.result === null || asBuffer(res.result).length === 0) {
    throw new SafeExecError(`Couldn't execute jailed code: it ended without reporting its globals${notes}: ${details}`, fields);
  }
  let result: Record<string, unknown>;
  try {
    result = decodeResult(asBuffer(res.result));
  } catch (err) {
    throw new SafeExecError(
      `Couldn't execute jailed code: its globals could not be decoded (${(err as Error).message})${notes}: ${details}`,
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
