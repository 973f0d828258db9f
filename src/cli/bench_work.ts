// The work rows of `codejail bench --work` (issue 20, "how cost grows with work"): how a warm run's
// time grows with the size of what it carries, each row beside an in-process baseline measured in
// the same run (the machine's speed varies from one moment to the next):
//   - safeExec globals: one string of 1 KB, 1 MB and 8 MB in and out, against Python's own
//     json.dumps + json.loads of the same globals in the template's interpreter (target: 3x);
//   - jailCode files: 1, 100 and 1000 extraFiles of 1 KB, against this process writing as many
//     files of 1 KB into a fresh directory of a tmpfs; the row that matters is the slope, the time
//     per extra file between 1 and 1000 (target: 10 us);
//   - jailCode output: 1 and 8 MB written to stdout, against a child of the template's interpreter
//     writing as much into a pipe its parent reads (target: 500 MB/s).
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Client } from '../client/index.js';
import type { BenchRunner, Measurement } from './bench_runner.js';
import { FORK_AND_READ_PY, type FloorInterpreter } from './bench_floor.js';

const KB = 1024;
const MB = 1024 * 1024;

/** The text of the globals' string: printable ASCII with a newline, as a grader's data would be. */
export const WORK_TEXT_PATTERN = 'The quick brown fox jumps over the lazy dog; 0123456789 "quoted"\n';

/** `bytes` characters of the pattern, repeated. */
export function workText(bytes: number): string {
  return WORK_TEXT_PATTERN.repeat(Math.ceil(bytes / WORK_TEXT_PATTERN.length)).slice(0, bytes);
}

/** One work row: its runner, how much it carries, how many runs it gets (big rows fewer). */
export interface WorkRow {
  runner: BenchRunner;
  kind: 'globals' | 'files' | 'output';
  /** Bytes carried (globals: the string, each way; output: stdout), or files sent. */
  amount: number;
  runs: number;
}

/** Time enough for the 8 MB rows on a loaded machine (the defaults are 1 s). */
const WORK_LIMITS = { CPU: 10, REALTIME: 30 } as const;

const sizeLabel = (bytes: number) => (bytes >= MB ? `${bytes / MB} MB` : `${bytes / KB} KB`);

/** safeExec('n = len(s)', {s}) with a string of `bytes`: the string goes in and comes back. */
function globalsRunner(client: Client, bytes: number): BenchRunner {
  const text = workText(bytes);
  return {
    label: `globals ${sizeLabel(bytes)}`,
    warm: true,
    runOnce: async () => {
      const result = await client.safeExec('n = len(s)', { s: text }, { warm: true, limits: WORK_LIMITS });
      if (result.n !== bytes || result.s !== text) throw new Error(`globals ${sizeLabel(bytes)}: the string did not come back whole`);
    },
  };
}

/** jailCode with `count` extraFiles of 1 KB; the code counts them in the run directory. */
function filesRunner(client: Client, count: number): BenchRunner {
  const contents = Buffer.from(workText(KB));
  const extraFiles = Array.from({ length: count }, (_, i) => [`f${i}.txt`, contents] as [string, Buffer]);
  const expected = `${count}\n`;
  return {
    label: `files ${count} x 1 KB`,
    warm: true,
    runOnce: async () => {
      const result = await client.jailCode('python', { code: 'import os\nprint(sum(name.endswith(".txt") for name in os.listdir(".")))', extraFiles, limits: WORK_LIMITS, warm: true });
      if (result.status !== 0 || result.stdout.toString() !== expected) {
        throw new Error(`files ${count}: status ${result.status}, stdout ${JSON.stringify(result.stdout.subarray(0, 200).toString())}`);
      }
    },
  };
}

/** jailCode writing `bytes` to stdout, with an OUTPUT limit that holds them. */
function outputRunner(client: Client, bytes: number): BenchRunner {
  return {
    label: `output ${sizeLabel(bytes)}`,
    warm: true,
    runOnce: async () => {
      const result = await client.jailCode('python', {
        code: `import sys\nsys.stdout.buffer.write(b"x" * ${bytes})`,
        limits: { ...WORK_LIMITS, OUTPUT: bytes + 64 * KB },
        warm: true,
      });
      if (result.status !== 0 || result.stdout.length !== bytes || result.truncated) {
        throw new Error(`output ${sizeLabel(bytes)}: status ${result.status}, ${result.stdout.length} bytes`);
      }
    },
  };
}

/** The rows, each with runs scaled down from `runs` as its size grows (at least 5). */
export function workRows(client: Client, runs: number): WorkRow[] {
  const share = (divisor: number) => Math.max(5, Math.min(runs, Math.round(runs / divisor)));
  return [
    { runner: globalsRunner(client, KB), kind: 'globals', amount: KB, runs: share(2) },
    { runner: globalsRunner(client, MB), kind: 'globals', amount: MB, runs: share(5) },
    { runner: globalsRunner(client, 8 * MB), kind: 'globals', amount: 8 * MB, runs: share(20) },
    { runner: filesRunner(client, 1), kind: 'files', amount: 1, runs: share(2) },
    { runner: filesRunner(client, 100), kind: 'files', amount: 100, runs: share(4) },
    { runner: filesRunner(client, 1000), kind: 'files', amount: 1000, runs: share(8) },
    { runner: outputRunner(client, MB), kind: 'output', amount: MB, runs: share(5) },
    { runner: outputRunner(client, 8 * MB), kind: 'output', amount: 8 * MB, runs: share(20) },
  ];
}

// --- Baselines ------------------------------------------------------------------------------------

/**
 * The Python baselines, in the template's interpreter: argv is the runs and a JSON list of
 * [kind, amount]; it prints one JSON line, the median time (ms) of each: "globals" is
 * json.loads(json.dumps(g)) of g = {"s": the same string}, "output" a forked child writing that
 * many bytes into a pipe that the parent reads to EOF (64 KiB reads), then reaps.
 */
export const WORK_BASELINE_SCRIPT = `import json, os, sys, time
runs = int(sys.argv[1])
cases = json.loads(sys.argv[2])
pattern = sys.argv[3]
${FORK_AND_READ_PY}def median(samples):
    samples.sort()
    return samples[(len(samples) - 1) // 2]
def timed(f):
    samples = []
    for _ in range(runs):
        begin = time.perf_counter()
        f()
        samples.append((time.perf_counter() - begin) * 1000)
    return median(samples)
def globals_round_trip(size):
    g = {"s": (pattern * (size // len(pattern) + 1))[:size]}
    def once():
        if json.loads(json.dumps(g))["s"] != g["s"]:
            raise SystemExit("json round trip lost the string")
    return timed(once)
def output(size):
    def write(w):
        data = memoryview(b"x" * size)
        while data:
            data = data[os.write(w, data):]
    def once():
        data, status = fork_and_read(write)
        if status != 0 or len(data) != size:
            raise SystemExit("the pipe lost bytes")
    return timed(once)
print(json.dumps([globals_round_trip(amount) if kind == "globals" else output(amount) for kind, amount in cases]))
`;

/** Median (ms) of the Python baselines of `rows` (globals and output), in their order. */
function pythonBaselines(floor: FloorInterpreter, rows: readonly WorkRow[], runs: number): Promise<number[]> {
  const [command, ...flags] = floor.interpreter;
  const cases = JSON.stringify(rows.map((row) => [row.kind, row.amount]));
  return new Promise((resolve, reject) => {
    const child = spawn(command!, [...flags, '-c', WORK_BASELINE_SCRIPT, String(runs), cases, WORK_TEXT_PATTERN], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: floor.env,
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString().slice(0, 2000)));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolve(JSON.parse(stdout) as number[]);
      else reject(new Error(`the work baselines (${floor.interpreter.join(' ')}) failed: status ${code}, stderr ${JSON.stringify(stderr)}`));
    });
  });
}

/** Median (ms) of writing `count` files of 1 KB into a fresh directory of `tmpfs`, from this process. */
function filesBaseline(count: number, runs: number, tmpfs: string): number {
  const contents = Buffer.from(workText(KB));
  const samples: number[] = [];
  for (let run = 0; run < runs; run++) {
    const begin = performance.now();
    const dir = mkdtempSync(path.join(tmpfs, 'codejail-bench-'));
    try {
      for (let i = 0; i < count; i++) writeFileSync(path.join(dir, `f${i}.txt`), contents);
      samples.push(performance.now() - begin);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  samples.sort((a, b) => a - b);
  return samples[(samples.length - 1) >> 1]!;
}

/** Each row's baseline (ms), in the order of `rows`. */
export async function workBaselines(floor: FloorInterpreter, rows: readonly WorkRow[], runs: number, tmpfs = '/dev/shm'): Promise<number[]> {
  const pythonRows = rows.filter((row) => row.kind !== 'files');
  const python = await pythonBaselines(floor, pythonRows, Math.max(5, Math.min(runs, 30)));
  return rows.map((row) => (row.kind === 'files' ? filesBaseline(row.amount, Math.max(5, Math.min(runs, 30)), tmpfs) : python[pythonRows.indexOf(row)]!));
}

// --- The table ------------------------------------------------------------------------------------

const TARGETS = { globalsRatio: 3, usPerFile: 10, outputMBps: 500 } as const;

/**
 * The work table: p50 of each row, its baseline, their ratio, and its rate (MB/s for globals,
 * each way, and output); under it the time per extra file between the fewest and the most files,
 * against its baseline's, and each target marked ok or MISS.
 */
export function formatWork(rows: readonly WorkRow[], measurements: readonly Measurement[], baselines: readonly number[]): string {
  const width = Math.max(...rows.map((row) => row.runner.label.length));
  const lines = [
    `work at concurrency 1, warm (baselines: globals, Python's json.dumps + json.loads of the same globals; files, this process writing them to a tmpfs; output, a forked child of the template's interpreter writing to a pipe)`,
    `${''.padEnd(width)}    runs   p50 ms   p90 ms  base ms     x base     MB/s  base MB/s` +
      (measurements.some((m) => m.cpu) ? `   CPU ms/run: daemon    child   client    total` : ''),
  ];
  const verdicts: string[] = [];
  rows.forEach((row, i) => {
    const m = measurements[i]!;
    const base = baselines[i]!;
    const ratio = m.p50Ms / base;
    const rate = row.kind === 'files' ? '' : ((row.amount / MB) / (m.p50Ms / 1000)).toFixed(1);
    const baseRate = row.kind === 'files' ? '' : ((row.amount / MB) / (base / 1000)).toFixed(1);
    let ratioCell = `${ratio.toFixed(2)}x`;
    if (row.kind === 'globals' && row.amount >= MB) {
      const ok = ratio <= TARGETS.globalsRatio;
      ratioCell += ok ? ' ok' : ' MISS';
      verdicts.push(`${row.runner.label} <= ${TARGETS.globalsRatio}x Python's JSON: ${ratio.toFixed(2)}x ${ok ? 'ok' : 'MISS'}`);
    }
    if (row.kind === 'output') {
      const mbps = row.amount / MB / (m.p50Ms / 1000);
      verdicts.push(`${row.runner.label} >= ${TARGETS.outputMBps} MB/s: ${mbps.toFixed(0)} ${mbps >= TARGETS.outputMBps ? 'ok' : 'MISS'}`);
    }
    lines.push(
      `${row.runner.label.padEnd(width)} ${String(m.runs).padStart(7)} ${m.p50Ms.toFixed(2).padStart(8)} ${m.p90Ms.toFixed(2).padStart(8)} ` +
        `${(base < 0.1 ? base.toFixed(3) : base.toFixed(2)).padStart(8)} ${ratioCell.padStart(10)} ${rate.padStart(8)} ${baseRate.padStart(10)}` +
        (m.cpu ? `               ${[m.cpu.daemon, m.cpu.child, m.cpu.client, m.cpu.total].map((ms) => (ms === undefined ? '-' : ms.toFixed(1)).padStart(8)).join(' ')}` : ''),
    );
  });
  const files = rows.map((row, i) => ({ row, m: measurements[i]!, base: baselines[i]! })).filter(({ row }) => row.kind === 'files');
  if (files.length >= 2) {
    const fewest = files[0]!;
    const most = files[files.length - 1]!;
    const extra = most.row.amount - fewest.row.amount;
    const usPerFile = ((most.m.p50Ms - fewest.m.p50Ms) * 1000) / extra;
    const baseUsPerFile = ((most.base - fewest.base) * 1000) / extra;
    const ok = usPerFile <= TARGETS.usPerFile;
    lines.push(`per extra file (${fewest.row.amount} to ${most.row.amount}): ${usPerFile.toFixed(1)} us, baseline ${baseUsPerFile.toFixed(1)} us`);
    verdicts.push(`files <= ${TARGETS.usPerFile} us per extra file: ${usPerFile.toFixed(1)} ${ok ? 'ok' : 'MISS'}`);
  }
  lines.push(`targets: ${verdicts.join('; ')}`);
  return lines.join('\n') + '\n';
}
