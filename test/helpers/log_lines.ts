// The JSON log lines a daemon (or `codejail serve`) writes, read as they come: one callback per
// line, parsed, or { msg: line } for a line that is not JSON.
import type { Readable } from 'node:stream';

export type LogLine = Record<string, unknown>;

export function followLogLines(streams: Array<Readable | null | undefined>, onLine: (line: LogLine) => void): void {
  for (const stream of streams) {
    if (!stream) continue;
    let buffered = '';
    stream.on('data', (chunk: Buffer) => {
      buffered += chunk.toString();
      let nl;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const text = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        let parsed: LogLine;
        try {
          parsed = JSON.parse(text);
        } catch {
          parsed = { msg: text };
        }
        onLine(parsed);
      }
    });
  }
}
