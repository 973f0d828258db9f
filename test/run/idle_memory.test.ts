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
    buffered: () => state.stillHeld,
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

  it('looks again, further apart each time, while collections leave memory above the level; what three in a row left becomes the level', () => {
    const { state, request, settle } = collector(90 * MiB);
    settle();
    // Live memory that grew for good (40 MiB no collection gives back), then a burst.
    state.resident += 40 * MiB;
    request(40 * MiB, 10 * MiB);
    vi.advanceTimersByTime(1000);
    expect(state.collections).toHaveLength(2);
    const at = () => state.collections.slice(2).map((t) => t - state.collections[1]!);
    vi.advanceTimersByTime(120_000);
    // Gaps of 10 and 20 s; the third collection in a row that left 130 MiB makes 130 MiB the level.
    expect(at()).toEqual([10_000, 30_000]);
    expect(state.resident).toBe(130 * MiB);
    // The garbage of a later burst goes at its first idle moment: no grown gap to wait out.
    const before = state.collections.length;
    request(1 * MiB, 20 * MiB);
    vi.advanceTimersByTime(1000);
    expect(state.collections).toHaveLength(before + 1);
    expect(state.resident).toBe(130 * MiB);
    // Growth within the bound of the new level does not collect.
    vi.advanceTimersByTime(10_000);
    request(1 * MiB, 8 * MiB);
    vi.advanceTimersByTime(10_000);
    expect(state.collections).toHaveLength(before + 1);
  });

  it('looks at new work once it is done, not after the gap that collections before it grew', () => {
    const { state, request, settle } = collector(90 * MiB);
    settle();
    state.resident += 40 * MiB;
    request(40 * MiB, 10 * MiB);
    vi.advanceTimersByTime(1000);
    expect(state.collections).toHaveLength(2);
    // The next look was 10 s away; a burst 5 s later is looked at a second after it.
    vi.advanceTimersByTime(5000);
    request(40 * MiB, 20 * MiB);
    vi.advanceTimersByTime(1000);
    expect(state.collections.slice(2).map((t) => t - state.collections[1]!)).toEqual([6000]);
  });

  it('never takes garbage for the level: memory one collection gives back leaves the level where it was', () => {
    const { state, request, settle } = collector(90 * MiB);
    settle();
    // A reply still being written holds 30 MiB through the first collection, then goes.
    state.resident += 30 * MiB;
    request(1 * MiB, 10 * MiB);
    vi.advanceTimersByTime(1000);
    expect(state.resident).toBe(120 * MiB);
    state.garbage += 30 * MiB;
    vi.advanceTimersByTime(10_000);
    expect(state.resident).toBe(90 * MiB);
    // At the level again: a growth of 16 MiB past 90 MiB collects.
    const before = state.collections.length;
    vi.advanceTimersByTime(10_000);
    request(1 * MiB, 17 * MiB);
    vi.advanceTimersByTime(1000);
    expect(state.collections).toHaveLength(before + 1);
  });

  // Review: replies a caller never reads, held through three collections, became the level; once
  // the caller left, their room stayed resident and no look collected it. And counted as growth,
  // they made every idle moment after work collect.
  it('never takes what callers have yet to read for the level, nor for growth, and collects it once they left', () => {
    const { state, request, settle } = collector(90 * MiB);
    settle();
    state.resident += 100 * MiB;
    state.stillHeld = 100 * MiB;
    request(40 * MiB, 10 * MiB);
    vi.advanceTimersByTime(1000);
    expect(state.collections).toHaveLength(2);
    // Small requests now and then while the replies wait: no collection for them.
    for (let i = 0; i < 20; i++) {
      request(1 * MiB, 1 * MiB / 4);
      vi.advanceTimersByTime(10_000);
    }
    expect(state.collections).toHaveLength(2);
    // The caller leaves: its replies are garbage, and a look gives them back.
    state.stillHeld = 0;
    state.garbage += 100 * MiB;
    vi.advanceTimersByTime(40_000);
    expect(state.resident).toBe(90 * MiB);
  });

  it('starts the count of collections above the level again once the memory was back at it', () => {
    const { state, request, settle } = collector(90 * MiB);
    settle();
    // Twice: a reply held through two collections, then gone without one (a collection V8 made
    // when allocating), found back at the level at the next look.
    for (let episode = 0; episode < 2; episode++) {
      state.resident += 30 * MiB;
      request(40 * MiB, 10 * MiB);
      vi.advanceTimersByTime(1000 + 10_000);
      state.resident -= 30 * MiB;
      vi.advanceTimersByTime(20_000);
      expect(state.resident).toBe(90 * MiB);
      vi.advanceTimersByTime(60_000);
    }
    // A third such episode leaves the level at 90 MiB: a growth of 17 MiB past it still collects.
    state.resident += 30 * MiB;
    request(40 * MiB, 10 * MiB);
    vi.advanceTimersByTime(1000 + 10_000);
    state.garbage += 30 * MiB;
    vi.advanceTimersByTime(80_000);
    expect(state.resident).toBe(90 * MiB);
    const before = state.collections.length;
    request(1 * MiB, 17 * MiB);
    vi.advanceTimersByTime(1000);
    expect(state.collections).toHaveLength(before + 1);
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
