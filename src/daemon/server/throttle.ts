// Log lines about refusals, rate-limited. Under overload every refused request or connection
// would write a line: a retry storm wrote 500 000 lines (190 MB) of the same thing. Each kind of
// line (its message) is written at most `perInterval` times in an interval; the rest are
// counted and summed up in one line when the interval ends. The metrics count every refusal.
import type { Logger, LogFields } from '../../log.js';

export interface ThrottleOptions {
  /** Lines of one kind written per interval before the rest are only counted. */
  perInterval: number;
  intervalMs: number;
}

export const DEFAULT_THROTTLE: ThrottleOptions = { perInterval: 10, intervalMs: 10_000 };

type Level = 'info' | 'warn';

interface Window {
  written: number;
  suppressed: number;
  level: Level;
  timer: NodeJS.Timeout;
}

export class ThrottledLog {
  private readonly windows = new Map<string, Window>();

  constructor(
    private readonly log: Logger,
    private readonly options: ThrottleOptions = DEFAULT_THROTTLE,
  ) {}

  info(msg: string, fields?: LogFields): void {
    this.write('info', msg, fields);
  }

  warn(msg: string, fields?: LogFields): void {
    this.write('warn', msg, fields);
  }

  /** Writes the summaries still pending now (the daemon is stopping). */
  flush(): void {
    for (const [msg, window] of this.windows) {
      clearTimeout(window.timer);
      this.summarize(msg, window);
    }
    this.windows.clear();
  }

  private write(level: Level, msg: string, fields?: LogFields): void {
    let window = this.windows.get(msg);
    if (!window) {
      // The interval starts with its first line; when it ends, the next line starts a new one.
      const timer = setTimeout(() => {
        this.windows.delete(msg);
        this.summarize(msg, created);
      }, this.options.intervalMs);
      timer.unref();
      const created: Window = { written: 0, suppressed: 0, level, timer };
      window = created;
      this.windows.set(msg, window);
    }
    if (window.written < this.options.perInterval) {
      window.written++;
      this.log[level](msg, fields);
      return;
    }
    window.suppressed++;
  }

  private summarize(msg: string, window: Window): void {
    if (window.suppressed === 0) return;
    const seconds = Math.round(this.options.intervalMs / 100) / 10;
    this.log[window.level](`${window.suppressed} more refused in the last ${seconds}s: ${msg}`, {
      suppressed: window.suppressed,
      intervalMs: this.options.intervalMs,
      refusal: msg,
    });
  }
}
