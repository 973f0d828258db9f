// The one table of a run's limits. Every list of them derives from it: their names, the
// built-in defaults, the daemon's default ceilings and the request schema (and, in
// src/run/limits.ts, which rlimit each sets). A limit is added by adding its row here;
// test/run/limits.test.ts requires that it is then enforced somewhere.
import { z } from 'zod';

/** What a limit is, what a run gets without asking, and what no request may exceed. */
interface LimitRow {
  /** Whole numbers only (bytes, counts); CPU and REALTIME take fractions of a second. */
  integer: boolean;
  /** The built-in default: what a run that asks for none gets, unless the config says otherwise. */
  default: number;
  /** The built-in ceiling no request may exceed; 0 means none. */
  ceiling: number;
  /** Where it is enforced, for the registry test and for README: the rlimits layer, or else. */
  enforcedBy: 'rlimits' | 'supervise' | 'disk';
}

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

/**
 * The original CodeJail's limits and defaults, plus OUTPUT and DISK (ours), except where it left
 * a run unbounded: VMEM (the original's 0 let one run take all of a host's memory where nothing
 * else bounds it).
 */
export const LIMITS = {
  /** CPU seconds (RLIMIT_CPU; a fraction rounds up). */
  CPU: { integer: false, default: 1, ceiling: 60, enforcedBy: 'rlimits' },
  /** Real time, seconds: the run is killed when it runs out. */
  REALTIME: { integer: false, default: 1, ceiling: 300, enforcedBy: 'supervise' },
  /** Address space of each process, bytes (RLIMIT_AS; with cgroups also the run's memory.max). */
  VMEM: { integer: true, default: GiB, ceiling: 0, enforcedBy: 'rlimits' },
  /** Size of each file the run writes, bytes (RLIMIT_FSIZE): 0 means none may be written. */
  FSIZE: { integer: true, default: 0, ceiling: GiB, enforcedBy: 'rlimits' },
  /** Processes of the run's uid (RLIMIT_NPROC). */
  NPROC: { integer: true, default: 15, ceiling: 256, enforcedBy: 'rlimits' },
  /** stdout+stderr kept, bytes. */
  OUTPUT: { integer: true, default: MiB, ceiling: 64 * MiB, enforcedBy: 'supervise' },
  /** Bytes (and, from them, inodes) the run's directory may hold: its own tmpfs. */
  DISK: { integer: true, default: 64 * MiB, ceiling: GiB, enforcedBy: 'disk' },
} as const satisfies Record<string, LimitRow>;

export type LimitName = keyof typeof LIMITS;
export type Limits = Record<LimitName, number>;

/** Names of the limits, in the table's order. */
export const LIMIT_NAMES = Object.keys(LIMITS) as readonly LimitName[];

/** One column of the table, as complete limits. */
function column(key: 'default' | 'ceiling'): Limits {
  return Object.fromEntries(LIMIT_NAMES.map((name) => [name, LIMITS[name][key]])) as Limits;
}

/** What a run gets for a limit it does not ask for, unless the daemon's config says otherwise. */
export const DEFAULT_LIMITS: Limits = column('default');

/** Ceilings no request may exceed, unless the daemon's config says otherwise. 0: no ceiling. */
export const DEFAULT_CEILINGS: Limits = column('ceiling');

const limitValue = z.number().finite().nonnegative();

/** A request's limits: any of them, each a number >= 0, whole where the limit counts units. */
export const limitsSchema = z
  .object(
    Object.fromEntries(LIMIT_NAMES.map((name) => [name, LIMITS[name].integer ? limitValue.int() : limitValue])) as Record<
      LimitName,
      z.ZodNumber
    >,
  )
  .partial()
  .strict();
