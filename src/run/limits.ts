// Limits of one run: the config's defaults overlaid by what the request asks, checked against
// the config's ceilings before the run takes a slot, and the rlimits they become. Pure functions,
// unit-tested. The limits themselves are one table, src/protocol/limits.ts.
import { LIMIT_NAMES, type LimitName, type Limits } from '../protocol/index.js';
import type { NativeRlimits } from '../native.js';
import { RequestError } from '../protocol/errors.js';
import { ceilingViolation } from '../config/ceilings.js';

/** Open files per run: enough for Python and its imports, small enough to bound the kernel's work. */
const NOFILE = 256;

/**
 * Queued real-time signals and POSIX timers (each holds a preallocated signal) at once for the
 * slot's uid. The host default is in the tens of thousands per uid, each a piece of kernel
 * memory; Python queues at most a handful (glibc's thread cancellation), so this is generous.
 */
const SIGPENDING = 128;

/**
 * The main thread's stack, soft and hard: what a host gives a process by default. With the hard
 * limit left unlimited (as the daemon's usually is) a run could lift its own, and a program it
 * starts would get the kernel's legacy memory layout and a stack that grows until VMEM.
 * Python 3.11's recursion limit is far within it; a thread's stack (threading.stack_size) is not
 * bounded by it, only by VMEM.
 */
const STACK = 8 * 1024 * 1024;

/** Defaults overlaid by the request's limits; throws limit_exceeds_ceiling naming the limit. */
export function effectiveLimits(defaults: Limits, requested: Partial<Limits>, ceilings: Limits): Limits {
  const limits: Limits = { ...defaults };
  for (const name of LIMIT_NAMES) {
    const value = requested[name];
    if (value !== undefined) limits[name] = value;
  }
  const violation = ceilingViolation(limits, ceilings);
  if (violation) throw new RequestError('limit_exceeds_ceiling', violation);
  return limits;
}

type RlimitName = keyof NativeRlimits;
type SoftHard = [soft: number, hard: number];

/** One rlimit the sandboxed process sets on itself: from a request limit, or fixed. */
interface RlimitRow {
  /** The request limit it comes from; absent: the same for every run. */
  limit?: LimitName;
  /** [soft, hard] for these limits, or undefined to leave it inherited (a limit of 0: none). */
  value: (limits: Limits) => SoftHard | undefined;
  /** util-linux prlimit's option for it (unsafe mode without the addon). */
  prlimit: string;
}

const same = (value: number): SoftHard => [value, value];
/** A request limit where 0 means "no limit": the rlimit is then inherited. */
const unlessZero = (value: number): SoftHard | undefined => (value > 0 ? same(value) : undefined);

/**
 * The rlimits the sandboxed process sets on itself, one row per rlimit the addon knows
 * (NativeRlimits: a row missing or extra does not compile; test/run/limits.test.ts checks the
 * addon applies each). CPU gets soft=CPU, hard=CPU+1, as the original CodeJail does: the kernel
 * sends SIGXCPU at the soft limit (status -24) and SIGKILL only at the hard one. RLIMIT_CPU
 * counts whole seconds, so a fractional CPU rounds up.
 *
 * Kernel objects counted per uid or per process are bounded too, whatever the daemon inherited:
 * no POSIX message queue bytes (seccomp refuses mq_open too: this holds with that layer off), no
 * locked memory (mlock makes host RAM unswappable, up to the limit in each of NPROC processes;
 * Python never locks), and few queued signals. The stack's hard limit is its soft one.
 */
export const RLIMITS: Record<RlimitName, RlimitRow> = {
  cpu: { limit: 'CPU', value: (l) => (l.CPU > 0 ? [Math.ceil(l.CPU), Math.ceil(l.CPU) + 1] : undefined), prlimit: '--cpu' },
  as: { limit: 'VMEM', value: (l) => unlessZero(l.VMEM), prlimit: '--as' },
  fsize: { limit: 'FSIZE', value: (l) => same(l.FSIZE), prlimit: '--fsize' },
  nproc: { limit: 'NPROC', value: (l) => unlessZero(l.NPROC), prlimit: '--nproc' },
  nofile: { value: () => same(NOFILE), prlimit: '--nofile' },
  core: { value: () => same(0), prlimit: '--core' },
  msgqueue: { value: () => same(0), prlimit: '--msgqueue' },
  memlock: { value: () => same(0), prlimit: '--memlock' },
  sigpending: { value: () => same(SIGPENDING), prlimit: '--sigpending' },
  stack: { value: () => same(STACK), prlimit: '--stack' },
};

/** The rlimits a run under these limits sets on itself (see RLIMITS). */
export function rlimitsFor(limits: Limits): NativeRlimits {
  const rlimits: NativeRlimits = {};
  for (const [name, row] of Object.entries(RLIMITS) as [RlimitName, RlimitRow][]) {
    const value = row.value(limits);
    if (value) rlimits[name] = value;
  }
  return rlimits;
}

/** What a host's layers contribute to bounding a run's memory and disk (for describeBounds). */
export interface BoundingLayers {
  rlimits: boolean;
  /** The cgroups layer: a memory.max per run. */
  cgroups: boolean;
  /** The config's cgroupMemoryMax: memory.max when VMEM is 0. */
  cgroupMemoryMax: number;
  /** The disk layer: a tmpfs per run directory. */
  disk: boolean;
}

/**
 * In words, what bounds a run's memory and its directory on this host under `limits` (the
 * config's defaults), for `codejail status`: an operator must be able to see that nothing does.
 */
export function describeBounds(limits: Limits, layers: BoundingLayers): { memory: string; disk: string } {
  const perProcess =
    layers.rlimits && limits.VMEM > 0
      ? `each process at most ${formatBytes(limits.VMEM)} of address space (VMEM)` +
        (limits.NPROC > 0 ? `, at most ${limits.NPROC} processes (NPROC)` : ', processes unbounded (NPROC 0)')
      : 'processes unbounded (VMEM 0 or no rlimits layer)';
  const total = layers.cgroups ? (limits.VMEM > 0 ? limits.VMEM : layers.cgroupMemoryMax) : 0;
  const perRun = layers.cgroups
    ? total > 0
      ? `the run in all at most ${formatBytes(total)} (cgroup memory.max)`
      : 'no total per run (cgroups layer on, but VMEM and cgroupMemoryMax are 0)'
    : 'no total per run: without the cgroups layer a run may use up to VMEM times NPROC';
  const memory = `${perProcess}; ${perRun}`;
  const disk = layers.disk
    ? limits.DISK > 0
      ? `a tmpfs of ${formatBytes(limits.DISK)} per run directory (DISK), in memory`
      : 'a tmpfs per run directory, unbounded (DISK 0)'
    : 'not bounded (no disk layer): FSIZE bounds each file, not their number';
  return { memory, disk };
}

function formatBytes(bytes: number): string {
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && value % 1024 === 0 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value} ${units[unit]}`;
}
