// Turns the caller's jailCode options into the fields of a jail_code request.
import { CODE_FILE, describeIssues, jailCodeRequest } from '../protocol/index.js';
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
  /** false: a fresh interpreter even where the daemon runs the command warm. */
  warm?: boolean;
  /** Ask for usage.stages: where the run's time went. */
  profile?: boolean;
}

/** The request without its envelope (v, id), which the connection adds. */
const jailCodeFields = jailCodeRequest.omit({ v: true, id: true });

/** Builds and validates the fields of a jail_code request (everything but v, id and op). */
export async function buildJailCodeFields(
  command: string,
  options: JailCodeOptions,
  limitSettings: LimitSettings,
): Promise<Record<string, unknown>> {
  const limits = limitSettings.requested(options.limitOverridesContext, options.limits ?? {});
  const files = await collectFiles(options.files ?? []);
  const extraFiles = encodeExtraFiles(options.extraFiles ?? []);

  // The top of the run directory is one flat namespace: a second entry with the same name
  // would silently replace the first, so that is refused here.
  const topNames = new Set(options.code === undefined ? [] : [CODE_FILE]);
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

  const fields: Record<string, unknown> = {
    command,
    files,
    extraFiles,
    argv: options.argv ?? [],
    limits,
  };
  if (options.code !== undefined) fields.code = toBytes(options.code, 'code');
  if (options.stdin !== undefined) fields.stdin = toBytes(options.stdin, 'stdin');
  if (options.slug !== undefined) fields.slug = options.slug;
  if (options.resultChannel) fields.resultChannel = true;
  if (options.warm !== undefined) fields.warm = options.warm;
  if (options.profile) fields.profile = true;

  const checked = jailCodeFields.safeParse({ op: 'jail_code', ...fields });
  if (!checked.success) throw new CodejailError('bad_request', `jailCode: ${describeIssues(checked.error)}`);
  return fields;
}
