// What `codejail bench` measures: a kind of run, and what one run of it reports. Apart from
// bench.ts so that the runners in other files (bench_python.ts) need not import the command.
import type { Stages } from '../client/index.js';
import type { CpuPerRun } from './bench_cpu.js';

/** What one run reported: its stages (a run asked with profile: true) and its own CPU time (ms). */
export interface RunReport {
  stages?: Stages;
  cpuMs?: number;
}

/** One kind of run to measure. runOnce rejects if the run did not do what it should. */
export interface BenchRunner {
  label: string;
  /** The run forks from a warm template (its CPU is the template's children's). */
  warm?: boolean;
  runOnce(): Promise<RunReport | void>;
}

export const STAGE_NAMES = ['queueMs', 'prepareMs', 'startMs', 'runMs', 'resultMs', 'cleanupMs'] as const satisfies ReadonlyArray<keyof Stages>;
export type StageName = (typeof STAGE_NAMES)[number];

/** One runner measured at one concurrency. */
export interface Measurement {
  label: string;
  concurrency: number;
  runs: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  runsPerSecond: number;
  /** Each stage's p50 over the runs that reported it; absent when none did. */
  stages?: Partial<Record<StageName, number>>;
  /** The runs' own CPU time (ms) summed, over the runs that reported it. */
  runCpuMs: number;
  /** CPU per run by process (--profile). */
  cpu?: CpuPerRun;
}
