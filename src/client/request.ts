// Turns the caller's jailCode and safeExec options into the fields of a jail_code or safe_exec
// request.
import { CODE_FILE, describeIssues, jailCodeRequest, safeExecRequest } from '../protocol/index.js';
import type { Limits } from '../protocol/index.js';
import { CodejailError } from './errors.js';
import { collectFiles, encodeExtraFiles, toBytes } from './files.js';
import type { ExtraFile } from './files.js';
import type { LimitSettings } from './limits.js';

/** Options of one jailCode call, named as the original's jail_code arguments. */
export interface JailCodeOptions {
  /** Source to run, written to `jailed_code` and passed to the command. Omit to run only `argv`. */
  code?: string | Uint8Array;
  /** Paths on this machine, read by the client and recreated in the run directory by basename. */
  files?: readonly string[];
  /** [plain name, contents] pairs created in the run directory. */
  extraFiles?: readonly ExtraFile[];
  /** Arguments after the code file. */
  argv?: readonly string[];
  stdin?: string | Uint8Array;
  /** Selects the limits registered with overrideLimit() for this context. */
  limitOverridesContext?: string;
  /** A label for the daemon's logs. */
  slug?: string;
  /** Limits for this call only, applied over everything else. */
  limits?: Partial<Limits>;
  /** Open fd 3 in the sandbox as a pipe whose contents come back as `result` (safeExec uses it). */
  resultChannel?: boolean;
  /**
   * false: a cold run (a fresh interpreter) even where the daemon runs the command warm (forked
   * from its template). Default: the command's own way.
   */
  warm?: boolean;
  /** Ask the daemon for the run's per-stage timings, in `usage.stages`. */
  profile?: boolean;
}

/** What a safe_exec request is made of (src/client/safe_exec.ts builds it). */
export interface SafeExecCall {
  command: string;
  code: string;
  /** The tagged globals dict as JSON text (encodeGlobals), UTF-8. */
  globals: Uint8Array;
  /** Names, in the run directory, added to sys.path. */
  pythonPath: readonly string[];
  /** As JailCodeOptions' fields of the same names. */
  files: readonly string[];
  extraFiles: readonly ExtraFile[];
  limitOverridesContext?: string;
  slug?: string;
  limits?: Partial<Limits>;
  warm?: boolean;
  profile?: boolean;
}

/** The requests without their envelope (v, id), which the connection adds. */
const jailCodeFields = jailCodeRequest.omit({ v: true, id: true });
const safeExecFields = safeExecRequest.omit({ v: true, id: true });

/** Builds and validates the fields of a jail_code request (everything but v, id and op). */
export async function buildJailCodeFields(
  command: string,
  options: JailCodeOptions,
  limitSettings: LimitSettings,
): Promise<Record<string, unknown>> {
  const fields = await runFields(command, options, options.code !== undefined, limitSettings);
  fields.argv = options.argv ?? [];
  if (options.code !== undefined) fields.code = toBytes(options.code, 'code');
  if (options.stdin !== undefined) fields.stdin = toBytes(options.stdin, 'stdin');
  if (options.resultChannel) fields.resultChannel = true;

  const checked = jailCodeFields.safeParse({ op: 'jail_code', ...fields });
  if (!checked.success) throw new CodejailError('bad_request', `jailCode: ${describeIssues(checked.error)}`);
  return fields;
}

/** Builds and validates the fields of a safe_exec request (everything but v, id and op). */
export async function buildSafeExecFields(call: SafeExecCall, limitSettings: LimitSettings): Promise<Record<string, unknown>> {
  // The daemon writes its harness where jailCode writes the code.
  const fields = await runFields(call.command, call, true, limitSettings);
  fields.code = call.code;
  fields.globals = call.globals;
  fields.pythonPath = call.pythonPath;

  const checked = safeExecFields.safeParse({ op: 'safe_exec', ...fields });
  if (!checked.success) throw new CodejailError('bad_request', `safeExec: ${describeIssues(checked.error)}`);
  return fields;
}

type RunOptions = Pick<JailCodeOptions, 'files' | 'extraFiles' | 'limitOverridesContext' | 'slug' | 'limits' | 'warm' | 'profile'>;

/** The fields both requests share: command, files, extra files, limits, slug, warm and profile. */
async function runFields(command: string, options: RunOptions, hasCodeFile: boolean, limitSettings: LimitSettings): Promise<Record<string, unknown>> {
  const limits = limitSettings.requested(options.limitOverridesContext, options.limits ?? {});
  const files = await collectFiles(options.files ?? []);
  const extraFiles = encodeExtraFiles(options.extraFiles ?? []);

  // The top of the run directory is one flat namespace: a second entry with the same name
  // would silently replace the first, so that is refused here.
  const topNames = new Set(hasCodeFile ? [CODE_FILE] : []);
  const newTopNames = [
    ...files.filter((entry) => !entry.name.includes('/')).map((entry) => entry.name),
    ...extraFiles.map(([name]) => name),
  ];
  for (const name of newTopNames) {
    if (topNames.has(name)) {
      throw new CodejailError(
        'bad_request',
        `'${name}' would be written twice in the run directory (files, extraFiles and ${CODE_FILE} must not share names)`,
      );
    }
    topNames.add(name);
  }

  const fields: Record<string, unknown> = { command, files, extraFiles, limits };
  if (options.slug !== undefined) fields.slug = options.slug;
  if (options.warm !== undefined) fields.warm = options.warm;
  if (options.profile !== undefined) fields.profile = options.profile;
  return fields;
}
