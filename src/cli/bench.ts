// `codejail bench`: latency and throughput of jailCode and safeExec against bare interpreter
// spawns and against the fork floor (bench_floor.ts), measured in the same process so that all
// see the same machine. Each runner is one row of the table, compared against the same baselines;
// warm and cold runs of the same code are rows side by side, and --profile adds where each row's
// time went, stage by stage as the daemon saw it, and its CPU by process (bench_cpu.ts).
import { spawn } from 'node:child_process';
import { cpus } from 'node:os';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { Client } from '../client/index.js';
import type { Stages } from '../client/index.js';
import { UsageError, positiveInteger, withUsageErrors } from './args.js';
import { CPU_COLUMNS, cpuPerRun, cpuSnapshot } from './bench_cpu.js';
import type { CpuPerRun, CpuSnapshot } from './bench_cpu.js';
import { floorInterpreter, runFloor } from './bench_floor.js';
import type { FloorResult } from './bench_floor.js';
import { GRADER_CODE, graderGlobals, graderProblem } from './bench_cases.js';
import { STAGE_NAMES, type BenchRunner, type Measurement, type RunReport, type StageName } from './bench_runner.js';

export type { Measurement };
import { PYTHON_CLIENT_LABEL, PYTHON_PACKAGE_DIR, startPythonClient } from './bench_python.js';
import type { PythonClientStart } from './bench_python.js';
import { formatWork, workBaselines, workRows } from './bench_work.js';

export const BENCH_USAGE = `usage: codejail bench [-n N] [--concurrency 1,4] [--profile] [--work | --work-only] [--socket PATH] [--python /usr/bin/python3]
  -n N               measured runs per runner and concurrency level (default 200)
  --concurrency LIST comma-separated numbers of runs kept in flight (default 1,4)
  --profile          ask the daemon for each run's stages and print their p50 per row
  --work             add the work rows (warm, concurrency 1): safeExec globals of 1 KB, 1 MB and
                     8 MB, jailCode with 1, 100 and 1000 files of 1 KB, 1 and 8 MB of output,
                     each against an in-process baseline; fewer runs the bigger the row
  --work-only        the work rows alone (with --profile: their CPU per run by process)
  --socket PATH      the daemon's socket (default $CODEJAIL_SOCKET or /run/codejail/codejail.sock)
  --python PATH      the interpreter for the bare baseline (default /usr/bin/python3)
Compares with bare 'python3 -E -B -c print(1)' spawns and with the fork floor (the template's
interpreter, flags and preloads forking a child that runs 'a = 17' and reports its globals,
unconfined; 1 process at concurrency 1, as many as there are CPUs (at most the concurrency)
above), warm (the command's own way) and cold
(warm: false) side by side: jailCode('python', {code: 'print(1)'}) and safeExec('a = 17', {}) at
every level, and a 40-line grader through safeExec at the highest level; at concurrency 1,
safeExec('a = 17') through the Python package (clients/python's import codejail, run by the
--python interpreter; skipped, saying why, without it or its msgpack module) against the
TypeScript client's safeExec warm row. Prints the ratios and
the targets; --profile adds each row's CPU per run by process, from /proc. Exits 0 whatever the ratios; 1 when the daemon cannot be reached or a run does not
do what it should.`;

/** A runner compared against the baseline, with the targets it should meet (if any). */
export interface BenchCandidate {
  runner: BenchRunner;
  /** Largest acceptable p50 latency, as a multiple of the baseline's. */
  maxP50Ratio?: number;
  /** Smallest acceptable runs/s as a fraction of the baseline's, at one concurrency level. */
  minThroughputRatio?: { ratio: number; concurrency: number };
  /** Largest acceptable p50 latency in milliseconds, at one concurrency level. */
  maxP50Ms?: { ms: number; concurrency: number };
  /** Smallest acceptable runs/s, at one concurrency level. */
  minRunsPerSecond?: { rate: number; concurrency: number };
  /** Largest acceptable p50 latency as a multiple of the fork floor's, at one concurrency level. */
  maxP50FloorRatio?: { ratio: number; concurrency: number };
  /** Smallest acceptable runs/s as a fraction of the fork floor's, at one concurrency level. */
  minFloorThroughputRatio?: { ratio: number; concurrency: number };
  /** Measured at the highest concurrency level only (a row of its own, not one per level). */
  highestOnly?: boolean;
  /** Measured at this concurrency level only. */
  onlyAt?: number;
  /** Largest acceptable p50 above another row's p50 (its label) in the same level, in ms. */
  maxP50AboveMs?: { ms: number; than: string };
}

/** The stages of a run, in the order they happen (usage.stages' keys). */

/** Nearest-rank percentile of ascending samples. */
function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/** A row from its runs' latencies (ms) and the time they took together. */
function summarize(label: string, concurrency: number, latencies: number[], elapsedMs: number): Measurement {
  latencies.sort((a, b) => a - b);
  return {
    label,
    concurrency,
    runs: latencies.length,
    p50Ms: percentile(latencies, 50),
    p90Ms: percentile(latencies, 90),
    p99Ms: percentile(latencies, 99),
    runsPerSecond: latencies.length / (elapsedMs / 1000),
    runCpuMs: 0,
  };
}

/** The fork floor's row: its processes' runs together, its CPU split into the parents (the "template" column) and the children. */
export function floorMeasurement(result: FloorResult, concurrency: number, processes: number): Measurement {
  const measurement = summarize(processes === 1 ? 'fork floor' : `fork floor x${processes}`, concurrency, [...result.latencies], result.elapsedMs);
  const runs = result.latencies.length;
  const template = result.parentCpuMs / runs;
  const child = result.childCpuMs / runs;
  measurement.runCpuMs = result.childCpuMs;
  measurement.cpu = { template, child, total: template + child };
  return measurement;
}

/** Runs `runner` `runs` times keeping `concurrency` runs in flight; times each run and the whole. */
export async function measure(runner: BenchRunner, runs: number, concurrency: number): Promise<Measurement> {
  const latencies: number[] = [];
  const stageSamples = new Map<StageName, number[]>();
  let runCpuMs = 0;
  let started = 0;
  const worker = async (): Promise<void> => {
    while (started < runs) {
      started += 1;
      const begin = performance.now();
      const report = await runner.runOnce();
      latencies.push(performance.now() - begin);
      runCpuMs += report?.cpuMs ?? 0;
      const stages = report?.stages;
      for (const name of STAGE_NAMES) {
        const value = stages ? stages[name] : undefined;
        if (typeof value !== 'number') continue;
        let samples = stageSamples.get(name);
        if (!samples) stageSamples.set(name, (samples = []));
        samples.push(value);
      }
    }
  };
  const begin = performance.now();
  await Promise.all(Array.from({ length: Math.min(concurrency, runs) }, worker));
  const measurement = summarize(runner.label, concurrency, latencies, performance.now() - begin);
  measurement.runCpuMs = runCpuMs;
  if (stageSamples.size > 0) {
    measurement.stages = {};
    for (const [name, samples] of stageSamples) measurement.stages[name] = percentile(samples.sort((a, b) => a - b), 50);
  }
  return measurement;
}

const PRINT_ONE = 'print(1)';
const EXPECTED_OUTPUT = '1\n';

/** Why a print(1) run does not count: what it exited with and (the start of) what it printed. */
function describeFailure(what: string, status: string | number, stdout: Buffer, stderr: Buffer): Error {
  const excerpt = (bytes: Buffer) => JSON.stringify(bytes.subarray(0, 500).toString());
  return new Error(`${what} failed: status ${status}, stdout ${excerpt(stdout)}, stderr ${excerpt(stderr)}`);
}

/** The baseline: spawn the interpreter directly, with a clean environment as the jail uses. */
export function bareSpawnRunner(python: string): BenchRunner {
  return {
    label: 'bare python3',
    runOnce: () =>
      new Promise((resolve, reject) => {
        const child = spawn(python, ['-E', '-B', '-c', PRINT_ONE], { stdio: ['ignore', 'pipe', 'pipe'], env: {} });
        const stdout: Buffer[] = [];
        const stderr: Buffer[] = [];
        child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk));
        child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk));
        child.on('error', reject);
        // 'close' rather than 'exit': the run is done when its output has been read, as with jailCode.
        child.on('close', (code, signal) => {
          const output = Buffer.concat(stdout);
          if (code === 0 && output.toString() === EXPECTED_OUTPUT) resolve();
          else reject(describeFailure(python, code ?? signal ?? 'unknown', output, Buffer.concat(stderr)));
        });
      }),
  };
}

/** How the daemon is asked to run: `warm` (false: cold), and whether to send its stages. */
export interface RunWay {
  warm: boolean;
  profile: boolean;
}

const wayLabel = (way: RunWay) => (way.warm ? 'warm' : 'cold');

export function jailCodeRunner(client: Client, way: RunWay = { warm: true, profile: false }): BenchRunner {
  return {
    label: `jailCode ${wayLabel(way)}`,
    warm: way.warm,
    runOnce: async () => {
      const result = await client.jailCode('python', { code: PRINT_ONE, ...way });
      if (result.status !== 0 || result.stdout.toString() !== EXPECTED_OUTPUT) {
        throw describeFailure('jailCode print(1)', result.status, result.stdout, result.stderr);
      }
      return { stages: result.usage.stages, cpuMs: result.usage.userMs + result.usage.systemMs };
    },
  };
}

/**
 * safeExec's whole path: the safe_exec request, the harness, the globals in on stdin and out on
 * the fd 3 channel. `check` says what is wrong with the globals the code left, if anything.
 */
function safeExecCodeRunner(
  client: Client,
  label: string,
  code: string,
  globals: () => Record<string, unknown>,
  check: (globals: Record<string, unknown>) => string | undefined,
  way: RunWay,
): BenchRunner {
  return {
    label: `${label} ${wayLabel(way)}`,
    warm: way.warm,
    runOnce: async () => {
      const report: RunReport = {};
      // Rejects with SafeExecError, holding the run's output, when the code fails.
      const result = await client.safeExec(code, globals(), {
        ...way,
        onUsage: (usage) => {
          report.stages = usage.stages;
          report.cpuMs = usage.userMs + usage.systemMs;
        },
      });
      const problem = check(result);
      if (problem) throw new Error(`${label}: ${problem}`);
      return report;
    },
  };
}

export function safeExecRunner(client: Client, way: RunWay = { warm: true, profile: false }): BenchRunner {
  const check = (globals: Record<string, unknown>) => (globals.a === 17 ? undefined : `'a = 17' returned ${JSON.stringify(globals)}`);
  return safeExecCodeRunner(client, 'safeExec', 'a = 17', () => ({}), check, way);
}

/** The grader of bench_cases.ts through safeExec. */
export function graderRunner(client: Client, way: RunWay = { warm: true, profile: false }): BenchRunner {
  return safeExecCodeRunner(client, 'grader', GRADER_CODE, graderGlobals, graderProblem, way);
}

const formatMs = (ms: number) => ms.toFixed(2).padStart(8);
const formatRate = (rate: number) => rate.toFixed(1).padStart(8);
/** A ratio to the baseline, with the verdict when this level has a target for it. */
const formatRatio = (ratio: number, ok: boolean | undefined) => `${ratio.toFixed(2).padStart(6)}x${ok === undefined ? '' : ok ? ' ok' : ' MISS'}`;

/**
 * One concurrency level as a table: a row per runner (the baseline first, then the fork floor
 * when measured), each candidate with its p50 and runs/s as multiples of the baseline's and of
 * the floor's, marked ok or MISS where a target applies at this level; the targets themselves are
 * listed under the table, the absolute ones (ms, runs/s) with what this level measured.
 */
export function formatLevel(baseline: Measurement, candidates: ReadonlyArray<[BenchCandidate, Measurement]>, floor?: Measurement): string {
  const rows = [baseline, ...(floor ? [floor] : []), ...candidates.map(([, measurement]) => measurement)];
  const width = Math.max(...rows.map((row) => row.label.length));
  const numbers = (r: Measurement) =>
    `${r.label.padEnd(width)} ${formatMs(r.p50Ms)} ${formatMs(r.p90Ms)} ${formatMs(r.p99Ms)}  ${formatRate(r.runsPerSecond)}`;
  const lines = [
    `concurrency ${baseline.concurrency}, ${baseline.runs} runs each`,
    `${''.padEnd(width)}   p50 ms   p90 ms   p99 ms    runs/s   p50/bare      runs/s/bare${floor ? '   p50/floor     runs/s/floor' : ''}`,
    numbers(baseline),
    ...(floor ? [numbers(floor)] : []),
  ];
  const targets: string[] = [];
  const floorTargets: string[] = [];
  const absolute: string[] = [];
  const here = (target: { concurrency: number } | undefined) => target?.concurrency === baseline.concurrency;
  for (const [candidate, measurement] of candidates) {
    const p50Ratio = measurement.p50Ms / baseline.p50Ms;
    const rateRatio = measurement.runsPerSecond / baseline.runsPerSecond;
    const { maxP50Ratio, minThroughputRatio, maxP50Ms, minRunsPerSecond, maxP50FloorRatio, minFloorThroughputRatio } = candidate;
    const p50Cell = formatRatio(p50Ratio, maxP50Ratio === undefined ? undefined : p50Ratio <= maxP50Ratio);
    const rateCell = formatRatio(rateRatio, here(minThroughputRatio) ? rateRatio >= minThroughputRatio!.ratio : undefined);
    let line = `${numbers(measurement)}   ${p50Cell.padEnd(12)}  ${rateCell}`;
    if (floor) {
      const p50Floor = measurement.p50Ms / floor.p50Ms;
      const rateFloor = measurement.runsPerSecond / floor.runsPerSecond;
      const p50FloorCell = formatRatio(p50Floor, here(maxP50FloorRatio) ? p50Floor <= maxP50FloorRatio!.ratio : undefined);
      const rateFloorCell = formatRatio(rateFloor, here(minFloorThroughputRatio) ? rateFloor >= minFloorThroughputRatio!.ratio : undefined);
      line = `${line.padEnd(width + 66)}  ${p50FloorCell.padEnd(12)}  ${rateFloorCell}`;
      if (here(maxP50FloorRatio)) floorTargets.push(`${candidate.runner.label} p50 <= ${maxP50FloorRatio!.ratio.toFixed(2)}x`);
      if (here(minFloorThroughputRatio)) floorTargets.push(`${candidate.runner.label} runs/s >= ${minFloorThroughputRatio!.ratio.toFixed(2)}x`);
    }
    lines.push(line.trimEnd());

    const wanted = [
      ...(maxP50Ratio === undefined ? [] : [`p50 <= ${maxP50Ratio.toFixed(2)}x`]),
      ...(minThroughputRatio === undefined
        ? []
        : [`runs/s >= ${minThroughputRatio.ratio.toFixed(2)}x at concurrency ${minThroughputRatio.concurrency}`]),
    ];
    if (wanted.length) targets.push(`${candidate.runner.label} ${wanted.join(', ')}`);
    if (here(maxP50Ms)) {
      const ok = measurement.p50Ms <= maxP50Ms!.ms;
      absolute.push(`${candidate.runner.label} p50 <= ${maxP50Ms!.ms.toFixed(2)} ms: ${measurement.p50Ms.toFixed(2)} ${ok ? 'ok' : 'MISS'}`);
    }
    if (candidate.maxP50AboveMs) {
      const { ms, than } = candidate.maxP50AboveMs;
      const other = candidates.find(([, row]) => row.label === than)?.[1];
      if (other) {
        const above = measurement.p50Ms - other.p50Ms;
        const sign = above >= 0 ? '+' : '-';
        absolute.push(
          `${candidate.runner.label} p50 - ${than} p50 <= ${ms.toFixed(2)} ms: ${sign}${Math.abs(above).toFixed(2)} ${above <= ms ? 'ok' : 'MISS'}`,
        );
      }
    }
    if (here(minRunsPerSecond)) {
      const ok = measurement.runsPerSecond >= minRunsPerSecond!.rate;
      absolute.push(`${candidate.runner.label} runs/s >= ${minRunsPerSecond!.rate}: ${measurement.runsPerSecond.toFixed(1)} ${ok ? 'ok' : 'MISS'}`);
    }
  }
  if (targets.length) lines.push(`targets (x bare): ${targets.join('; ')}`);
  if (floorTargets.length) lines.push(`targets (x floor) at concurrency ${baseline.concurrency}: ${floorTargets.join('; ')}`);
  if (absolute.length) lines.push(`targets at concurrency ${baseline.concurrency}: ${absolute.join('; ')}`);
  return lines.join('\n') + '\n';
}

/**
 * CPU per run (ms) by process, per row of one level: the daemon (all its threads), helpers (its
 * reaped children but the runs: the kill clones), template (the warm templates' own time: the
 * forks; for the floor, its looping parents), child (the runs' own time, confinement included),
 * client (this process); "-" where a figure does not apply.
 */
export function formatCpu(measurements: readonly Measurement[]): string {
  const width = Math.max(...measurements.map((row) => row.label.length));
  const lines = [
    `CPU per run at concurrency ${measurements[0]?.concurrency}, ms, from /proc ("-": does not apply)`,
    `${''.padEnd(width)} ${CPU_COLUMNS.map((name) => name.padStart(9)).join('')}`,
  ];
  for (const row of measurements) {
    if (!row.cpu) continue;
    const cells = CPU_COLUMNS.map((name) => {
      const value = row.cpu![name];
      return (value === undefined ? '-' : value.toFixed(2)).padStart(9);
    });
    lines.push(`${row.label.padEnd(width)} ${cells.join('')}`);
  }
  return lines.join('\n') + '\n';
}

const STAGE_HEADERS: Record<StageName, string> = {
  queueMs: 'queue',
  prepareMs: 'prepare',
  startMs: 'start',
  runMs: 'run',
  resultMs: 'result',
  cleanupMs: 'cleanup',
};

/**
 * The p50 of each stage, per row of one level: queue (waiting for a slot), prepare (the run
 * directory), start (fork or exec, and confinement), run (the code), result (output and result
 * channel), cleanup (sweep and removal, after the reply: the mean from the daemon's metrics);
 * "-" where the daemon sent no such stage.
 */
export function formatStages(measurements: readonly Measurement[]): string {
  const width = Math.max(...measurements.map((row) => row.label.length));
  const header = STAGE_NAMES.map((name) => STAGE_HEADERS[name].padStart(8)).join(' ');
  const lines = [
    `stages at concurrency ${measurements[0]?.concurrency}, p50 ms ("-": the daemon sent none; cleanup: mean, after the reply)`,
    `${''.padEnd(width)} ${header}`,
  ];
  for (const row of measurements) {
    const cells = STAGE_NAMES.map((name) => {
      const value = row.stages?.[name];
      return (value === undefined ? '-' : value.toFixed(2)).padStart(8);
    });
    lines.push(`${row.label.padEnd(width)} ${cells.join(' ')}`);
  }
  return lines.join('\n') + '\n';
}

/** The daemon's clean-up counters, once no slot is busy: how many, and their total time (ms). */
async function cleanupTotals(client: Client): Promise<{ count: number; ms: number }> {
  for (let i = 0; i < 200 && (await client.status()).slots.busy > 0; i++) await new Promise((r) => setTimeout(r, 5));
  const text = await client.metrics();
  const sample = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? 0);
  return { count: sample('codejail_cleanups_total'), ms: sample('codejail_cleanup_seconds_total') * 1000 };
}

function parseConcurrency(list: string): number[] {
  const levels = list.split(',').map((item) => positiveInteger('--concurrency', item.trim()));
  if (levels.length === 0) throw new UsageError('--concurrency needs at least one level');
  return levels;
}

const WARM_FLOOR_TARGETS = {
  maxP50FloorRatio: { ratio: 2, concurrency: 1 },
  minFloorThroughputRatio: { ratio: 0.5, concurrency: 4 },
} as const satisfies Partial<BenchCandidate>;

/**
 * The rows, warm and cold side by side, with the issues' targets; `pythonClient` (bench_python.ts)
 * right after the TypeScript client's safeExec warm row it is compared with.
 */
export function benchCandidates(client: Client, profile: boolean, pythonClient?: BenchRunner): BenchCandidate[] {
  const warm: RunWay = { warm: true, profile };
  const cold: RunWay = { warm: false, profile };
  return [
    // Warm: a process forked from the daemon's template interpreter, p50 within 0.3x of a bare
    // spawn. Cold keeps the targets it had: p50 within 1.25x of a bare spawn, and at concurrency 2
    // at least 0.8x of its runs/s.
    // Warm rows against the fork floor (issue 20): p50 at concurrency 1 within 2x of the floor's
    // time per run, runs/s at concurrency 4 at least 0.5x of the floor's at 2 processes.
    { runner: jailCodeRunner(client, warm), maxP50Ratio: 0.3, ...WARM_FLOOR_TARGETS },
    { runner: jailCodeRunner(client, cold), maxP50Ratio: 1.25, minThroughputRatio: { ratio: 0.8, concurrency: 2 } },
    { runner: safeExecRunner(client, warm), ...WARM_FLOOR_TARGETS },
    // The Python package (issue 21): at concurrency 1, at most 0.3 ms more than the TypeScript client.
    ...(pythonClient ? [{ runner: pythonClient, onlyAt: 1, maxP50AboveMs: { ms: 0.3, than: 'safeExec warm' } }] : []),
    { runner: safeExecRunner(client, cold) },
    { runner: graderRunner(client, warm), highestOnly: true },
    { runner: graderRunner(client, cold), highestOnly: true },
  ];
}

export async function bench(args: string[]): Promise<number> {
  const { values } = withUsageErrors(() =>
    parseArgs({
      args,
      options: {
        n: { type: 'string', short: 'n', default: '200' },
        concurrency: { type: 'string', default: '1,4' },
        profile: { type: 'boolean', default: false },
        work: { type: 'boolean', default: false },
        'work-only': { type: 'boolean', default: false },
        socket: { type: 'string' },
        python: { type: 'string', default: '/usr/bin/python3' },
      },
      strict: true,
    }),
  );
  const runs = positiveInteger('-n', values.n);
  const workOnly = values['work-only'];
  const work = values.work || workOnly;
  // --work-only: no level is measured (the work rows run at concurrency 1 on their own).
  const levels = workOnly ? [] : parseConcurrency(values.concurrency);
  const highest = Math.max(...levels);
  const client = new Client({ socketPath: values.socket });
  let pythonClient: PythonClientStart | undefined;
  try {
    // Fails first, with the reason, when the daemon cannot be reached.
    const daemon = await client.status();
    const baseline = bareSpawnRunner(values.python);
    pythonClient = levels.includes(1)
      ? await startPythonClient(values.python, client.socketPath)
      : { skipped: workOnly ? 'not asked for (--work-only)' : 'measured at concurrency 1 only' };
    const candidates = benchCandidates(client, values.profile, 'runner' in pythonClient ? pythonClient.runner : undefined);
    const floor = floorInterpreter(daemon.pid, values.python);
    const daemonPid = values.profile ? daemon.pid : undefined;
    // Each layer's state word only ("active", "absent", "off"): `codejail status` has the details.
    const layers = Object.entries(daemon.layers).map(([name, state]) => `${name}=${state.split(' ')[0]}`);
    const commandLine = [
      'codejail bench',
      `-n ${runs}`,
      ...(workOnly ? ['--work-only'] : [`--concurrency ${levels.join(',')}`]),
      ...(values.profile ? ['--profile'] : []),
      ...(values.work && !workOnly ? ['--work'] : []),
      `--python ${values.python}`,
    ].join(' ');
    process.stdout.write(
      `${commandLine}\n` +
        `node ${process.version}, ${cpus().length} CPUs, baseline ${values.python}, daemon ${daemon.version} ` +
        `(${daemon.unsafe ? 'UNSAFE, runs not confined' : `layers ${layers.join(' ')}`}, ${daemon.slots.total} slots)\n` +
        `fork floor: ${floor.source}\n` +
        `Python package (${PYTHON_CLIENT_LABEL}): ${'skipped' in pythonClient ? `row skipped: ${pythonClient.skipped}` : `${values.python}, import codejail from ${PYTHON_PACKAGE_DIR}`}\n` +
        (values.profile && daemonPid === undefined ? 'CPU by process: the daemon did not say its pid\n' : '') +
        '\n',
    );

    // Warm-up: page caches, the daemon's slots and the interpreter's own start-up files.
    for (const runner of levels.length ? [baseline, ...candidates.map((c) => c.runner)] : []) {
      await measure(runner, Math.max(10, 2 * highest), highest);
    }

    for (const concurrency of levels) {
      const baselineMeasurement = await measure(baseline, runs, concurrency);
      // The floor in parallel as the machine allows: a process per CPU at most.
      const floorProcesses = Math.min(concurrency, cpus().length);
      const floorRow = floorMeasurement(await runFloor(floor, runs, floorProcesses), concurrency, floorProcesses);
      const measured: [BenchCandidate, Measurement][] = [];
      for (const candidate of candidates) {
        if (candidate.highestOnly && concurrency !== highest) continue;
        if (candidate.onlyAt !== undefined && concurrency !== candidate.onlyAt) continue;
        const before = values.profile ? await cleanupTotals(client) : undefined;
        const cpuBefore: CpuSnapshot | undefined = daemonPid === undefined ? undefined : cpuSnapshot(daemonPid);
        const measurement = await measure(candidate.runner, runs, concurrency);
        if (before) {
          // A run's clean-up finishes after its reply (the slot stays busy): its mean comes from
          // the daemon's metrics, once the last run's is done.
          const after = await cleanupTotals(client);
          if (after.count > before.count) (measurement.stages ??= {}).cleanupMs = (after.ms - before.ms) / (after.count - before.count);
        }
        // After the last clean-up, so that the row's CPU holds all of its runs' clean-ups.
        if (cpuBefore) measurement.cpu = cpuPerRun(cpuBefore, cpuSnapshot(daemonPid!), runs, candidate.runner.warm === true, measurement.runCpuMs);
        measured.push([candidate, measurement]);
      }
      let text = formatLevel(baselineMeasurement, measured, floorRow);
      if (values.profile) text += '\n' + formatStages(measured.map(([, measurement]) => measurement));
      if (values.profile) text += '\n' + formatCpu([floorRow, ...measured.map(([, measurement]) => measurement)]);
      process.stdout.write(text + '\n');
    }
    if (work) {
      const rows = workRows(client, runs);
      for (const row of rows) await measure(row.runner, 2, 1);
      const measured: Measurement[] = [];
      for (const row of rows) {
        if (daemonPid !== undefined) await cleanupTotals(client);
        const cpuBefore = daemonPid === undefined ? undefined : cpuSnapshot(daemonPid);
        const measurement = await measure(row.runner, row.runs, 1);
        if (cpuBefore) {
          // After the row's last clean-up, as for the rows above.
          await cleanupTotals(client);
          measurement.cpu = cpuPerRun(cpuBefore, cpuSnapshot(daemonPid!), row.runs, true, 0);
        }
        measured.push(measurement);
      }
      process.stdout.write(formatWork(rows, measured, await workBaselines(floor, rows, runs)) + '\n');
    }
    return 0;
  } finally {
    if (pythonClient && 'close' in pythonClient) pythonClient.close();
    await client.close();
  }
}
