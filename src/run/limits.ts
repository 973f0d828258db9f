// Limits of one run: the config's defaults overlaid by what the request asks, checked against
// the config's ceilings before the run takes a slot. Pure functions, unit-tested.
import { LIMIT_NAMES, type Limits } from '../protocol/index.js';
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

/**
 * The rlimits the sandboxed process sets on itself. CPU gets soft=CPU, hard=CPU+1, as the
 * original CodeJail does: the kernel sends SIGXCPU at the soft limit (status -24) and SIGKILL
 * only at the hard one. RLIMIT_CPU counts whole seconds, so a fractional CPU rounds up.
 *
 * Kernel objects counted per uid or per process are bounded too, whatever the daemon inherited:
 * no POSIX message queue bytes (seccomp refuses mq_open too: this holds with that layer off), no
 * locked memory (mlock makes host RAM unswappable, up to the limit in each of NPROC processes;
 * Python never locks), and few queued signals. The stack's hard limit is its soft one.
 */
export function rlimitsFor(limits: Limits): NativeRlimits {
  const rlimits: NativeRlimits = {
    fsize: [limits.FSIZE, limits.FSIZE],
    core: [0, 0],
    nofile: [NOFILE, NOFILE],
    msgqueue: [0, 0],
    memlock: [0, 0],
    sigpending: [SIGPENDING, SIGPENDING],
    stack: [STACK, STACK],
  };
  if (limits.CPU > 0) {
    const cpu = Math.ceil(limits.CPU);
    rlimits.cpu = [cpu, cpu + 1];
  }
  if (limits.VMEM > 0) rlimits.as = [limits.VMEM, limits.VMEM];
  if (limits.NPROC > 0) rlimits.nproc = [limits.NPROC, limits.NPROC];
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
