// One daemon per run base at a time. A daemon started while another of the same configuration
// still runs, or still lets its runs finish after a SIGTERM (an upgrade whose restart did not
// wait for the old daemon to exit), would sweep the slots at its start and kill the other's runs:
// their callers would get a -9 that was not their run's. So a daemon claims its run base with a
// file beside it naming its pid and that process's start time, refuses to start while the file
// names a live process, and removes the file when it has stopped. A daemon that was killed
// leaves the file behind: its pid is then gone, or another process's (another start time), and
// the file is taken over.
import fs from 'node:fs';
import path from 'node:path';

export class InstanceError extends Error {
  override name = 'InstanceError';
}

export interface RunBaseClaim {
  /** The claim's file (`<runBase>.codejaild.pid`). */
  file: string;
  /** Removes the file if it still names this process. */
  release(): void;
}

/** When a process started (clock ticks since boot, /proc/<pid>/stat field 22), or undefined when it is gone. */
function startTime(pid: number): string | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
    // The command name (field 2) may hold spaces and parentheses: count fields after its last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields[0] is field 3 (the state): a zombie has exited, and holds nothing of the run base.
    if (fields[0] === 'Z') return undefined;
    return fields[19];
  } catch {
    return undefined;
  }
}

/** Where a daemon of `runBase` keeps its claim. */
export function runBaseClaimFile(runBase: string): string {
  return `${path.resolve(runBase)}.codejaild.pid`;
}

/** Claims `runBase` for this process, or throws an InstanceError naming the daemon that holds it. */
export function claimRunBase(runBase: string): RunBaseClaim {
  const file = runBaseClaimFile(runBase);
  let holder: { pid?: unknown; start?: unknown } | undefined;
  try {
    holder = JSON.parse(fs.readFileSync(file, 'utf8')) as { pid?: unknown; start?: unknown };
  } catch {
    holder = undefined; // none, or unreadable: nothing holds it
  }
  if (holder && typeof holder.pid === 'number' && holder.pid !== process.pid && startTime(holder.pid) === holder.start) {
    throw new InstanceError(
      `another codejaild (pid ${holder.pid}) runs on the run base ${runBase}, or is still stopping (it lets its runs finish for ` +
        `shutdownGraceMs): start this one once it has exited (${file})`,
    );
  }
  const mine = JSON.stringify({ pid: process.pid, start: startTime(process.pid) });
  // Only when missing: a confined daemon (apparmor/codejaild) may write the file, not its directory.
  if (!fs.existsSync(path.dirname(file))) fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o755 });
  const temporary = `${file}.${process.pid}`;
  fs.writeFileSync(temporary, `${mine}\n`, { mode: 0o644 });
  fs.renameSync(temporary, file);
  return {
    file,
    release() {
      try {
        if (fs.readFileSync(file, 'utf8').trim() === mine) fs.unlinkSync(file);
      } catch {
        // already gone
      }
    },
  };
}
