// What a daemon configuration is: the zod schema of the JSON file (its defaults are the embedded
// configuration, so a file only names what it changes) and the types run, layers, setup and the
// daemon read. The `layers` key is made from the layer list the caller passes (the daemon passes
// LAYERS: src/daemon/config.ts), so this module names no layer and sits below them.
import net from 'node:net';
import path from 'node:path';
import { z } from 'zod';
import { DEFAULT_LIMITS, DEFAULT_SOCKET_PATH, DEFAULT_MAX_FRAME_BYTES, limitsSchema, type Limits } from '../protocol/index.js';
import { ceilingViolation, DEFAULT_CEILINGS } from './ceilings.js';
import { KIND_NAMES, KINDS } from '../kinds/index.js';
import { LOG_LEVELS } from '../log.js';

export const DEFAULT_CONFIG_PATH = '/etc/codejail/config.json';

const absolutePath = z
  .string()
  .min(1)
  .refine((p) => path.isAbsolute(p), 'must be an absolute path')
  .refine((p) => !p.includes('\0'), 'must not contain NUL');

// JSON has no octal literals, so a mode may also be written as the string "0660".
const fileMode = z.union([
  z.number().int().min(0).max(0o777),
  z
    .string()
    .regex(/^0?[0-7]{3}$/, 'must be an octal mode such as "0660"')
    .transform((s) => parseInt(s, 8)),
]);

/** 'required': start-up stops without it; 'auto': used where the host offers it; 'off'. */
export type LayerMode = 'required' | 'auto' | 'off';
const layerMode = z.enum(['required', 'auto', 'off']) satisfies z.ZodType<LayerMode>;

const envName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be a valid environment variable name');

/** The kinds whose runs may fork from a warm template. */
const WARM_KINDS: readonly string[] = KINDS.filter((kind) => kind.template).map((kind) => kind.name);

const commandSchema = z
  .object({
    /** The interpreter to execve (absolute; symlinks are resolved at start). */
    path: absolutePath,
    /** Its kind (src/kinds/): how to discover what it reads at start-up ('python' asks it for sys.path), its warm template. */
    kind: z.enum(KIND_NAMES).default(KIND_NAMES[0]),
    /** Arguments before 'jailed_code' and the request's argv. */
    args: z.array(z.string().refine((s) => !s.includes('\0'), 'must not contain NUL')).default([]),
    /** Extra environment of the sandboxed process (on top of the clean one the daemon builds). */
    env: z.record(envName, z.string().refine((s) => !s.includes('\0'), 'must not contain NUL')).default({}),
    /** Extra paths the sandbox may read (beyond what discovery finds). */
    read: z.array(absolutePath).default([]),
    /** Extra paths the sandbox may read and execute. */
    execute: z.array(absolutePath).default([]),
    /**
     * A kind with a warm template (python): run from it (src/run/template.ts) rather than a fresh
     * interpreter. Default on; a kind without one (binary) always runs cold.
     */
    warm: z.boolean().optional(),
    /** Modules the warm template imports once, for every run (e.g. numpy). */
    preload: z.array(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$/, 'must be a module name')).max(256).default([]),
  })
  .strict()
  .refine((c) => WARM_KINDS.includes(c.kind) || (c.warm !== true && c.preload.length === 0), {
    message: `warm and preload apply to commands of kind ${WARM_KINDS.map((name) => `"${name}"`).join(' or ')} only`,
  });
export type CommandConfig = z.infer<typeof commandSchema>;

const commandName = z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'must be 1-64 of [A-Za-z0-9_.-]');

const fullLimits = (defaults: Limits) => limitsSchema.default({}).transform((l): Limits => ({ ...defaults, ...l }));

/** What the `layers` key needs of each layer (a Layer is one). */
export interface LayerDefault {
  readonly name: string;
  /** Its mode when the config does not name it. */
  readonly defaultMode: 'required' | 'auto';
}

/** Layer name -> mode, one key per layer the schema was made for. */
export type LayersConfig = Readonly<Record<string, LayerMode>>;

/** One key per layer, defaulting to the layer's own defaultMode; any other key is refused. */
function layersSchema(layers: readonly LayerDefault[]): z.ZodType<LayersConfig, z.ZodTypeDef, Partial<LayersConfig>> {
  return z.object(Object.fromEntries(layers.map((layer) => [layer.name, layerMode.default(layer.defaultMode)]))).strict() as never;
}

/**
 * What callers may hold open and buffered in the daemon. Past a cap a connection is refused or
 * closed with a reply saying which cap ('overloaded', or 'bad_frame' for a frame left
 * unfinished), counted in codejail_connections_refused_total / codejail_connections_closed_total.
 */
const connectionsSchema = z
  .object({
    /** Connections open at once, all callers together. Keep it well under LimitNOFILE: runs need fds too. */
    max: z.number().int().min(1).max(1_000_000).default(1024),
    /** Connections open at once from one caller uid. */
    perUid: z.number().int().min(1).max(1_000_000).default(64),
    /** A connection with no request in flight that sends nothing for this long is closed. */
    idleTimeoutMs: z.number().int().min(100).max(86_400_000).default(300_000),
    /** A frame must arrive whole within this long of its first byte, or its connection is closed. */
    frameTimeoutMs: z.number().int().min(100).max(3_600_000).default(30_000),
    /**
     * Bytes one connection may hold in the daemon: the frame it is sending plus the replies it
     * has not read. Default: 2 * maxFrameBytes.
     */
    maxBufferedBytes: z.number().int().min(64 * 1024).max(2 ** 40).optional(),
    /**
     * Bytes all connections together may hold, requests waiting in the run queue included; past
     * it, connections of the uid holding the most are closed (its largest first), and a request
     * that would go past it is refused. Default: 4 * maxFrameBytes.
     */
    totalBufferedBytes: z.number().int().min(64 * 1024).max(2 ** 40).optional(),
    /**
     * Bytes the connections of one caller uid may hold together, its queued requests included:
     * below the total, so that one caller cannot take the whole budget from the others. Default:
     * half of totalBufferedBytes (maxFrameBytes + 4 at least).
     */
    perUidBufferedBytes: z.number().int().min(64 * 1024).max(2 ** 40).optional(),
  })
  .strict();

const accountName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?$/, 'must be a group name or a numeric gid');
const accountId = z.number().int().min(0).max(2 ** 32 - 2);

/** Loopback only: the metrics endpoint has no authentication, so it must not face a network. */
const loopbackHost = z
  .string()
  .refine(
    (h) => h === 'localhost' || (net.isIPv4(h) && h.startsWith('127.')) || h === '::1',
    'must be a loopback address (127.0.0.1, ::1 or localhost): the metrics endpoint has no authentication',
  );

/** The schema of a configuration for these layers (the daemon's: configSchema in src/daemon/config.ts). */
export function configSchemaFor(layers: readonly LayerDefault[]) {
  return z
    .object({
      socket: z
        .object({
          path: absolutePath.default(DEFAULT_SOCKET_PATH),
          group: z.string().min(1).default('codejail'),
          mode: fileMode.default(0o660),
        })
        .strict()
        .default({}),
      runBase: absolutePath
        .refine((p) => path.resolve(p) !== '/', 'must not be /')
        .default('/var/lib/codejail/runs'),
      slots: z
        .object({
          // Below 1000 live system accounts; a slot uid must belong to nobody else, because the
          // daemon kills every process of it after each run.
          firstUid: z.number().int().min(1000).max(2 ** 31 - 5000).default(61000),
          count: z.number().int().min(1).max(4096).default(16),
        })
        .strict()
        .default({}),
      queueMax: z.number().int().min(0).max(1_000_000).default(256),
      maxFrameBytes: z
        .number()
        .int()
        .min(64 * 1024)
        .max(2 ** 31)
        .default(DEFAULT_MAX_FRAME_BYTES),
      connections: connectionsSchema.default({}),
      commands: z
        .record(commandName, commandSchema)
        .refine((c) => Object.keys(c).length > 0, 'must name at least one command')
        .default({ python: { path: '/usr/bin/python3', kind: 'python', args: ['-E', '-B'], env: {}, read: [], execute: [], preload: [] } }),
      /** Warm templates: off turns every command cold; when a template is replaced (also on SIGHUP). */
      warm: z
        .object({
          enabled: z.boolean().default(true),
          maxForks: z.number().int().min(1).default(10_000),
          maxAgeSeconds: z.number().int().min(1).default(3600),
          /**
           * Each idle slot holds its next warm run started ahead (src/run/held.ts): directory,
           * layers and a confined child waiting for its request, made for the last warm run's
           * command and limits.
           */
          holdAhead: z.boolean().default(false),
        })
        .strict()
        .default({}),
      defaultLimits: fullLimits(DEFAULT_LIMITS),
      ceilings: fullLimits(DEFAULT_CEILINGS),
      layers: layersSchema(layers).default({}),
      apparmorProfile: z.string().regex(/^[A-Za-z0-9_.\-/]{1,128}$/, 'must be a plain profile name').default('codejail-sandbox'),
      /**
       * memory.max (bytes) of a run's cgroup when its VMEM limit is 0 (unlimited); with VMEM set,
       * memory.max is VMEM. 0: no memory.max beyond VMEM.
       */
      cgroupMemoryMax: z.number().int().min(0).default(0),
      logLevel: z.enum(LOG_LEVELS).default('info'),
      /**
       * Who may use the socket, checked with SO_PEERCRED on every connection: a caller passes when
       * its uid is listed, or its primary or any supplementary group is. Without `groups`, the
       * socket's group. Root and the daemon's own uid always pass (they own the socket anyway).
       */
      allow: z
        .object({
          uids: z.array(accountId).max(4096).default([0]),
          groups: z.array(z.union([accountName, accountId])).max(4096).optional(),
        })
        .strict()
        .default({}),
      /** Prometheus text on a loopback HTTP port (besides the socket's 'metrics' request). */
      metrics: z
        .object({
          port: z.number().int().min(1).max(65535).optional(),
          host: loopbackHost.default('127.0.0.1'),
        })
        .strict()
        .default({}),
      /** On SIGTERM, how long running work may finish before it is killed. */
      shutdownGraceMs: z.number().int().min(0).max(3_600_000).default(10_000),
    })
    .strict()
    .superRefine((config, ctx) => {
      const violation = ceilingViolation(config.defaultLimits, config.ceilings);
      if (violation) ctx.addIssue({ code: 'custom', path: ['defaultLimits'], message: `does not fit the ceilings: ${violation}` });
      // A connection must be able to hold one frame of the largest size, header included.
      const { maxBufferedBytes, totalBufferedBytes } = config.connections;
      const frame = config.maxFrameBytes + 4;
      if (maxBufferedBytes !== undefined && maxBufferedBytes < frame) {
        ctx.addIssue({ code: 'custom', path: ['connections', 'maxBufferedBytes'], message: `must be at least maxFrameBytes + 4 (${frame})` });
      }
      if (totalBufferedBytes !== undefined && totalBufferedBytes < (maxBufferedBytes ?? frame)) {
        ctx.addIssue({
          code: 'custom',
          path: ['connections', 'totalBufferedBytes'],
          message: `must be at least connections.maxBufferedBytes (or maxFrameBytes + 4): ${maxBufferedBytes ?? frame}`,
        });
      }
      const { perUidBufferedBytes } = config.connections;
      if (perUidBufferedBytes !== undefined) {
        const total = totalBufferedBytes ?? Math.max(4 * config.maxFrameBytes, maxBufferedBytes ?? 0);
        if (perUidBufferedBytes < frame) {
          ctx.addIssue({ code: 'custom', path: ['connections', 'perUidBufferedBytes'], message: `must be at least maxFrameBytes + 4 (${frame})` });
        } else if (perUidBufferedBytes > total) {
          ctx.addIssue({ code: 'custom', path: ['connections', 'perUidBufferedBytes'], message: `must be at most connections.totalBufferedBytes (${total})` });
        }
      }
    })
    .transform((config) => {
      const { connections, maxFrameBytes } = config;
      const maxBufferedBytes = connections.maxBufferedBytes ?? 2 * maxFrameBytes;
      const totalBufferedBytes = connections.totalBufferedBytes ?? Math.max(4 * maxFrameBytes, maxBufferedBytes);
      const perUidBufferedBytes = connections.perUidBufferedBytes ?? Math.max(Math.floor(totalBufferedBytes / 2), maxFrameBytes + 4);
      return { ...config, connections: { ...connections, maxBufferedBytes, totalBufferedBytes, perUidBufferedBytes } };
    });
}

export type DaemonConfig = z.output<ReturnType<typeof configSchemaFor>>;
export type DaemonConfigInput = z.input<ReturnType<typeof configSchemaFor>>;
