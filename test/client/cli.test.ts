// The CLI's pure parts: exit codes, bench measurement and tables, status formatting.
import { describe, expect, it } from 'vitest';
import { formatLevel, measure } from '../../src/cli/bench.js';
import type { BenchCandidate, Measurement } from '../../src/cli/bench.js';
import { exitCodeForStatus } from '../../src/cli/run.js';
import { formatStatus } from '../../src/cli/status.js';

describe('codejail run exit code', () => {
  it('is the exit code, or 128+N for a run killed by signal N', () => {
    expect(exitCodeForStatus(0)).toBe(0);
    expect(exitCodeForStatus(3)).toBe(3);
    expect(exitCodeForStatus(-9)).toBe(137);
    expect(exitCodeForStatus(-24)).toBe(152);
  });
});

describe('bench', () => {
  it('keeps exactly `concurrency` runs in flight and counts every run', async () => {
    let inFlight = 0;
    let peak = 0;
    let calls = 0;
    const runner = {
      label: 'sleep',
      runOnce: async () => {
        calls += 1;
        inFlight += 1;
        peak = Math.max(peak, inFlight);
        await new Promise((resolve) => setTimeout(resolve, 2));
        inFlight -= 1;
      },
    };
    const measurement = await measure(runner, 10, 3);
    expect(calls).toBe(10);
    expect(peak).toBe(3);
    expect(measurement.p50Ms).toBeGreaterThan(1);
    expect(measurement.p50Ms).toBeLessThanOrEqual(measurement.p90Ms);
    expect(measurement.p90Ms).toBeLessThanOrEqual(measurement.p99Ms);
  });

  it('prints ratios to the baseline and marks the targets ok or MISS', () => {
    const row = (label: string, concurrency: number, p50Ms: number, runsPerSecond: number): Measurement => ({
      label,
      concurrency,
      runs: 100,
      p50Ms,
      p90Ms: p50Ms,
      p99Ms: p50Ms,
      runsPerSecond,
    });
    const candidate: BenchCandidate = {
      runner: { label: 'jailCode', runOnce: async () => {} },
      maxP50Ratio: 1.25,
      minThroughputRatio: { ratio: 0.8, concurrency: 2 },
    };
    const safeExec: BenchCandidate = { runner: { label: 'safeExec', runOnce: async () => {} } };
    const atTwo = formatLevel(row('bare python3', 2, 10, 100), [
      [candidate, row('jailCode', 2, 13, 70)],
      [safeExec, row('safeExec', 2, 20, 50)],
    ]);
    expect(atTwo).toMatch(/^jailCode\s+13\.00\s+13\.00\s+13\.00\s+70\.0\s+1\.30x MISS\s+0\.70x MISS$/m);
    // No target: the ratios alone.
    expect(atTwo).toMatch(/^safeExec\s+20\.00\s+20\.00\s+20\.00\s+50\.0\s+2\.00x\s+0\.50x$/m);
    expect(atTwo).toContain('targets (x bare): jailCode p50 <= 1.25x, runs/s >= 0.80x at concurrency 2\n');

    const atOne = formatLevel(row('bare python3', 1, 10, 100), [[candidate, row('jailCode', 1, 12, 70)]]);
    // The runs/s target is for concurrency 2 only.
    expect(atOne).toMatch(/^jailCode\s.*\s1\.20x ok\s+0\.70x$/m);
  });
});

describe('codejail status', () => {
  it('prints the mode, slots, queue and a row per layer', () => {
    const text = formatStatus({
      version: '0.1.0',
      protocol: 1,
      unsafe: true,
      layers: { seccomp: 'off', landlock: 'abi 6' },
      slots: { total: 16, busy: 2 },
      queue: { depth: 1, max: 256 },
      uptimeMs: 90_061_000,
      commands: ['python'],
    });
    expect(text).toContain('up 1d 1h 1m 1s');
    expect(text).toContain('UNSAFE');
    expect(text).toContain('2 busy of 16');
    expect(text).toMatch(/landlock\s+abi 6\nseccomp\s+off/);
  });
});
