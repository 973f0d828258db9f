// The cgroups layer: per-run cgroup v2 leaves (cgroup_tree.ts, which says what a leaf gives a run
// that rlimits cannot), detected, opened per run and removed after it.
import { CgroupTree } from './cgroup_tree.js';
import { defineLayer } from './layer.js';

export interface CgroupsState {
  /** Where the runs' cgroups live. */
  cgroupTree?: CgroupTree;
}

/**
 * The cgroups layer (native/cgroup.cc). Detection creates <cgroup>/codejail (directories only,
 * nothing a failed start-up would leak). Per run, in a slot: a leaf with the run's limits, whose
 * cgroup.procs fd goes into the plan input; cgroup.kill in each kill round; the memory verdict;
 * the leaf removed at release.
 */
export const cgroups = defineLayer<'cgroups', CgroupsState, 'cgroups'>({
  name: 'cgroups',
  // Auto: used where cgroup2 has the memory and pids controllers available to the daemon
  // (systemd: Delegate=yes). Its deny tests need a delegated cgroup2: they run in test/vm.
  defaultMode: 'auto',
  detect(ctx) {
    const open = ctx.openCgroups ?? ((memoryMax: number) => CgroupTree.open({ memoryMax }));
    const cgroupTree = open(ctx.config.cgroupMemoryMax);
    return { available: true, detail: cgroupTree.root, state: { cgroupTree } };
  },
  plan: (input) => (input.cgroupProcsFd === undefined ? {} : { cgroupProcsFds: [input.cgroupProcsFd] }),
  runHooks: ({ cgroupTree: tree }) =>
    tree && {
      name: 'cgroups',
      step: 'cgroup',
      prepare: (slot, limits) => ({ cgroupProcsFd: tree.prepare(slot, limits) }),
      // cgroup.kill reaches every process of the run's leaf, whatever its uid or session.
      killRound: (slot) => tree.killRound(slot),
      killScope: () => "the slot's cgroup",
      // Before the kill: an OOM kill's trace in memory.events is the run's memory verdict.
      verdict: (slot) => ({ memory: tree.verdict(slot) }),
      release: (slot) => tree.release(slot),
    },
  // Only in test/vm (a delegated cgroup2), where the guest runs each probe (memory.max included)
  // with cgroups on and then off in one boot; scripts/sabotage.mjs checks that those pairs exist.
  sabotage: { cgroups: 'deny_cgroup' },
});
