// What a daemon's run base holds once its runs are released. With the disk layer each slot keeps
// one mount point between its runs (src/run/rundir.ts: createMountPoint): an empty directory,
// root's, mode 0700, with nothing mounted on it. Anything else there is a run directory left
// behind.
import fs from 'node:fs';
import type { Client } from '../../src/client/index.js';

/**
 * The entries of `runBase` that are not an empty slot mount point, by name as bytes; throws when
 * more than `maxMountPoints` (the daemon's slot count) look like one.
 */
export function runBaseLeftovers(runBase: string, maxMountPoints = 4, held: readonly string[] = []): Buffer[] {
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
  // A slot's held run (warm.holdAhead) keeps its directory, mounted, between runs by design.
  const left = entries.filter((name) => !isMountPoint(name) && !held.includes(name.toString('latin1')));
  const mountPoints = entries.length - left.length;
  if (mountPoints > maxMountPoints) throw new Error(`${mountPoints} empty directories under ${runBase}: more than one mount point per slot (${maxMountPoints})`);
  return left;
}

/**
 * The names, in the run base, of the directories of the runs the daemon holds ahead now
 * (warm.holdAhead: README, "Held runs"), from its status; none on the other paths.
 */
export async function heldRunDirs(client: Client): Promise<string[]> {
  return (await client.status()).held?.runs?.map((run) => run.dir) ?? [];
}
