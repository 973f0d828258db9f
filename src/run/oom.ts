// Who the kernel's OOM killer takes first when the whole host is out of memory. Without cgroup
// v2 memory controllers nothing bounds a run's memory in total (only VMEM per process, times
// NPROC), so a run, not the daemon or a host service, must be the first choice.
import fs from 'node:fs';
import type { Logger } from '../log.js';

/** Every run's (and so its children's): the kernel picks it before anything else. */
export const RUN_OOM_SCORE_ADJ = 1000;

/**
 * The daemon's, inherited by the warm templates it starts (every run then raises its own): the
 * kernel takes one of them only when nothing else is left.
 */
export const DAEMON_OOM_SCORE_ADJ = -900;

/**
 * Lowers this process's oom_score_adj. Needs CAP_SYS_RESOURCE, which a host's capability bounding
 * set may lack: then it says so and carries on, since this protects the service, not the sandbox.
 */
export function lowerOwnOomScore(log: Pick<Logger, 'warn'>, value = DAEMON_OOM_SCORE_ADJ, file = '/proc/self/oom_score_adj'): boolean {
  try {
    fs.writeFileSync(file, `${value}\n`);
    return true;
  } catch (err) {
    log.warn('cannot lower the daemon\'s oom_score_adj (no CAP_SYS_RESOURCE?): a host-wide OOM may take the daemon or a template instead of a run', {
      value,
      error: (err as Error).message,
    });
    return false;
  }
}
