// The rlimits layer (native/rlimits.cc): the request's limits as setrlimit() values. The one
// layer unsafe mode keeps.
import { rlimitsFor } from '../run/limits.js';
import { defineLayer } from './layer.js';

export const rlimits = defineLayer({
  name: 'rlimits',
  defaultMode: 'required',
  keptWhenUnsafe: true,
  detect: () => ({ available: true }),
  plan: (input) => ({ rlimits: rlimitsFor(input.limits) }),
  sabotage: { rlimits: 'deny_rlimit' },
});
