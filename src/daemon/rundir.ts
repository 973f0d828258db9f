// Run directories: runBase/<32 hex> per run, unguessable beneath a base that sandboxes can
// traverse but not list. The daemon (root) writes the request's code and files there before the
// sandbox starts, refusing any name that could step outside, and removes everything afterwards
// without following symlinks.
//
// Metadata calls are synchronous on purpose: each takes microseconds, while a round trip through
// libuv's thread pool costs far more, and a run makes a dozen of them on the latency path. Work
// whose size the request or the sandbox controls (file data, number of entries) yields to the
// event loop regularly, so no single run can stall the daemon.
import { randomBytes } from 'node:crypto';
import fs, { constants } from 'node:fs';
import path from 'node:path';
import type { FileEntry } from '../protocol/index.js';
import { DaemonError } from './errors.js';
import type { Logger } from './log.js';

/** Where the sandbox's code lives; tracebacks name it, as the original CodeJail's do. */
export const CODE_FILE = 'jailed_code';
/** The sandbox's writable scratch directory (HOME and TMPDIR), beneath the run directory. */
export const TMP_DIR = 'tmp';

const RUN_BASE_MODE = 0o711; // traverse, not list
const RUN_DIR_MODE = 0o750; // root:slot, the sandbox reads but cannot create here
const TMP_MODE = 0o700; // slot:slot
const FILE_MODE = 0o640;
const EXECUTABLE_MODE = 0o750;

/** File data up to this size is written synchronously; larger data goes through the thread pool. */
const SYNC_WRITE_MAX_BYTES = 256 * 1024;
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
}

export interface RunFiles {
  code?: Uint8Array;
  files: FileEntry[];
  extraFiles: Array<[string, Uint8Array]>;
}

/** Creates runBase (root, 0711), refusing a symlink in its place. */
export async function prepareRunBase(runBase: string): Promise<void> {
  fs.mkdirSync(runBase, { recursive: true, mode: RUN_BASE_MODE });
  const stat = fs.lstatSync(runBase);
  if (!stat.isDirectory()) throw new Error(`runBase ${runBase} is not a directory (a symlink is refused)`);
  if (process.getuid?.() === 0) fs.lchownSync(runBase, 0, 0);
  fs.chmodSync(runBase, RUN_BASE_MODE);
}

/** Removes everything a crashed daemon left under runBase. Call before any run starts. */
export async function sweepRunBase(runBase: string, log: Logger): Promise<number> {
  const entries = fs.readdirSync(runBase);
  for (const entry of entries) await removeTree(path.join(runBase, entry));
  if (entries.length) log.warn('removed run directories left by an earlier daemon', { runBase, count: entries.length });
  return entries.length;
}

export async function createRunDir(runBase: string, owner: RunOwner | undefined): Promise<RunDir> {
  const id = randomBytes(16).toString('hex');
  const dir = path.join(runBase, id);
  // Made 0700 root-owned, then handed over: never visible to anyone with wider rights too early.
  fs.mkdirSync(dir, { mode: 0o700 });
  const tmp = path.join(dir, TMP_DIR);
  try {
    setOwner(dir, owner && { uid: 0, gid: owner.gid }, RUN_DIR_MODE);
    fs.mkdirSync(tmp, { mode: 0o700 });
    setOwner(tmp, owner && { uid: owner.uid, gid: owner.gid }, TMP_MODE);
  } catch (err) {
    // The caller never gets this directory to remove: remove it here (nothing ran in it yet).
    await removeTree(dir).catch(() => undefined);
    throw err;
  }
  return { id, path: dir, tmp };
}

/** Removes a run directory and all the sandbox left in it (even chmod 0 dirs), never following a symlink. */
export async function removeRunDir(dir: RunDir): Promise<void> {
  await removeTree(dir.path);
}

/**
 * Writes the request's code, files and extra files. Parents are created as needed and must be
 * real directories: a name can never reach through a symlink the same request created (files
 * ['a' -> '/etc', 'a/passwd'] is refused). The final component is opened O_EXCL|O_NOFOLLOW.
 */
export async function writeRunFiles(dir: RunDir, input: RunFiles, owner: RunOwner | undefined): Promise<void> {
  const writer = new TreeWriter(dir.path, owner && { uid: 0, gid: owner.gid });
  const pacer = new Pacer();
  if (input.code) await writer.file(CODE_FILE, input.code, FILE_MODE, 'code');
  for (const [i, entry] of input.files.entries()) {
    const where = `files[${i}]`;
    switch (entry.type) {
      case 'file':
        await writer.file(entry.name, entry.data, entry.executable ? EXECUTABLE_MODE : FILE_MODE, where);
        break;
      case 'dir':
        writer.dir(entry.name, where);
        break;
      case 'symlink':
        writer.symlink(entry.name, entry.target, where);
        break;
    }
    await pacer.step();
  }
  for (const [i, [name, data]] of input.extraFiles.entries()) {
    const where = `extraFiles[${i}]`;
    if (name.includes('/')) throw new DaemonError('bad_request', `${where} "${name}": must be a plain name, without "/"`);
    await writer.file(name, data, FILE_MODE, where);
    await pacer.step();
  }
}

/**
 * Why `name` may not be written in a run directory, or undefined when it may. Same rules as the
 * protocol schema, checked again here because this is where a mistake would be exploitable.
 */
export function nameProblem(name: string): string | undefined {
  if (name.length === 0) return 'is empty';
  if (name.length > 4096) return 'is longer than 4096 characters';
  if (name.includes('\0')) return 'contains NUL';
  if (name.startsWith('/')) return 'is absolute';
  const parts = name.split('/');
  if (parts.length > 32) return 'is nested more than 32 levels';
  if (parts.some((part) => part === '' || part === '.' || part === '..')) return "has an empty, '.' or '..' component";
  // NAME_MAX: the kernel would refuse it anyway, but as ENAMETOOLONG from a parent's lstat.
  if (parts.some((part) => Buffer.byteLength(part) > 255)) return 'has a component longer than 255 bytes';
  if (parts[0] === TMP_DIR) return `is inside the reserved directory "${TMP_DIR}"`;
  return undefined;
}

class TreeWriter {
  constructor(
    private readonly root: string,
    private readonly owner: { uid: number; gid: number } | undefined,
  ) {}

  async file(name: string, data: Uint8Array, mode: number, where: string): Promise<void> {
    const full = this.place(name, where);
    let fd: number;
    try {
      fd = fs.openSync(full, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
    } catch (err) {
      throw this.failure(where, name, err);
    }
    try {
      if (data.length > SYNC_WRITE_MAX_BYTES) await writeAll(fd, data);
      else if (data.length) fs.writeFileSync(fd, data);
      if (this.owner) fs.fchownSync(fd, this.owner.uid, this.owner.gid);
      fs.fchmodSync(fd, mode);
    } finally {
      fs.closeSync(fd);
    }
  }

  dir(name: string, where: string): void {
    const full = this.place(name, where);
    try {
      fs.mkdirSync(full, { mode: 0o700 });
    } catch (err) {
      // Already made as the parent of an earlier entry: fine, as long as it is a real directory.
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || !fs.lstatSync(full).isDirectory()) {
        throw this.failure(where, name, err);
      }
    }
    setOwner(full, this.owner, RUN_DIR_MODE);
  }

  symlink(name: string, target: string, where: string): void {
    if (target.length === 0 || target.includes('\0')) {
      throw new DaemonError('bad_request', `${where} "${name}": the symlink target is empty or contains NUL`);
    }
    const full = this.place(name, where);
    try {
      fs.symlinkSync(target, full);
    } catch (err) {
      throw this.failure(where, name, err);
    }
    if (this.owner) fs.lchownSync(full, this.owner.uid, this.owner.gid);
  }

  /** Validates the name, creates its missing parents, and returns its absolute path. */
  private place(name: string, where: string): string {
    const problem = nameProblem(name);
    if (problem) throw new DaemonError('bad_request', `${where} "${name}": the name ${problem}`);
    const parts = name.split('/');
    let current = this.root;
    for (const part of parts.slice(0, -1)) {
      current = path.join(current, part);
      const stat = fs.lstatSync(current, { throwIfNoEntry: false });
      if (!stat) {
        fs.mkdirSync(current, { mode: 0o700 });
        setOwner(current, this.owner, RUN_DIR_MODE);
        continue;
      }
      const parent = path.relative(this.root, current);
      if (stat.isSymbolicLink()) {
        throw new DaemonError('bad_request', `${where} "${name}": its parent "${parent}" is a symlink; names may not pass through symlinks`);
      }
      if (!stat.isDirectory()) throw new DaemonError('bad_request', `${where} "${name}": its parent "${parent}" is not a directory`);
    }
    return path.join(this.root, name);
  }

  private failure(where: string, name: string, err: unknown): DaemonError {
    const code = (err as NodeJS.ErrnoException).code;
    const reason = code === 'EEXIST' ? 'already exists in the run directory' : `cannot be written (${code ?? (err as Error).message})`;
    return new DaemonError('bad_request', `${where} "${name}": ${reason}`);
  }
}

function setOwner(p: string, owner: { uid: number; gid: number } | undefined, mode: number): void {
  // lchown: never follows a symlink, even one that appeared where we expect a directory.
  if (owner) fs.lchownSync(p, owner.uid, owner.gid);
  fs.chmodSync(p, mode);
}

async function writeAll(fd: number, data: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < data.length) {
    const { bytesWritten } = await new Promise<{ bytesWritten: number }>((resolve, reject) =>
      fs.write(fd, data, offset, data.length - offset, null, (err, bytesWritten) => (err ? reject(err) : resolve({ bytesWritten }))),
    );
    offset += bytesWritten;
  }
}

/** Yields to the event loop every OPS_PER_YIELD steps. */
class Pacer {
  private ops = 0;

  async step(): Promise<void> {
    if (++this.ops % OPS_PER_YIELD === 0) await new Promise<void>((resolve) => setImmediate(resolve));
  }
}

/**
 * rm -rf that never follows a symlink (lstat, then unlink or descend) and copes with what a
 * sandbox can leave behind: directories chmod 0 (root ignores modes; a non-root, unsafe daemon
 * restores owner rights on its own directories first), and trees nested deeper than PATH_MAX
 * (a directory whose path grows long is first moved up beside the root and removed from there).
 * Call only when no process can still write beneath `root`.
 */
async function removeTree(root: string): Promise<void> {
  const pacer = new Pacer();
  const parent = path.dirname(root);
  let moved = 0;
  const pending = [root];
  while (pending.length) {
    const top = pending.pop()!;
    await removeOne(top);
  }

  async function removeOne(p: string): Promise<void> {
    const stat = fs.lstatSync(p, { throwIfNoEntry: false });
    if (!stat) return;
    if (!stat.isDirectory()) {
      withWritableParent(p, () => fs.unlinkSync(p));
      await pacer.step();
      return;
    }
    let entries: string[];
    try {
      entries = fs.readdirSync(p);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EACCES') throw err;
      fs.chmodSync(p, 0o700);
      entries = fs.readdirSync(p);
    }
    for (const entry of entries) {
      const child = path.join(p, entry);
      if (child.length > LONG_PATH) {
        const shallow = path.join(parent, `${path.basename(root)}.deep-${moved++}`);
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
function withWritableParent(p: string, remove: () => void): void {
  try {
    remove();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EACCES') throw err;
    fs.chmodSync(path.dirname(p), 0o700);
    remove();
  }
}
