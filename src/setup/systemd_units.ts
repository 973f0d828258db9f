// Installing codejaild's systemd units (`codejail setup --systemd`): the files in systemd/ with
// ExecStart= pointing at this installation and the socket unit matching config.socket, then
// daemon-reload and enable --now of the socket when systemd is the running init.
import { runTool, writeIfChanged } from './host_files.js';
import type { SetupRecord } from './record.js';
import { promises as fs, lstatSync, readdirSync, realpathSync } from 'node:fs';
import path from 'node:path';
import { readAccounts } from '../accounts.js';
import { PACKAGE_ROOT } from '../package.js';
import { DEFAULT_CONFIG_PATH, type DaemonConfig } from '../config/schema.js';

export const DEFAULT_UNIT_DIR = '/etc/systemd/system';
export const UNIT_SOURCE_DIR = path.join(PACKAGE_ROOT, 'systemd');
const DAEMON_MAIN = path.join(PACKAGE_ROOT, 'dist/daemon/main.js');
const CLI_MAIN = path.join(PACKAGE_ROOT, 'dist/cli/main.js');
/** The user `codejail serve` runs as under codejail-http.service. */
export const HTTP_USER = 'codejail-http';
/** What the shipped units' ProtectHome=yes hides. */
const HOME_DIRS = ['/home', '/root', '/run/user'];
/** What the shipped units' PrivateTmp=yes replaces with a directory of the service's own. */
const TMP_DIRS = ['/tmp', '/var/tmp'];

/** What a unit runs from: this package and the node running it (resolved, as systemd would). */
export function installPaths(): string[] {
  const resolve = (p: string) => {
    try {
      return realpathSync(p);
    } catch {
      return p;
    }
  };
  return [...new Set([resolve(PACKAGE_ROOT), resolve(process.execPath)])];
}

/**
 * Why a root unit must not run `paths`, or undefined: a file of the install (or node), or a
 * directory above one, that a user other than root owns or that group or others may write.
 * Whoever could change what the unit runs would get root at its next start, bound read-only or
 * not (the binding only keeps the service from writing it). Links are judged by their targets'
 * own check (paths come realpath'd); a walk stops at the first problem.
 */
export function installOwnershipProblem(paths: string[]): string | undefined {
  const unsafe = (p: string): string | undefined => {
    const st = lstatSync(p);
    if (st.uid !== 0) return `${p} is owned by uid ${st.uid}, not root`;
    // A link's own mode bits mean nothing; its target is checked where the walk reaches it. A
    // root-owned sticky directory (/tmp) lets no one else rename or remove root's entries.
    const sticky = st.isDirectory() && (st.mode & 0o1000) !== 0;
    if (!st.isSymbolicLink() && !sticky && (st.mode & 0o022) !== 0) {
      return `${p} may be written by ${st.mode & 0o002 ? 'anyone' : 'its group'} (mode ${(st.mode & 0o7777).toString(8)})`;
    }
    return undefined;
  };
  const walk = (p: string): string | undefined => {
    const problem = unsafe(p);
    if (problem || !lstatSync(p).isDirectory()) return problem;
    for (const entry of readdirSync(p)) {
      const found = walk(path.join(p, entry));
      if (found) return found;
    }
    return undefined;
  };
  for (const target of paths) {
    for (let dir = path.dirname(target); ; dir = path.dirname(dir)) {
      const problem = unsafe(dir);
      if (problem) return problem;
      if (dir === '/') break;
    }
    const problem = walk(target);
    if (problem) return problem;
  }
  return undefined;
}

/** Refuses, naming the path, an install a unit would run that someone other than root could change. */
function assertRootOwnedInstall(name: string, paths: string[]): void {
  const problem = installOwnershipProblem(paths);
  if (problem) {
    throw new Error(
      `${name} would run as root what another user can change: ${problem}. Install codejail where only root can write ` +
        '(e.g. beneath /opt, or npm i -g with a system node), or give the tree to root (chown -R root:root, chmod go-w)',
    );
  }
}

/**
 * The unit with what it runs made visible to it: an install (or node, from nvm) beneath a home
 * directory is bound read-only into it, ProtectHome= then hiding the rest with an empty tmpfs
 * instead of making the directories inaccessible (where nothing could be bound). An install
 * beneath /tmp or /var/tmp is refused: PrivateTmp= gives the service a /tmp of its own, and a
 * service should not run from where files come and go.
 */
export function withInstallPaths(unit: string, name: string, paths: string[]): string {
  const beneath = (p: string, dirs: string[]) => dirs.find((dir) => p === dir || p.startsWith(`${dir}/`));
  for (const p of paths) {
    const tmp = beneath(p, TMP_DIRS);
    if (tmp) {
      throw new Error(
        `${name} cannot run ${p}: it is beneath ${tmp}, which PrivateTmp=yes replaces with the service's own; ` +
          'install codejail elsewhere (beneath /opt or /usr/local, or npm i -g with a system node) to run it under systemd',
      );
    }
  }
  const bound = paths.filter((p) => beneath(p, HOME_DIRS));
  if (bound.length === 0) return unit;
  unit = setKey(unit, 'Service', 'ProtectHome', 'tmpfs');
  return addKey(unit, 'Service', 'BindReadOnlyPaths', bound.map(quotePath).join(' '), 'ProtectHome');
}

export interface InstallUnitsOptions {
  /** Where the units go (default /etc/systemd/system). */
  unitDir?: string;
  /** A config file other than the default, passed to the daemon with --config. */
  configFile?: string;
  /** Whether to run systemctl; default: when systemd is the running init. */
  systemctl?: boolean;
  /** Where each unit installed is recorded, for `codejail setup --uninstall`. */
  record?: SetupRecord;
  /** What the unit runs from (default: installPaths()): for tests. */
  installPaths?: string[];
}

export interface InstallHttpUnitOptions {
  unitDir?: string;
  systemctl?: boolean;
  /** Where /etc/passwd and /etc/group are (useradd --prefix): for tests. */
  prefix?: string;
  /** Where each unit installed is recorded, for `codejail setup --uninstall`. */
  record?: SetupRecord;
  /** What the unit runs from (default: installPaths()): for tests. */
  installPaths?: string[];
}

/**
 * codejail-http.service (`codejail serve` as its own user, in the socket's group): creates the
 * user when missing, writes the unit with ExecStart= pointing at this installation and the
 * socket's path and group, and enables and starts it when systemd runs. One line per step.
 */
export async function installHttpUnit(config: DaemonConfig, options: InstallHttpUnitOptions = {}): Promise<string[]> {
  const unitDir = options.unitDir ?? DEFAULT_UNIT_DIR;
  const etc = (file: string) => path.join(options.prefix ?? '/', 'etc', file);
  const report: string[] = [];
  const socketGroup = config.socket.group;
  // Rendered first: an install the unit could not run is refused before the user is made.
  const execStart = [process.execPath, CLI_MAIN, 'serve', '--socket', config.socket.path];
  let unit = await readUnit('codejail-http.service');
  unit = setKey(unit, 'Service', 'ExecStart', execStart.map(quoteArg).join(' '));
  unit = setKey(unit, 'Service', 'SupplementaryGroups', socketGroup);
  unit = withInstallPaths(unit, 'codejail-http.service', options.installPaths ?? installPaths());
  if (!options.installPaths) assertRootOwnedInstall('codejail-http.service', installPaths());
  if (readAccounts(etc('passwd')).byName.has(HTTP_USER)) {
    report.push(`found user ${HTTP_USER}`);
  } else {
    const prefixArgs = options.prefix === undefined ? [] : ['--prefix', options.prefix];
    // A system user with a group of its own, no home and no shell; in the socket's group too.
    runTool('useradd', [...prefixArgs, '--system', '--user-group', '--no-create-home', '--home-dir', '/nonexistent', '--shell', '/usr/sbin/nologin', '--groups', socketGroup, HTTP_USER]);
    // --user-group made a group of the same name: both recorded with the ids useradd chose.
    const uid = readAccounts(etc('passwd')).byName.get(HTTP_USER);
    const gid = readAccounts(etc('group')).byName.get(HTTP_USER);
    if (uid !== undefined) options.record?.add({ kind: 'user', name: HTTP_USER, id: uid });
    if (gid !== undefined) options.record?.add({ kind: 'group', name: HTTP_USER, id: gid });
    report.push(`created user ${HTTP_USER} (in group ${socketGroup})`);
  }
  await fs.mkdir(unitDir, { recursive: true, mode: 0o755 });
  const target = path.join(unitDir, 'codejail-http.service');
  const outcome = await writeIfChanged(target, unit);
  if (outcome === 'installed') options.record?.add({ kind: 'unit', path: target });
  report.push(`${outcome} ${target}`);
  if (!(options.systemctl ?? (await systemdIsRunning()))) {
    report.push('systemd is not the running init: codejail-http.service installed but not enabled; once it runs: systemctl daemon-reload && systemctl enable --now codejail-http.service');
    return report;
  }
  systemctl(['daemon-reload']);
  systemctl(['enable', '--now', 'codejail-http.service']);
  report.push('ran systemctl enable --now codejail-http.service (listening on 127.0.0.1:8080)');
  return report;
}

/** sd_booted(): systemd is the running init when this directory exists. */
export async function systemdIsRunning(): Promise<boolean> {
  return fs.stat('/run/systemd/system').then(
    (s) => s.isDirectory(),
    () => false,
  );
}

/** Writes the units and, when systemd runs, enables the socket. Returns one line per step. */
export async function installSystemdUnits(config: DaemonConfig, options: InstallUnitsOptions = {}): Promise<string[]> {
  const unitDir = options.unitDir ?? DEFAULT_UNIT_DIR;
  const report: string[] = [];
  const execStart = [process.execPath, DAEMON_MAIN];
  if (options.configFile && path.resolve(options.configFile) !== DEFAULT_CONFIG_PATH) execStart.push('--config', path.resolve(options.configFile));

  const service = withInstallPaths(
    setKey(await readUnit('codejaild.service'), 'Service', 'ExecStart', execStart.map(quoteArg).join(' ')),
    'codejaild.service',
    options.installPaths ?? installPaths(),
  );
  if (!options.installPaths) assertRootOwnedInstall('codejaild.service', installPaths());
  let socket = await readUnit('codejaild.socket');
  socket = setKey(socket, 'Socket', 'ListenStream', config.socket.path);
  socket = setKey(socket, 'Socket', 'SocketGroup', config.socket.group);
  socket = setKey(socket, 'Socket', 'SocketMode', config.socket.mode.toString(8).padStart(4, '0'));

  await fs.mkdir(unitDir, { recursive: true, mode: 0o755 });
  for (const [name, text] of [
    ['codejaild.service', service],
    ['codejaild.socket', socket],
  ] as const) {
    const outcome = await writeIfChanged(path.join(unitDir, name), text);
    if (outcome === 'installed') options.record?.add({ kind: 'unit', path: path.join(unitDir, name) });
    report.push(`${outcome} ${path.join(unitDir, name)}`);
  }
  const bound = /^BindReadOnlyPaths=(.*)$/m.exec(service)?.[1];
  if (bound) report.push(`codejaild.service: ProtectHome=tmpfs and BindReadOnlyPaths=${bound} (what it runs is beneath a home directory)`);

  const runSystemctl = options.systemctl ?? (await systemdIsRunning());
  if (!runSystemctl) {
    report.push(
      'systemd is not the running init (no /run/systemd/system): units installed but not enabled; ' +
        'once it runs: systemctl daemon-reload && systemctl enable --now codejaild.socket',
    );
    return report;
  }
  systemctl(['daemon-reload']);
  report.push('ran systemctl daemon-reload');
  systemctl(['enable', '--now', 'codejaild.socket']);
  report.push('ran systemctl enable --now codejaild.socket (codejaild starts on the first connection)');
  return report;
}

async function readUnit(name: string): Promise<string> {
  try {
    return await fs.readFile(path.join(UNIT_SOURCE_DIR, name), 'utf8');
  } catch (err) {
    throw new Error(`cannot read the unit ${name} shipped with codejail in ${UNIT_SOURCE_DIR}: ${(err as NodeJS.ErrnoException).code ?? err}`);
  }
}

/** Replaces `key=` in `[section]` (the first occurrence); the shipped units always have it. */
export function setKey(unit: string, section: string, key: string, value: string): string {
  if (/[\n\r]/.test(value)) throw new Error(`${key}= value must be one line`);
  const lines = unit.split('\n');
  let current = '';
  for (let i = 0; i < lines.length; i++) {
    const header = /^\[(.+)\]\s*$/.exec(lines[i]!);
    if (header) {
      current = header[1]!;
      continue;
    }
    if (current === section && lines[i]!.startsWith(`${key}=`)) {
      lines[i] = `${key}=${value}`;
      return lines.join('\n');
    }
  }
  throw new Error(`the shipped unit has no ${key}= in [${section}]`);
}

/** Adds `key=value` in `[section]` right after its `after=` line (which the shipped units have). */
function addKey(unit: string, section: string, key: string, value: string, after: string): string {
  if (/[\n\r]/.test(value)) throw new Error(`${key}= value must be one line`);
  const lines = unit.split('\n');
  let current = '';
  for (let i = 0; i < lines.length; i++) {
    const header = /^\[(.+)\]\s*$/.exec(lines[i]!);
    if (header) current = header[1]!;
    else if (current === section && lines[i]!.startsWith(`${after}=`)) {
      lines.splice(i + 1, 0, `${key}=${value}`);
      return lines.join('\n');
    }
  }
  throw new Error(`the shipped unit has no ${after}= in [${section}]`);
}

/** A path in a list of paths (BindReadOnlyPaths=): `%` escaped; what the list syntax cannot carry refused. */
function quotePath(p: string): string {
  if (/[\s:"'\\]/.test(p)) throw new Error(`${p}: a path with white space, a colon, a quote or a backslash cannot be bound into a unit; install codejail elsewhere`);
  return p.replace(/%/g, '%%');
}

/** systemd's command-line quoting: double quotes, with backslash escapes, when needed. */
function quoteArg(arg: string): string {
  if (/^[A-Za-z0-9_./@:+=,-]+$/.test(arg)) return arg;
  return `"${arg.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/%/g, '%%').replace(/\$/g, '$$$$')}"`;
}

function systemctl(args: string[]): void {
  runTool('systemctl', args);
}
