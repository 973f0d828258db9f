// The disk layer (native/rundisk.cc): each run directory is a tmpfs of the run's DISK size
// (bytes and inodes), noexec, cleaned up by one unmount. Daemon side only: a slot makes each run
// directory on runDisk (its runHooks) and removing the directory unmounts it; nothing is added to
// the child's plan.
import { realpathSync } from 'node:fs';
import { DISK_BYTES_PER_INODE, isSelfBindMount, mountPoints, prepareRunBase, runDiskSize, type RunDiskControl } from '../run/rundir.js';
import { defineLayer } from './layer.js';

export interface DiskState {
  runDisk?: RunDiskControl;
  /** The daemon bind-mounted runBase onto itself to share it: unmounted again at close. */
  runBaseBound?: string;
}

export const disk = defineLayer<'disk', DiskState, 'disk'>({
  name: 'disk',
  defaultMode: 'required',
  detect(ctx) {
    const { config, addon } = ctx;
    prepareRunBase(config.runBase);
    // Mount points are listed by their real paths.
    const runBase = realpathSync(config.runBase);
    const bindFirst = !mountPoints().includes(runBase);
    // A bind of runBase onto itself already there was left by a daemon that was killed: taken
    // over, and undone at this daemon's stop like its own. An operator's own mount is kept.
    const leftBind = !bindFirst && isSelfBindMount(runBase);
    if (leftBind) ctx.log.info('taking over the run base bind mount an earlier daemon left', { runBase });
    addon.shareRunBase(runBase, bindFirst);
    const runDisk: RunDiskControl = { mount: (dir, size) => addon.mountRunDisk(dir, size), unmount: (dir) => addon.unmountRunDisk(dir) };
    return {
      available: true,
      detail: `a tmpfs per run directory (DISK bytes, one inode per ${DISK_BYTES_PER_INODE} bytes, noexec)`,
      state: bindFirst || leftBind ? { runDisk, runBaseBound: runBase } : { runDisk },
    };
  },
  runHooks: ({ runDisk }) =>
    runDisk && {
      name: 'disk',
      runDir: (_slot, limits) => ({ disk: { control: runDisk, size: runDiskSize(limits.DISK) } }),
    },
  // The bind mount that made runBase shareable: ours to undo, so that a stopped daemon leaves
  // the host's mount table as it found it.
  async release(state, ctx) {
    const bound = state.runBaseBound;
    state.runBaseBound = undefined;
    if (bound === undefined) return;
    await ctx.addon
      .unmountRunDisk(bound)
      .catch((err: unknown) => ctx.log.error('could not unmount the run base bind mount', { runBase: bound, error: err }));
  },
  sabotage: { disk: 'deny_disk' },
});
