// The soak's figures: each check's measured value beside what it must be, printed as one table
// (with the seed) when the suite ends, pass or fail, and asserted one test per check, so that a
// failing check names itself and its figure.
import { expect } from 'vitest';
import { REPLAY, SCALE } from './knobs.js';

export interface Check {
  name: string;
  figure: number | string;
  /** What the figure must be, in words ("0", "<= 2000 ms", "<= 1.2 x 81234 kB"). */
  bound: string;
  pass: boolean;
  detail?: string;
}

export class Summary {
  readonly checks: Check[] = [];
  readonly notes: Array<[string, unknown]> = [];
  constructor(readonly title: string) {}

  add(check: Check): void {
    this.checks.push(check);
  }
  /** A figure printed but not asserted (throughput, latencies, error codes seen). */
  note(name: string, value: unknown): void {
    this.notes.push([name, value]);
  }
  zero(name: string, figure: number, detail?: string): void {
    this.add({ name, figure, bound: '0', pass: figure === 0, detail });
  }
  atMost(name: string, figure: number, max: number, bound: string, detail?: string): void {
    this.add({ name, figure: Math.round(figure * 10) / 10, bound, pass: figure <= max, detail });
  }

  print(): void {
    const lines = [`\n=== soak: ${this.title} (scale ${SCALE}, ${REPLAY})`];
    const width = Math.max(...this.checks.map((c) => c.name.length), 10);
    for (const c of this.checks) {
      lines.push(`${c.pass ? 'ok  ' : 'FAIL'} ${c.name.padEnd(width)}  ${String(c.figure).padStart(10)}  (must be ${c.bound})${c.detail && !c.pass ? `\n       ${c.detail}` : ''}`);
    }
    for (const [name, value] of this.notes) lines.push(`     ${name}: ${typeof value === 'string' ? value : JSON.stringify(value)}`);
    console.log(lines.join('\n'));
  }

  /** Asserts the named check; its message carries the figure, the bound and the seed. */
  assert(name: string): void {
    const check = this.checks.find((c) => c.name === name);
    expect(check, `check '${name}' was never measured (the load phase failed?); ${REPLAY}`).toBeDefined();
    expect(check!.pass, `${name}: ${check!.figure}, must be ${check!.bound}${check!.detail ? `; ${check!.detail}` : ''}; ${REPLAY}`).toBe(true);
  }
}
