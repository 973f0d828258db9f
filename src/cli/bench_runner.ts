// What `codejail bench` measures: a kind of run, and what one run of it reports. Apart from
// bench.ts so that the runners in other files (bench_python.ts) need not import the command.
import type { Stages } from '../client/index.js';

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
