// safeExec: the original CodeJail's safe_exec. The daemon's safe_exec request runs
// python/safe_exec_harness.py, which reads its code, globals and python_path on stdin, runs
// exec(code, g) and writes the JSON-safe globals to a result channel (fd 3) that is not stdout.
// Without a daemon (unsafe mode), the same harness goes as jailCode's code, with that stdin.
//
// The globals go to the sandbox and come back in the tagged JSON of globals_codec.ts; a failed
// run's message shows its output as Python's repr() writes bytes (python_repr.ts).
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Limits, Usage } from '../protocol/index.js';
import type { ExtraFile } from './files.js';
import { decodeResult, encodeGlobals, ResultBoundError, resultBounds, type ResultBounds, type WholeFloats } from './globals_codec.js';
import { harnessStdin } from '../kinds/safe_exec_input.js';
import { pythonBytesRepr } from './python_repr.js';
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
  return {
    code: harnessSource(),
    stdin: Buffer.concat(harnessStdin(call.code, call.globals, call.pythonPath)),
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

// --- safeExec -------------------------------------------------------------------------------------

function asBuffer(value: unknown): Buffer {
  if (Buffer.isBuffer(value)) return value;
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  if (typeof value === 'string') return Buffer.from(value, 'utf8');
  return Buffer.alloc(0);
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
  // defineProperty: the caller's object may have setters (or a key named __proto__ may come back).
  for (const key of Object.keys(result)) {
    Object.defineProperty(globals, key, { value: result[key], writable: true, enumerable: true, configurable: true });
  }
  return result;
}
