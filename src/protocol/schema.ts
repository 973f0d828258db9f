// The one schema both sides import. The daemon validates every decoded request against it
// before use; the client validates replies. Bytes travel as msgpack bin (Uint8Array/Buffer).
import { z } from 'zod';
import { PROTOCOL_VERSION } from './versions.js';
import { limitsSchema } from './limits.js';

const bytes = z.custom<Uint8Array>((v) => v instanceof Uint8Array, { message: 'expected bytes' });
const text = (max: number) => z.string().max(max);

/**
 * A relative name inside the run directory: no absolute paths, no '..' or '.' components, no NUL,
 * no empty components, at most 32 levels. The daemon checks it again when it writes.
 */
export const relativeName = z
  .string()
  .min(1)
  .max(4096)
  .superRefine((s, ctx) => {
    // One pass over the name, not one per rule: a request may carry ten thousand of them.
    const problem = relativeNameProblem(s);
    if (problem) ctx.addIssue({ code: 'custom', message: problem });
  });

function relativeNameProblem(s: string): string | undefined {
  if (s.startsWith('/')) return 'must be relative';
  if (s.includes('\0')) return 'must not contain NUL';
  let levels = 1;
  let start = 0;
  for (let i = 0; i <= s.length; i++) {
    if (i < s.length && s.charCodeAt(i) !== 0x2f) continue;
    const length = i - start;
    if (length === 0 || (length === 1 && s[start] === '.') || (length === 2 && s[start] === '.' && s[start + 1] === '.')) {
      return "must not contain empty, '.' or '..' components";
    }
    if (i < s.length && ++levels > 32) return 'is nested too deep';
    start = i + 1;
  }
  return undefined;
}

const PLAIN_NAME_PROBLEM = 'must be a plain name, without "/"';

/** A single path component (extraFiles names). */
export const plainName = relativeName.refine((s) => !s.includes('/'), PLAIN_NAME_PROBLEM);

/**
 * What is wrong with `name` as plainName judges it (its first message), or undefined: without
 * zod's machinery, which cost about 10 us a name.
 */
export function plainNameProblem(name: unknown): string | undefined {
  if (typeof name !== 'string') return `Expected string, received ${name === null ? 'null' : Array.isArray(name) ? 'array' : typeof name}`;
  if (name.length < 1) return 'String must contain at least 1 character(s)';
  if (name.length > 4096) return 'String must contain at most 4096 character(s)';
  return relativeNameProblem(name) ?? (name.includes('/') ? PLAIN_NAME_PROBLEM : undefined);
}

/** What is wrong with one extraFiles entry, [plain name, bytes], and where in it; or undefined. */
function extraFileProblem(entry: unknown): { message: string; path: number[] } | undefined {
  if (!Array.isArray(entry)) return { message: `Expected array, received ${entry === null ? 'null' : typeof entry}`, path: [] };
  if (entry.length !== 2) return { message: `Array must contain ${entry.length < 2 ? 'at least' : 'at most'} 2 element(s)`, path: [] };
  const problem = plainNameProblem(entry[0]);
  if (problem) return { message: problem, path: [0] };
  if (!(entry[1] instanceof Uint8Array)) return { message: 'expected bytes', path: [1] };
  return undefined;
}

/** Entries an extraFiles list may hold. */
export const MAX_EXTRA_FILES = 10000;

/** Whether `list` is an array of at most `max` entries; if not, says so as z.array(...).max(max) would. */
function isListOfAtMost(list: unknown, max: number, ctx: z.RefinementCtx): list is unknown[] {
  if (!Array.isArray(list)) {
    ctx.addIssue({ code: 'custom', message: `Expected array, received ${list === null ? 'null' : typeof list}` });
    return false;
  }
  if (list.length > max) {
    ctx.addIssue({ code: 'custom', message: `Array must contain at most ${max} element(s)` });
    return false;
  }
  return true;
}

/**
 * The extraFiles list, [plain name, bytes] pairs, checked by one function over the whole list,
 * with z.array's, plainName's and bytes' messages at the same paths (extraFiles, extraFiles.N.0,
 * extraFiles.N.1). As z.array(z.tuple([plainName, bytes])), zod 3 took about 90 us an entry
 * (its machinery per item, and the garbage it leaves); as z.array of one custom check per entry,
 * still 2 us: 2 ms for a request of 1000 files, on each side of the socket. This takes a fraction
 * of a microsecond an entry. Only the first problem is reported: the daemon answers with one.
 */
const extraFileList = z.custom<[string, Uint8Array][]>().superRefine((list, ctx) => {
  if (!isListOfAtMost(list, MAX_EXTRA_FILES, ctx)) return;
  for (let i = 0; i < list.length; i++) {
    const problem = extraFileProblem(list[i]);
    if (problem) {
      ctx.addIssue({ code: 'custom', message: problem.message, path: [i, ...problem.path] });
      return;
    }
  }
});

export const fileEntry = z.discriminatedUnion('type', [
  z.object({ type: z.literal('file'), name: relativeName, data: bytes, executable: z.boolean().optional() }).strict(),
  z.object({ type: z.literal('dir'), name: relativeName }).strict(),
  z.object({ type: z.literal('symlink'), name: relativeName, target: text(4096).min(1) }).strict(),
]);
export type FileEntry = z.infer<typeof fileEntry>;

/** Entries a files list may hold. */
export const MAX_FILE_ENTRIES = 10000;

/** Whether `entry` is a well-formed file entry, checked without zod: true, or false to ask zod why not. */
function isPlainFileEntry(entry: unknown): boolean {
  if (entry === null || typeof entry !== 'object' || Array.isArray(entry)) return false;
  const e = entry as Record<string, unknown>;
  if (typeof e.name !== 'string' || e.name.length < 1 || e.name.length > 4096 || relativeNameProblem(e.name)) return false;
  const keys = Object.keys(e).length;
  switch (e.type) {
    case 'file':
      return e.data instanceof Uint8Array && (e.executable === undefined ? keys === 3 || (keys === 4 && 'executable' in e) : typeof e.executable === 'boolean' && keys === 4);
    case 'dir':
      return keys === 2;
    case 'symlink':
      return typeof e.target === 'string' && e.target.length >= 1 && e.target.length <= 4096 && keys === 3;
    default:
      return false;
  }
}

/**
 * The files list. Each entry is checked by isPlainFileEntry; one that fails it goes through
 * fileEntry, whose first issue is reported at its path (files.N...), as z.array(fileEntry) did.
 * z.array(fileEntry) took 9 us an entry, on each side of the socket: 9 ms for a request of 1000
 * files. Only the first problem is reported: the daemon answers with one.
 */
const fileList = z.custom<FileEntry[]>().superRefine((list, ctx) => {
  if (!isListOfAtMost(list, MAX_FILE_ENTRIES, ctx)) return;
  for (let i = 0; i < list.length; i++) {
    if (isPlainFileEntry(list[i])) continue;
    const checked = fileEntry.safeParse(list[i]);
    if (checked.success) continue;
    const issue = checked.error.issues[0]!;
    ctx.addIssue({ code: 'custom', message: issue.message, path: [i, ...issue.path] });
    return;
  }
});

const base = { v: z.literal(PROTOCOL_VERSION), id: z.number().int().nonnegative().max(0xffffffff) };

/** How a run is made, for jail_code and safe_exec alike. */
const runOptions = {
  /**
   * false forces a cold run (a fresh interpreter exec'd for the run) even where the command is
   * warm (forked from the daemon's template); absent or true: the command's own way.
   */
  warm: z.boolean().optional(),
  /** Asks for the run's per-stage timings in `usage.stages`. */
  profile: z.boolean().optional(),
};

export const jailCodeRequest = z
  .object({
    ...base,
    op: z.literal('jail_code'),
    command: text(64).min(1),
    code: bytes.optional(),
    files: fileList.default([]),
    extraFiles: extraFileList.default([]),
    argv: z.array(text(65536)).max(4096).default([]),
    stdin: bytes.optional(),
    limits: limitsSchema.default({}),
    slug: text(256).optional(),
    /** Give the run a fourth pipe as fd 3 whose bytes come back as `result` (safeExec's globals). */
    resultChannel: z.boolean().optional(),
    ...runOptions,
  })
  .strict();
export type JailCodeRequest = z.infer<typeof jailCodeRequest>;

/**
 * The original CodeJail's safe_exec as one request: the daemon runs its own harness
 * (python/safe_exec_harness.py) with `command`, which must be of kind python, and sends it the
 * code, the globals and the python path. The reply is jail_code's result, the harness's tagged
 * globals in `result`.
 */
export const safeExecRequest = z
  .object({
    ...base,
    op: z.literal('safe_exec'),
    command: text(64).min(1).default('python'),
    /** Python source for exec(code, globals). Bounded by the frame, as jail_code's code is. */
    code: z.string(),
    /**
     * The tagged globals dict as JSON text (src/client/safe_exec.ts encodeGlobals): passed to the
     * harness as they are, never parsed by the daemon. The harness refuses a malformed one.
     */
    globals: bytes,
    /** Names of files or directories of the run directory added to sys.path, in order. */
    pythonPath: z.array(plainName).max(4096).default([]),
    files: jailCodeRequest.shape.files,
    extraFiles: jailCodeRequest.shape.extraFiles,
    limits: limitsSchema.default({}),
    slug: text(256).optional(),
    ...runOptions,
  })
  .strict();
export type SafeExecRequest = z.infer<typeof safeExecRequest>;

export const statusRequest = z.object({ ...base, op: z.literal('status') }).strict();
export const cancelRequest = z.object({ ...base, op: z.literal('cancel'), target: base.id }).strict();

/** Prometheus text of the daemon's counters and gauges. */
export const metricsRequest = z.object({ ...base, op: z.literal('metrics') }).strict();
/** Runs the daemon's self-check again (through real sandboxes) and reports each probe. */
export const checkRequest = z.object({ ...base, op: z.literal('check') }).strict();

export const request = z.discriminatedUnion('op', [
  jailCodeRequest,
  safeExecRequest,
  statusRequest,
  cancelRequest,
  metricsRequest,
  checkRequest,
]);
export type Request = z.infer<typeof request>;
export type RequestInput = z.input<typeof request>;

/** A run's wall time by stage, in milliseconds, from the daemon's point of view. */
export const stages = z.object({
  /** Waiting in the run queue for a slot. */
  queueMs: z.number().optional(),
  /** Setting the run directory up: its disk, the request's files, the cgroup leaf. */
  prepareMs: z.number().optional(),
  /** Fork (or clone and exec) and confinement, until the run's own code starts. */
  startMs: z.number().optional(),
  /** The run's code. */
  runMs: z.number().optional(),
  /** Collecting output and the result channel once the code ended. */
  resultMs: z.number().optional(),
  /**
   * Clean-up the reply waited for. The sweep's last rounds and the run directory's removal run
   * after the reply (the slot stays busy meanwhile): the daemon's metrics count that time
   * (codejail_cleanup_seconds_total).
   */
  cleanupMs: z.number().optional(),
  /** The run forked from a warm template (false: a fresh interpreter). */
  warm: z.boolean().optional(),
  /**
   * The run was held ahead (warm.holdAhead): its directory, layers and confined child were made
   * before the request came, so its startMs is the go alone.
   */
  held: z.boolean().optional(),
});
export type Stages = z.infer<typeof stages>;

export const usage = z.object({
  wallMs: z.number(),
  userMs: z.number(),
  systemMs: z.number(),
  /**
   * Peak resident set of the run's main process and its reaped descendants. Absent when the
   * kernel's figure cannot be told from the daemon's: the sandbox is exec'd from the daemon's
   * memory (CLONE_VM), and exec folds that memory's peak into the new process's, so a figure at
   * or below the daemon's peak may not be the run's. memoryPeakKb (cgroups layer) has no such gap.
   */
  maxRssKb: z.number().optional(),
  /** Peak memory of the run's cgroup, all its processes together (cgroups layer, kernel >= 5.19). */
  memoryPeakKb: z.number().optional(),
  /** Where the run's time went, when the request asked for a profile (each stage if measured). */
  stages: stages.optional(),
});
export type Usage = z.infer<typeof usage>;

export const jailCodeResult = z.object({
  runId: z.string(),
  stdout: bytes,
  stderr: bytes,
  status: z.number().int(),
  /** Output past the OUTPUT limit was dropped. */
  truncated: z.boolean(),
  /** REALTIME ran out and the run was killed. */
  timedOut: z.boolean(),
  /**
   * The run reached its cgroup's memory.max and the kernel's OOM killer ended it (status -9).
   * Present only when the cgroups layer is active.
   */
  oomKilled: z.boolean().optional(),
  usage,
  /** The layers applied to this run, or 'none' in unsafe mode. */
  confinement: z.union([z.literal('none'), z.array(z.string())]),
  limits: limitsSchema,
  /** What the run wrote to fd 3, when the request asked for a result channel. */
  result: bytes.optional(),
});
export type JailCodeResult = z.infer<typeof jailCodeResult>;

export const statusResult = z.object({
  version: z.string(),
  protocol: z.number(),
  /** Every protocol version the daemon serves (absent from daemons older than the rule: [1]). */
  protocols: z.array(z.number()).optional(),
  unsafe: z.boolean(),
  layers: z.record(z.string(), z.string()),
  slots: z.object({
    total: z.number(),
    busy: z.number(),
    /**
     * Slots kept out of service because processes of their uid survived a kill: which, since when,
     * why, and how many sweeps have failed (optional: added after protocol 1 shipped).
     */
    quarantined: z
      .array(z.object({ index: z.number(), uid: z.number(), reason: z.string(), sinceMs: z.number(), sweeps: z.number() }))
      .optional(),
  }),
  queue: z.object({ depth: z.number(), max: z.number() }),
  uptimeMs: z.number(),
  /** The daemon's process id (optional: added later), which `codejail bench --profile` reads CPU time of. */
  pid: z.number().int().optional(),
  commands: z.array(z.string()),
  /** What bounds a run's memory on this host, in words (limits and layers together). */
  memory: z.string().optional(),
  /** What bounds a run's directory (the disk layer), in words. */
  disk: z.string().optional(),
  /** Each warm command's template: ready or not, runs forked from it and runs that went cold. */
  warm: z
    .array(
      z.object({
        command: z.string(),
        ready: z.boolean(),
        warmRuns: z.number(),
        coldRuns: z.number(),
        restarts: z.number(),
        replaced: z.number(),
        preload: z.array(z.string()),
      }),
    )
    .optional(),
  /**
   * Held runs (warm.holdAhead): made ahead in idle slots, taken by a request that fit them, and
   * held now that a request could take (optional: added later). The others were discarded.
   */
  held: z
    .object({
      made: z.number(),
      used: z.number(),
      holding: z.number(),
      /**
       * Each held run now: its slot, its directory's name in the run base, its waiting child's
       * pid, and whether a request could take it (false: being discarded). What an operator or a
       * test sees in the run base and among the slots' processes that no run made.
       */
      runs: z.array(z.object({ slot: z.number(), dir: z.string(), pid: z.number().optional(), usable: z.boolean() })).optional(),
    })
    .optional(),
  /** Run counts since start (optional: added after protocol 1 shipped its first shape). */
  counters: z
    .object({
      started: z.number(),
      finished: z.number(),
      setupFailures: z.number(),
      timedOut: z.number(),
      cancelled: z.number(),
    })
    .optional(),
});
export type StatusResult = z.infer<typeof statusResult>;

/** Reply to 'cancel': whether a run with that id was in flight on this connection. */
export const cancelResult = z.object({ cancelled: z.boolean() });
export type CancelResult = z.infer<typeof cancelResult>;

/** Reply to 'metrics': the Prometheus text exposition format (0.0.4). */
export const metricsResult = z.object({ text: z.string() });
export type MetricsResult = z.infer<typeof metricsResult>;

/** Reply to 'check': whether every probe passed, the layers, and each probe's outcome. */
export const checkResult = z.object({
  ok: z.boolean(),
  layers: z.record(z.string(), z.string()),
  probes: z.array(
    z.object({ name: z.string(), outcome: z.enum(['passed', 'failed', 'skipped']), detail: z.string().optional() }),
  ),
  durationMs: z.number(),
});
export type CheckResult = z.infer<typeof checkResult>;

/** Error codes a reply may carry; the message says what exactly was wrong. */
export const ERROR_CODES = [
  'bad_frame',
  'bad_version',
  'bad_request',
  'unknown_command',
  'limit_exceeds_ceiling',
  'overloaded',
  'setup_failed',
  'shutting_down',
  'cancelled',
  /**
   * The warm template a run was forked from went away (killed, or stopped and replaced) while the
   * run was in flight: its end was the template's, not its own. Running it again is safe.
   */
  'template_lost',
  'internal',
  /** The caller's uid and groups are not in the daemon's allow list; the connection is closed. */
  'forbidden',
] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

export const errorBody = z.object({ code: z.enum(ERROR_CODES), message: z.string() });

export const reply = z.union([
  z.object({ v: z.number(), id: z.number(), ok: z.literal(true), result: z.unknown() }),
  z.object({ v: z.number(), id: z.number(), ok: z.literal(false), error: errorBody }),
]);
export type Reply = z.infer<typeof reply>;

/** Longest issue message, and path, a description quotes: the rest is cut (with an ellipsis). */
const MAX_ISSUE_MESSAGE = 200;
const MAX_ISSUE_PATH = 100;

/** Turns a zod failure into one line that names each bad field (five at most, each bounded). */
export function describeIssues(error: z.ZodError): string {
  return error.issues.slice(0, 5).map(describeIssue).join('; ');
}

function describeIssue(issue: Pick<z.ZodIssue, 'path' | 'message'>): string {
  const path = issue.path.length ? clip(issue.path.join('.'), MAX_ISSUE_PATH) : '(request)';
  return `${path}: ${clip(issue.message, MAX_ISSUE_MESSAGE)}`;
}

function clip(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max)}...`;
}

/** Carries the first issue out of a parse (see validateFirstIssue). */
class FirstIssue {
  constructor(readonly issue: z.ZodIssue) {}
}

const stopAtFirstIssue: z.ZodErrorMap = (issue, ctx) => {
  throw new FirstIssue({ ...issue, message: ctx.defaultError } as z.ZodIssue);
};

export type Validation<T> = { success: true; data: T } | { success: false; message: string };

/**
 * Validates `data` and stops at the first issue, described in one bounded line. zod 3 otherwise
 * visits every element and collects an issue for each: an 8-million-element argv cost minutes
 * and gigabytes, a map of 2 million unknown keys a 23 MB message. The error map is called as an
 * issue is made, so throwing from it ends the parse there. Issues with a message of their own
 * (refinements) do not go through it and are collected as usual; they are bounded by the frame's
 * element cap. Only for schemas without z.union, which tries its options in turn and would end
 * at the first option's first issue (discriminated unions pick one option: fine); a test walks
 * the request schema to keep it so.
 */
export function validateFirstIssue<S extends z.ZodTypeAny>(schema: S, data: unknown): Validation<z.output<S>> {
  let parsed: z.SafeParseReturnType<unknown, z.output<S>>;
  try {
    parsed = schema.safeParse(data, { errorMap: stopAtFirstIssue });
  } catch (err) {
    if (!(err instanceof FirstIssue)) throw err;
    return { success: false, message: describeIssue(err.issue) };
  }
  if (parsed.success) return { success: true, data: parsed.data };
  return { success: false, message: describeIssue(parsed.error.issues[0]!) };
}
