// When `codejail serve` collects its garbage and gives glibc's room back (src/run/idle_memory.ts):
// once idle after a burst that held a lot, or one that left its memory well above its idle level
// although it never held much at once (requests that did not overlap); never while busy, nor
// before it has been quiet for a moment; at most once per gap, a gap that grows while collections
// fail to bring the memory back; and never with garbage taken for the idle level.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { IdleCollector } from '../../src/run/idle_memory.js';

const MiB = 1024 * 1024;

function collector(start: number) {
  const state = { resident: start, held: 0, collections: [] as number[], garbage: 0, stillHeld: 0 };
  const idle = new IdleCollector({
    thresholdBytes: 32 * MiB,
    growthBytes: 16 * MiB,
    idleMs: 1000,
    minGapMs: 5000,
    maxGapMs: 40_000,
    isIdle: () => state.held === 0,
    probe: {
      now: () => Date.now(),
      resident: () => state.resident,
      collect: () => {
        state.collections.push(Date.now());
        // A collection gives back what is garbage now, not what a reply still holds.
        state.resident -= state.garbage;
        state.garbage = 0;
      },
    },
  });
  /** A request that holds `bytes` at its peak and leaves `garbage` resident once answered. */
  const request = (bytes: number, garbage = 0) => {
    state.held += bytes;
    idle.held(state.held);
    state.resident += garbage;
    state.garbage += garbage;
    state.held -= bytes;
    idle.held(state.held);
  };
  /** The first look collects to measure the idle level: done, so that the tests start from it. */
  const settle = () => {
    request(1 * MiB);
    vi.advanceTimersByTime(1000);
    expect(state.collections).toHaveLength(1);
    vi.advanceTimersByTime(5000);
  };
  return { state, idle, request, settle };
}

describe('IdleCollector', () => {
  beforeEach(() => vi.useFakeTimers({ now: 1_000_000 }));
  afterEach(() => vi.useRealTimers());

  it('measures the idle level with a collection at its first idle moment', () => {
    const { state, request } = collector(100 * MiB);
    request(1 * MiB, 8 * MiB);
    vi.advanceTimersByTime(999);
    expect(state.collections).toHaveLength(0);
    vi.advanceTimersByTime(1);
    expect(state.collections).toHaveLength(1);
    expect(state.resident).toBe(100 * MiB);
  });

  it('collects once idle after a burst that held the threshold', () => {
    const { state, request, settle } = collector(90 * MiB);
    settle();
    request(40 * MiB, 10 * MiB);
    vi.advanceTimersByTime(1000);
    expect(state.collections).toHaveLength(2);
    expect(state.resident).toBe(90 * MiB);
  });

  it('collects once idle when the memory grew past its idle level, though little was held at once', () => {
    const { state, request, settle } = collector(90 * MiB);
    settle();
    for (let i = 0; i < 6; i++) request(12 * MiB, 6 * MiB);
    vi.advanceTimersByTime(1000);
    expect(state.collections).toHaveLength(2);
    expect(state.resident).toBe(90 * MiB);
  });

  it('does not collect for growth within the bound, nor while a request holds bytes', () => {
    const { state, request, settle } = collector(90 * MiB);
    settle();
    request(1 * MiB, 10 * MiB);
    vi.advanceTimersByTime(1000);
    expect(state.collections).toHaveLength(1);
    request(1 * MiB, 10 * MiB); // 110 MiB now, but a request holds bytes when the look comes
    state.held = 1;
    vi.advanceTimersByTime(3000);
    expect(state.collections).toHaveLength(1);
    state.held = 0;
    request(1 * MiB);
    vi.advanceTimersByTime(1000);
    expect(state.collections).toHaveLength(2);
  });

  it('looks only once nothing was held for idleMs since the last request', () => {
    const { state, request, settle } = collector(90 * MiB);
    settle();
    request(40 * MiB, 10 * MiB);
    vi.advanceTimersByTime(900);
    request(1 * MiB); // a request 100 ms before the look: the look waits 1 s from it
    vi.advanceTimersByTime(500);
    expect(state.collections).toHaveLength(1);
    vi.advanceTimersByTime(500);
    expect(state.collections).toHaveLength(2);
  });

  it('keeps collections minGapMs apart, however large the bursts', () => {
    const { state, request, settle } = collector(90 * MiB);
    settle();
    const first = Date.now();
    for (let i = 0; i < 10; i++) {
      request(64 * MiB, 20 * MiB);
      vi.advanceTimersByTime(1100);
    }
    const gaps = state.collections.slice(1).map((t, i) => t - (i === 0 ? first : state.collections[i]!));
    expect(state.collections.length).toBeGreaterThanOrEqual(3);
    for (const gap of gaps.slice(1)) expect(gap).toBeGreaterThanOrEqual(5000);
  });

  it('looks again, further apart each time, while collections leave memory above the level, and never raises the level', () => {
    const { state, request, settle } = collector(90 * MiB);
    settle();
    // Live memory that grew for good (40 MiB no collection gives back), then a burst.
    state.resident += 40 * MiB;
    request(40 * MiB, 10 * MiB);
    vi.advanceTimersByTime(1000);
    expect(state.collections).toHaveLength(2);
    const at = () => state.collections.slice(2).map((t) => t - state.collections[1]!);
    vi.advanceTimersByTime(80_000);
    // Gaps of 10, 20, 40 (maxGapMs), 40 s... after the collection that found the memory high.
    expect(at()).toEqual([10_000, 30_000, 70_000]);
    // Once the memory is back (the live memory given back), collections are minGapMs apart again.
    state.garbage += 40 * MiB;
    vi.advanceTimersByTime(40_000);
    expect(state.resident).toBe(90 * MiB);
    const settled = state.collections.length;
    vi.advanceTimersByTime(120_000);
    expect(state.collections).toHaveLength(settled);
    request(40 * MiB, 10 * MiB);
    vi.advanceTimersByTime(1000);
    expect(state.collections).toHaveLength(settled + 1);
  });

  it('stop() cancels a look that is due', () => {
    const { state, idle, request, settle } = collector(90 * MiB);
    settle();
    request(40 * MiB, 10 * MiB);
    idle.stop();
    vi.advanceTimersByTime(60_000);
    expect(state.collections).toHaveLength(1);
  });
});
