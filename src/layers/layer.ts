// What one confinement layer is to the daemon: a module beside its native file that says whether
// the host offers it, what it adds to a run's plan, what it does for each run in a slot, which
// self-check probes it enforces, how to undo what it made at start, and which deny_* tests prove
// it. index.ts lists the modules.
import type { native, NativePlan } from '../native.js';
import type { CgroupTree } from './cgroup_tree.js';
import type { DaemonConfig, LayerMode } from '../config/schema.js';
import type { Logger } from '../log.js';
import type { Limits } from '../protocol/index.js';
import type { CommandProfile } from '../run/commands.js';
import type { RunDir } from '../run/rundir.js';
import type { KillContext, RunHooks } from '../run/run_hooks.js';
import type { SlotIdentity } from '../run/slot_users.js';

export type Addon = ReturnType<typeof native>;

export type { LayerMode };

/** A misconfiguration no layer mode may wave through (or a required layer that is missing). */
export class LayerError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LayerError';
  }
}

/** What detection may use. The optional hooks replace host state in tests. */
export interface LayerContext {
  config: DaemonConfig;
  addon: Addon;
  log: Logger;
  /** Defaults to reading /etc/passwd (uid). */
  passwd?: string;
  /** Defaults to CgroupTree.open on this host (cgroups). */
  openCgroups?: (memoryMax: number) => CgroupTree;
}

/** What a layer's plan() reads of one run (its own state comes beside it). */
export interface PlanInput {
  profile: CommandProfile;
  dir: RunDir;
  /** Whether the request carried code (then 'jailed_code' is the script argument). */
  hasCode: boolean;
  argv: string[];
  limits: Limits;
  slot: SlotIdentity;
  apparmorProfile: string;
  /** Open cgroup.procs of the run's cgroup leaf: the child joins it before anything else. */
  cgroupProcsFd?: number;
  /** Open fd 3 in the child as the write end of a result pipe. */
  resultChannel?: boolean;
}

export interface Detection<S> {
  available: boolean;
  /** Why the layer is missing, or a detail of the active layer ("ABI 7"). */
  detail?: string;
  /** What the active layer made or found, kept in Layers for its plan and its release. */
  state?: S;
}

/**
 * A run of the self-check that must print DENIED. It prints DENIED only on the specific refusal
 * expected (PermissionError), so it cannot pass by crashing for an unrelated reason. Several
 * layers may enforce one probe (each lists it): the check runs when any of them is active.
 */
export interface SelfCheckProbe {
  name: string;
  code: string;
}

export interface Layer<N extends string = string, S extends object = object, Switch extends string = never> {
  readonly name: N;
  /** Its mode when the config does not name it. */
  readonly defaultMode: 'required' | 'auto';
  /**
   * Layers to detect before this one, though it is listed (and reported) earlier. Detection that
   * makes something (fds, mounts) goes last, so that no later check can fail start-up after it.
   */
  readonly after?: readonly string[];
  /** The one layer unsafe mode keeps (rlimits): applied whenever its mode is not 'off'. */
  readonly keptWhenUnsafe?: boolean;
  /**
   * Whether this host offers the layer; throws LayerError for a misconfiguration that must stop
   * start-up whatever the mode. Any other exception means "unavailable", its message the reason.
   */
  detect(ctx: LayerContext): Detection<S>;
  /** Called when the layer ends up off or absent (a warning worth the top of the journal). */
  whenInactive?(ctx: LayerContext): void;
  /** Its part of a run's plan, when active. Pure. */
  plan?(input: PlanInput, state: S): Partial<NativePlan>;
  /**
   * Its per-run work in a slot (src/run/run_hooks.ts), bound to its state, or undefined when it
   * has none. Asked of every layer, active or not: each reads only its own fields of Layers, which
   * are there only when it made them (an inactive or unsafe layer returns undefined).
   */
  runHooks?(state: S, ctx: KillContext): RunHooks | undefined;
  /** Undoes what detect made (when active): at stop, or when a later layer fails start-up. */
  release?(state: S, ctx: Pick<LayerContext, 'addon' | 'log'>): void | Promise<void>;
  /** The self-check probes this layer enforces. */
  readonly probes?: readonly SelfCheckProbe[];
  /**
   * CODEJAIL_SABOTAGE switch -> the prefix of the deny tests that must fail with it on
   * (scripts/sabotage.mjs). A switch that is a layer name also turns that layer off in the test
   * daemon's config (test/helpers/daemon.ts).
   */
  readonly sabotage?: Readonly<Record<Switch, `deny_${string}`>>;
}

/** Types a layer module's object, keeping its name, state and sabotage switches literal. */
export function defineLayer<N extends string, S extends object = object, Switch extends string = never>(
  layer: Layer<N, S, Switch>,
): Layer<N, S, Switch> {
  return layer;
}
