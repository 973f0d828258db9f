// Builds the NativePlan of one run: what the addon's child applies to itself between clone and
// execve. Each active layer adds its part (its module's plan()). Pure: everything it needs is
// passed in, so it is unit-tested without the addon.
import type { NativePlan } from '../native.js';
import { sandboxEnv } from '../run/env.js';
import { RUN_OOM_SCORE_ADJ } from '../run/oom.js';
import { CODE_FILE } from '../run/rundir.js';
import { LAYERS, type Layers } from './index.js';
import type { PlanInput } from './layer.js';

/** A run's plan input with the daemon's detected layers, each of which adds its part. */
export interface PlanRequest extends PlanInput {
  layers: Layers;
}

export function buildPlan(input: PlanRequest): NativePlan {
  const { profile, dir, layers } = input;
  const argv = [profile.path, ...profile.args, ...(input.hasCode ? [CODE_FILE] : []), ...input.argv];
  const plan: NativePlan = {
    file: profile.executable,
    argv,
    env: sandboxEnv(profile, dir),
    cwd: dir.path,
    // Kill the sandbox if the daemon dies: a run must never outlive the process accounting for it.
    parentDeathSignal: true,
    // A host-wide OOM takes a run first (src/run/oom.ts), with every layer and in unsafe mode.
    oomScoreAdj: RUN_OOM_SCORE_ADJ,
  };
  if (input.resultChannel) plan.resultChannel = true;
  for (const layer of LAYERS) {
    if (!layers[layer.name] || (layers.unsafe && !layer.keptWhenUnsafe)) continue;
    // Each layer's plan reads its own state: the fields it put into Layers.
    Object.assign(plan, (layer.plan as ((input: PlanInput, state: Layers) => Partial<NativePlan>) | undefined)?.(input, layers));
  }
  if (!layers.unsafe) plan.noNewPrivs = true;
  return plan;
}
