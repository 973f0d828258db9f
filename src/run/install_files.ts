// What runs and warm templates need from this installation, read once when the daemon starts and
// kept for its life. Nothing of the install is looked up by path later: runs and templates live
// in the runs' mount namespace, where an install beneath /root, /home or /tmp (a clone, an
// `npm i -g` under nvm) is not there; and an upgrade of the files on disk must not reach a
// running daemon half-way (a template replaced after it, on SIGHUP or by age, runs what the rest
// of the daemon was started with).
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { KINDS, type KindName } from '../kinds/index.js';
import { warmLibraryPath } from '../native.js';
import { PACKAGE_ROOT } from '../package.js';

export interface InstallFiles {
  /** Each kind's warm template program (python/warm_template.py), handed over through its stdin. */
  templates: Partial<Record<KindName, Buffer>>;
  /** Each kind's safe_exec harness (python/safe_exec_harness.py): a cold safe_exec's code, and the harness a template imports. */
  harnesses: Partial<Record<KindName, Buffer>>;
  /** codejail_warm.so (beside the addon): loaded by each template from a memfd of these bytes. */
  warmLibrary: Buffer;
}

let files: InstallFiles | undefined;

/**
 * The install's files, read at the first call (the daemon makes it at its start, before anything
 * enters the runs' namespace); throws naming the file that cannot be read.
 */
export function installFiles(): InstallFiles {
  files ??= {
    templates: Object.fromEntries(KINDS.flatMap((kind) => (kind.template ? [[kind.name, readInstallFile(kind.template.script)]] : []))),
    harnesses: Object.fromEntries(KINDS.flatMap((kind) => (kind.harness ? [[kind.name, readInstallFile(kind.harness)]] : []))),
    warmLibrary: readInstallFile(warmLibraryPath()),
  };
  return files;
}

/** `file` beneath the package root, or an absolute path. */
function readInstallFile(file: string): Buffer {
  const target = path.resolve(PACKAGE_ROOT, file);
  try {
    return readFileSync(target);
  } catch (err) {
    throw new Error(`this installation is incomplete: ${target} cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
}
