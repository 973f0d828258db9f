// When `codejail serve` collects its garbage and gives glibc's room back (src/run/idle_memory.ts):
// after a burst that held a lot, or one that left the resident set well above its idle level
// although it never held much at once (requests that did not overlap: the soak's serve pass saw
// 124 MB against 91 MB after its warm-up, with no collection); never while busy; and not at every
// idle moment once the live memory has grown for good.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { IdleCollector } from '../../src/run/idle_memory.js';

const MiB = 1024 * 1024;

function collector(start: number) {
  const state = { rss: start, held: 0, collections: 0, freed: 0, kept: 0 };
  const idle = new IdleCollector({
    thresholdBytes: 32 * MiB,
    growthBytes: 16 * MiB,
    idleMs: 1000,
    followUpMs: 5000,
    isIdle: () => state.held === 0,
    probe: {
      rss: () => state.rss,
      collect: () => {
        state.collections++;
        // A collection gives back what is garbage now, but not what is still held (`kept`).
        state.rss -= state.freed;
        state.freed = state.kept;
        state.kept = 0;
      },
    },
  });
  /** A request that holds `bytes`, leaves `garbage` resident, and is answered. */
  const request = (bytes: number, garbage = 0) => {
    state.held += bytes;
    idle.held(state.held);
    state.rss += garbage;
    state.freed += garbage;
    state.held -= bytes;
    idle.held(state.held);
  };
  return { state, idle, request };
}

describe('IdleCollector', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('collects once idle after a burst that held the threshold', () => {
    const { state, request } = collector(90 * MiB);
    request(40 * MiB, 10 * MiB);
    vi.advanceTimersByTime(999);
    expect(state.collections).toBe(0);
    vi.advanceTimersByTime(1);
    expect(state.collections).toBe(1);
    expect(state.rss).toBe(90 * MiB);
  });

  it('collects once idle when the resident set grew past its idle level, though little was held at once', () => {
    const { state, request } = collector(90 * MiB);
    request(1 * MiB);
    vi.advanceTimersByTime(1000); // the idle level: 90 MiB
    expect(state.collections).toBe(0);
    for (let i = 0; i < 6; i++) request(12 * MiB, 6 * MiB);
    vi.advanceTimersByTime(1000);
    expect(state.collections).toBe(1);
    expect(state.rss).toBe(90 * MiB);
  });

  it('does not collect for growth within the bound, nor while a request holds bytes', () => {
    const { state, request } = collector(90 * MiB);
    request(1 * MiB);
    vi.advanceTimersByTime(1000);
    request(1 * MiB, 10 * MiB);
    vi.advanceTimersByTime(1000);
    expect(state.collections).toBe(0);
    request(1 * MiB, 10 * MiB); // 110 MiB now, but a request is in flight when the timer fires
    state.held = 1;
    vi.advanceTimersByTime(1000);
    expect(state.collections).toBe(0);
    state.held = 0;
    request(1 * MiB);
    vi.advanceTimersByTime(1000);
    expect(state.collections).toBe(1);
  });

  it('looks again when a collection found memory still held, then takes what is left as the new level', () => {
    const { state, request } = collector(90 * MiB);
    request(1 * MiB);
    vi.advanceTimersByTime(1000);
    // A burst whose last reply is still being written at the first look: 30 MiB only become garbage later.
    request(40 * MiB, 10 * MiB);
    state.rss += 30 * MiB;
    state.kept = 30 * MiB;
    vi.advanceTimersByTime(1000);
    expect([state.collections, state.rss]).toEqual([1, 120 * MiB]);
    vi.advanceTimersByTime(5000);
    expect([state.collections, state.rss]).toEqual([2, 90 * MiB]);

    // Live memory that grew for good: two collections, then that level is the idle level.
    state.rss += 40 * MiB;
    request(1 * MiB);
    vi.advanceTimersByTime(1000);
    vi.advanceTimersByTime(5000);
    expect(state.collections).toBe(4);
    for (let i = 0; i < 5; i++) {
      request(1 * MiB);
      vi.advanceTimersByTime(1000);
    }
    expect(state.collections).toBe(4);
  });
});
