// The request's code, files and extra files, written into its run directory by the daemon before
// the sandbox starts (the run directory itself: src/run/rundir.ts). Every name is checked again
// here, where a mistake would be exploitable; parents are made as real directories; nothing is
// written through a symlink. Small files go in batches through one native call
// (native/runfiles.cc), which spends a file's system calls and none of Node's per-call overhead.
// Work whose size the request controls (file data, number of entries) yields to the event loop
// regularly, so no single request can stall the daemon.
import fs, { constants } from 'node:fs';
import path from 'node:path';
import { native } from '../native.js';
import { CODE_FILE, TMP_DIR, type FileEntry } from '../protocol/index.js';
import { RequestError } from '../protocol/errors.js';
import { Pacer, RUN_DIR_MODE, setOwner, type RunDir, type RunOwner } from './rundir.js';

const FILE_MODE = 0o640;
const EXECUTABLE_MODE = 0o750;

/** File data up to this size is written synchronously; larger data goes through the thread pool. */
const SYNC_WRITE_MAX_BYTES = 256 * 1024;
/**
 * Small files wait in a batch, written by one native call (native/runfiles.cc) when it holds this
 * many files or bytes: a file then costs its own system calls, not Node's overhead on each of five.
 */
const BATCH_FILES = 256;
const BATCH_BYTES = 1024 * 1024;
/**
 * Entries (files, directories and symlinks, the parents a name implies included) one request
 * may create: the schema bounds the entries listed, this bounds what their nesting implies
 * (2000 names 31 levels deep would otherwise be 62 000 directories).
 */
export const MAX_RUN_ENTRIES = 10_000;

export interface RunFiles {
  code?: Uint8Array;
  files: FileEntry[];
  extraFiles: Array<[string, Uint8Array]>;
}

/**
 * Writes the request's code, files and extra files. Parents are created as needed and must be
 * real directories: a name can never reach through a symlink the same request created (files
 * ['a' -> '/etc', 'a/passwd'] is refused). The final component is opened O_EXCL|O_NOFOLLOW.
 */
export async function writeRunFiles(dir: RunDir, input: RunFiles, owner: RunOwner | undefined): Promise<void> {
  const writer = new TreeWriter(dir.path, owner && { uid: 0, gid: owner.gid });
  const implied = impliedEntries(input);
  if (implied > MAX_RUN_ENTRIES) {
    throw new RequestError(
      'bad_request',
      `the files and the directories their names imply exceed ${MAX_RUN_ENTRIES} entries (${implied}); nothing was written`,
    );
  }
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
    if (name.includes('/')) throw new RequestError('bad_request', `${where} "${name}": must be a plain name, without "/"`);
    await writer.file(name, data, FILE_MODE, where);
    await pacer.step();
  }
  writer.flush();
}

/**
 * How many entries writing `input` makes, the parents its names imply counted once each,
 * counted before anything is written: the request pays for its size, not the slot for a
 * half-written tree. Stops counting past MAX_RUN_ENTRIES.
 */
function impliedEntries(input: RunFiles): number {
  const tree = new NameTree();
  const names = [...(input.code ? [CODE_FILE] : []), ...input.files.map((entry) => entry.name), ...input.extraFiles.map(([name]) => name)];
  for (const name of names) {
    tree.add(name);
    if (tree.size > MAX_RUN_ENTRIES) break;
  }
  return tree.size;
}

interface NameNode {
  children?: Map<string, NameNode>;
  /** The writer has checked (or made) it as a real directory of the run. */
  isDirectory?: boolean;
}

/**
 * Names as a tree of their components, so that walking a name costs one lookup per component:
 * a set of whole parent paths would hash every prefix of every name again (10 000 names 32 levels
 * deep are 310 000 prefixes of 2 kB on average: most of a second on the event loop).
 */
class NameTree {
  private readonly root: NameNode = {};
  /** Nodes in the tree: the entries the names make, parents included. */
  size = 0;

  /** The node of each component of `name`, made as needed. */
  add(name: string): NameNode[] {
    const nodes: NameNode[] = [];
    let node = this.root;
    for (const part of name.split('/')) {
      node.children ??= new Map();
      let child = node.children.get(part);
      if (!child) {
        child = {};
        node.children.set(part, child);
        this.size++;
      }
      nodes.push(child);
      node = child;
    }
    return nodes;
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
  /** Entries made so far, implied parents included (MAX_RUN_ENTRIES bounds them). */
  private entries = 0;
  /** The names written so far, as a tree: which parents are known real directories. */
  private readonly names = new NameTree();
  /** Small files placed but not yet written (flush). */
  private batch: { name: string; data: Uint8Array; mode: number; where: string }[] = [];
  private batchBytes = 0;

  constructor(
    private readonly root: string,
    private readonly owner: { uid: number; gid: number } | undefined,
  ) {}

  /**
   * With an owner (the daemon, as root), a file of up to SYNC_WRITE_MAX_BYTES joins the batch
   * (written by flush, at the latest by the caller's last flush). A larger one, and every file of
   * an unsafe client (no owner, maybe no addon), is written now: its data through the thread pool
   * when large.
   */
  async file(name: string, data: Uint8Array, mode: number, where: string): Promise<void> {
    this.place(name, where);
    if (this.owner && data.length <= SYNC_WRITE_MAX_BYTES) {
      this.batch.push({ name, data, mode, where });
      this.batchBytes += data.length;
      if (this.batch.length >= BATCH_FILES || this.batchBytes >= BATCH_BYTES) this.flush();
      return;
    }
    this.flush();
    const full = path.join(this.root, name);
    let fd: number;
    try {
      fd = fs.openSync(full, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
    } catch (err) {
      throw this.failure(where, name, err);
    }
    try {
      try {
        if (data.length > SYNC_WRITE_MAX_BYTES) await writeAll(fd, data);
        else if (data.length) fs.writeFileSync(fd, data);
      } catch (err) {
        throw this.failure(where, name, err);
      }
      if (this.owner) fs.fchownSync(fd, this.owner.uid, this.owner.gid);
      fs.fchmodSync(fd, mode);
    } finally {
      fs.closeSync(fd);
    }
  }

  /**
   * Writes the batched files. Called before anything else is made or looked at in the run
   * directory, so that entries appear in the request's order and a batched file is never
   * mistaken for a missing parent.
   */
  flush(): void {
    const owner = this.owner;
    if (this.batch.length === 0 || !owner) return;
    const batch = this.batch;
    this.batch = [];
    this.batchBytes = 0;
    try {
      native().writeRunFiles(
        this.root,
        batch.map((file) => file.name),
        batch.map((file) => file.data),
        batch.map((file) => file.mode),
        owner,
      );
    } catch (err) {
      const failed = batch[(err as { index?: number }).index ?? -1];
      if (failed) throw this.failure(failed.where, failed.name, err);
      throw err;
    }
  }

  dir(name: string, where: string): void {
    this.flush();
    this.place(name, where);
    const full = path.join(this.root, name);
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
      throw new RequestError('bad_request', `${where} "${name}": the symlink target is empty or contains NUL`);
    }
    this.flush();
    this.place(name, where);
    const full = path.join(this.root, name);
    try {
      fs.symlinkSync(target, full);
    } catch (err) {
      throw this.failure(where, name, err);
    }
    if (this.owner) fs.lchownSync(full, this.owner.uid, this.owner.gid);
  }

  /** Validates the name and creates its missing parents. */
  private place(name: string, where: string): void {
    const problem = nameProblem(name);
    if (problem) throw new RequestError('bad_request', `${where} "${name}": the name ${problem}`);
    this.count(where);
    const parts = name.split('/');
    // Parents this writer already checked or made are real directories still: nothing else
    // writes in the run directory before the run starts. Each is lstat'ed once, not once per name.
    const nodes = this.names.add(name);
    let current = this.root;
    for (const [i, part] of parts.slice(0, -1).entries()) {
      current = path.join(current, part);
      const node = nodes[i]!;
      if (node.isDirectory) continue;
      this.flush(); // a batched file may be this very parent
      const stat = fs.lstatSync(current, { throwIfNoEntry: false });
      if (!stat) {
        this.count(where);
        try {
          fs.mkdirSync(current, { mode: 0o700 });
        } catch (err) {
          throw this.failure(where, name, err);
        }
        setOwner(current, this.owner, RUN_DIR_MODE);
        node.isDirectory = true;
        continue;
      }
      const parent = path.relative(this.root, current);
      if (stat.isSymbolicLink()) {
        throw new RequestError('bad_request', `${where} "${name}": its parent "${parent}" is a symlink; names may not pass through symlinks`);
      }
      if (!stat.isDirectory()) throw new RequestError('bad_request', `${where} "${name}": its parent "${parent}" is not a directory`);
      node.isDirectory = true;
    }
  }

  private count(where: string): void {
    if (++this.entries > MAX_RUN_ENTRIES) {
      throw new RequestError('bad_request', `${where}: the files and the directories their names imply exceed ${MAX_RUN_ENTRIES} entries`);
    }
  }

  private failure(where: string, name: string, err: unknown): RequestError {
    const code = (err as NodeJS.ErrnoException).code;
    const reason =
      code === 'EEXIST'
        ? 'already exists in the run directory'
        : code === 'ENOSPC' || code === 'EDQUOT'
          ? `does not fit: the request's files exceed the run's DISK limit (${code})`
          : `cannot be written (${code ?? (err as Error).message})`;
    return new RequestError('bad_request', `${where} "${name}": ${reason}`);
  }
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

