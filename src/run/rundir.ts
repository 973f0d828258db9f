// Run directories: runBase/<32 hex> per run, unguessable beneath a base that sandboxes can
// traverse but not list. The daemon (root) makes them, the request's files are written there
// before the sandbox starts (src/run/run_files.ts), and everything is removed afterwards without
// following symlinks. With the disk layer each run directory is its own tmpfs (the run's DISK
// limit in bytes and inodes, enforced by the kernel) and removing it is one unmount.
//
// Metadata calls are synchronous on purpose: each takes microseconds, while a round trip through
// libuv's thread pool costs far more, and a run makes a dozen of them on the latency path. Work
// whose size the sandbox controls (the entries it left) yields to the event loop regularly, so
// no single run can stall the daemon.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { CODE_FILE, TMP_DIR } from '../protocol/index.js';
import type { NativeRunDisk } from '../native.js';
import type { Logger } from '../log.js';

export { CODE_FILE, TMP_DIR };

const RUN_BASE_MODE = 0o711; // traverse, not list
export const RUN_DIR_MODE = 0o750; // root:slot, the sandbox reads but cannot create here
const TMP_MODE = 0o700; // slot:slot
/** Synchronous filesystem operations between two yields to the event loop. */
const OPS_PER_YIELD = 256;
/** Past this length a directory is moved up before descending, so no path nears PATH_MAX. */
const LONG_PATH = 2048;

/** Who owns what in a run directory. Undefined (unsafe, non-root daemon): leave the daemon's ids. */
export interface RunOwner {
  /** The slot's uid: owns tmp/. */
  uid: number;
  /** The slot's gid: group of everything else, owned by root. */
  gid: number;
}

export interface RunDir {
  id: string;
  path: string;
  tmp: string;
  /** Set when the directory is a run disk (a tmpfs of its own): removing it unmounts it. */
  disk?: RunDiskControl;
  /**
   * The run disk is mounted on its slot's mount point (createMountPoint): removing the run
   * unmounts it and leaves the directory beneath, empty, for the slot's next run.
   */
  onMountPoint?: boolean;
}

/** How run disks are mounted and unmounted (the addon's calls; the disk layer). */
export interface RunDiskControl {
  mount(dir: string, options: NativeRunDisk): void;
  /** Detaches the mount (off the event loop); rejects with code EINVAL if `dir` is not one. */
  unmount(dir: string): Promise<void>;
}

/** A run disk's size: the run's DISK limit in bytes, and the inodes that go with it. 0: unlimited. */
export interface RunDiskSize {
  sizeBytes: number;
  inodes: number;
}

/** Bytes of DISK per inode of a run disk: 64 MiB of DISK allow 16384 files and directories. */
export const DISK_BYTES_PER_INODE = 4096;
/** A run disk never has fewer inodes than this, however small its DISK. */
export const MIN_DISK_INODES = 1024;

/** The tmpfs size of a run whose DISK limit is `disk` bytes (0: unlimited). */
export function runDiskSize(disk: number): RunDiskSize {
  if (disk <= 0) return { sizeBytes: 0, inodes: 0 };
  return { sizeBytes: disk, inodes: Math.max(MIN_DISK_INODES, Math.floor(disk / DISK_BYTES_PER_INODE)) };
}

/** Creates runBase (root, 0711), refusing a symlink in its place. */
export function prepareRunBase(runBase: string): void {
  fs.mkdirSync(runBase, { recursive: true, mode: RUN_BASE_MODE });
  const stat = fs.lstatSync(runBase);
  if (!stat.isDirectory()) throw new Error(`runBase ${runBase} is not a directory (a symlink is refused)`);
  if (process.getuid?.() === 0) fs.lchownSync(runBase, 0, 0);
  fs.chmodSync(runBase, RUN_BASE_MODE);
}

/**
 * Removes everything a crashed daemon left under runBase: first the run disks still mounted
 * there (deepest first), then every entry, by name as bytes (a sandbox may have made names
 * that are not UTF-8). An entry that cannot be removed is logged and left: it must never stop
 * the daemon from starting. Call before any run starts. Returns how many entries were removed.
 */
export async function sweepRunBase(runBase: string, log: Logger, disk?: RunDiskControl): Promise<number> {
  if (disk) {
    for (const mountPoint of mountsBeneath(runBase)) {
      await disk.unmount(mountPoint).catch((err: unknown) =>
        log.error('could not unmount a run disk left by an earlier daemon', { runBase, mountPoint, error: err }),
      );
    }
  }
  const base = Buffer.from(runBase);
  const entries = fs.readdirSync(base, { encoding: 'buffer' });
  let removed = 0;
  for (const entry of entries) {
    try {
      await removeTree(joinBytes(base, entry));
      removed++;
    } catch (err) {
      log.error('could not remove a run directory left by an earlier daemon; it stays, the daemon goes on', {
        runBase,
        entry: printableName(entry),
        error: err,
      });
    }
  }
  if (entries.length) log.warn('removed run directories left by an earlier daemon', { runBase, count: removed, left: entries.length - removed });
  return removed;
}

/** Mount points strictly beneath `dir` in this process's mount namespace, deepest first. */
export function mountsBeneath(dir: string, mountinfo?: string): string[] {
  const prefix = dir.endsWith('/') ? dir : `${dir}/`;
  const points = mountPoints(mountinfo).filter((point) => point.startsWith(prefix));
  return [...new Set(points)].sort((a, b) => b.length - a.length);
}

/** One line of /proc/self/mountinfo, the fields this module reads. */
interface MountEntry {
  id: string;
  parent: string;
  /** major:minor of the file system. */
  dev: string;
  /** The directory of that file system mounted here (not "/" for a bind mount of a subtree). */
  root: string;
  point: string;
}

/**
 * /proc/self/mountinfo's lines. It writes space, tab, newline and backslash as octal escapes,
 * and every other byte as it is.
 */
function mountEntries(mountinfo = fs.readFileSync('/proc/self/mountinfo', 'latin1')): MountEntry[] {
  const unescape = (field: string) => Buffer.from(field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8))), 'latin1').toString();
  const entries: MountEntry[] = [];
  for (const line of mountinfo.split('\n')) {
    const [id, parent, dev, root, point] = line.split(' ');
    if (!id || !parent || !dev || !root || !point) continue;
    entries.push({ id, parent, dev, root: unescape(root), point: unescape(point) });
  }
  return entries;
}

/** Every mount point of this process's mount namespace. */
export function mountPoints(mountinfo?: string): string[] {
  return mountEntries(mountinfo).map((entry) => entry.point);
}

/**
 * Whether the topmost mount at `dir` is `dir` bind-mounted onto itself (what the disk layer does
 * to share the run base): the same file system as the mount beneath it, showing the very
 * directory that lies there. A daemon killed before it could undo its bind leaves one; the next
 * daemon takes it over and undoes it at its stop. A file system of its own mounted there (an
 * operator's), or another directory bound there, is not.
 */
export function isSelfBindMount(dir: string, mountinfo?: string): boolean {
  const entries = mountEntries(mountinfo);
  const top = entries.filter((entry) => entry.point === dir).pop();
  const below = top && entries.find((entry) => entry.id === top.parent);
  if (!top || !below || below.dev !== top.dev) return false;
  const relative = path.relative(below.point, dir);
  if (relative.startsWith('..')) return false;
  return top.root === path.join(below.root, relative);
}

/**
 * A slot's mount point, runBase/<32 hex>: an empty directory, root's, mode 0700, on which each
 * run of the slot gets a fresh run disk (createRunDir with `mountPoint`). Made once per slot and
 * daemon, so that a run costs no mkdir and rmdir in runBase (on ext4, allocating a directory
 * inode after many were freed costs more CPU than the rest of the run directory together).
 * Nothing is ever written in it: while a run exists its disk covers it, and removing the run
 * checks that it is empty again (removeRunDir).
 */
export function createMountPoint(runBase: string): string {
  const dir = path.join(runBase, randomBytes(16).toString('hex'));
  fs.mkdirSync(dir, { mode: 0o700 });
  return dir;
}

/** Whether `dir` is still what createMountPoint made: a real directory (not a symlink), empty. */
export function isEmptyMountPoint(dir: string): boolean {
  try {
    return fs.lstatSync(dir).isDirectory() && fs.readdirSync(dir).length === 0;
  } catch {
    return false;
  }
}

/** Removes a slot's mount point (the daemon stopping): it must be empty and not mounted. */
export function removeMountPoint(dir: string): void {
  fs.rmdirSync(dir);
}

/** Random bytes for run ids, drawn from the CSPRNG 64 ids at a time: one call a run cost 16 us. */
let idPool = Buffer.alloc(0);
let idPoolUsed = 0;

/** A new run id: 16 random bytes as 32 hex digits. */
function runId(): string {
  if (idPoolUsed === idPool.length) {
    idPool = randomBytes(16 * 64);
    idPoolUsed = 0;
  }
  idPoolUsed += 16;
  return idPool.toString('hex', idPoolUsed - 16, idPoolUsed);
}

/**
 * Makes runBase/<32 hex>, with the run's private tmp/ inside. With `disk`, the directory is a
 * fresh tmpfs of the given size, owned root:slot-gid from the moment it is mounted; mounted on
 * `mountPoint` (the slot's, from createMountPoint) when given, else on a new directory.
 */
export async function createRunDir(
  runBase: string,
  owner: RunOwner | undefined,
  disk?: { control: RunDiskControl; size: RunDiskSize },
  mountPoint?: string,
): Promise<RunDir> {
  const id = runId();
  const onMountPoint = disk !== undefined && mountPoint !== undefined;
  const dir = onMountPoint ? mountPoint : path.join(runBase, id);
  // Made 0700 root-owned, then handed over: never visible to anyone with wider rights too early.
  if (!onMountPoint) fs.mkdirSync(dir, { mode: 0o700 });
  const tmp = path.join(dir, TMP_DIR);
  const made: RunDir = { id, path: dir, tmp, ...(onMountPoint ? { onMountPoint } : {}) };
  try {
    if (disk) {
      disk.control.mount(dir, { ...disk.size, mode: RUN_DIR_MODE, uid: 0, gid: owner?.gid ?? 0 });
      made.disk = disk.control;
    } else {
      setOwner(dir, owner && { uid: 0, gid: owner.gid }, RUN_DIR_MODE);
    }
    fs.mkdirSync(tmp, { mode: 0o700 });
    setOwner(tmp, owner && { uid: owner.uid, gid: owner.gid }, TMP_MODE);
  } catch (err) {
    // The caller never gets this directory to remove: remove it here (nothing ran in it yet).
    await removeRunDir(made).catch(() => undefined);
    throw err;
  }
  return made;
}

/**
 * Removes a run directory and all the sandbox left in it: a run disk is unmounted (whatever it
 * holds, at once), anything else walked (even chmod 0 dirs), never following a symlink. A run
 * disk on its slot's mount point leaves the mount point, once it is seen empty: resolves with
 * whether it was kept (false: it held something, and went with it).
 */
export async function removeRunDir(dir: RunDir): Promise<boolean> {
  if (dir.disk) {
    await dir.disk.unmount(dir.path).catch((err: unknown) => {
      // EINVAL: not mounted (never was, or already gone); the walk below removes what is there.
      if ((err as NodeJS.ErrnoException).code !== 'EINVAL') throw err;
    });
  }
  // Nothing writes beneath a mount point (the daemon mounts before it writes, a run sees only
  // its disk): an entry there means that assumption broke, and the directory goes whole.
  if (dir.onMountPoint && fs.readdirSync(dir.path).length === 0) return true;
  await removeTree(Buffer.from(dir.path));
  return false;
}

export function setOwner(p: string, owner: { uid: number; gid: number } | undefined, mode: number): void {
  // lchown: never follows a symlink, even one that appeared where we expect a directory.
  if (owner) fs.lchownSync(p, owner.uid, owner.gid);
  fs.chmodSync(p, mode);
}

/** Yields to the event loop every OPS_PER_YIELD steps. */
export class Pacer {
  private ops = 0;

  async step(): Promise<void> {
    if (++this.ops % OPS_PER_YIELD === 0) await new Promise<void>((resolve) => setImmediate(resolve));
  }
}

/**
 * rm -rf that never follows a symlink (lstat, then unlink or descend) and copes with what a
 * sandbox can leave behind: names that are not UTF-8 (every path here is bytes, so a name is
 * never mangled into one that does not exist), directories chmod 0 (root ignores modes; a
 * non-root, unsafe daemon restores owner rights on its own directories first), and trees nested
 * deeper than PATH_MAX (a directory whose path grows long is first moved up beside the root and
 * removed from there). Call only when no process can still write beneath `root`.
 */
async function removeTree(root: Buffer): Promise<void> {
  const pacer = new Pacer();
  const parent = parentOf(root);
  const rootName = root.subarray(parent.length + 1);
  let moved = 0;
  const pending = [root];
  while (pending.length) {
    const top = pending.pop()!;
    await removeOne(top);
  }

  async function removeOne(p: Buffer): Promise<void> {
    const stat = fs.lstatSync(p, { throwIfNoEntry: false });
    if (!stat) return;
    if (!stat.isDirectory()) {
      withWritableParent(p, () => fs.unlinkSync(p));
      await pacer.step();
      return;
    }
    let entries: Buffer[];
    try {
      entries = fs.readdirSync(p, { encoding: 'buffer' });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EACCES') throw err;
      fs.chmodSync(p, 0o700);
      entries = fs.readdirSync(p, { encoding: 'buffer' });
    }
    for (const entry of entries) {
      const child = joinBytes(p, entry);
      if (child.length > LONG_PATH) {
        const shallow = joinBytes(parent, Buffer.concat([rootName, Buffer.from(`.deep-${moved++}`)]));
        fs.renameSync(child, shallow);
        pending.push(shallow);
        continue;
      }
      await removeOne(child);
    }
    withWritableParent(p, () => fs.rmdirSync(p));
    await pacer.step();
  }
}

/** Runs `remove`; on EACCES (non-root daemon, parent made read-only by the sandbox) fixes the parent once. */
function withWritableParent(p: Buffer, remove: () => void): void {
  try {
    remove();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EACCES') throw err;
    fs.chmodSync(parentOf(p), 0o700);
    remove();
  }
}

const SLASH = 0x2f;

/** dir + "/" + name, as bytes. */
function joinBytes(dir: Buffer, name: Buffer): Buffer {
  return Buffer.concat([dir, Buffer.from('/'), name]);
}

/** The directory part of an absolute byte path ("/a/b" -> "/a"). */
function parentOf(p: Buffer): Buffer {
  const slash = p.lastIndexOf(SLASH);
  return slash <= 0 ? Buffer.from('/') : p.subarray(0, slash);
}

/** A name from the sandbox, for a log line: UTF-8 where it is, \xNN escapes where it is not. */
export function printableName(name: Buffer): string {
  const text = name.toString('utf8');
  if (Buffer.from(text).equals(name)) return text;
  return [...name].map((b) => (b >= 0x20 && b < 0x7f && b !== 0x5c ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, '0')}`)).join('');
}
