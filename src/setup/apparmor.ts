// AppArmor part of `codejail setup`: renders the shipped profiles (apparmor/ in the package)
// with this daemon's paths, installs them under /etc/apparmor.d, and loads them when the kernel
// has AppArmor. The shipped files are valid AppArmor as they are; rendering only replaces the
// values of the variables in tunables/codejail and, when the config's apparmorProfile is not the
// default, the sandbox profile's name. Everything is computed from the config plus the same
// interpreter discovery the daemon runs at start, so the profile grants what Landlock grants.
import { runTool, ToolError, writeIfChanged } from './host_files.js';
import type { SetupRecord } from './record.js';
import { existsSync, promises as fs, readFileSync, realpathSync } from 'node:fs';
import path from 'node:path';
import { PACKAGE_ROOT } from '../package.js';
import { DEFAULT_CONFIG_PATH, type DaemonConfig } from '../config/schema.js';
import { discoverCommands, type CommandProfile } from '../run/commands.js';
import type { Logger } from '../log.js';

/** The name the shipped sandbox profile has; replaced by config.apparmorProfile when it differs. */
export const SHIPPED_SANDBOX_PROFILE = 'codejail-sandbox';
/** The daemon's own profile (attached only where the site starts the daemon under it). */
export const DAEMON_PROFILE = 'codejaild';
export const APPARMOR_SECURITYFS = '/sys/kernel/security/apparmor';
export const APPARMOR_ETC = '/etc/apparmor.d';
/** The shipped templates: apparmor/ at the package root (two levels above dist/daemon/ and src/daemon/). */
export const TEMPLATE_DIR = path.join(PACKAGE_ROOT, 'apparmor');
const TUNABLES = 'tunables/codejail';

/**
 * Paths go into the policy unquoted and unescaped, so only characters with no meaning to the
 * parser are accepted: no spaces (variable value separator), commas (rule end), quotes, '@'
 * (variables), or glob characters that would widen a grant. A path outside this set is refused
 * with its config key named rather than escaped, because a mis-escaped path is a wider grant.
 */
const PLAIN_PATH = /^\/[A-Za-z0-9._+\-/~]*$/;
/** A Python library directory (kept apart so the policy reads like the config: prefix vs. the rest). */
const PYTHON_DIR = /\/python[0-9.]*(\/|$)|\/(site|dist)-packages(\/|$)/;
/** AppArmor rejects a variable without values; this placeholder matches nothing that exists. */
const NOTHING = '/nonexistent/codejail-none';

export interface AppArmorVariables {
  CODEJAIL_RUNBASE: string[];
  CODEJAIL_EXEC: string[];
  CODEJAIL_PYTHON_PREFIX: string[];
  CODEJAIL_READ: string[];
  CODEJAIL_DAEMON_LABEL: string[];
  CODEJAIL_NODE: string[];
  CODEJAIL_PACKAGE: string[];
  CODEJAIL_CONFIG_DIR: string[];
  CODEJAIL_SOCKET_DIR: string[];
}

export interface RenderedFile {
  /** Path relative to the apparmor.d directory ("tunables/codejail", "codejail-sandbox"). */
  name: string;
  contents: string;
  /** A profile file (loaded with apparmor_parser), not an include. */
  profile: boolean;
}

export class AppArmorSetupError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AppArmorSetupError';
  }
}

/** The variables' values for this config and these discovered commands. */
export function apparmorVariables(config: DaemonConfig, commands: Iterable<CommandProfile>): AppArmorVariables {
  const exec = new Set<string>();
  const python = new Set<string>();
  const read = new Set<string>();
  for (const command of commands) {
    for (const p of command.execute) exec.add(checked(p, `commands.${command.name} (execute)`));
    for (const p of command.read) (PYTHON_DIR.test(p) ? python : read).add(checked(p, `commands.${command.name} (read)`));
  }
  const packageRoot = path.dirname(TEMPLATE_DIR);
  return {
    CODEJAIL_RUNBASE: [checked(stripSlash(config.runBase), 'runBase')],
    CODEJAIL_EXEC: nonEmpty(exec),
    CODEJAIL_PYTHON_PREFIX: nonEmpty(python),
    CODEJAIL_READ: nonEmpty(read),
    // Who may SIGKILL sandboxes: the daemon, unconfined or under its own profile. Both are
    // listed, so the rendered policy need not know how the site starts the daemon.
    CODEJAIL_DAEMON_LABEL: ['unconfined', DAEMON_PROFILE],
    CODEJAIL_NODE: [checked(realpathSync(process.execPath), 'node (process.execPath)')],
    CODEJAIL_PACKAGE: [checked(realpathSync(packageRoot), 'the codejail package directory')],
    CODEJAIL_CONFIG_DIR: [checked(path.dirname(DEFAULT_CONFIG_PATH), 'the configuration directory')],
    CODEJAIL_SOCKET_DIR: [checked(path.dirname(config.socket.path), 'socket.path')],
  };
}

/** Renders tunables/codejail and every profile from `templateDir`. Pure apart from reading the templates. */
export function renderAppArmor(
  variables: AppArmorVariables,
  sandboxProfile: string,
  templateDir: string = TEMPLATE_DIR,
): RenderedFile[] {
  if (!/^[A-Za-z0-9_.-]{1,128}$/.test(sandboxProfile)) {
    // config.ts allows '/' in a profile name (hats, namespaces); a file-per-profile install cannot.
    throw new AppArmorSetupError(`apparmorProfile "${sandboxProfile}": setup can only install a plain profile name ([A-Za-z0-9_.-])`);
  }
  const tunables = renderTunables(readTemplate(templateDir, TUNABLES), variables);
  const files: RenderedFile[] = [{ name: TUNABLES, contents: tunables, profile: false }];
  for (const template of [SHIPPED_SANDBOX_PROFILE, DAEMON_PROFILE]) {
    const text = readTemplate(templateDir, template);
    const isSandbox = template === SHIPPED_SANDBOX_PROFILE;
    files.push({
      name: isSandbox ? sandboxProfile : template,
      contents: renameSandbox(text, sandboxProfile),
      profile: true,
    });
  }
  return files;
}

/**
 * setupHost's AppArmor step. With layers.apparmor "off" nothing is done; otherwise the
 * interpreters are discovered exactly as the daemon does at start (so the profile grants what
 * Landlock grants) and the profiles are installed and loaded. Discovery warnings (a path the
 * interpreter reported but that is never granted) come back as report lines.
 */
export async function setupAppArmor(config: DaemonConfig, options: InstallOptions = {}): Promise<string[]> {
  if (config.layers.apparmor === 'off') return ['AppArmor: layers.apparmor is "off"; no profile installed'];
  if (!existsSync(options.securityDir ?? APPARMOR_SECURITYFS)) return installAppArmor(config, [], options);
  const warnings: string[] = [];
  const collect = (msg: string, fields?: Record<string, unknown>) => warnings.push(`AppArmor: ${msg} ${JSON.stringify(fields ?? {})}`);
  const log: Logger = { debug() {}, info() {}, warn: collect, error: collect };
  const commands = discoverCommands(config, log);
  return [...warnings, ...(await installAppArmor(config, commands.values(), options))];
}

export interface InstallOptions {
  /** Defaults: the real locations. Tests point them at a temporary directory. */
  etcDir?: string;
  securityDir?: string;
  parser?: string;
  templateDir?: string;
  /** Where each file installed is recorded, for `codejail setup --uninstall`. */
  record?: SetupRecord;
}

/**
 * Renders, installs and (when the kernel has AppArmor) loads the profiles. Returns one line per
 * thing done, as setupHost does. Without AppArmor in the kernel it says so and changes nothing:
 * profiles installed on such a host would only go stale.
 */
export async function installAppArmor(
  config: DaemonConfig,
  commands: Iterable<CommandProfile>,
  options: InstallOptions = {},
): Promise<string[]> {
  const etcDir = options.etcDir ?? APPARMOR_ETC;
  const securityDir = options.securityDir ?? APPARMOR_SECURITYFS;
  if (!existsSync(securityDir)) {
    const mode = config.layers.apparmor;
    return [
      `AppArmor: not enabled in this kernel (${securityDir} does not exist); no profile installed` +
        (mode === 'required' ? ' -- layers.apparmor is "required", so codejaild will refuse to start here' : ''),
    ];
  }
  const parser = options.parser ?? 'apparmor_parser';
  const files = renderAppArmor(apparmorVariables(config, commands), config.apparmorProfile, options.templateDir);
  const report: string[] = [];
  for (const file of files) {
    const target = path.join(etcDir, file.name);
    const outcome = await writeIfChanged(target, file.contents);
    const changed = outcome !== 'unchanged';
    if (outcome === 'installed') options.record?.add({ kind: 'apparmor', path: target, profile: file.profile });
    report.push(`${changed ? 'installed' : 'found'} AppArmor ${file.profile ? 'profile' : 'variables'} ${target}`);
  }
  for (const file of files.filter((f) => f.profile)) {
    const target = path.join(etcDir, file.name);
    // -r replaces a loaded profile of the same name, or loads it. The tunables are found through
    // the default include path (etcDir is /etc/apparmor.d outside tests).
    runParser(parser, ['-r', target]);
    report.push(`loaded AppArmor profile ${file.name} (apparmor_parser -r)`);
  }
  return report;
}

/** Runs `apparmor_parser -Q -K` on rendered files (syntax and policy compile, nothing loaded). */
export function checkProfileSyntax(dir: string, file: string, parser = 'apparmor_parser', extraArgs: string[] = []): void {
  runParser(parser, ['-Q', '-K', '-I', dir, ...extraArgs, path.join(dir, file)]);
}

/** Writes rendered files into `dir` (tests, packaging), creating tunables/. */
export async function writeRendered(dir: string, files: RenderedFile[]): Promise<void> {
  for (const file of files) await writeIfChanged(path.join(dir, file.name), file.contents);
}

function renderTunables(text: string, variables: AppArmorVariables): string {
  const seen = new Set<string>();
  const out = text.split('\n').map((line) => {
    const m = /^@\{([A-Z_]+)\}\s*=/.exec(line);
    if (!m) return line;
    const name = m[1] as keyof AppArmorVariables;
    if (!(name in variables)) throw new AppArmorSetupError(`${TUNABLES}: variable @{${name}} is not one setup knows how to fill`);
    seen.add(name);
    return `@{${name}}=${variables[name].join(' ')}`;
  });
  for (const name of Object.keys(variables)) {
    if (!seen.has(name)) throw new AppArmorSetupError(`${TUNABLES}: the template does not define @{${name}}`);
  }
  return out.join('\n');
}

/** Replaces the sandbox profile's name where it is a whole word, outside comments. */
function renameSandbox(text: string, name: string): string {
  if (name === SHIPPED_SANDBOX_PROFILE) return text;
  const word = new RegExp(`(?<![A-Za-z0-9_.-])${SHIPPED_SANDBOX_PROFILE}(?![A-Za-z0-9_.-])`, 'g');
  return text
    .split('\n')
    .map((line) => (line.trimStart().startsWith('#') ? line : line.replace(word, name)))
    .join('\n');
}

function readTemplate(dir: string, name: string): string {
  try {
    return readFileSync(path.join(dir, name), 'utf8');
  } catch (err) {
    throw new AppArmorSetupError(`AppArmor template ${path.join(dir, name)} cannot be read (${(err as NodeJS.ErrnoException).code}): is the package complete?`);
  }
}

function checked(p: string, where: string): string {
  if (!PLAIN_PATH.test(p)) {
    throw new AppArmorSetupError(
      `${where}: the path ${JSON.stringify(p)} cannot go into an AppArmor profile as is ` +
        '(only letters, digits and ._+-/~ are accepted); choose a path without spaces, commas, quotes or glob characters',
    );
  }
  return p;
}

function stripSlash(p: string): string {
  return p.length > 1 ? p.replace(/\/+$/, '') : p;
}

function nonEmpty(values: Set<string>): string[] {
  return values.size ? [...values].sort() : [NOTHING];
}

function runParser(parser: string, args: string[]): void {
  try {
    runTool(parser, args);
  } catch (err) {
    if (!(err instanceof ToolError)) throw err;
    if (err.code === 'ENOENT') throw new AppArmorSetupError(`${parser} is not installed (Debian: apt-get install apparmor)`);
    // The parser warns on stderr about the cache even when it succeeds; on failure the last
    // lines name the file, line and rule.
    const said = err.stderr
      .split('\n')
      .filter((l) => l && !l.startsWith('Cache read/write disabled'))
      .join('\n');
    throw new AppArmorSetupError(`${parser} ${args.join(' ')} failed: ${said || (err.cause as Error).message}`);
  }
}
