// `codejail check`: has the daemon run its self-check again, through real sandboxes, and prints
// the layers and each probe. Exits 1 when a probe failed (the daemon then reports itself
// unhealthy, and under systemd its watchdog restarts it).
import { parseArgs } from 'node:util';
import { Client } from '../client/index.js';
import type { CheckResult } from '../client/index.js';
import { positiveInteger, withUsageErrors } from './args.js';

/** Seconds `check` waits for the daemon's answer: past the daemon's own bound on a check. */
const DEFAULT_TIMEOUT_SECONDS = 90;

export const CHECK_USAGE = `usage: codejail check [--socket PATH] [--json] [--timeout SECONDS]
Runs the daemon's self-check now (one run that must work, runs that each layer must deny)
and prints the layers and each probe's outcome (--json: the check reply as one JSON object).
Exits 1 if a probe failed, if the daemon could not run the check (no slot can take a run, or
its runs did not finish within its own 60 s), or if no answer came within --timeout seconds
(default ${DEFAULT_TIMEOUT_SECONDS}).`;

function table(header: [string, string, string?], rows: Array<[string, string, string?]>): string[] {
  const widths = [0, 1].map((i) => Math.max(header[i]!.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: [string, string, string?]) => `${r[0].padEnd(widths[0]!)}  ${r[2] === undefined ? r[1] : r[1].padEnd(widths[1]!)}${r[2] ? `  ${r[2]}` : ''}`.trimEnd();
  return [line(header), ...rows.map(line)];
}

export function formatCheck(result: CheckResult): string {
  const failed = result.probes.filter((p) => p.outcome === 'failed').length;
  const lines = [
    `self-check ${result.ok ? 'passed' : `FAILED (${failed} of ${result.probes.length} probes)`} in ${result.durationMs} ms`,
    '',
    ...table(
      ['layer', 'state'],
      Object.keys(result.layers)
        .sort()
        .map((name) => [name, result.layers[name]!]),
    ),
    '',
    ...table(
      ['probe', 'outcome', 'detail'],
      result.probes.map((p) => [p.name, p.outcome === 'failed' ? 'FAILED' : p.outcome, p.detail ?? '']),
    ),
  ];
  return lines.join('\n') + '\n';
}

export async function check(args: string[]): Promise<number> {
  const { values } = withUsageErrors(() =>
    parseArgs({ args, options: { socket: { type: 'string' }, json: { type: 'boolean' }, timeout: { type: 'string' } }, strict: true }),
  );
  const timeoutSeconds = values.timeout === undefined ? DEFAULT_TIMEOUT_SECONDS : positiveInteger('--timeout', values.timeout);
  const client = new Client({ socketPath: values.socket });
  let timer: NodeJS.Timeout | undefined;
  try {
    const noAnswer = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer from the daemon within ${timeoutSeconds} s`)), timeoutSeconds * 1000);
    });
    const result = await Promise.race([client.check(), noAnswer]);
    process.stdout.write(values.json ? `${JSON.stringify(result)}\n` : formatCheck(result));
    return result.ok ? 0 : 1;
  } finally {
    clearTimeout(timer);
    await client.close();
  }
}
