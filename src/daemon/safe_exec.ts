// The safe_exec request as a run: the daemon's own harness (python/safe_exec_harness.py) as the
// code, the caller's code, globals and python path as the harness's stdin, and the result channel
// (fd 3) for the globals it reports. The caller's globals are bytes the daemon passes on without
// parsing them: decoding JSON of megabytes on the event loop would stall every other connection,
// and the harness, inside the sandbox, refuses a malformed one (exit 2, saying why).
import type { SafeExecRequest } from '../protocol/index.js';
import { RequestError } from '../protocol/errors.js';
import { installFiles } from '../run/install_files.js';
import { kindNamed, type KindName } from '../kinds/index.js';
import { harnessStdin } from '../kinds/safe_exec_input.js';
import type { RunRequest } from './runner.js';

export type CommandKind = KindName;

/** The harness's source of `kind` (python/safe_exec_harness.py), as the daemon read it at its start. */
export function harnessBytes(kind: KindName): Buffer {
  const harness = installFiles().harnesses[kind];
  if (!harness) throw new Error(`kind ${kind} has no safe_exec harness`);
  return harness;
}

/**
 * The kind of a safe_exec request's command. Throws RequestError unknown_command when `command` is
 * not configured, bad_request when its kind has no harness (only python has one).
 */
export function safeExecKind(request: Pick<SafeExecRequest, 'command'>, kinds: ReadonlyMap<string, CommandKind>): KindName {
  const kind = kinds.get(request.command);
  if (kind === undefined) {
    const known = [...kinds.keys()].join(', ');
    throw new RequestError('unknown_command', `unknown command "${request.command}"; this daemon runs: ${known}`);
  }
  if (!kindNamed(kind).harness) {
    throw new RequestError('bad_request', `safe_exec runs Python: command "${request.command}" is of kind "${kind}", not "python"`);
  }
  return kind;
}

/**
 * The run a safe_exec request stands for. Throws RequestError unknown_command when `command` is
 * not configured, bad_request when its kind has no harness (only python has one).
 */
export function safeExecRun(request: SafeExecRequest, kinds: ReadonlyMap<string, CommandKind>): RunRequest {
  const kind = safeExecKind(request, kinds);
  const run: RunRequest = {
    command: request.command,
    code: harnessBytes(kind),
    files: request.files,
    extraFiles: request.extraFiles,
    argv: [],
    stdin: harnessInput(request),
    limits: request.limits,
    slug: request.slug,
    resultChannel: true,
    safeExec: true,
  };
  if (request.warm !== undefined) run.warm = request.warm;
  if (request.profile !== undefined) run.profile = request.profile;
  return run;
}

/**
 * The harness's request (src/kinds/safe_exec_input.ts), composed around the caller's code and
 * globals bytes without escaping or parsing them: a "python_path" smuggled into the globals text
 * is overridden by the daemon's own, which comes after it, and a "code" there is not read; a
 * globals text that is not one tagged dict leaves the document malformed or its globals not a
 * dict, which the harness refuses.
 */
export function harnessInput(request: Pick<SafeExecRequest, 'code' | 'globals' | 'pythonPath'>): Buffer {
  return Buffer.concat(harnessStdin(request.code, request.globals, request.pythonPath));
}

/**
 * The bytes a queued safe_exec holds: the request's code and globals, and the composed stdin that
 * copies them (the code as UTF-8), plus its files and python path names (jail_code's payloadBytes
 * counts the rest).
 */
export function safeExecPayloadBytes(request: Pick<SafeExecRequest, 'code' | 'globals' | 'pythonPath'>): number {
  let bytes = 2 * (Buffer.byteLength(request.code) + request.globals.byteLength);
  for (const name of request.pythonPath) bytes += 2 * Buffer.byteLength(name);
  return bytes;
}
