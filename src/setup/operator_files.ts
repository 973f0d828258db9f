// What an operator expects a daemon package to put on the host: the man pages and the bash
// completion, both made from the --help texts (src/cli/man.ts, src/cli/completion.ts, which
// `codejail setup` passes in), so that what `man codejaild` says is what this installation's
// `codejaild --help` says.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { writeIfChanged } from './host_files.js';
import type { SetupRecord } from './record.js';

/** The texts to install, made by the command line from its --help texts. */
export interface OperatorTexts {
  manPages: readonly { name: string; section: number; text: string }[];
  completion: string;
}

export const MAN_DIR = '/usr/local/share/man';

/** bash-completion's on-demand directory where the package is installed, else the classic one. */
export function completionDir(): string {
  return existsSync('/usr/share/bash-completion/completions') ? '/usr/share/bash-completion/completions' : '/etc/bash_completion.d';
}

/**
 * Writes the man pages and the completion (only when their contents change); one line each.
 * With `record`, each file it installs is recorded, for `codejail setup --uninstall`.
 */
export async function installOperatorFiles(
  texts: OperatorTexts,
  manDir = MAN_DIR,
  completions = completionDir(),
  record?: SetupRecord,
): Promise<string[]> {
  const files = [
    ...texts.manPages.map((page) => ({ target: path.join(manDir, `man${page.section}`, `${page.name}.${page.section}`), text: page.text, what: `${page.name}(${page.section})` })),
    { target: path.join(completions, 'codejail'), text: texts.completion, what: 'bash completion' },
  ];
  const report: string[] = [];
  for (const { target, text, what } of files) {
    const outcome = await writeIfChanged(target, text);
    if (outcome === 'installed') record?.add({ kind: 'file', path: target });
    report.push(`${outcome} ${target} (${what})`);
  }
  return report;
}
