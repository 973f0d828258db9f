// What the runs' mount namespace (the mntns layer) shows empty. Here, below the layers, because
// command discovery (commands.ts) refuses an interpreter that lives beneath one of them.
/**
 * Where host services keep their Unix sockets (D-Bus, journald's /dev/log, nscd, X11, user
 * sessions): empty in the sandbox's mount namespace, because Landlock (ABI <= 7) does not
 * mediate connect() on a pathname socket. Sandboxes are never granted anything beneath these
 * anyway (commands.ts refuses such grants).
 */
export const HIDDEN_DIRS = ['/run', '/tmp', '/var/tmp', '/dev/shm', '/home', '/root'];

/** HIDDEN_DIRS minus any that holds the run base (the sandbox must reach its run directory). */
export function hiddenDirs(runBase: string): { hide: string[]; kept: string[] } {
  const holdsRunBase = (dir: string) => runBase === dir || runBase.startsWith(`${dir}/`);
  return { hide: HIDDEN_DIRS.filter((d) => !holdsRunBase(d)), kept: HIDDEN_DIRS.filter(holdsRunBase) };
}
