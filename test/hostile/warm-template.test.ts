// Attacks on the warm path: what one run could learn of another through the template they are
// both forked from. A run's message (its plan, and in its tail its argv) passes through the
// template; whatever of it stayed in the template's memory would be in every later fork's.
import fs from 'node:fs';
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { daemonSuite } from '../helpers/suite.js';

const isRoot = process.getuid?.() === 0;
const coldOnly = process.env.CODEJAIL_TEST_RUN_PATH === 'cold';

/** The warm templates of the daemon `daemonPid`: its children running python/warm_template.py. */
function templatePids(daemonPid: number): number[] {
  return fs
    .readdirSync('/proc')
    .filter((p) => /^\d+$/.test(p))
    .filter((p) => {
      try {
        const stat = fs.readFileSync(`/proc/${p}/stat`, 'utf8');
        const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
        return ppid === daemonPid && fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').includes('warm_template.py');
      } catch {
        return false;
      }
    })
    .map(Number);
}

/** Whether `needle` is anywhere in the writable memory of `pid` (read as root through /proc). */
function memoryHolds(pid: number, needle: Buffer): boolean {
  return memoryMatches(pid, needle, () => true);
}

/** Whether `needle` is in the writable memory of `pid` at an offset `near` accepts (it sees the bytes around it). */
function memoryMatches(pid: number, needle: Buffer, near: (chunk: Buffer, at: number) => boolean): boolean {
  const maps = fs.readFileSync(`/proc/${pid}/maps`, 'utf8').trim().split('\n');
  const mem = fs.openSync(`/proc/${pid}/mem`, 'r');
  try {
    for (const line of maps) {
      const [range, perms] = line.split(' ');
      if (!perms!.startsWith('rw')) continue;
      const [start, end] = range!.split('-').map((hex) => parseInt(hex, 16));
      const chunk = Buffer.alloc(Math.min(end! - start!, 1 << 20) + needle.length);
      for (let at = start!; at < end!; at += 1 << 20) {
        let n = 0;
        try {
          n = fs.readSync(mem, chunk, 0, Math.min(chunk.length, end! - at), at);
        } catch {
          break; // a guard page
        }
        const read = chunk.subarray(0, n);
        for (let i = read.indexOf(needle); i >= 0; i = read.indexOf(needle, i + 1)) if (near(read, i)) return true;
      }
    }
    return false;
  } finally {
    fs.closeSync(mem);
  }
}

describe.skipIf(!isRoot || coldOnly)('hostile: the warm template', () => {
  const suite = daemonSuite();

  it('deny_warm_template_keeps_no_run_argv: a run argv is nowhere in the template it forked from', async () => {
    // Before the fix, the template parsed each run's message itself and the freed bytes stayed
    // in its heap: every later fork carried the argv of the runs before it.
    const secret = `cj-argv-secret-${randomBytes(8).toString('hex')}`;
    const result = await suite.client.jailCode('python', { code: 'import sys\nprint(len(sys.argv[1]))', argv: [secret], profile: true });
    expect(result.usage.stages?.warm).toBe(true);
    expect(result.stdout.toString()).toBe(`${secret.length}\n`);
    const [template] = templatePids(suite.daemon.process.pid!);
    expect(template).toBeGreaterThan(0);
    expect(memoryHolds(template!, Buffer.from(secret))).toBe(false);
    // The scan itself works: the template's own start-up arguments are there.
    expect(memoryHolds(template!, Buffer.from('--harness'))).toBe(true);
  });

  // Review: the template sent each run's exit as JSON it built from the wait status and rusage,
  // and the freed text stayed in its heap: a later run could read the one before's
  // {"token":18,"code":77,...,"maxRssKb":13404}. Now the report is written into buffers the
  // template zeroes once it is sent, and no Python object is made of it.
  it('deny_warm_template_keeps_no_exit_report: the exit status and usage of a run are nowhere in the template', async () => {
    const first = await suite.client.jailCode('python', { code: 'raise SystemExit(77)', profile: true });
    expect(first.usage.stages?.warm).toBe(true);
    expect(first.status).toBe(77);
    // The template is idle again (it has sent the EXIT), as a next run's fork would find it.
    const [template] = templatePids(suite.daemon.process.pid!);
    expect(template).toBeGreaterThan(0);
    expect(memoryHolds(template!, Buffer.from('"code":77'))).toBe(false);
    expect(memoryHolds(template!, Buffer.from('"maxRssKb"'))).toBe(false);
    // The binary form: EXIT, a token, then the wait status of exit(77).
    expect(memoryMatches(template!, Buffer.from('EXIT'), (chunk, at) => at + 12 <= chunk.length && chunk.readInt32LE(at + 8) === 77 << 8)).toBe(false);
  });
});
