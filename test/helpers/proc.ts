// Reading a process from outside, as root, and waiting for a state instead of sleeping for it.
import fs from 'node:fs';

/** Polls `test` every 25 ms until it holds; throws naming `what` after `timeoutMs`. */
export async function until(what: string, test: () => boolean | Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await test())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/**
 * `promise`, or a failure naming `what` after `ms`: for a step that could hang, so that a test
 * says which step did instead of reaching its own timeout. (The soak's withTimeout throws its
 * Hung, which its tallies count.)
 */
export function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

/** /proc/<pid>/<file>, or undefined once the process is gone (or the file unreadable). */
export function readProc(pid: number, file: string): string | undefined {
  try {
    return fs.readFileSync(`/proc/${pid}/${file}`, 'utf8');
  } catch {
    return undefined;
  }
}
