// What a daemon's run base holds once its runs are released. With the disk layer each slot keeps
// one mount point between its runs (src/run/rundir.ts: createMountPoint): an empty directory,
// root's, mode 0700, with nothing mounted on it. Anything else there is a run directory left
// behind.
import fs from 'node:fs';

/**
 * The entries of `runBase` that are not an empty slot mount point, by name as bytes; throws when
 * more than `maxMountPoints` (the daemon's slot count) look like one.
 */
export function runBaseLeftovers(runBase: string, maxMountPoints = 4): Buffer[] {
  let entries: Buffer[];
  try {
    entries = fs.readdirSync(runBase, { encoding: 'buffer' });
  } catch {
    return [];
  }
  const isMountPoint = (name: Buffer) => {
    const full = Buffer.concat([Buffer.from(`${runBase}/`), name]);
    const stat = fs.lstatSync(full, { throwIfNoEntry: false });
    return (
      stat !== undefined && stat.isDirectory() && stat.uid === 0 && (stat.mode & 0o7777) === 0o700 && fs.readdirSync(full).length === 0
    );
  };
  const left = entries.filter((name) => !isMountPoint(name));
  const mountPoints = entries.length - left.length;
  if (mountPoints > maxMountPoints) throw new Error(`${mountPoints} empty directories under ${runBase}: more than one mount point per slot (${maxMountPoints})`);
  return left;
}
