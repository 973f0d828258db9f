// The mount namespace layer (native/namespaces.cc): every run joins the daemon's one mount
// namespace, in which host socket directories (/run, /tmp, ...) are empty.
import { hiddenDirs } from '../run/hidden_dirs.js';
import { defineLayer } from './layer.js';

export interface MntnsState {
  /** The daemon's one mount namespace with HIDDEN_DIRS covered, joined by every run (src/run/hidden_dirs.ts). */
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
