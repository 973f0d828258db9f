// Structured log: one JSON object per line on stderr ({time, level, msg, ...fields}), which
// journald and any log shipper ingest as is. No dependency: the daemon logs little.

export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
}

export interface LogSink {
  write(line: string): unknown;
}

export function createLogger(options: { level?: LogLevel; sink?: LogSink } = {}): Logger {
  const sink = options.sink ?? process.stderr;
  const threshold = LOG_LEVELS.indexOf(options.level ?? 'info');
  const emit = (level: LogLevel) => (msg: string, fields?: LogFields) => {
    if (LOG_LEVELS.indexOf(level) < threshold) return;
    // Fields come after time/level/msg so a field can never overwrite them.
    sink.write(JSON.stringify({ time: new Date().toISOString(), level, msg, ...withoutReserved(fields) }, jsonSafe) + '\n');
  };
  return { debug: emit('debug'), info: emit('info'), warn: emit('warn'), error: emit('error') };
}

/** A logger that drops everything (tests, library use). */
export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };

function withoutReserved(fields: LogFields | undefined): LogFields {
  if (!fields) return {};
  const { time: _t, level: _l, msg: _m, ...rest } = fields;
  return rest;
}

// Errors serialise as {} and BigInts throw in JSON.stringify; neither may break a log line.
function jsonSafe(_key: string, value: unknown): unknown {
  if (value instanceof Error) {
    const extra = value as Error & { code?: unknown; step?: unknown; errno?: unknown };
    return { name: value.name, message: value.message, code: extra.code, step: extra.step, errno: extra.errno };
  }
  if (typeof value === 'bigint') return value.toString();
  return value;
}
