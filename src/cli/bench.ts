// `codejail bench`: latency and throughput of jailCode and safeExec against bare interpreter
// spawns, measured in the same process so that all see the same machine. Each runner is one row
// of the table, compared against the same baseline.
import { spawn } from 'node:child_process';
import { cpus } from 'node:os';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { Client } from '../client/index.js';
import { UsageError, positiveInteger, withUsageErrors } from './args.js';

export const BENCH_USAGE = `usage: codejail bench [-n N] [--concurrency 1,2,4] [--socket PATH] [--python /usr/bin/python3]
  -n N               measured runs per runner and concurrency level (default 200)
  --concurrency LIST comma-separated numbers of runs kept in flight (default 1,2,4)
  --socket PATH      the daemon's socket (default $CODEJAIL_SOCKET or /run/codejail/codejail.sock)
  --python PATH      the interpreter for the bare baseline (default /usr/bin/python3)
Compares jailCode('python', {code: 'print(1)'}) and safeExec('a = 17', {}) with bare
'python3 -E -B -c print(1)' spawns and prints the ratios (and jailCode's targets). Exits 0
whatever the ratios; 1 when the daemon cannot be reached or a run does not do what it should.`;

/** One kind of run to measure. runOnce rejects if the run did not do what it should. */
export interface BenchRunner {
  label: string;
  runOnce(): Promise<void>;
}

/** A runner compared against the baseline, with the targets it should meet (if any). */
export interface BenchCandidate {
  runner: BenchRunner;
  /** Largest acceptable p50 latency, as a multiple of the baseline's. */
  maxP50Ratio?: number;
  /** Smallest acceptable runs/s as a fraction of the baseline's, at one concurrency level. */
  minThroughputRatio?: { ratio: number; concurrency: number };
}

export interface Measurement {
  label: string;
  concurrency: number;
  runs: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  runsPerSecond: number;
}

/** Nearest-rank percentile of ascending samples. */
function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/** Runs `runner` `runs` times keeping `concurrency` runs in flight; times each run and the whole. */
export async function measure(runner: BenchRunner, runs: number, concurrency: number): Promise<Measurement> {
  const latencies: number[] = [];
  let started = 0;
  const worker = async (): Promise<void> => {
    while (started < runs) {
      started += 1;
      const begin = performance.now();
      await runner.runOnce();
      latencies.push(performance.now() - begin);
    }
  };
  const begin = performance.now();
  await Promise.all(Array.from({ length: Math.min(concurrency, runs) }, worker));
  const elapsedMs = performance.now() - begin;
  latencies.sort((a, b) => a - b);
  return {
    label: runner.label,
    concurrency,
    runs,
    p50Ms: percentile(latencies, 50),
    p90Ms: percentile(latencies, 90),
    p99Ms: percentile(latencies, 99),
    runsPerSecond: runs / (elapsedMs / 1000),
  };
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

export function jailCodeRunner(client: Client): BenchRunner {
  return {
    label: 'jailCode',
    runOnce: async () => {
      const result = await client.jailCode('python', { code: PRINT_ONE });
      if (result.status !== 0 || result.stdout.toString() !== EXPECTED_OUTPUT) {
        throw describeFailure('jailCode print(1)', result.status, result.stdout, result.stderr);
      }
    },
  };
}

/** safeExec's whole path: the harness, JSON globals in on stdin and out on the fd 3 channel. */
export function safeExecRunner(client: Client): BenchRunner {
  return {
    label: 'safeExec',
    runOnce: async () => {
      // Rejects with SafeExecError, holding the run's output, when the code fails.
      const globals = await client.safeExec('a = 17', {});
      if (globals.a !== 17) throw new Error(`safeExec('a = 17') returned ${JSON.stringify(globals)}`);
    },
  };
}

const formatMs = (ms: number) => ms.toFixed(2).padStart(8);
const formatRate = (rate: number) => rate.toFixed(1).padStart(8);
/** A ratio to the baseline, with the verdict when this level has a target for it. */
const formatRatio = (ratio: number, ok: boolean | undefined) => `${ratio.toFixed(2).padStart(6)}x${ok === undefined ? '' : ok ? ' ok' : ' MISS'}`;

/**
 * One concurrency level as a table: a row per runner (the baseline first), each candidate with
 * its p50 and runs/s as multiples of the baseline's, marked ok or MISS where a target applies at
 * this level; the targets themselves are listed under the table.
 */
export function formatLevel(baseline: Measurement, candidates: ReadonlyArray<[BenchCandidate, Measurement]>): string {
  const rows = [baseline, ...candidates.map(([, measurement]) => measurement)];
  const width = Math.max(...rows.map((row) => row.label.length));
  const numbers = (r: Measurement) =>
    `${r.label.padEnd(width)} ${formatMs(r.p50Ms)} ${formatMs(r.p90Ms)} ${formatMs(r.p99Ms)}  ${formatRate(r.runsPerSecond)}`;
  const lines = [
    `concurrency ${baseline.concurrency}, ${baseline.runs} runs each`,
    `${''.padEnd(width)}   p50 ms   p90 ms   p99 ms    runs/s   p50/bare      runs/s/bare`,
    numbers(baseline),
  ];
  const targets: string[] = [];
  for (const [candidate, measurement] of candidates) {
    const p50Ratio = measurement.p50Ms / baseline.p50Ms;
    const rateRatio = measurement.runsPerSecond / baseline.runsPerSecond;
    const { maxP50Ratio, minThroughputRatio } = candidate;
    const rateTargetHere = minThroughputRatio?.concurrency === baseline.concurrency;
    const p50Cell = formatRatio(p50Ratio, maxP50Ratio === undefined ? undefined : p50Ratio <= maxP50Ratio);
    const rateCell = formatRatio(rateRatio, rateTargetHere ? rateRatio >= minThroughputRatio!.ratio : undefined);
    lines.push(`${numbers(measurement)}   ${p50Cell.padEnd(12)}  ${rateCell}`);

    const wanted = [
      ...(maxP50Ratio === undefined ? [] : [`p50 <= ${maxP50Ratio.toFixed(2)}x`]),
      ...(minThroughputRatio === undefined
        ? []
        : [`runs/s >= ${minThroughputRatio.ratio.toFixed(2)}x at concurrency ${minThroughputRatio.concurrency}`]),
    ];
    if (wanted.length) targets.push(`${candidate.runner.label} ${wanted.join(', ')}`);
  }
  if (targets.length) lines.push(`targets (x bare): ${targets.join('; ')}`);
  return lines.join('\n') + '\n';
}

function parseConcurrency(list: string): number[] {
  const levels = list.split(',').map((item) => positiveInteger('--concurrency', item.trim()));
  if (levels.length === 0) throw new UsageError('--concurrency needs at least one level');
  return levels;
}

export async function bench(args: string[]): Promise<number> {
  const { values } = withUsageErrors(() =>
    parseArgs({
      args,
      options: {
        n: { type: 'string', short: 'n', default: '200' },
        concurrency: { type: 'string', default: '1,2,4' },
        socket: { type: 'string' },
        python: { type: 'string', default: '/usr/bin/python3' },
      },
      strict: true,
    }),
  );
  const runs = positiveInteger('-n', values.n);
  const levels = parseConcurrency(values.concurrency);
  const client = new Client({ socketPath: values.socket });
  try {
    // Fails first, with the reason, when the daemon cannot be reached.
    const daemon = await client.status();
    const baseline = bareSpawnRunner(values.python);
    // The issue's targets: jailCode p50 within 1.25x of a bare spawn, and at concurrency 2 at
    // least 0.8x of its runs/s.
    // safeExec has no target: its row shows what the harness (JSON both ways, fd 3) adds.
    const candidates: BenchCandidate[] = [
      { runner: jailCodeRunner(client), maxP50Ratio: 1.25, minThroughputRatio: { ratio: 0.8, concurrency: 2 } },
      { runner: safeExecRunner(client) },
    ];
    // Each layer's state word only ("active", "absent", "off"): `codejail status` has the details.
    const layers = Object.entries(daemon.layers).map(([name, state]) => `${name}=${state.split(' ')[0]}`);
    process.stdout.write(
      `codejail bench: node ${process.version}, ${cpus().length} CPUs, baseline ${values.python}, daemon ${daemon.version} ` +
        `(${daemon.unsafe ? 'UNSAFE, runs not confined' : `layers ${layers.join(' ')}`}, ${daemon.slots.total} slots)\n\n`,
    );

    // Warm-up: page caches, the daemon's slots and the interpreter's own start-up files.
    const maxConcurrency = Math.max(...levels);
    for (const runner of [baseline, ...candidates.map((c) => c.runner)]) {
      await measure(runner, Math.max(10, 2 * maxConcurrency), maxConcurrency);
    }

    for (const concurrency of levels) {
      const baselineMeasurement = await measure(baseline, runs, concurrency);
      const measured: [BenchCandidate, Measurement][] = [];
      for (const candidate of candidates) measured.push([candidate, await measure(candidate.runner, runs, concurrency)]);
      process.stdout.write(formatLevel(baselineMeasurement, measured) + '\n');
    }
    return 0;
  } finally {
    await client.close();
  }
}
