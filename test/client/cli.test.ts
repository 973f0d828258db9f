// The CLI's pure parts: exit codes, bench measurement and tables, status formatting.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { benchCandidates, floorMeasurement, formatCpu, formatLevel, formatStages, measure } from '../../src/cli/bench.js';
import { cpuPerRun } from '../../src/cli/bench_cpu.js';
import { parseTemplateArgv, runFloor } from '../../src/cli/bench_floor.js';
import { startPythonClient } from '../../src/cli/bench_python.js';
import { python } from '../../src/kinds/python.js';
import type { CommandProfile } from '../../src/run/commands.js';
import { GRADER_CODE, graderGlobals, graderProblem } from '../../src/cli/bench_cases.js';
import { Client } from '../../src/client/index.js';
import type { BenchCandidate, Measurement } from '../../src/cli/bench.js';
import { formatWork, workRows, workText } from '../../src/cli/bench_work.js';
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
      runCpuMs: 0,
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
    runCpuMs: 0,
    ...(stages ? { stages } : {}),
  });

  it('keeps the p50 of each stage the runs reported, and none when no run did', async () => {
    let i = 0;
    const stages = [{ runMs: 3, startMs: 1 }, { runMs: 1 }, { runMs: 2, startMs: 5 }, undefined];
    const measured = await measure({ label: 'x', runOnce: async () => ({ stages: stages[i++ % stages.length], cpuMs: 2 }) }, 4, 1);
    expect(measured.stages).toEqual({ runMs: 2, startMs: 1 });
    expect(measured.runCpuMs).toBe(8);
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
    // Issue 20's targets for the warm rows, against the fork floor.
    for (const warm of [candidates[0], candidates[2]]) {
      expect(warm).toMatchObject({ maxP50FloorRatio: { ratio: 2, concurrency: 1 }, minFloorThroughputRatio: { ratio: 0.5, concurrency: 4 } });
      expect(warm!.runner.warm).toBe(true);
    }
  });

  it('the Python package row: at concurrency 1 only, right after safeExec warm, its p50 above it against 0.3 ms', () => {
    const python = { label: 'safeExec python', warm: true, runOnce: async () => {} };
    const candidates = benchCandidates(new Client({ socketPath: '/nonexistent' }), false, python);
    expect(candidates.map((c) => c.runner.label).slice(2, 5)).toEqual(['safeExec warm', 'safeExec python', 'safeExec cold']);
    expect(candidates[3]).toMatchObject({ onlyAt: 1, maxP50AboveMs: { ms: 0.3, than: 'safeExec warm' } });

    const ts: BenchCandidate = { runner: { label: 'safeExec warm', runOnce: async () => {} } };
    const within = formatLevel(row('bare python3', 1, 10, 100), [
      [ts, row('safeExec warm', 1, 1.5, 600)],
      [candidates[3]!, row('safeExec python', 1, 1.7, 550)],
    ]);
    expect(within).toMatch(/^safeExec python\s+1\.70\s+1\.70\s+1\.70\s+550\.0\s+0\.17x\s+5\.50x$/m);
    expect(within).toContain('targets at concurrency 1: safeExec python p50 - safeExec warm p50 <= 0.30 ms: +0.20 ok\n');
    const over = formatLevel(row('bare python3', 1, 10, 100), [
      [ts, row('safeExec warm', 1, 1.5, 600)],
      [candidates[3]!, row('safeExec python', 1, 2.25, 400)],
    ]);
    expect(over).toContain('safeExec python p50 - safeExec warm p50 <= 0.30 ms: +0.75 MISS\n');
    const faster = formatLevel(row('bare python3', 1, 10, 100), [
      [ts, row('safeExec warm', 1, 1.5, 600)],
      [candidates[3]!, row('safeExec python', 1, 1.25, 700)],
    ]);
    expect(faster).toContain('safeExec python p50 - safeExec warm p50 <= 0.30 ms: -0.25 ok\n');
    // Without the TypeScript row in the level there is nothing to compare with: no target line.
    expect(formatLevel(row('bare python3', 1, 10, 100), [[candidates[3]!, row('safeExec python', 1, 2, 500)]])).not.toContain('safeExec python p50 -');
  });

  it.skipIf(!fs.existsSync('/usr/bin/python3'))('skips the Python package row, saying why, without its interpreter or its package', async () => {
    expect(await startPythonClient('/nonexistent/python3', '/nonexistent.sock')).toEqual({ skipped: '/nonexistent/python3 not found' });
    const noPackage = await startPythonClient(process.execPath, '/nonexistent.sock', '/nonexistent');
    expect(noPackage).toEqual({ skipped: 'the Python package is not here (/nonexistent)' });
    // A package whose import fails as the real one does without msgpack.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cj-bench-python-'));
    try {
      fs.mkdirSync(path.join(dir, 'codejail'));
      fs.writeFileSync(path.join(dir, 'codejail/__init__.py'), 'import msgpack_not_installed_here\n');
      const started = await startPythonClient('/usr/bin/python3', '/nonexistent.sock', dir);
      expect(started).toEqual({
        skipped: "/usr/bin/python3 cannot import the package: No module named 'msgpack_not_installed_here' (Debian: python3-msgpack)",
      });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('the grader is about forty lines, and its expected globals are what Python leaves', () => {
    expect(GRADER_CODE.trim().split('\n').length).toBeGreaterThanOrEqual(35);
    expect(GRADER_CODE).toMatch(/^import math\nimport random\n/m);
    expect(graderProblem({ ...graderGlobals(), correct: true, score: 1, message: '20 of 20 sample points agree', points: new Array(20).fill({}) })).toBeUndefined();
    expect(graderProblem({ correct: false, score: 0.5, message: '10 of 20 sample points agree', points: [] })).toMatch(/the grader returned/);
  });
});

describe('bench: the fork floor and CPU by process', () => {
  const templateArgv = (profile: CommandProfile) => python.template!.argv(profile);
  it("reads the interpreter, flags and preloads back from a template's command line", () => {
    const profile = { path: '/usr/bin/python3.11', args: ['-E', '-B', '-X', 'frozen_modules=on'], preload: ['numpy', 'math'] } as CommandProfile;
    expect(parseTemplateArgv(templateArgv(profile))).toEqual({ interpreter: ['/usr/bin/python3.11', '-E', '-B', '-X', 'frozen_modules=on'], preload: ['numpy', 'math'] });
    expect(parseTemplateArgv(templateArgv({ ...profile, preload: [] }))!.preload).toEqual([]);
    expect(parseTemplateArgv(['/usr/bin/python3', '-c', 'print(1)'])).toBeUndefined();
    expect(parseTemplateArgv(['node', 'dist/daemon/main.js'])).toBeUndefined();
  });

  it('forks, runs a = 17 and reads its globals back, in 1 and 2 processes', async () => {
    const floor = { interpreter: ['/usr/bin/python3', '-E', '-B'], env: {}, preload: ['math'], source: 'test' };
    const one = await runFloor(floor, 6, 1);
    expect(one.latencies).toHaveLength(6);
    expect(one.elapsedMs).toBeGreaterThan(0);
    const two = floorMeasurement(await runFloor(floor, 6, 2), 4, 2);
    expect(two).toMatchObject({ label: 'fork floor x2', runs: 6, concurrency: 4 });
    expect(two.cpu!.total).toBeCloseTo(two.cpu!.template! + two.cpu!.child, 6);
    await expect(runFloor({ ...floor, preload: ['no_such_module_here'] }, 2, 1)).rejects.toThrow(/fork floor .* failed/);
  });

  it('prints each warm row as a ratio to the floor, with its targets at their level', () => {
    const row = (label: string, p50Ms: number, runsPerSecond: number): Measurement => ({ label, concurrency: 1, runs: 100, p50Ms, p90Ms: p50Ms, p99Ms: p50Ms, runsPerSecond, runCpuMs: 0 });
    const warm: BenchCandidate = { runner: { label: 'safeExec warm', runOnce: async () => {} }, maxP50FloorRatio: { ratio: 2, concurrency: 1 } };
    const text = formatLevel(row('bare python3', 10, 100), [[warm, row('safeExec warm', 3, 300)]], row('fork floor', 1.2, 800));
    expect(text).toMatch(/^fork floor\s+1\.20\s+1\.20\s+1\.20\s+800\.0$/m);
    expect(text).toMatch(/^safeExec warm\s.*\s0\.30x\s+3\.00x\s+2\.50x MISS\s+0\.38x$/m);
    expect(text).toContain('targets (x floor) at concurrency 1: safeExec warm p50 <= 2.00x\n');
    // Without a floor, the table has no floor columns.
    expect(formatLevel(row('bare python3', 10, 100), [[warm, row('safeExec warm', 3, 300)]])).not.toContain('floor');
  });

  it('splits CPU by process: a warm run is the template\'s child, a cold run the daemon\'s', () => {
    const snapshot = (daemon: number, daemonChildren: number, templates: number, templateChildren: number, client: number) =>
      ({ daemon, daemonChildren, templates, templateChildren, client, templatePids: '7' });
    const before = snapshot(100, 50, 10, 20, 30);
    const warm = cpuPerRun(before, snapshot(130, 60, 20, 60, 40), 10, true, 39)!;
    expect(warm).toEqual({ daemon: 3, helpers: 1, template: 1, child: 4, client: 1, total: 10 });
    const cold = cpuPerRun(before, snapshot(130, 90, 10, 20, 40), 10, false, 35)!;
    expect(cold).toMatchObject({ helpers: 0.5, template: 0, child: 3.5 });
    expect(cpuPerRun(before, { ...snapshot(130, 90, 10, 20, 40), templatePids: '8' }, 10, true, 0)).toBeUndefined();
    const text = formatCpu([{ ...before, label: 'safeExec warm', concurrency: 1, runs: 10, p50Ms: 1, p90Ms: 1, p99Ms: 1, runsPerSecond: 1, runCpuMs: 39, cpu: warm }]);
    expect(text.split('\n')[1]).toMatch(/^\s+daemon\s+helpers\s+template\s+child\s+client\s+total$/);
    expect(text).toMatch(/^safeExec warm\s+3\.00\s+1\.00\s+1\.00\s+4\.00\s+1\.00\s+10\.00$/m);
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

describe('bench --work', () => {
  const row = (label: string, p50Ms: number, cpu?: Measurement['cpu']): Measurement => ({
    label,
    concurrency: 1,
    runs: 5,
    p50Ms,
    p90Ms: p50Ms * 2,
    p99Ms: p50Ms * 3,
    runsPerSecond: 1000 / p50Ms,
    runCpuMs: 0,
    ...(cpu ? { cpu } : {}),
  });

  it('has the issue\'s rows, fewer runs the bigger, at least 5', () => {
    const rows = workRows(new Client({ socketPath: '/nonexistent' }), 40);
    expect(rows.map((r) => r.runner.label)).toEqual([
      'globals 1 KB', 'globals 1 MB', 'globals 8 MB',
      'files 1 x 1 KB', 'files 100 x 1 KB', 'files 1000 x 1 KB',
      'output 1 MB', 'output 8 MB',
    ]);
    expect(rows.map((r) => r.runs)).toEqual([20, 8, 5, 20, 10, 5, 8, 5]);
    expect(workText(100)).toHaveLength(100);
  });

  it('prints each row against its baseline, MB/s, the time per extra file and the targets', () => {
    const rows = workRows(new Client({ socketPath: '/nonexistent' }), 40);
    const measured = [1, 6, 40, 10, 11, 19.99, 4, 20].map((ms, i) => row(rows[i]!.runner.label, ms, { daemon: 1, child: 2, client: 3, total: 6 }));
    const baselines = [0.004, 3, 10, 0.02, 0.5, 5, 1, 8];
    const text = formatWork(rows, measured, baselines);
    expect(text).toMatch(/^globals 1 MB +5 +6\.00 +12\.00 +3\.00 +2\.00x ok +166\.7 +333\.3 +1\.0 +2\.0 +3\.0 +6\.0$/m);
    expect(text).toMatch(/^globals 8 MB .* 4\.00x MISS /m);
    expect(text).toMatch(/^per extra file \(1 to 1000\): 10\.0 us, baseline 5\.0 us$/m);
    expect(text).toContain('files <= 10 us per extra file: 10.0 ok');
    expect(text).toContain('output 1 MB >= 500 MB/s: 250 MISS');
    expect(text).toContain("globals 1 MB <= 3x Python's JSON: 2.00x ok");
  });
});
