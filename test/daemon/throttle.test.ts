// Refusal log lines are rate-limited per kind (item 13 of issue 12): the first lines of an
// interval are written, the rest summed up in one line when it ends.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { LogFields, Logger } from '../../src/log.js';
import { ThrottledLog } from '../../src/daemon/server/throttle.js';

function recorder(): Logger & { lines: Array<{ level: string; msg: string; fields?: LogFields }> } {
  const lines: Array<{ level: string; msg: string; fields?: LogFields }> = [];
  const at = (level: string) => (msg: string, fields?: LogFields) => lines.push({ level, msg, fields });
  return { lines, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

describe('throttled refusal log', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('deny_refusal_storm_writes_a_line_each: first N an interval, then one summary', () => {
    const log = recorder();
    const throttled = new ThrottledLog(log, { perInterval: 3, intervalMs: 10_000 });
    for (let i = 0; i < 100_000; i++) throttled.info('run ended', { id: i });
    throttled.warn('connection refused: too many connections', {});
    expect(log.lines.map((l) => l.fields?.id ?? l.msg)).toEqual([0, 1, 2, 'connection refused: too many connections']);
    vi.advanceTimersByTime(10_000);
    expect(log.lines.slice(4)).toEqual([
      {
        level: 'info',
        msg: '99997 more refused in the last 10s: run ended',
        fields: { suppressed: 99_997, intervalMs: 10_000, refusal: 'run ended' },
      },
    ]);
    // A new interval starts with the next line; a quiet interval writes no summary.
    throttled.info('run ended', { id: 'again' });
    vi.advanceTimersByTime(10_000);
    expect(log.lines.slice(5)).toEqual([{ level: 'info', msg: 'run ended', fields: { id: 'again' } }]);
  });

  it('support_flush_writes_the_pending_summaries_at_once', () => {
    const log = recorder();
    const throttled = new ThrottledLog(log, { perInterval: 1, intervalMs: 60_000 });
    throttled.warn('bad frame', {});
    throttled.warn('bad frame', {});
    throttled.flush();
    expect(log.lines.map((l) => l.msg)).toEqual(['bad frame', '1 more refused in the last 60s: bad frame']);
    vi.advanceTimersByTime(60_000);
    expect(log.lines).toHaveLength(2);
  });
});
