// What runs and warm templates need from this installation, read once when the daemon starts and
// kept for its life. Nothing of the install is looked up by path later: runs and templates live
// in the runs' mount namespace, where an install beneath /root, /home or /tmp (a clone, an
// `npm i -g` under nvm) is not there; and an upgrade of the files on disk must not reach a
// running daemon half-way (a template replaced after it, on SIGHUP or by age, runs what the rest
// of the daemon was started with).
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { warmLibraryPath } from '../native.js';
import { PACKAGE_ROOT } from '../package.js';

export const WARM_TEMPLATE_PATH = path.join(PACKAGE_ROOT, 'python', 'warm_template.py');
export const HARNESS_PATH = path.join(PACKAGE_ROOT, 'python', 'safe_exec_harness.py');

export interface InstallFiles {
  /** python/warm_template.py: a template's program, handed over through its stdin. */
  warmTemplate: Buffer;
  /** python/safe_exec_harness.py: a cold safe_exec's code, and the harness a template imports. */
  harness: Buffer;
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
    warmTemplate: readInstallFile(WARM_TEMPLATE_PATH),
    harness: readInstallFile(HARNESS_PATH),
    warmLibrary: readInstallFile(warmLibraryPath()),
  };
  return files;
}

function readInstallFile(file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new Error(`this installation is incomplete: ${file} cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
}
