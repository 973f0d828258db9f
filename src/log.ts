// Structured log through pino: one JSON object per line on stderr ({time, level, msg, ...fields}),
// which journald and any log shipper ingest as is. The level is written as its name ("info",
// not pino's 30) and the time as ISO 8601, so the lines read the same as before pino and tools
// that match on `level === 'warn'` or `msg === 'ready'` keep working.
import pino from 'pino';

export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
}

/** A logger whose threshold can change while it runs (SIGHUP reloads logLevel). */
export interface AdjustableLogger extends Logger {
  setLevel(level: LogLevel): void;
}

export interface LogSink {
  write(line: string): unknown;
}

export function createLogger(options: { level?: LogLevel; sink?: LogSink } = {}): AdjustableLogger {
  // Synchronous writes to fd 2: the daemon logs little, and a line written just before
  // process.exit() (a start-up failure) must not be lost in a buffer.
  const destination = options.sink ?? pino.destination({ dest: 2, sync: true });
  const logger = pino(
    {
      level: options.level ?? 'info',
      // No pid/hostname on every line: journald records both already.
      base: undefined,
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      // Fields may hold Errors anywhere (JSON would turn them into {}) and BigInts (which throw).
      hooks: {
        logMethod(args, method) {
          const [fields, msg] = args as unknown as [LogFields, string];
          method.apply(this, [sanitize(fields), msg] as unknown as Parameters<typeof method>);
        },
      },
    },
    destination as pino.DestinationStream,
  );
  const emit = (level: LogLevel) => (msg: string, fields?: LogFields) => {
    // Reserved keys are dropped so a field can never overwrite time, level or msg.
    logger[level](withoutReserved(fields), msg);
  };
  return {
    debug: emit('debug'),
    info: emit('info'),
    warn: emit('warn'),
    error: emit('error'),
    setLevel(level: LogLevel) {
      logger.level = level;
    },
  };
}

/** A logger that drops everything (tests, library use). */
export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };

function withoutReserved(fields: LogFields | undefined): LogFields {
  if (!fields) return {};
  const { time: _t, level: _l, msg: _m, ...rest } = fields;
  return rest;
}

/** Errors become {name, message, code, step, errno}; BigInts become strings; depth-limited. */
function sanitize(value: unknown, depth = 0): any {
  if (value instanceof Error) {
    const extra = value as Error & { code?: unknown; step?: unknown; errno?: unknown };
    return { name: value.name, message: value.message, code: extra.code, step: extra.step, errno: extra.errno };
  }
  if (typeof value === 'bigint') return value.toString();
  if (value === null || typeof value !== 'object' || depth > 8) return value;
  if (Buffer.isBuffer(value) || ArrayBuffer.isView(value)) return value;
  if (Array.isArray(value)) return value.map((v) => sanitize(v, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) out[k] = sanitize(v, depth + 1);
  return out;
}
