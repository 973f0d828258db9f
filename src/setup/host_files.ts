// What every setup step does to the host the same way: write a file only when its contents
// change (atomically), and run a tool whose failure says what the tool said.
import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';

/**
 * Writes `contents` to `target` (temporary file + rename, root:root 0644 under root), creating its
 * directory if needed; leaves it alone when it already holds exactly that.
 */
export async function writeIfChanged(target: string, contents: string): Promise<'installed' | 'updated' | 'unchanged'> {
  const current = await fs.readFile(target, 'utf8').catch(() => undefined);
  if (current === contents) return 'unchanged';
  await fs.mkdir(path.dirname(target), { recursive: true, mode: 0o755 });
  const temp = `${target}.codejail-tmp-${process.pid}`;
  try {
    await fs.writeFile(temp, contents, { mode: 0o644 });
    await fs.rename(temp, target);
  } finally {
    await fs.rm(temp, { force: true });
  }
  return current === undefined ? 'installed' : 'updated';
}

/** A tool that failed: its stderr (what it said) is the message. */
export class ToolError extends Error {
  constructor(
    readonly program: string,
    readonly args: string[],
    readonly stderr: string,
    readonly code: string | undefined,
    cause: unknown,
  ) {
    super(`${program} ${args.join(' ')} failed: ${stderr || (cause as Error).message}`, { cause });
    this.name = 'ToolError';
  }
}

/** Runs `program` (no shell), its output captured; throws ToolError naming what it said on stderr. */
export function runTool(program: string, args: string[]): void {
  try {
    execFileSync(program, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: unknown };
    throw new ToolError(program, args, String(e.stderr ?? '').trim(), e.code, err);
  }
}
