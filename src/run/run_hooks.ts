// What a confinement layer does for each run in a slot. The layer's module (src/layers) provides
// it, bound to what the layer detected (Layer.runHooks); the slot (slot.ts) calls every layer's
// hooks in LAYERS order and names no layer. A hook the layer does not need is left out.
import type { Limits } from '../protocol/index.js';
import type { RunDiskControl, RunDiskSize, RunOwner } from './rundir.js';
import type { SlotIdentity } from './slot_users.js';

/** What a layer adds to how the run directory is made. */
export interface RunDirPart {
  /** Who owns what in it (the uid layer: the slot's uid and gid). */
  owner?: RunOwner;
  /** A file system of its own for it (the disk layer: a tmpfs of the run's DISK size). */
  disk?: { control: RunDiskControl; size: RunDiskSize };
}

/** What a layer saw of a run, read after its main process exited and before the kill rounds. */
export interface RunVerdict {
  /** The run's memory as the kernel counted it (the cgroups layer). */
  memory?: { oomKilled: boolean; memoryPeakKb?: number };
}

/** Where the run's processes live for a layer's kill round, and how it reaches them. */
export interface KillContext {
  addon: { killUidRoundAsync(uid: number, firstUid: number, count: number): Promise<boolean> };
  /** The configured slot range: a uid round also reaps zombies of every slot's uid. */
  range: { firstUid: number; count: number };
}

export interface RunHooks {
  /** The layer's name, in log lines. */
  readonly name: string;
  /** The set-up step a failed prepare() reports (setup_failed); the layer's name by default. */
  readonly step?: string;
  /** Its part of how the run directory is made (before the request's files are written). */
  runDir?(slot: SlotIdentity, limits: Limits): RunDirPart;
  /**
   * Makes what the layer keeps per run, after the run directory and its files. Returns fds for
   * the plan input, by PlanInput field (the cgroups layer: the leaf's cgroupProcsFd), which the
   * slot closes once the child has started. Throws: the run fails with setup_failed at `step`.
   */
  prepare?(slot: SlotIdentity, limits: Limits): Readonly<Record<string, number>>;
  /**
   * One round of killing what is left of the slot; resolves with whether nothing of it remains.
   * Never waits for processes to die: the slot comes back on a timer. Throws: the slot is dirty.
   */
  killRound?(slot: SlotIdentity): boolean | Promise<boolean>;
  /** What its kill round reaches, for the error when something of it stays ("uid 61000"). */
  killScope?(slot: SlotIdentity): string;
  verdict?(slot: SlotIdentity): RunVerdict;
  /** Removes what prepare made; called only once a sweep left the slot clean. */
  release?(slot: SlotIdentity): void;
}
