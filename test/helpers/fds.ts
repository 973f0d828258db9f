// A process's open fds, counted when they have settled: a daemon closes a finished connection's
// or run's fds a little after its reply, so a count read at once can catch some still open and
// make a baseline that a later, settled count falls below (or a leak look like clean-up).
import fs from 'node:fs';

export const fdCount = (pid: number) => fs.readdirSync(`/proc/${pid}/fd`).length;

/**
 * The fd count of `pid` once it has not changed for `quietMs` (read every 25 ms), at most
 * `timeoutMs` after the call; throws when it never settles.
 */
export async function settledFdCount(pid: number, quietMs = 300, timeoutMs = 10_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let count = fdCount(pid);
  let since = Date.now();
  while (Date.now() - since < quietMs) {
    if (Date.now() > deadline) throw new Error(`the fd count of ${pid} did not settle in ${timeoutMs} ms (last ${count})`);
    await new Promise((r) => setTimeout(r, 25));
    const now = fdCount(pid);
    if (now !== count) {
      count = now;
      since = Date.now();
    }
  }
  return count;
}
