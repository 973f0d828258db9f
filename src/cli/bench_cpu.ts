// CPU time per run, split by process, for `codejail bench --profile`, read from /proc around each
// row: the daemon's own (every thread), its reaped children's (the kill helpers it clones after
// each run; on a cold run also the run itself, which its usage tells apart), the warm templates'
// own (each fork) and their reaped children's (the runs forked from them, confinement included),
// and this process's (the client). /proc counts in clock ticks (10 ms): a row of a few hundred
// runs gives each figure to about 0.05 ms per run.
import { readFileSync } from 'node:fs';
import { findTemplates } from './bench_floor.js';

const TICK_MS = 10; // USER_HZ is 100 on Linux, whatever the kernel's own HZ

/** A process's CPU time, its own and its reaped children's (ms), from /proc/<pid>/stat. */
export function processCpu(pid: number): { selfMs: number; childrenMs: number } {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    // After the command name, which may hold spaces: state is field 3, utime..cstime 14..17.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = (index: number) => Number(fields[index - 3]);
    return { selfMs: (ticks(14) + ticks(15)) * TICK_MS, childrenMs: (ticks(16) + ticks(17)) * TICK_MS };
  } catch {
    return { selfMs: 0, childrenMs: 0 };
  }
}

/** The counters at one moment. */
export interface CpuSnapshot {
  daemon: number;
  daemonChildren: number;
  templates: number;
  templateChildren: number;
  client: number;
  /** The templates seen, so that a template replaced during a row can be noticed. */
  templatePids: string;
}

export function cpuSnapshot(daemonPid: number): CpuSnapshot {
  const daemon = processCpu(daemonPid);
  const templates = findTemplates(daemonPid).map((t) => ({ pid: t.pid, ...processCpu(t.pid) }));
  const client = process.cpuUsage();
  return {
    daemon: daemon.selfMs,
    daemonChildren: daemon.childrenMs,
    templates: templates.reduce((sum, t) => sum + t.selfMs, 0),
    templateChildren: templates.reduce((sum, t) => sum + t.childrenMs, 0),
    client: (client.user + client.system) / 1000,
    templatePids: templates.map((t) => t.pid).join(','),
  };
}

/** CPU per run of one row, ms, by process. */
export interface CpuPerRun {
  daemon?: number;
  helpers?: number;
  template?: number;
  child: number;
  client?: number;
  total: number;
}

export const CPU_COLUMNS = ['daemon', 'helpers', 'template', 'child', 'client', 'total'] as const;

/**
 * The split between two snapshots of a row of `runs` runs. `runCpuMs`: the runs' own CPU as
 * their usage reported it (user + system), which tells a cold run (the daemon's child) from the
 * helpers; a warm run is the template's child. Undefined when a template was replaced meanwhile.
 */
export function cpuPerRun(before: CpuSnapshot, after: CpuSnapshot, runs: number, warm: boolean, runCpuMs: number): CpuPerRun | undefined {
  if (before.templatePids !== after.templatePids) return undefined;
  const daemonChildren = after.daemonChildren - before.daemonChildren;
  const child = warm ? after.templateChildren - before.templateChildren : runCpuMs;
  const split = {
    daemon: (after.daemon - before.daemon) / runs,
    helpers: Math.max(0, daemonChildren - (warm ? 0 : runCpuMs)) / runs,
    template: (after.templates - before.templates) / runs,
    child: child / runs,
    client: (after.client - before.client) / runs,
  };
  return { ...split, total: split.daemon + split.helpers + split.template + split.child + split.client };
}
