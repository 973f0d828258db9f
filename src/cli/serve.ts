// `codejail serve`: codejail-service's HTTP API (what edx-platform's remote exec posts to), as an
// unprivileged client of the daemon's socket. It refuses to run as root: it parses what the
// network sends, and needs no right but connecting to the socket (its user is in the socket's
// group, or allowed by the daemon's allow list).
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { Client } from '../client/index.js';
import { ConfigError } from '../config_error.js';
import { createLogger, LOG_LEVELS } from '../log.js';
import { DEFAULT_HTTP_LIMITS, HttpService, type HttpServiceLimits } from '../http/server.js';
import { UsageError, withUsageErrors } from './args.js';

export const SERVE_USAGE = `usage: codejail serve [--listen HOST:PORT] [--socket PATH] [--config FILE]
Serves codejail-service's HTTP API (POST /api/v0/code-exec, GET /health/, GET /metrics) as a
client of the daemon's socket. Refuses to run as root. --listen defaults to 127.0.0.1:8080;
--config names a JSON file of { listen, socket, logLevel, maxBodyBytes, maxFieldBytes,
maxFileBytes, maxParts, maxInFlight, maxBodiesReading, maxBodiesReadingPerAddress,
maxBytesInFlight, headersTimeoutMs, requestTimeoutMs, selfCheckTtlMs, healthTimeoutMs,
drainMs, drainQuietMs, limits: {NAME: value}, limitOverrides: {context: {NAME: value}} } (the
flags win over it). maxInFlight defaults to the daemon's slots plus its queue. On SIGTERM or
SIGINT it drains first (/health/ answers 503, requests are still served) until no request but
health checks came for drainQuietMs (1 s) or for drainMs (5 s) at most, then stops accepting and
lets requests in flight finish (10 s at most). A second SIGTERM or SIGINT ends it at once.`;

const DEFAULT_LISTEN = '127.0.0.1:8080';

const positive = z.number().int().positive();
/**
 * A duration serve waits with a timer: Node fires a setTimeout longer than 2^31 - 1 ms after 1 ms
 * instead (a healthTimeoutMs of 2^31 would fail every uncached /health/ check).
 */
const MAX_TIMER_MS = 2 ** 31 - 1;
const timerMs = (least: 0 | 1) => z.number().int().min(least).max(MAX_TIMER_MS, `at most ${MAX_TIMER_MS} ms (Node's longest timer)`);
const serveConfig = z
  .object({
    listen: z.string().optional(),
    socket: z.string().optional(),
    logLevel: z.enum(LOG_LEVELS).optional(),
    maxBodyBytes: positive.optional(),
    maxFieldBytes: positive.optional(),
    maxFileBytes: positive.optional(),
    maxParts: positive.optional(),
    maxInFlight: positive.optional(),
    maxBodiesReading: positive.optional(),
    maxBodiesReadingPerAddress: positive.optional(),
    maxBytesInFlight: positive.optional(),
    headersTimeoutMs: positive.optional(),
    requestTimeoutMs: positive.optional(),
    selfCheckTtlMs: z.number().int().nonnegative().optional(),
    healthTimeoutMs: timerMs(1).optional(),
    drainMs: timerMs(0).optional(),
    drainQuietMs: timerMs(0).optional(),
    /** The original's set_limit: the limits of every run, by name (CPU, REALTIME, VMEM...). */
    limits: z.record(z.string(), z.number()).optional(),
    /** The original's override_limit: limits for runs whose limit_overrides_context is the key. */
    limitOverrides: z.record(z.string(), z.record(z.string(), z.number())).optional(),
  })
  .strict();
type ServeConfig = z.infer<typeof serveConfig>;

function loadServeConfig(file: string | undefined): ServeConfig {
  if (file === undefined) return {};
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    throw new ConfigError(`${file}: ${(err as Error).message}`);
  }
  const parsed = serveConfig.safeParse(raw);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((issue) => `${issue.path.join('.') || '(top)'}: ${issue.message}`);
    throw new ConfigError(`${file}: ${issues.join('; ')}`, issues);
  }
  return parsed.data;
}

/** HOST:PORT, [IPv6]:PORT; the port 0-65535 (0: any free port). */
export function parseListen(value: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(value);
  const port = match ? Number(match[3]) : NaN;
  if (!match || port > 65535) throw new UsageError(`--listen must be HOST:PORT, not '${value}'`);
  return { host: match[1] ?? match[2]!, port };
}

export async function serve(args: string[]): Promise<number> {
  const { values } = withUsageErrors(() =>
    parseArgs({
      args,
      options: { listen: { type: 'string' }, socket: { type: 'string' }, config: { type: 'string' } },
      strict: true,
    }),
  );
  if (process.getuid?.() === 0) {
    throw new Error('refusing to run as root: run it as its own user in the socket\'s group (systemd/codejail-http.service)');
  }
  const config = loadServeConfig(values.config);
  const { host, port } = parseListen(values.listen ?? config.listen ?? DEFAULT_LISTEN);
  const logger = createLogger({ level: config.logLevel ?? 'info' });
  const client = new Client({ socketPath: values.socket ?? config.socket });
  // As codejail-service configures codejail from its settings (CODE_JAIL limits and overrides).
  for (const [name, value] of Object.entries(config.limits ?? {})) client.setLimit(name, value);
  for (const [context, overrides] of Object.entries(config.limitOverrides ?? {})) {
    for (const [name, value] of Object.entries(overrides)) client.overrideLimit(name, value, context);
  }

  let maxInFlight = config.maxInFlight;
  if (maxInFlight === undefined) {
    try {
      const status = await client.status();
      maxInFlight = status.slots.total + status.queue.max;
    } catch (err) {
      maxInFlight = DEFAULT_HTTP_LIMITS.maxInFlight;
      logger.warn('daemon status unavailable; code-exec requests at once bounded by the default', { err: (err as Error).message, maxInFlight });
    }
  }
  const { listen: _l, socket: _s, logLevel: _v, limits: _m, limitOverrides: _o, ...limitKeys } = config;
  const limits: HttpServiceLimits = { ...DEFAULT_HTTP_LIMITS, ...limitKeys, maxInFlight, maxInFlightFromDaemon: config.maxInFlight === undefined };
  const service = new HttpService(client, logger, limits);
  const address = await service.listen(port, host);
  // The first self-check now, so that /health/ answers at once.
  void service.selfCheck();
  logger.info('ready', { listen: `${address.address}:${address.port}`, socket: client.socketPath, maxInFlight });

  await new Promise<void>((resolve) => {
    // Both listeners go at the first signal: a second one, of either kind, then has its default
    // action and ends serve at once (the other listener would swallow it for the whole stop).
    const stop = () => {
      process.off('SIGTERM', stop);
      process.off('SIGINT', stop);
      resolve();
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
  // Drained before the listening socket closes: a balancer stops sending here first.
  logger.info('draining', { drainMs: limits.drainMs, drainQuietMs: limits.drainQuietMs });
  await service.drain();
  logger.info('stopping');
  await service.close();
  await client.close();
  return 0;
}
