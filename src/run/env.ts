// The sandbox's whole environment: nothing of the daemon's (or the calling process's) leaks in.
import type { CommandProfile } from './commands.js';
import type { RunDir } from './rundir.js';

/**
 * The command's configured variables may replace PATH and LANG, but HOME and TMPDIR always
 * point into the run.
 */
export function sandboxEnv(profile: Pick<CommandProfile, 'env'>, dir: Pick<RunDir, 'tmp'>): string[] {
  const env: Record<string, string> = {
    PATH: '/usr/bin:/bin',
    LANG: 'C.UTF-8',
    ...profile.env,
    HOME: dir.tmp,
    TMPDIR: dir.tmp,
  };
  return Object.entries(env).map(([name, value]) => `${name}=${value}`);
}
