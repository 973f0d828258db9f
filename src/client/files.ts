// The client's side of `files` and `extraFiles`. The daemon never opens a path a client names:
// the client reads its own files and sends their contents, so a request cannot make the root
// daemon read anything on the daemon's host.
//
// Whoever can write into a directory passed as `files` can swap entries while the client reads
// them, and the client may run with more rights than they have. So each entry is looked at once
// (lstat), then opened without following a symlink and without blocking, and the OPEN fd is
// checked (fstat) to be what lstat saw: a regular file or directory swapped for a symlink, a FIFO
// or another file is refused, never followed. A directory's children are opened through the
// directory's fd (/proc/self/fd/<fd>/<name>, Node's stand-in for openat), so replacing the
// directory itself by a symlink after it was opened cannot redirect the walk.
import { constants } from 'node:fs';
import type { BigIntStats } from 'node:fs';
import { lstat, open, readdir, readlink, stat } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { DEFAULT_MAX_FRAME_BYTES, plainNameProblem } from '../protocol/index.js';
import type { FileEntry } from '../protocol/index.js';
import { CodejailError } from './errors.js';

/** An extra file to create in the run directory: a plain name and its contents. */
export type ExtraFile = readonly [name: string, data: string | Uint8Array];

/** The protocol's bound on a request's `files` entries (schema.ts): refused before walking on. */
export const MAX_FILE_ENTRIES = 10000;

/**
 * O_NONBLOCK: opening a FIFO (swapped in after lstat) must not wait for a writer; O_NOCTTY: nor
 * may a terminal become the client's controlling one.
 */
const OPEN_FILE = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | constants.O_NOCTTY;
const OPEN_DIR = OPEN_FILE | constants.O_DIRECTORY;
const S_IFMT = BigInt(constants.S_IFMT);

/** Strings are sent as their UTF-8 bytes. */
export function toBytes(value: string | Uint8Array, what: string): Uint8Array {
  if (typeof value === 'string') return Buffer.from(value, 'utf8');
  if (value instanceof Uint8Array) return value;
  throw new CodejailError('bad_request', `${what} must be a string or a Buffer`);
}

/** Where the walk stands: what is collected, and how much of each bound is left. */
interface Walk {
  entries: FileEntry[];
  bytesLeft: number;
  maxBytes: number;
  /**
   * Whether children can be opened through /proc/self/fd/<dir fd>/ (Linux with /proc). Without
   * it they are opened by path: a directory swapped for a symlink after it was opened is then
   * followed for its children (each child's own last component still is not).
   */
  viaDirFd: boolean;
}

/**
 * Reads each path into entries named from its basename, the way the original copies `files`
 * into the run directory: a file becomes one entry; a directory `/x/pylib` becomes `pylib`,
 * `pylib/mod.py`, ... (parents before children); a symlink, at the top or inside a directory,
 * stays a symlink with its target unchanged, so one pointing outside the run directory stays
 * unreadable in the sandbox. The files' contents together may hold at most `maxBytes` (a request
 * carrying more could not be sent in one frame).
 */
export async function collectFiles(paths: readonly string[], maxBytes = DEFAULT_MAX_FRAME_BYTES): Promise<FileEntry[]> {
  const walk: Walk = { entries: [], bytesLeft: maxBytes, maxBytes, viaDirFd: await procFdWorks() };
  const topNames = new Set<string>();
  for (const given of paths) {
    if (typeof given !== 'string' || given === '') {
      throw new CodejailError('bad_request', 'files must be a list of non-empty paths');
    }
    const localPath = path.resolve(given);
    const name = path.basename(localPath);
    if (name === '') throw new CodejailError('bad_request', `files: cannot send '${given}', it has no name`);
    if (topNames.has(name)) {
      throw new CodejailError('bad_request', `files: two paths are named '${name}' in the run directory`);
    }
    topNames.add(name);
    // The given path's parents are the caller's choice and are followed; its last component is not.
    await collectPath(localPath, localPath, name, walk);
  }
  return walk.entries;
}

/**
 * Collects one entry. `openPath` is what the syscalls use (through the parent's fd inside a
 * directory), `localPath` what messages name.
 */
async function collectPath(openPath: string, localPath: string, name: string, walk: Walk): Promise<void> {
  if (walk.entries.length >= MAX_FILE_ENTRIES) {
    throw new CodejailError('bad_request', `files: more than ${MAX_FILE_ENTRIES} files, directories and symlinks to send`);
  }
  // BigInt stats: inode numbers may not fit a double, and the check below compares them.
  const seen = await readLocal(localPath, () => lstat(openPath, { bigint: true }));
  if (seen.isSymbolicLink()) {
    // readlink reads the link itself; it fails (EINVAL) if the entry is no longer a link.
    walk.entries.push({ type: 'symlink', name, target: await readLocal(localPath, () => readlink(openPath)) });
  } else if (seen.isFile()) {
    const handle = await openSame(openPath, localPath, seen, OPEN_FILE);
    try {
      const data = await readBounded(handle, localPath, seen.size, walk);
      walk.entries.push({ type: 'file', name, data, executable: (seen.mode & 0o111n) !== 0n });
    } finally {
      await handle.close();
    }
  } else if (seen.isDirectory()) {
    const handle = await openSame(openPath, localPath, seen, OPEN_DIR);
    try {
      walk.entries.push({ type: 'dir', name });
      const dirPath = walk.viaDirFd ? `/proc/self/fd/${handle.fd}` : openPath;
      // Sorted so that the same tree always produces the same request.
      const children = (await readLocal(localPath, () => readdir(dirPath))).sort();
      for (const child of children) {
        await collectPath(path.join(dirPath, child), path.join(localPath, child), `${name}/${child}`, walk);
      }
    } finally {
      await handle.close();
    }
  } else {
    throw notSendable(localPath);
  }
}

/**
 * Opens what lstat saw, refusing anything else: `flags` holds O_NOFOLLOW, so a symlink swapped in
 * fails to open (ELOOP), and the open fd must be the same inode, of the same type.
 */
async function openSame(openPath: string, localPath: string, seen: BigIntStats, flags: number): Promise<FileHandle> {
  let handle: FileHandle;
  try {
    handle = await open(openPath, flags);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    // ELOOP: now a symlink; ENOTDIR: no longer a directory; ENXIO: now a socket.
    if (code === 'ELOOP' || code === 'ENOTDIR' || code === 'ENXIO') throw changed(localPath, err);
    throw unreadable(localPath, err);
  }
  try {
    const opened = await handle.stat({ bigint: true });
    // The type too: a file system may give a new file the inode number just freed.
    if (opened.dev !== seen.dev || opened.ino !== seen.ino || (opened.mode & S_IFMT) !== (seen.mode & S_IFMT)) {
      throw opened.isFile() || opened.isDirectory() ? changed(localPath) : notSendable(localPath);
    }
    return handle;
  } catch (err) {
    await handle.close();
    if (err instanceof CodejailError) throw err;
    throw unreadable(localPath, err);
  }
}

/**
 * Reads the open file: at most the size lstat saw (so a file growing meanwhile cannot make the
 * client read on), within what is left of the walk's byte budget.
 */
async function readBounded(handle: FileHandle, localPath: string, seenSize: bigint, walk: Walk): Promise<Buffer> {
  if (seenSize > BigInt(walk.bytesLeft)) {
    throw new CodejailError(
      'bad_request',
      `files: '${localPath}' is ${seenSize} bytes, and the files together may hold at most ${walk.maxBytes} bytes`,
    );
  }
  const size = Number(seenSize);
  const data = Buffer.alloc(size);
  let filled = 0;
  try {
    while (filled < size) {
      const { bytesRead } = await handle.read(data, filled, size - filled, filled);
      if (bytesRead === 0) break;
      filled += bytesRead;
    }
  } catch (err) {
    throw unreadable(localPath, err);
  }
  walk.bytesLeft -= filled;
  return filled === size ? data : data.subarray(0, filled);
}

let procFd: Promise<boolean> | undefined;

/** Whether /proc/self/fd/<n>/ reaches inside an open directory here (checked once). */
function procFdWorks(): Promise<boolean> {
  procFd ??= stat('/proc/self/fd').then(
    (stats) => stats.isDirectory(),
    () => false,
  );
  return procFd;
}

function notSendable(localPath: string): CodejailError {
  return new CodejailError(
    'bad_request',
    `files: '${localPath}' is not a regular file, directory or symlink (sockets, FIFOs and devices cannot be sent)`,
  );
}

function changed(localPath: string, cause?: unknown): CodejailError {
  const message = `files: '${localPath}' changed while it was being read (replaced by another file or a link); nothing was sent`;
  return new CodejailError('bad_request', message, { cause });
}

function unreadable(localPath: string, err: unknown): CodejailError {
  const reason = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
  return new CodejailError('bad_request', `files: cannot read '${localPath}': ${reason}`, { cause: err });
}

/** Runs one filesystem read, turning its failure into an error that names the local path. */
async function readLocal<T>(localPath: string, read: () => Promise<T>): Promise<T> {
  try {
    return await read();
  } catch (err) {
    throw unreadable(localPath, err);
  }
}

/** Checks each extra file's name is a plain name and converts its contents to bytes. */
export function encodeExtraFiles(extraFiles: readonly ExtraFile[]): [string, Uint8Array][] {
  return extraFiles.map((pair, index) => {
    if (!Array.isArray(pair) || pair.length !== 2) {
      throw new CodejailError('bad_request', `extraFiles[${index}] must be a [name, contents] pair`);
    }
    const [name, data] = pair;
    const problem = plainNameProblem(name);
    if (problem) throw new CodejailError('bad_request', `extraFiles name ${JSON.stringify(name)} is not allowed: ${problem}`);
    return [name, toBytes(data, `extraFiles '${name}' contents`)];
  });
}
