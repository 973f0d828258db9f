// The network namespace layer (native/namespaces.cc): each slot's runs join an empty network
// namespace of the slot's own, made at start.
import type { SlotIdentity } from '../run/slot_users.js';
import { defineLayer, type Addon } from './layer.js';

export interface NetnsState {
  /**
   * Empty network namespaces, one per slot (index = slot index), each joined only by that slot's
   * runs. Abstract Unix socket names live in the network namespace, so runs in one shared
   * namespace could see each other's names.
   */
  netnsFds?: number[];
}

export const netns = defineLayer<'netns', NetnsState, 'netns' | 'landlock,netns,seccomp'>({
  name: 'netns',
  defaultMode: 'required',
  // Last, because it creates fds the daemon keeps: no later check can fail start-up and leak them.
  after: ['mntns'],
  detect(ctx) {
    const netnsFds = createNetnsPerSlot(ctx.addon, ctx.config.slots.count);
    return { available: true, detail: `one empty namespace per slot, ${netnsFds.length} in all`, state: { netnsFds } };
  },
  plan: (input, state) => ({ netnsFd: slotNetns(state, input.slot) }),
  release(state, ctx) {
    for (const fd of state.netnsFds?.splice(0) ?? []) ctx.addon.closeFd(fd);
    state.netnsFds = undefined;
  },
  // The network is closed three times (seccomp refuses an AF_INET socket, Landlock a TCP connect,
  // this namespace routes nothing): deny_network_* tests stand for all three, so their switch
  // turns all three off and a run reaches the test's listener (test/e2e/network.test.ts).
  sabotage: { netns: 'deny_netns', 'landlock,netns,seccomp': 'deny_network' },
});

/**
 * One empty network namespace per slot. Abstract Unix socket names are per network namespace:
 * concurrent runs sharing one could signal each other (a name one run holds makes the other's
 * bind() fail with EADDRINUSE). A slot's runs follow one another and share its namespace. Made
 * at start, about a millisecond and 250 kB of kernel memory each (4096 slots: some 4 s and 1 GB);
 * on failure the ones made so far are closed.
 */
function createNetnsPerSlot(addon: Addon, count: number): number[] {
  const fds: number[] = [];
  try {
    for (let i = 0; i < count; i++) fds.push(addon.createNamespace('net'));
  } catch (err) {
    for (const fd of fds) addon.closeFd(fd);
    throw err;
  }
  return fds;
}

/**
 * The slot's own network namespace. Fails closed: a run without one would stay in the host's,
 * where host services' abstract Unix sockets are.
 */
function slotNetns(state: NetnsState, slot: SlotIdentity): number {
  const fd = state.netnsFds?.[slot.index];
  if (fd === undefined) throw new Error(`no network namespace was made for slot ${slot.index}`);
  return fd;
}
