// `codejail metrics`: the daemon's counters and gauges, in the Prometheus text format.
import { parseArgs } from 'node:util';
import { Client } from '../client/index.js';
import { withUsageErrors } from './args.js';

export const METRICS_USAGE = `usage: codejail metrics [--socket PATH]
Prints the daemon's metrics (runs by verdict, run latency, queue, slots, self-check, uptime)
in the Prometheus text format.`;

export async function metrics(args: string[]): Promise<number> {
  const { values } = withUsageErrors(() => parseArgs({ args, options: { socket: { type: 'string' } }, strict: true }));
  const client = new Client({ socketPath: values.socket });
  try {
    process.stdout.write(await client.metrics());
    return 0;
  } finally {
    await client.close();
  }
}
