// The client's side of `files` and `extraFiles`. The daemon never opens a path a client names:
// the client reads its own files and sends their contents, so a request cannot make the root
// daemon read anything on the daemon's host.
import { lstat, readFile, readdir, readlink } from 'node:fs/promises';
import path from 'node:path';
import { plainName } from '../protocol/index.js';
import type { FileEntry } from '../protocol/index.js';
import { CodejailError } from './errors.js';

/** An extra file to create in the run directory: a plain name and its contents. */
export type ExtraFile = readonly [name: string, data: string | Uint8Array];

/** Strings are sent as their UTF-8 bytes. */
export function toBytes(value: string | Uint8Array, what: string): Uint8Array {
  if (typeof value === 'string') return Buffer.from(value, 'utf8');
  if (value instanceof Uint8Array) return value;
  throw new CodejailError('bad_request', `${what} must be a string or a Buffer`);
}

/**
 * Reads each path into entries named from its basename, the way the original copies `files`
 * into the run directory: a file becomes one entry; a directory `/x/pylib` becomes `pylib`,
 * `pylib/mod.py`, ... (parents before children); a symlink, at the top or inside a directory,
 * stays a symlink with its target unchanged, so one pointing outside the run directory stays
 * unreadable in the sandbox.
 */
export async function collectFiles(paths: readonly string[]): Promise<FileEntry[]> {
  const entries: FileEntry[] = [];
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
    await collectPath(localPath, name, entries);
  }
  return entries;
}

async function collectPath(localPath: string, name: string, entries: FileEntry[]): Promise<void> {
  const stats = await readLocal(localPath, () => lstat(localPath));
  if (stats.isSymbolicLink()) {
    entries.push({ type: 'symlink', name, target: await readLocal(localPath, () => readlink(localPath)) });
  } else if (stats.isFile()) {
    const data = await readLocal(localPath, () => readFile(localPath));
    entries.push({ type: 'file', name, data, executable: (stats.mode & 0o111) !== 0 });
  } else if (stats.isDirectory()) {
    entries.push({ type: 'dir', name });
    // Sorted so that the same tree always produces the same request.
    const children = (await readLocal(localPath, () => readdir(localPath))).sort();
    for (const child of children) {
      await collectPath(path.join(localPath, child), `${name}/${child}`, entries);
    }
  } else {
    throw new CodejailError(
      'bad_request',
      `files: '${localPath}' is not a regular file, directory or symlink (sockets, FIFOs and devices cannot be sent)`,
    );
  }
}

/** Runs one filesystem read, turning its failure into an error that names the local path. */
async function readLocal<T>(localPath: string, read: () => Promise<T>): Promise<T> {
  try {
    return await read();
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw new CodejailError('bad_request', `files: cannot read '${localPath}': ${reason}`, { cause: err });
  }
}

/** Checks each extra file's name is a plain name and converts its contents to bytes. */
export function encodeExtraFiles(extraFiles: readonly ExtraFile[]): [string, Uint8Array][] {
  return extraFiles.map((pair, index) => {
    if (!Array.isArray(pair) || pair.length !== 2) {
      throw new CodejailError('bad_request', `extraFiles[${index}] must be a [name, contents] pair`);
    }
    const [name, data] = pair;
    const checked = plainName.safeParse(name);
    if (!checked.success) {
      throw new CodejailError(
        'bad_request',
        `extraFiles name ${JSON.stringify(name)} is not allowed: ${checked.error.issues.map((i) => i.message).join('; ')}`,
      );
    }
    return [name, toBytes(data, `extraFiles '${name}' contents`)];
  });
}
