// The seccomp layer (native/seccomp.cc): the built-in filter, installed last in the child.
import { defineLayer } from './layer.js';
import { INET_SOCKET } from './probes.js';

export const seccomp = defineLayer({
  name: 'seccomp',
  defaultMode: 'required',
  detect: (ctx) =>
    ctx.addon.seccompSupported() ? { available: true } : { available: false, detail: 'the kernel does not support seccomp filters' },
  plan: () => ({ seccomp: true }),
  probes: [INET_SOCKET],
  sabotage: { seccomp: 'deny_seccomp' },
});
