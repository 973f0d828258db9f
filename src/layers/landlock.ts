// The Landlock layer (native/landlock.cc): the run may read and execute only what its command
// needs, and write only beneath its run directory (run/commands.ts builds the policy).
import { landlockPolicy } from '../run/commands.js';
import { defineLayer } from './layer.js';
import { EXECV, READ_PASSWD, SUBPROCESS } from './probes.js';

export interface LandlockState {
  /** The kernel's Landlock ABI version. */
  landlockAbi: number;
}

export const landlock = defineLayer<'landlock', LandlockState, 'landlock'>({
  name: 'landlock',
  defaultMode: 'required',
  detect(ctx) {
    const landlockAbi = ctx.addon.landlockAbi();
    return landlockAbi > 0
      ? { available: true, detail: `ABI ${landlockAbi}`, state: { landlockAbi } }
      : { available: false, detail: 'the kernel has no Landlock (or it is disabled)' };
  },
  plan: (input) => ({ landlock: landlockPolicy(input.profile, input.dir.path) }),
  probes: [READ_PASSWD, EXECV, SUBPROCESS],
  sabotage: { landlock: 'deny_landlock' },
});
