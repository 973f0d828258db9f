// The confinement layers: the one list of them, and what the daemon does with all of them at
// once. Which layers this host offers is compared with what the config demands, and fails
// closed: a 'required' layer that is missing stops start-up with a message naming it and why.
// Unsafe mode (--unsafe, or a daemon that is not root) applies rlimits only and says so loudly.
//
// Adding a layer: its native file, its module here (a Layer, see layer.ts) and one line in LAYERS.
import type { DaemonConfig } from '../config/schema.js';
import type { Logger } from '../log.js';
import { apparmor } from './apparmor.js';
import { cgroups } from './cgroups.js';
import { disk } from './disk.js';
import { landlock } from './landlock.js';
import { LayerError, type Layer, type LayerContext, type LayerMode } from './layer.js';
import { mntns } from './mntns.js';
import { netns } from './netns.js';
import { rlimits } from './rlimits.js';
import { seccomp } from './seccomp.js';
import { uid } from './uid.js';

import type { KillContext, RunHooks } from '../run/run_hooks.js';

export { LayerError, type LayerMode, type SelfCheckProbe } from './layer.js';

/**
 * Every layer, in the order they are configured, reported and listed as a result's confinement.
 * Detection follows this order too, except where a layer names others to come `after`.
 */
export const LAYERS = [uid, rlimits, landlock, seccomp, netns, mntns, apparmor, cgroups, disk] as const;

type AnyLayer = (typeof LAYERS)[number];
export type LayerName = AnyLayer['name'];
export const LAYER_NAMES: readonly LayerName[] = LAYERS.map((layer) => layer.name);

type UnionToIntersection<U> = (U extends unknown ? (x: U) => void : never) extends (x: infer I) => void ? I : never;
type StateOf<L> = L extends Layer<string, infer S, string> ? S : never;
type SwitchOf<L> = L extends Layer<string, object, infer K> ? K : never;

/** A CODEJAIL_SABOTAGE switch: a layer's name, or another part it declares ('kill'). */
export type SabotageSwitch = SwitchOf<AnyLayer>;

/** Switch -> prefix of the deny tests that must fail with it on (scripts/sabotage.mjs). */
export const SABOTAGE: Readonly<Record<SabotageSwitch, string>> = Object.assign({}, ...LAYERS.map((layer) => layer.sabotage ?? {}));

/** Layer name -> human-readable state, logged at start and returned by the status op. */
export type LayerReport = Record<string, string>;

export type Layers = { [N in LayerName]: boolean } & Partial<UnionToIntersection<StateOf<AnyLayer>>> & {
  /** No confinement except rlimits: results say confinement 'none'. */
  unsafe: boolean;
  /**
   * How a run's processes are killed. 'uid' sends SIGKILL to every process of the slot's uid,
   * which reaches setsid()'d descendants; 'process-group' (no uid layer) reaches only the run's
   * own session and is reported as weaker.
   */
  kill: 'uid' | 'process-group';
  report: LayerReport;
  /** What each result's `confinement` says. */
  confinement: string[] | 'none';
};

export interface DetectOptions extends Omit<LayerContext, 'config'> {
  unsafe: boolean;
  /** Defaults to process.getuid() === 0. */
  isRoot?: boolean;
}

/** LAYERS in detection order: each after the layers it names in `after`, otherwise as listed. */
export const DETECTION_ORDER: readonly AnyLayer[] = (() => {
  const order: AnyLayer[] = [];
  const pending = [...LAYERS];
  while (pending.length) {
    const next = pending.findIndex((layer) => (layer.after ?? []).every((name) => order.some((done) => done.name === name)));
    if (next < 0) throw new Error(`layers wait for each other: ${pending.map((layer) => layer.name).join(', ')}`);
    order.push(...pending.splice(next, 1));
  }
  return order;
})();

export function detectLayers(config: DaemonConfig, options: DetectOptions): Layers {
  const isRoot = options.isRoot ?? process.getuid?.() === 0;
  if (options.unsafe || !isRoot) {
    return unsafeLayers(config, options.unsafe ? '--unsafe was given' : 'the daemon is not running as root', options.log);
  }

  const ctx: LayerContext = { ...options, config };
  const report: LayerReport = {};
  const active = {} as Record<LayerName, boolean>;
  const state: Record<string, unknown> = {};
  const made: AnyLayer[] = [];
  const decide = (layer: AnyLayer): boolean => {
    const { name } = layer;
    const mode: LayerMode = config.layers[name];
    if (mode === 'off') {
      report[name] = 'off';
      return false;
    }
    let result;
    try {
      result = layer.detect(ctx);
    } catch (err) {
      // A LayerError is a misconfiguration that no layer mode may wave through.
      if (err instanceof LayerError) throw err;
      result = { available: false, detail: (err as Error).message };
    }
    if (result.available) {
      report[name] = result.detail ? `active (${result.detail})` : 'active';
      Object.assign(state, result.state);
      return true;
    }
    if (mode === 'required') {
      throw new LayerError(
        `confinement layer "${name}" is required but unavailable: ${result.detail ?? 'not supported'}. ` +
          `Fix the host, or set layers.${name} to "auto" or "off" in the config to run without it.`,
      );
    }
    report[name] = `absent (auto): ${result.detail ?? 'not supported'}`;
    return false;
  };

  try {
    for (const layer of DETECTION_ORDER) {
      active[layer.name] = decide(layer);
      if (active[layer.name]) made.push(layer);
      else layer.whenInactive?.(ctx);
    }
  } catch (err) {
    // What the layers detected so far made (fds, the run base bind mount) would leak.
    void releaseMade(made, state, options);
    throw err;
  }

  const ordered: LayerReport = {};
  for (const name of LAYER_NAMES) ordered[name] = report[name]!;
  ordered.kill =
    (active.uid ? 'uid sweep' : active.cgroups ? 'cgroup.kill' : 'process group only (no uid layer: setsid() escapes it)') +
    (active.uid && active.cgroups ? ' + cgroup.kill' : '');
  return {
    unsafe: false,
    ...active,
    ...state,
    kill: active.uid ? 'uid' : 'process-group',
    report: ordered,
    confinement: LAYER_NAMES.filter((name) => active[name]),
  };
}

/** Every layer's per-run work in a slot, in LAYERS order (a slot calls them; it names no layer). */
export function runHooks(layers: Layers, ctx: KillContext): RunHooks[] {
  type Bind = (state: Layers, ctx: KillContext) => RunHooks | undefined;
  // Each layer's hooks read its own state: the fields it put into Layers.
  return LAYERS.flatMap((layer) => (layer.runHooks as Bind | undefined)?.(layers, ctx) ?? []);
}

/**
 * Undoes what the active layers made at start (namespace fds, the run base bind mount), the last
 * made first. Each layer clears its part of `layers`, so a second call does nothing.
 */
export async function releaseLayers(layers: Layers, options: Pick<LayerContext, 'addon' | 'log'>): Promise<void> {
  await releaseMade(
    DETECTION_ORDER.filter((layer) => layers[layer.name]),
    layers,
    options,
  );
}

/** Calls each release at once, the last made first, and waits for those that take time. */
function releaseMade(made: readonly AnyLayer[], state: object, ctx: Pick<LayerContext, 'addon' | 'log'>): Promise<void> {
  type Release = (state: object, ctx: Pick<LayerContext, 'addon' | 'log'>) => void | Promise<void>;
  const pending: Array<Promise<void>> = [];
  for (const layer of [...made].reverse()) {
    // Each layer's release takes its own state: the fields it put into `state`.
    const done = (layer.release as Release | undefined)?.(state, ctx);
    if (done) pending.push(done);
  }
  return Promise.all(pending).then(() => undefined);
}

function unsafeLayers(config: DaemonConfig, reason: string, log: Logger): Layers {
  const report: LayerReport = {};
  const active = {} as Record<LayerName, boolean>;
  for (const layer of LAYERS) {
    active[layer.name] = Boolean(layer.keptWhenUnsafe) && config.layers[layer.name] !== 'off';
    report[layer.name] = layer.keptWhenUnsafe ? (active[layer.name] ? 'active' : 'off') : `off (unsafe: ${reason})`;
  }
  report.kill = 'process group only (unsafe)';
  log.warn(
    `UNSAFE MODE: ${reason}. Code runs WITHOUT confinement (no uid drop, Landlock, seccomp, ` +
      'network namespace or AppArmor), only rlimits. Never expose this daemon to untrusted code.',
    { unsafe: true, reason },
  );
  return { unsafe: true, ...active, kill: 'process-group', report, confinement: 'none' };
}
