// The mount namespace layer (native/namespaces.cc): every run joins the daemon's one mount
// namespace, in which host socket directories (/run, /tmp, ...) are empty.
import { defineLayer } from './layer.js';

export interface MntnsState {
  /** The daemon's one mount namespace with HIDDEN_DIRS covered, joined by every run. */
  mntnsFd?: number;
}

export const mntns = defineLayer<'mntns', MntnsState, 'mntns'>({
  name: 'mntns',
  defaultMode: 'required',
  // After the disk layer: its copy of runBase must already be the shared mount whose run disks
  // propagate into it. Late, because it creates an fd the daemon keeps.
  after: ['disk'],
  detect(ctx) {
    const { hide, kept } = hiddenDirs(ctx.config.runBase);
    const mntnsFd = ctx.addon.createNamespace('mnt', hide);
    return {
      available: true,
      detail: `one shared namespace; empty: ${hide.join(' ')}` + (kept.length ? `; not hidden (holds runBase): ${kept.join(' ')}` : ''),
      state: { mntnsFd },
    };
  },
  plan: (_input, state) => (state.mntnsFd === undefined ? {} : { mntnsFd: state.mntnsFd }),
  release(state, ctx) {
    if (state.mntnsFd !== undefined) ctx.addon.closeFd(state.mntnsFd);
    state.mntnsFd = undefined;
  },
  sabotage: { mntns: 'deny_mntns' },
});

/**
 * Where host services keep their Unix sockets (D-Bus, journald's /dev/log, nscd, X11, user
 * sessions): empty in the sandbox's mount namespace, because Landlock (ABI <= 7) does not
 * mediate connect() on a pathname socket. Sandboxes are never granted anything beneath these
 * anyway (run/commands.ts refuses such grants).
 */
export const HIDDEN_DIRS = ['/run', '/tmp', '/var/tmp', '/dev/shm', '/home', '/root'];

/** HIDDEN_DIRS minus any that holds the run base (the sandbox must reach its run directory). */
export function hiddenDirs(runBase: string): { hide: string[]; kept: string[] } {
  const holdsRunBase = (dir: string) => runBase === dir || runBase.startsWith(`${dir}/`);
  return { hide: HIDDEN_DIRS.filter((d) => !holdsRunBase(d)), kept: HIDDEN_DIRS.filter(holdsRunBase) };
}
