// `codejail status`: what the daemon is running with and how busy it is.
import { parseArgs } from 'node:util';
import { Client } from '../client/index.js';
import type { StatusResult } from '../client/index.js';
import { withUsageErrors } from './args.js';

export const STATUS_USAGE = `usage: codejail status [--socket PATH] [--json]
Prints the daemon's version, confinement layers, slots and queue (--json: the status reply as
one JSON object).`;

function formatDuration(ms: number): string {
  const seconds = Math.floor(ms / 1000);
  const parts = [
    [Math.floor(seconds / 86400), 'd'],
    [Math.floor(seconds / 3600) % 24, 'h'],
    [Math.floor(seconds / 60) % 60, 'm'],
  ] as const;
  const leading = parts.filter(([value]) => value > 0).map(([value, unit]) => `${value}${unit}`);
  return [...leading, `${seconds % 60}s`].join(' ');
}

export function formatStatus(status: StatusResult): string {
  const layerNames = Object.keys(status.layers).sort();
  const width = Math.max(5, ...layerNames.map((name) => name.length));
  const lines = [
    `codejaild ${status.version}, protocol ${status.protocol}, up ${formatDuration(status.uptimeMs)}`,
    status.unsafe ? 'mode      UNSAFE: runs are NOT confined' : 'mode      confined',
    `commands  ${status.commands.join(', ') || '(none)'}`,
    `slots     ${status.slots.busy} busy of ${status.slots.total}`,
    ...(status.slots.quarantined ?? []).map(
      (q) => `          slot ${q.index} (uid ${q.uid}) QUARANTINED ${formatDuration(q.sinceMs)}, ${q.sweeps} sweeps failed: ${q.reason}`,
    ),
    `queue     ${status.queue.depth} waiting, at most ${status.queue.max}`,
    ...(status.memory ? [`memory    ${status.memory}`] : []),
    ...(status.disk ? [`disk      ${status.disk}`] : []),
    ...(status.warm ?? []).map(
      (w) =>
        `warm      ${w.command}: template ${w.ready ? 'ready' : 'NOT ready (runs go cold)'}` +
        `${w.preload.length ? `, preloads ${w.preload.join(', ')}` : ''}; ${w.warmRuns} runs warm, ${w.coldRuns} cold, ` +
        `${w.restarts} restarts, ${w.replaced} replacements`,
    ),
    '',
    `${'layer'.padEnd(width)}  state`,
    ...layerNames.map((name) => `${name.padEnd(width)}  ${status.layers[name]}`),
  ];
  return lines.join('\n') + '\n';
}

export async function status(args: string[]): Promise<number> {
  const { values } = withUsageErrors(() =>
    parseArgs({ args, options: { socket: { type: 'string' }, json: { type: 'boolean' } }, strict: true }),
  );
  const client = new Client({ socketPath: values.socket });
  try {
    const result = await client.status();
    process.stdout.write(values.json ? `${JSON.stringify(result)}\n` : formatStatus(result));
    return 0;
  } finally {
    await client.close();
  }
}
