// The CLI's pure parts: exit codes, bench measurement and tables, status formatting.
import { describe, expect, it } from 'vitest';
import { benchCandidates, formatLevel, formatStages, measure } from '../../src/cli/bench.js';
import { GRADER_CODE, graderGlobals, graderProblem } from '../../src/cli/bench_cases.js';
import { Client } from '../../src/client/index.js';
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

describe('bench: warm and cold, absolute targets, stages', () => {
  const row = (label: string, concurrency: number, p50Ms: number, runsPerSecond: number, stages?: Measurement['stages']): Measurement => ({
    label,
    concurrency,
    runs: 100,
    p50Ms,
    p90Ms: p50Ms,
    p99Ms: p50Ms,
    runsPerSecond,
    ...(stages ? { stages } : {}),
  });

  it('keeps the p50 of each stage the runs reported, and none when no run did', async () => {
    let i = 0;
    const stages = [{ runMs: 3, startMs: 1 }, { runMs: 1 }, { runMs: 2, startMs: 5 }, undefined];
    const measured = await measure({ label: 'x', runOnce: async () => stages[i++ % stages.length] }, 4, 1);
    expect(measured.stages).toEqual({ runMs: 2, startMs: 1 });
    const none = await measure({ label: 'y', runOnce: async () => {} }, 3, 2);
    expect(none.stages).toBeUndefined();
  });

  it('prints absolute targets at their level only, with what was measured', () => {
    const safeExec: BenchCandidate = {
      runner: { label: 'safeExec warm', runOnce: async () => {} },
      maxP50Ms: { ms: 2, concurrency: 1 },
      minRunsPerSecond: { rate: 1000, concurrency: 4 },
    };
    const atOne = formatLevel(row('bare python3', 1, 10, 100), [[safeExec, row('safeExec warm', 1, 1.5, 600)]]);
    expect(atOne).toContain('targets at concurrency 1: safeExec warm p50 <= 2.00 ms: 1.50 ok\n');
    expect(atOne).not.toContain('runs/s >= 1000');
    const atFour = formatLevel(row('bare python3', 4, 10, 200), [[safeExec, row('safeExec warm', 4, 3, 900)]]);
    expect(atFour).toContain('targets at concurrency 4: safeExec warm runs/s >= 1000: 900.0 MISS\n');
    expect(atFour).not.toContain('p50 <= 2.00 ms');
  });

  it('prints a stage table with "-" where the daemon sent none', () => {
    const text = formatStages([row('jailCode warm', 4, 1, 1, { queueMs: 0.05, runMs: 0.4, cleanupMs: 1.25 }), row('jailCode cold', 4, 1, 1)]);
    const lines = text.split('\n');
    expect(lines[0]).toBe('stages at concurrency 4, p50 ms ("-": the daemon sent none; cleanup: mean, after the reply)');
    expect(lines[1]).toMatch(/^\s+queue\s+prepare\s+start\s+run\s+result\s+cleanup$/);
    expect(lines[2]).toMatch(/^jailCode warm\s+0\.05\s+-\s+-\s+0\.40\s+-\s+1\.25$/);
    expect(lines[3]).toMatch(/^jailCode cold(\s+-){6}$/);
  });

  it('has warm and cold rows side by side, the grader at the highest level only', () => {
    const candidates = benchCandidates(new Client({ socketPath: '/nonexistent' }), true);
    expect(candidates.map((c) => `${c.runner.label}${c.highestOnly ? ' (highest)' : ''}`)).toEqual([
      'jailCode warm',
      'jailCode cold',
      'safeExec warm',
      'safeExec cold',
      'grader warm (highest)',
      'grader cold (highest)',
    ]);
    expect(candidates[0]!.maxP50Ratio).toBe(0.3);
    expect(candidates[2]).toMatchObject({ maxP50Ms: { ms: 2, concurrency: 1 }, minRunsPerSecond: { rate: 1000, concurrency: 4 } });
  });

  it('the grader is about forty lines, and its expected globals are what Python leaves', () => {
    expect(GRADER_CODE.trim().split('\n').length).toBeGreaterThanOrEqual(35);
    expect(GRADER_CODE).toMatch(/^import math\nimport random\n/m);
    expect(graderProblem({ ...graderGlobals(), correct: true, score: 1, message: '20 of 20 sample points agree', points: new Array(20).fill({}) })).toBeUndefined();
    expect(graderProblem({ correct: false, score: 0.5, message: '10 of 20 sample points agree', points: [] })).toMatch(/the grader returned/);
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

  it('names each quarantined slot, why, since when and its failed sweeps', () => {
    const text = formatStatus({
      version: '0.1.0',
      protocol: 1,
      unsafe: false,
      layers: {},
      slots: { total: 8, busy: 8, quarantined: [{ index: 3, uid: 62003, reason: 'processes of its uid survived the kill', sinceMs: 65_000, sweeps: 4 }] },
      queue: { depth: 0, max: 256 },
      uptimeMs: 1000,
      commands: ['python'],
    });
    expect(text).toContain('slot 3 (uid 62003) QUARANTINED 1m 5s, 4 sweeps failed: processes of its uid survived the kill');
  });
});
