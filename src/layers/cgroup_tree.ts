// Per-run cgroup v2 leaves: <base>/codejail/slot-N, created fresh for each run and removed after
// it. A leaf gives the run three things rlimits cannot:
//   - memory.max bounds what the run's processes really use together (RLIMIT_AS is per process
//     and counts address space, not memory), and the kernel's OOM kill of the whole group
//     (memory.oom.group) ends the run with a verdict the daemon can read in memory.events;
//   - pids.max bounds the run's tasks whatever uid they run as;
//   - cgroup.kill SIGKILLs every process in the leaf at once, setsid()'d or double-forked, even
//     without the uid layer.
// The child joins the leaf itself, between clone and execve, by writing to a cgroup.procs fd
// the daemon opened before the clone (native/cgroup.cc), so the run is inside from its first
// instruction and no process of it is ever outside.
//
// This file is the cgroupfs mechanics (the layer itself is cgroups.ts).
// Metadata calls are synchronous on purpose, as in rundir.ts: each takes microseconds.
import fs from 'node:fs';
import path from 'node:path';
import type { Limits } from '../protocol/index.js';

/** The controllers a run's leaf needs; both must be available (delegated) where the tree lives. */
const CONTROLLERS = ['memory', 'pids'] as const;

export class CgroupError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CgroupError';
  }
}

/** What the cgroup saw of one run, read after its main process exited and before the kill. */
export interface CgroupVerdict {
  /** The kernel's OOM killer ended a process of the run because memory.max was reached. */
  oomKilled: boolean;
  /** memory.peak of the leaf (kernels >= 5.19), in KiB. */
  memoryPeakKb?: number;
}

export interface CgroupSlot {
  index: number;
}

export interface CgroupTreeOptions {
  /** Where cgroup2 is mounted; found in /proc/self/mountinfo when omitted. */
  mount?: string;
  /** The daemon's own cgroup ("/system.slice/codejaild.service"); read from /proc/self/cgroup when omitted. */
  ownCgroup?: string;
  /** memory.max of a run whose VMEM limit is 0 (unlimited); 0 leaves memory.max at "max". */
  memoryMax: number;
}

/**
 * The daemon's cgroup subtree. `open` checks that the host can give runs their own leaves and
 * prepares the tree; the instance then serves runs, one leaf per slot at a time.
 */
export class CgroupTree {
  private constructor(
    /** <base>/codejail: holds one leaf per busy slot. */
    readonly root: string,
    private readonly memoryMax: number,
  ) {}

  /**
   * Finds cgroup2, checks that memory and pids can be enabled below the daemon's cgroup, and
   * creates <base>/codejail with both controllers on for its children. Throws CgroupError saying
   * exactly what is missing. Under systemd the service needs Delegate=yes; then the daemon moves
   * itself into a "daemon" leaf of its own cgroup, because a cgroup with processes in it cannot
   * hand controllers to children ("no internal processes").
   */
  static open(options: CgroupTreeOptions): CgroupTree {
    const mount = options.mount ?? findCgroup2Mount();
    if (!mount) throw new CgroupError('no cgroup2 filesystem is mounted (cgroup v1 only, or none)');
    const own = options.ownCgroup ?? readOwnCgroup();
    const base = path.join(mount, own);
    const available = readWords(path.join(base, 'cgroup.controllers'));
    const missing = CONTROLLERS.filter((c) => !available.includes(c));
    if (missing.length) {
      throw new CgroupError(
        `the ${missing.join(' and ')} controller${missing.length > 1 ? 's are' : ' is'} not available in ${base} ` +
          `(cgroup.controllers: "${available.join(' ') || 'none'}"); ` +
          (own === '/' ? 'they are bound to cgroup v1 on this host' : 'delegate them to the service (systemd: Delegate=yes)'),
      );
    }
    if (own !== '/') moveSelfToLeaf(base);
    enableControllers(base);
    const root = path.join(base, 'codejail');
    mkdirIfMissing(root);
    // The root cgroup has no cgroup.kill of its own, so look for it in a child.
    if (!fs.existsSync(path.join(root, 'cgroup.kill'))) throw new CgroupError(`${root} has no cgroup.kill (kernel older than 5.14)`);
    enableControllers(root);
    return new CgroupTree(root, options.memoryMax);
  }

  /** The leaf of a slot (exists only while the slot runs something). */
  leaf(slot: CgroupSlot): string {
    return path.join(this.root, `slot-${slot.index}`);
  }

  /**
   * Creates the slot's leaf with the run's limits and returns an fd of its cgroup.procs, opened
   * for writing, for the plan (the caller closes it once the child is spawned). A leaf left by
   * an earlier run (a crashed daemon) is emptied and replaced, so counters start from zero.
   */
  prepare(slot: CgroupSlot, limits: Limits): number {
    const leaf = this.leaf(slot);
    if (fs.existsSync(leaf)) this.release(slot);
    fs.mkdirSync(leaf, { mode: 0o755 });
    try {
      const memory = limits.VMEM > 0 ? limits.VMEM : this.memoryMax;
      writeControl(leaf, 'memory.max', memory > 0 ? String(memory) : 'max');
      // Without this a run over memory.max would push its pages to swap instead of failing.
      if (fs.existsSync(path.join(leaf, 'memory.swap.max'))) writeControl(leaf, 'memory.swap.max', '0');
      // An OOM kill takes the whole run, not one process that its parent might outlive.
      writeControl(leaf, 'memory.oom.group', '1');
      writeControl(leaf, 'pids.max', limits.NPROC > 0 ? String(limits.NPROC) : 'max');
      return fs.openSync(path.join(leaf, 'cgroup.procs'), fs.constants.O_WRONLY);
    } catch (err) {
      // Best effort: the error worth reporting is the one that stopped the set-up.
      try {
        fs.rmdirSync(leaf);
      } catch {
        // The next prepare() of this slot replaces the leaf anyway.
      }
      throw err;
    }
  }

  /** Reads the run's memory verdict. Call after the main process exited, before the kill rounds. */
  verdict(slot: CgroupSlot): CgroupVerdict {
    const leaf = this.leaf(slot);
    const events = readKeyed(path.join(leaf, 'memory.events'));
    const verdict: CgroupVerdict = { oomKilled: (events.oom_kill ?? 0) > 0 };
    const peak = readNumber(path.join(leaf, 'memory.peak'));
    if (peak !== undefined) verdict.memoryPeakKb = Math.ceil(peak / 1024);
    return verdict;
  }

  /**
   * One round of killing: SIGKILLs every process in the slot's leaf (cgroup.kill) and says
   * whether the leaf is empty now. Never waits: killed tasks need a moment to leave the leaf, and
   * the caller (the runner's sweep) comes back on a timer rather than block the event loop. A
   * missing leaf is empty.
   */
  killRound(slot: CgroupSlot): boolean {
    const leaf = this.leaf(slot);
    try {
      writeControl(leaf, 'cgroup.kill', '1');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return true;
      throw err;
    }
    return !populated(leaf);
  }

  /**
   * Removes the slot's leaf. Call once a kill round found it empty; a leaf that still has
   * processes (they are SIGKILLed again) is reported with CgroupError, not waited for.
   */
  release(slot: CgroupSlot): void {
    const leaf = this.leaf(slot);
    if (!this.killRound(slot)) throw new CgroupError(`${leaf} still has processes after cgroup.kill`);
    try {
      fs.rmdirSync(leaf);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
}

/** The cgroup2 mount point from /proc/self/mountinfo (the unified one in a hybrid layout). */
export function findCgroup2Mount(mountinfo = safeRead('/proc/self/mountinfo')): string | undefined {
  for (const line of mountinfo.split('\n')) {
    // "36 25 0:31 / /sys/fs/cgroup rw,... shared:9 - cgroup2 cgroup2 rw,..."
    const [left, right] = line.split(' - ');
    if (!right || right.split(' ')[0] !== 'cgroup2') continue;
    const fields = left!.split(' ');
    // The mount must show the hierarchy's root, or paths from /proc/self/cgroup would not apply.
    if (fields[3] === '/') return unescapeMountPath(fields[4]!);
  }
  return undefined;
}

function readOwnCgroup(): string {
  const line = safeRead('/proc/self/cgroup')
    .split('\n')
    .find((l) => l.startsWith('0::'));
  if (!line) throw new CgroupError('/proc/self/cgroup has no cgroup v2 entry ("0::")');
  return line.slice(3) || '/';
}

/** Moves the daemon into <base>/daemon so that <base> may enable controllers for its children. */
function moveSelfToLeaf(base: string): void {
  const procs = readWords(path.join(base, 'cgroup.procs'));
  const others = procs.filter((pid) => pid !== String(process.pid));
  // Checked before anything changes: a failed probe must leave the host as it was.
  if (others.length) {
    throw new CgroupError(
      `${base} holds processes other than the daemon (${others.join(', ')}), so it cannot delegate ` +
        'controllers to per-run cgroups; run codejaild as its own service with Delegate=yes',
    );
  }
  const leaf = path.join(base, 'daemon');
  mkdirIfMissing(leaf);
  if (procs.includes(String(process.pid))) writeControl(leaf, 'cgroup.procs', String(process.pid));
}

function enableControllers(dir: string): void {
  const enabled = readWords(path.join(dir, 'cgroup.subtree_control'));
  const wanted = CONTROLLERS.filter((c) => !enabled.includes(c));
  if (wanted.length) writeControl(dir, 'cgroup.subtree_control', wanted.map((c) => `+${c}`).join(' '));
}

function writeControl(dir: string, file: string, value: string): void {
  try {
    fs.writeFileSync(path.join(dir, file), value);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ENOENT') throw err;
    throw new CgroupError(`writing "${value}" to ${path.join(dir, file)} failed: ${e.code ?? e.message}`);
  }
}

function mkdirIfMissing(dir: string): void {
  try {
    fs.mkdirSync(dir, { mode: 0o755 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new CgroupError(`cannot create ${dir}: ${(err as Error).message}`);
  }
}

function populated(leaf: string): boolean {
  try {
    return readKeyed(path.join(leaf, 'cgroup.events')).populated === 1;
  } catch {
    return false;
  }
}

function readWords(file: string): string[] {
  return safeRead(file).split(/\s+/).filter(Boolean);
}

function readKeyed(file: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    const [key, value] = line.split(' ');
    if (key && value !== undefined) out[key] = Number(value);
  }
  return out;
}

function readNumber(file: string): number | undefined {
  const text = safeRead(file).trim();
  return /^\d+$/.test(text) ? Number(text) : undefined;
}

function safeRead(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

/** mountinfo escapes space, tab, newline and backslash as octal. */
function unescapeMountPath(p: string): string {
  return p.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}
