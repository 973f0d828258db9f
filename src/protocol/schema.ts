// The one schema both sides import. The daemon validates every decoded request against it
// before use; the client validates replies. Bytes travel as msgpack bin (Uint8Array/Buffer).
import { z } from 'zod';

export const PROTOCOL_VERSION = 1;

/** Names of the limits, with the original CodeJail's meaning plus OUTPUT. */
export const LIMIT_NAMES = ['CPU', 'REALTIME', 'VMEM', 'FSIZE', 'NPROC', 'OUTPUT'] as const;
export type LimitName = (typeof LIMIT_NAMES)[number];
export type Limits = Record<LimitName, number>;

/** The original's defaults (OUTPUT is ours: 1 MiB of stdout+stderr kept). */
export const DEFAULT_LIMITS: Limits = {
  CPU: 1,
  REALTIME: 1,
  VMEM: 0,
  FSIZE: 0,
  NPROC: 15,
  OUTPUT: 1024 * 1024,
};

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
  .refine((s) => !s.startsWith('/'), 'must be relative')
  .refine((s) => !s.includes('\0'), 'must not contain NUL')
  .refine(
    (s) => s.split('/').every((part) => part !== '' && part !== '.' && part !== '..'),
    "must not contain empty, '.' or '..' components",
  )
  .refine((s) => s.split('/').length <= 32, 'is nested too deep');

/** A single path component (extraFiles names). */
export const plainName = relativeName.refine((s) => !s.includes('/'), 'must be a plain name, without "/"');

export const fileEntry = z.discriminatedUnion('type', [
  z.object({ type: z.literal('file'), name: relativeName, data: bytes, executable: z.boolean().optional() }).strict(),
  z.object({ type: z.literal('dir'), name: relativeName }).strict(),
  z.object({ type: z.literal('symlink'), name: relativeName, target: text(4096).min(1) }).strict(),
]);
export type FileEntry = z.infer<typeof fileEntry>;

const limitValue = z.number().finite().nonnegative();
export const limitsSchema = z
  .object({
    CPU: limitValue,
    REALTIME: limitValue,
    VMEM: limitValue.int(),
    FSIZE: limitValue.int(),
    NPROC: limitValue.int(),
    OUTPUT: limitValue.int(),
  })
  .partial()
  .strict();

const base = { v: z.literal(PROTOCOL_VERSION), id: z.number().int().nonnegative().max(0xffffffff) };

export const jailCodeRequest = z
  .object({
    ...base,
    op: z.literal('jail_code'),
    command: text(64).min(1),
    code: bytes.optional(),
    files: z.array(fileEntry).max(10000).default([]),
    extraFiles: z.array(z.tuple([plainName, bytes])).max(10000).default([]),
    argv: z.array(text(65536)).max(4096).default([]),
    stdin: bytes.optional(),
    limits: limitsSchema.default({}),
    slug: text(256).optional(),
    /** Give the run a fourth pipe as fd 3 whose bytes come back as `result` (safeExec's globals). */
    resultChannel: z.boolean().optional(),
  })
  .strict();
export type JailCodeRequest = z.infer<typeof jailCodeRequest>;

export const statusRequest = z.object({ ...base, op: z.literal('status') }).strict();
export const cancelRequest = z.object({ ...base, op: z.literal('cancel'), target: base.id }).strict();

/** Prometheus text of the daemon's counters and gauges. */
export const metricsRequest = z.object({ ...base, op: z.literal('metrics') }).strict();
/** Runs the daemon's self-check again (through real sandboxes) and reports each probe. */
export const checkRequest = z.object({ ...base, op: z.literal('check') }).strict();

export const request = z.discriminatedUnion('op', [jailCodeRequest, statusRequest, cancelRequest, metricsRequest, checkRequest]);
export type Request = z.infer<typeof request>;
export type RequestInput = z.input<typeof request>;

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
});

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
  unsafe: z.boolean(),
  layers: z.record(z.string(), z.string()),
  slots: z.object({ total: z.number(), busy: z.number() }),
  queue: z.object({ depth: z.number(), max: z.number() }),
  uptimeMs: z.number(),
  commands: z.array(z.string()),
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

/** Turns a zod failure into one line that names each bad field. */
export function describeIssues(error: z.ZodError): string {
  return error.issues
    .slice(0, 5)
    .map((i) => `${i.path.length ? i.path.join('.') : '(request)'}: ${i.message}`)
    .join('; ');
}
