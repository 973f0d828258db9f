// A mixed load at a fixed concurrency: each worker draws a kind, runs it, and files the outcome
// (correct, clear error, wrong, lost) by kind. Runs until stopped, or `max` requests are issued.
import { Client } from '../../src/client/index.js';
import type { Random } from './knobs.js';
import { sleep, withTimeout, percentile } from './probes.js';
import { classify, KINDS, type Context, type Outcome } from './workload.js';

export class Tally {
  readonly byKind: Record<string, Record<Outcome, number>> = {};
  readonly codes: Record<string, number> = {};
  readonly failures: string[] = [];
  readonly latencies: number[] = [];

  add(kind: string, outcome: Outcome, code?: string, message?: string, ms?: number): void {
    const row = (this.byKind[kind] ??= { correct: 0, clear_error: 0, wrong: 0, lost: 0 });
    row[outcome]++;
    if (code) this.codes[code] = (this.codes[code] ?? 0) + 1;
    if ((outcome === 'wrong' || outcome === 'lost') && this.failures.length < 20) this.failures.push(`${kind}: ${outcome} ${code ?? ''} ${message ?? ''}`.slice(0, 400));
    if (outcome === 'correct' && ms !== undefined) this.latencies.push(ms);
  }
  /** Adds another tally's counts (a phase's) into this one. */
  merge(from: Tally): void {
    for (const [kind, row] of Object.entries(from.byKind)) {
      const into = (this.byKind[kind] ??= { correct: 0, clear_error: 0, wrong: 0, lost: 0 });
      for (const k of Object.keys(row) as Outcome[]) into[k] += row[k];
    }
    for (const [code, n] of Object.entries(from.codes)) this.codes[code] = (this.codes[code] ?? 0) + n;
    this.failures.push(...from.failures.slice(0, Math.max(0, 20 - this.failures.length)));
    this.latencies.push(...from.latencies);
  }
  total(outcome: Outcome): number {
    return Object.values(this.byKind).reduce((sum, row) => sum + row[outcome], 0);
  }
  get requests(): number {
    return Object.values(this.byKind).reduce((sum, row) => sum + row.correct + row.clear_error + row.wrong + row.lost, 0);
  }
  table(): string {
    return Object.entries(this.byKind)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([k, r]) => `${k}=${r.correct}/${r.clear_error}/${r.wrong}/${r.lost}`)
      .join(' ');
  }
  p(pct: number): number {
    return Math.round(percentile(this.latencies, pct));
  }
}

/** How long a request may go unanswered, its connection open, before it counts as lost. */
export const ANSWER_TIMEOUT_MS = 90_000;

export interface Load {
  readonly tally: Tally;
  issued: number;
  /** Resolves once `max` requests are answered (never, with no max, until stopped). */
  finished: Promise<unknown>;
  stop(): Promise<void>;
}

let loads = 0;

export function startClientLoad(socketPath: string, ctx: Context, weights: Record<string, number>, concurrency: number, max = Infinity): Load {
  const tally = new Tally();
  const loadIndex = loads++;
  let stopped = false;
  const load: Load = {
    tally,
    issued: 0,
    finished: Promise.resolve(),
    stop: async () => {
      stopped = true;
      await workers;
    },
  };
  const workers = Promise.all(
    Array.from({ length: concurrency }, async (_, w) => {
      const rng: Random = ctx.rng.fork(`load-${loadIndex}-worker-${w}`);
      let client = new Client({ socketPath });
      while (!stopped && load.issued < max) {
        load.issued++;
        const kind = rng.weighted(weights);
        const t = performance.now();
        try {
          await withTimeout(KINDS[kind]!(client, { ...ctx, rng }), ANSWER_TIMEOUT_MS);
          tally.add(kind, 'correct', undefined, undefined, performance.now() - t);
        } catch (err) {
          const { outcome, code } = classify(err);
          tally.add(kind, outcome, code, (err as Error).message);
          if (outcome !== 'wrong') {
            // The connection may be gone (a daemon restart) or the daemon full: start afresh.
            await client.close().catch(() => {});
            client = new Client({ socketPath });
            await sleep(code === 'unavailable' ? 250 : 50);
          }
        }
      }
      await client.close().catch(() => {});
    }),
  );
  load.finished = workers;
  return load;
}
