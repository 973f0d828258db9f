// The man pages and the bash completion `codejail setup` installs: each page holds, rendered by
// man(1), exactly what the commands print for --help (so the two cannot drift: both are made from
// the same strings, and this compares the installed commands' output, not the strings), renders
// without warnings, and the completion offers the subcommands and the options each --help names.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { bashCompletion, usageOptions } from '../../src/cli/completion.js';
import { SUBCOMMAND_USAGES } from '../../src/cli/usage.js';
import { CONFIG_KEYS } from '../../src/daemon/config_doc.js';
import { defaultConfig } from '../../src/daemon/config.js';
import { installOperatorFiles } from '../../src/setup/operator_files.js';
import { manPages } from '../../src/cli/man.js';

const operatorTexts = { manPages: manPages(), completion: bashCompletion() };

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const CLI = path.join(root, 'dist/cli/main.js');
const DAEMON = path.join(root, 'dist/daemon/main.js');
const hasMan = spawnSync('man', ['--version'], { stdio: 'ignore' }).status === 0;

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cj-operator-files-'));
const manDir = path.join(tmp, 'man');
const completions = path.join(tmp, 'completions');
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function helpOf(main: string, args: string[]): string {
  const result = spawnSync(process.execPath, [main, ...args], { encoding: 'utf8' });
  expect(result.status, result.stderr).toBe(0);
  return result.stdout;
}

/** A page as man(1) shows it, checked to render without a warning. */
function rendered(file: string): string {
  const result = spawnSync('man', ['--warnings', '-E', 'UTF-8', '-l', file], { encoding: 'utf8', env: { ...process.env, MANWIDTH: '300', MAN_KEEP_FORMATTING: '' } });
  expect(result.status).toBe(0);
  expect(result.stderr).toBe('');
  return result.stdout;
}

/** Lines without their indentation and without blank ones: man indents a section's text. */
const lines = (text: string) =>
  text
    .split('\n')
    .map((line) => line.replace(/\u2010/g, '-').trim())
    .filter(Boolean)
    .join('\n');

describe('codejail setup: man pages and bash completion', () => {
  it('installs the three pages and the completion, and a second time changes nothing', async () => {
    const first = await installOperatorFiles(operatorTexts, manDir, completions);
    expect(first).toEqual([
      `installed ${manDir}/man1/codejail.1 (codejail(1))`,
      `installed ${manDir}/man8/codejaild.8 (codejaild(8))`,
      `installed ${manDir}/man5/codejail-config.5 (codejail-config(5))`,
      `installed ${completions}/codejail (bash completion)`,
    ]);
    const second = await installOperatorFiles(operatorTexts, manDir, completions);
    expect(second.every((line) => line.startsWith('unchanged '))).toBe(true);
  });

  it.runIf(hasMan)('codejail(1) shows what `codejail --help` and every `codejail <command> --help` print', () => {
    const page = lines(rendered(path.join(manDir, 'man1/codejail.1')));
    expect(page).toContain(lines(helpOf(CLI, ['--help'])));
    expect(Object.keys(SUBCOMMAND_USAGES).length).toBeGreaterThan(5);
    for (const name of Object.keys(SUBCOMMAND_USAGES)) {
      expect(helpOf(CLI, ['--help'])).toMatch(new RegExp(`^  ${name} `, 'm'));
      expect(page).toContain(lines(helpOf(CLI, [name, '--help'])));
    }
  });

  it.runIf(hasMan)('codejaild(8) shows what `codejaild --help` prints', () => {
    expect(lines(rendered(path.join(manDir, 'man8/codejaild.8')))).toContain(lines(helpOf(DAEMON, ['--help'])));
  });

  it.runIf(hasMan)('codejail-config(5) shows `codejail check-config --help` (every key) and the built-in defaults', () => {
    const page = lines(rendered(path.join(manDir, 'man5/codejail-config.5')));
    const help = helpOf(CLI, ['check-config', '--help']);
    expect(page).toContain(lines(help));
    for (const key of Object.keys(defaultConfig())) expect(Object.keys(CONFIG_KEYS)).toContain(key);
    for (const key of Object.keys(CONFIG_KEYS)) expect(help).toMatch(new RegExp(`^  ${key} `, 'm'));
    expect(page).toContain(lines(JSON.stringify(defaultConfig(), null, 2)));
  });

  it('completes the subcommands, and each one\'s options as its --help names them', () => {
    const complete = (words: string[]) => {
      const script = `source ${JSON.stringify(path.join(completions, 'codejail'))}; COMP_WORDS=(${words.map((w) => JSON.stringify(w)).join(' ')}); COMP_CWORD=${words.length - 1}; _codejail; printf '%s\\n' "\${COMPREPLY[@]}"`;
      const result = spawnSync('bash', ['-c', script], { encoding: 'utf8' });
      expect(result.stderr).toBe('');
      return result.stdout.split('\n').filter(Boolean);
    };
    expect(complete(['codejail', ''])).toEqual([...Object.keys(SUBCOMMAND_USAGES), '--help', '--version']);
    expect(complete(['codejail', 'ch'])).toEqual(['check', 'check-config']);
    for (const [name, usage] of Object.entries(SUBCOMMAND_USAGES)) {
      expect(complete(['codejail', name, '-'])).toEqual(usageOptions(usage));
    }
    expect(complete(['codejail', 'run', '--li'])).toEqual(['--limit']);
    expect(complete(['codejail', 'setup', '--'])).toEqual(expect.arrayContaining(['--config', '--systemd', '--http', '--help']));
  });
});
