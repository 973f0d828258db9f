// Builds the NativePlan of one run: what the addon's child applies to itself between clone and
// execve. Pure: everything it needs is passed in, so it is unit-tested without the addon.
import type { Limits } from '../protocol/index.js';
import type { NativePlan } from '../native.js';
import { landlockPolicy, type CommandProfile } from '../run/commands.js';
import { sandboxEnv } from '../run/env.js';
import type { Layers } from './layers.js';
import { rlimitsFor } from '../run/limits.js';
import { CODE_FILE, type RunDir } from '../run/rundir.js';
import type { Slot } from './slots.js';

export interface PlanInput {
  profile: CommandProfile;
  dir: RunDir;
  /** Whether the request carried code (then 'jailed_code' is the script argument). */
  hasCode: boolean;
  argv: string[];
  limits: Limits;
  slot: Slot;
  layers: Layers;
  apparmorProfile: string;
  /** Open cgroup.procs of the run's cgroup leaf: the child joins it before anything else. */
  cgroupProcsFd?: number;
  /** Open fd 3 in the child as the write end of a result pipe. */
  resultChannel?: boolean;
}

export function buildPlan(input: PlanInput): NativePlan {
  const { profile, dir, layers } = input;
  const argv = [profile.path, ...profile.args, ...(input.hasCode ? [CODE_FILE] : []), ...input.argv];
  const plan: NativePlan = {
    file: profile.executable,
    argv,
    env: sandboxEnv(profile, dir),
    cwd: dir.path,
    // Kill the sandbox if the daemon dies: a run must never outlive the process accounting for it.
    parentDeathSignal: true,
  };
  if (input.resultChannel) plan.resultChannel = true;
  if (layers.rlimits) plan.rlimits = rlimitsFor(input.limits);
  if (layers.unsafe) return plan;

  if (layers.uid) {
    plan.uid = input.slot.uid;
    plan.gid = input.slot.gid;
  }
  if (layers.netns) plan.netnsFd = slotNetns(layers, input.slot);
  if (layers.mntns && layers.mntnsFd !== undefined) plan.mntnsFd = layers.mntnsFd;
  if (layers.landlock) plan.landlock = landlockPolicy(profile, dir.path);
  if (layers.seccomp) plan.seccomp = true;
  if (layers.apparmor) plan.apparmorProfile = input.apparmorProfile;
  if (input.cgroupProcsFd !== undefined) plan.cgroupProcsFds = [input.cgroupProcsFd];
  plan.noNewPrivs = true;
  return plan;
}

/**
 * The slot's own network namespace. Fails closed: a run without one would stay in the host's,
 * where host services' abstract Unix sockets are.
 */
function slotNetns(layers: Layers, slot: Slot): number {
  const fd = layers.netnsFds?.[slot.index];
  if (fd === undefined) throw new Error(`no network namespace was made for slot ${slot.index}`);
  return fd;
}
