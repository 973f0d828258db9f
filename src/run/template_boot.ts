// How a warm template starts without opening anything of the install: its interpreter runs a
// short bootstrap (its kind's, e.g. TEMPLATE_BOOT in src/kinds/python.ts) that reads the
// template's program, the safeExec harness and codejail_warm.so from its stdin, where the daemon
// writes the copies it read at its start (install_files.ts). The template runs inside the runs'
// mount namespace, where an install beneath /root, /home or /tmp is not there; and a template
// replaced after an upgrade of the files on disk runs what the rest of the daemon was started
// with.
import net from 'node:net';
import type { KindName } from '../kinds/index.js';
import type { InstallFiles } from './install_files.js';

/**
 * Writes the files of a `kind` template to its stdin (`stdinFd`, the pipe's write end, which this
 * closes once written): a line of their three sizes, then the template, the harness (empty for a
 * kind without one) and the library. A template that dies first is reported by its channel
 * closing, not here.
 */
export function sendTemplateFiles(stdinFd: number, files: InstallFiles, kind: KindName): void {
  const template = files.templates[kind];
  if (!template) throw new Error(`kind ${kind} has no warm template`);
  const harness = files.harnesses[kind] ?? Buffer.alloc(0);
  const stream = new net.Socket({ fd: stdinFd, readable: false, writable: true });
  stream.on('error', () => {});
  const sizes = Buffer.from(`${template.length} ${harness.length} ${files.warmLibrary.length}\n`, 'latin1');
  stream.end(Buffer.concat([sizes, template, harness, files.warmLibrary]));
}
