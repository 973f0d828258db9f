// `codejail setup --uninstall`: removes what `codejail setup` created, and only that: what its
// record (record.ts) lists, or, for an install older than the record, what carries exactly the
// name setup gives it and nothing uses (a slot account of this configuration, the shipped units
// and profiles by their first line). The configuration directory goes only with --purge. Refuses
// while a daemon of this configuration runs: removing its accounts or run base under it would
// leave runs without their uid or directory.
import { spawnSync } from 'node:child_process';
import { existsSync, promises as fs, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { readAccounts } from '../accounts.js';
import { DEFAULT_CONFIG_PATH, type DaemonConfig } from '../config/schema.js';
import { encodeFrame, FrameDecoder, PROTOCOL_VERSION } from '../protocol/index.js';
import { runBaseClaimFile } from '../daemon/instance.js';
import { mountsBeneath } from '../run/rundir.js';
import { slotUsers } from '../run/slot_users.js';
import { APPARMOR_ETC, APPARMOR_SECURITYFS, DAEMON_PROFILE, TEMPLATE_DIR } from './apparmor.js';
import { runTool, ToolError } from './host_files.js';
import { SetupRecord, type Created } from './record.js';
import { DEFAULT_UNIT_DIR, HTTP_USER, systemdIsRunning, UNIT_SOURCE_DIR } from './systemd_units.js';

export interface UninstallOptions {
  /** Remove the configuration directory too (the config, the setup record, whatever else is there). */
  purge?: boolean;
  /** The config file the daemon would be started with (--config): a codejaild started with it counts as running. */
  configFile?: string;
  /** Defaults: the real locations. Tests point them at temporary ones. */
  configDir?: string;
  prefix?: string;
  unitDir?: string;
  apparmorEtc?: string;
  securityDir?: string;
  parser?: string;
  /** Whether to ask systemctl; default: when systemd is the running init. */
  systemctl?: boolean;
}

const UNITS = ['codejail-http.service', 'codejaild.service', 'codejaild.socket'];
const RUN_DIR_NAME = /^[0-9a-f]{32}$/;

export class UninstallRefused extends Error {
  constructor(readonly running: string[]) {
    super(`codejail setup --uninstall refused: a daemon runs (${running.join('; ')}); stop it first (systemctl stop codejaild.socket codejaild.service, or SIGTERM)`);
    this.name = 'UninstallRefused';
  }
}

/** Returns one line per thing removed or kept (and why). */
export async function uninstallHost(config: DaemonConfig, options: UninstallOptions = {}): Promise<string[]> {
  if (process.getuid?.() !== 0) throw new Error('codejail setup --uninstall must run as root');
  const running = await runningDaemons(config, options);
  if (running.length) throw new UninstallRefused(running);

  const configDir = options.configDir ?? path.dirname(DEFAULT_CONFIG_PATH);
  const record = SetupRecord.load(configDir);
  const report: string[] = [];
  report.push(...(await removeUnits(record, options)));
  report.push(...(await removeAppArmor(config, record, options)));
  report.push(...(await removeRecordedFiles(record)));
  report.push(...(await removeRunBase(config, record)));
  report.push(...(await removeRunBaseClaim(config)));
  report.push(...(await removeSocketDir(config, record)));
  report.push(...removeAccounts(config, record, options));
  if (options.purge) {
    if (existsSync(configDir)) {
      await fs.rm(configDir, { recursive: true, force: true });
      report.push(`removed the configuration directory ${configDir} (--purge)`);
    }
    const configFile = options.configFile && path.resolve(options.configFile);
    if (configFile && path.dirname(configFile) !== configDir && existsSync(configFile)) {
      report.push(`kept ${configFile}: a --config file outside ${configDir} is the operator's`);
    }
  } else if (existsSync(configDir)) {
    report.push(`kept the configuration directory ${configDir} (--purge removes it)`);
  }
  if (!report.some((line) => line.startsWith('removed'))) report.unshift("nothing of codejail's setup left to remove");
  return report;
}

/**
 * What shows a daemon of this configuration running, each named: a codejaild process started
 * with this config file, a socket that answers a status request, a process still running as a
 * slot's uid (a run), and setup's systemd units when active.
 */
export async function runningDaemons(config: DaemonConfig, options: UninstallOptions = {}): Promise<string[]> {
  const found: string[] = [];
  const configFile = path.resolve(options.configFile ?? DEFAULT_CONFIG_PATH);
  const slotUids = new Set(slotUsers(config.slots).map((slot) => slot.uid));
  for (const proc of processes()) {
    if (proc.daemonConfig === configFile) found.push(`codejaild pid ${proc.pid} runs with ${configFile}`);
    else if (slotUids.has(proc.uid)) found.push(`pid ${proc.pid} runs as slot uid ${proc.uid}`);
  }
  const answer = await socketAnswer(config.socket.path);
  if (answer) found.push(answer);
  if (options.systemctl ?? (await systemdIsRunning())) {
    for (const unit of UNITS) {
      const state = spawnSync('systemctl', ['is-active', unit], { encoding: 'utf8' }).stdout?.trim();
      if (state === 'active' || state === 'activating' || state === 'reloading') found.push(`${unit} is ${state}`);
    }
  }
  return found;
}

interface ProcessInfo {
  pid: number;
  uid: number;
  /** For a codejaild: the config file it was started with (resolved against its cwd). */
  daemonConfig?: string;
}

/** Every process, from /proc; one that ends while it is read is skipped. */
function processes(): ProcessInfo[] {
  const out: ProcessInfo[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      const status = readFileSync(`/proc/${name}/status`, 'utf8');
      const uid = Number(/^Uid:\s+(\d+)/m.exec(status)?.[1] ?? -1);
      const argv = readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0').filter(Boolean);
      out.push({ pid: Number(name), uid, daemonConfig: daemonConfig(argv, () => readlinkSync(`/proc/${name}/cwd`)) });
    } catch {
      continue;
    }
  }
  return out;
}

/** The config file of a codejaild command line (node .../dist/daemon/main.js or the codejaild bin), else undefined. */
function daemonConfig(argv: string[], cwd: () => string): string | undefined {
  const isDaemon = argv.slice(0, 2).some((arg) => arg.endsWith('/dist/daemon/main.js') || path.basename(arg) === 'codejaild');
  if (!isDaemon) return undefined;
  let file = DEFAULT_CONFIG_PATH;
  argv.forEach((arg, i) => {
    if (arg === '--config' && argv[i + 1] !== undefined) file = argv[i + 1]!;
    else if (arg.startsWith('--config=')) file = arg.slice('--config='.length);
  });
  return path.resolve(cwd(), file);
}

/** A line naming what answers on the socket, or undefined when nothing accepts connections there. */
function socketAnswer(socketPath: string): Promise<string | undefined> {
  return new Promise((resolve) => {
    const socket = net.connect(socketPath);
    const decoder = new FrameDecoder();
    const done = (line: string | undefined) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(line);
    };
    // Accepting without answering (a daemon starting, systemd's socket) counts: someone serves it.
    const timer = setTimeout(() => done(`${socketPath} accepts connections (no status reply within 2 s)`), 2000);
    socket.on('connect', () => socket.write(encodeFrame({ v: PROTOCOL_VERSION, id: 1, op: 'status' })));
    socket.on('data', (chunk) => {
      let reply: { ok?: boolean; result?: { version?: unknown } } | undefined;
      try {
        reply = decoder.push(chunk)[0] as typeof reply;
      } catch {
        done(`${socketPath} accepts connections (and sent a bad frame)`);
        return;
      }
      if (reply) done(`a daemon answers on ${socketPath}${reply.ok ? ` (codejail ${String(reply.result?.version)})` : ''}`);
    });
    socket.on('error', () => done(undefined));
    socket.on('close', () => done(`${socketPath} accepts connections (closed without a status reply)`));
  });
}

/** The units in unitDir that setup installed: recorded, or the shipped file's by name and first line. */
async function removeUnits(record: SetupRecord, options: UninstallOptions): Promise<string[]> {
  const unitDir = options.unitDir ?? DEFAULT_UNIT_DIR;
  const report: string[] = [];
  const ours: string[] = [];
  for (const unit of UNITS) {
    const target = path.join(unitDir, unit);
    const item: Created = { kind: 'unit', path: target };
    if (!existsSync(target)) {
      record.remove(item);
      continue;
    }
    if (record.has(item) || startsLikeShipped(target, path.join(UNIT_SOURCE_DIR, unit))) ours.push(unit);
    else report.push(`kept ${target}: not installed by codejail setup`);
  }
  if (ours.length === 0) return report;
  const systemctl = options.systemctl ?? (await systemdIsRunning());
  // Disabled first: `enable` made symlinks that would dangle once the files are gone.
  if (systemctl) runTool('systemctl', ['disable', ...ours]);
  for (const unit of ours) {
    const target = path.join(unitDir, unit);
    await fs.rm(target, { force: true });
    record.remove({ kind: 'unit', path: target });
    report.push(`removed unit ${target}${systemctl ? ' (disabled)' : ''}`);
  }
  if (systemctl) runTool('systemctl', ['daemon-reload']);
  return report;
}

/** The man pages and the completion setup installed (only those it recorded). */
async function removeRecordedFiles(record: SetupRecord): Promise<string[]> {
  const report: string[] = [];
  for (const item of record.created) {
    if (item.kind !== 'file') continue;
    if (existsSync(item.path)) {
      await fs.rm(item.path, { force: true });
      report.push(`removed ${item.path}`);
    }
    record.remove(item);
  }
  return report;
}

/** The profiles and variables setup installed, unloaded (when the kernel has AppArmor) and removed. */
async function removeAppArmor(config: DaemonConfig, record: SetupRecord, options: UninstallOptions): Promise<string[]> {
  const etcDir = options.apparmorEtc ?? APPARMOR_ETC;
  const loaded = existsSync(options.securityDir ?? APPARMOR_SECURITYFS);
  const parser = options.parser ?? 'apparmor_parser';
  const candidates = [
    { name: 'tunables/codejail', template: 'tunables/codejail', profile: false },
    { name: config.apparmorProfile, template: 'codejail-sandbox', profile: true },
    { name: DAEMON_PROFILE, template: DAEMON_PROFILE, profile: true },
  ];
  const report: string[] = [];
  // Profiles before the variables they include: unloading parses the profile file.
  for (const candidate of [...candidates.slice(1), candidates[0]!]) {
    const target = path.join(etcDir, candidate.name);
    const item: Created = { kind: 'apparmor', path: target, profile: candidate.profile };
    if (!existsSync(target)) {
      record.remove(item);
      continue;
    }
    if (!record.has(item) && !startsLikeShipped(target, path.join(TEMPLATE_DIR, candidate.template))) {
      report.push(`kept ${target}: not installed by codejail setup`);
      continue;
    }
    let unloaded = '';
    if (candidate.profile && loaded) {
      try {
        runTool(parser, ['-R', target]);
        unloaded = ' (unloaded)';
      } catch (err) {
        if (!(err instanceof ToolError)) throw err;
        // Not loaded (a profile setup installed on a kernel without it loaded) is no reason to keep the file.
        unloaded = ` (not unloaded: ${err.stderr.split('\n').filter(Boolean).pop() ?? err.message})`;
      }
    }
    await fs.rm(target, { force: true });
    record.remove(item);
    report.push(`removed AppArmor ${candidate.profile ? 'profile' : 'variables'} ${target}${unloaded}`);
  }
  return report;
}

/** The run base, when it holds nothing but run directories (leftovers of a daemon that crashed). */
async function removeRunBase(config: DaemonConfig, record: SetupRecord): Promise<string[]> {
  const runBase = config.runBase;
  const item: Created = { kind: 'dir', path: runBase, role: 'runBase' };
  const stat = await fs.lstat(runBase).catch(() => undefined);
  if (!stat) {
    record.remove(item);
    return [];
  }
  if (!stat.isDirectory()) return [`kept ${runBase}: the configured runBase is not a directory`];
  const mounted = mountsBeneath(runBase);
  if (mounted.length) return [`kept ${runBase}: ${mounted.length} run disk(s) still mounted beneath it (${mounted.slice(0, 3).join(', ')}); a daemon start sweeps them`];
  const strangers = (await fs.readdir(runBase)).filter((name) => !RUN_DIR_NAME.test(name));
  if (strangers.length) return [`kept ${runBase}: it holds ${strangers.slice(0, 3).join(', ')}, which no run made`];
  await fs.rm(runBase, { recursive: true, force: true });
  record.remove(item);
  return [`removed the run base ${runBase}`];
}

/**
 * The claim on the run base a daemon leaves when it is killed (src/daemon/instance.ts): no daemon
 * runs (checked first), so it names none.
 */
async function removeRunBaseClaim(config: DaemonConfig): Promise<string[]> {
  const file = runBaseClaimFile(config.runBase);
  if (!existsSync(file)) return [];
  await fs.rm(file, { force: true });
  return [`removed ${file} (the run base's claim a killed daemon left)`];
}

/** The socket's directory, when setup made it and nothing but a stale socket is left in it. */
async function removeSocketDir(config: DaemonConfig, record: SetupRecord): Promise<string[]> {
  const dir = path.dirname(config.socket.path);
  const item: Created = { kind: 'dir', path: dir, role: 'socketDir' };
  if (!record.has(item)) return [];
  const entries = await fs.readdir(dir).catch(() => undefined);
  if (entries === undefined) {
    record.remove(item);
    return [];
  }
  if (entries.some((name) => name !== path.basename(config.socket.path))) return [`kept ${dir}: it holds files that are not the daemon's socket`];
  await fs.rm(dir, { recursive: true, force: true });
  record.remove(item);
  return [`removed the socket directory ${dir}`];
}

interface Account {
  kind: 'user' | 'group';
  name: string;
  /** The id it must still have to be the account setup made (undefined: codejail-http, any id). */
  id?: number;
  recorded: boolean;
}

/**
 * Users first (a group cannot go while it is someone's primary group), then groups. An account
 * is removed when the record lists it with the id it still has, or when it is a slot account of
 * this configuration (codejail-<uid>, or the older codejail-s<i>, with the slot's id) or
 * codejail-http, a user as setup makes it (no home, no shell), and nothing uses it: no process
 * runs as the user, no user is in the group.
 */
function removeAccounts(config: DaemonConfig, record: SetupRecord, options: UninstallOptions): string[] {
  const etc = (file: string) => path.join(options.prefix ?? '/', 'etc', file);
  const prefixArgs = options.prefix === undefined ? [] : ['--prefix', options.prefix];
  const wanted: Account[] = [];
  const add = (account: Account) => {
    if (!wanted.some((known) => known.kind === account.kind && known.name === account.name)) wanted.push(account);
  };
  for (const item of record.created) if (item.kind === 'user' || item.kind === 'group') add({ ...item, recorded: true });
  for (const slot of slotUsers(config.slots)) {
    for (const kind of ['user', 'group'] as const) {
      add({ kind, name: slot.user, id: slot.uid, recorded: false });
      add({ kind, name: slot.legacyUser, id: slot.uid, recorded: false });
    }
  }
  add({ kind: 'user', name: HTTP_USER, recorded: false });
  add({ kind: 'group', name: HTTP_USER, recorded: false });

  const report: string[] = [];
  const running = new Set(processes().map((proc) => proc.uid));
  for (const kind of ['user', 'group'] as const) {
    const table = readAccounts(etc(kind === 'user' ? 'passwd' : 'group'));
    const members = kind === 'group' ? groupUse(etc('passwd'), etc('group')) : undefined;
    const idLabel = kind === 'user' ? 'uid' : 'gid';
    for (const account of wanted.filter((a) => a.kind === kind)) {
      const item: Created = { kind, name: account.name, id: account.id ?? -1 };
      const id = table.byName.get(account.name);
      if (id === undefined) {
        if (account.recorded) record.remove(item);
        continue;
      }
      if (account.id !== undefined && id !== account.id) {
        if (account.recorded) report.push(`kept ${kind} ${account.name}: its ${idLabel} is ${id}, setup made it with ${account.id}`);
        continue;
      }
      const shape = kind === 'user' && !account.recorded ? userShape(etc('passwd'), account.name) : undefined;
      if (shape !== undefined && shape !== SETUP_USER_SHAPE) {
        report.push(`kept user ${account.name}: not as setup makes it (home and shell ${shape})`);
        continue;
      }
      const users = members?.get(account.name);
      if (kind === 'user' && running.has(id)) {
        report.push(`kept user ${account.name}: processes run as uid ${id}`);
        continue;
      }
      if (users?.length) {
        report.push(`kept group ${account.name}: still the group of ${users.slice(0, 5).join(', ')}`);
        continue;
      }
      runTool(kind === 'user' ? 'userdel' : 'groupdel', [...prefixArgs, account.name]);
      record.remove(item);
      report.push(`removed ${kind} ${account.name} (${idLabel} ${id})`);
    }
  }
  return report;
}

/** Home and shell of every user setup makes (useradd -d /nonexistent -s /usr/sbin/nologin). */
const SETUP_USER_SHAPE = '/nonexistent /usr/sbin/nologin';

/** A user's home and shell, as "home shell". */
function userShape(passwdFile: string, name: string): string | undefined {
  const fields = readFileSync(passwdFile, 'utf8')
    .split('\n')
    .map((line) => line.split(':'))
    .find((f) => f[0] === name);
  return fields && `${fields[5]} ${fields[6]}`;
}

/** For each group name: the users whose primary group or supplementary group it is. */
function groupUse(passwdFile: string, groupFile: string): Map<string, string[]> {
  const read = (file: string) => (existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter(Boolean).map((line) => line.split(':')) : []);
  const groups = read(groupFile);
  const nameOfGid = new Map(groups.map((fields) => [fields[2], fields[0]!]));
  const use = new Map<string, string[]>();
  const note = (group: string | undefined, user: string) => {
    if (group === undefined) return;
    use.set(group, [...(use.get(group) ?? []), user]);
  };
  for (const fields of read(passwdFile)) note(nameOfGid.get(fields[3]), fields[0]!);
  for (const fields of groups) for (const user of (fields[3] ?? '').split(',').filter(Boolean)) note(fields[0], user);
  return use;
}

/** Whether `file` begins with the first line of the shipped `template` (its header comment). */
function startsLikeShipped(file: string, template: string): boolean {
  try {
    const header = readFileSync(template, 'utf8').split('\n')[0]!;
    return header.length > 0 && readFileSync(file, 'utf8').split('\n')[0] === header;
  } catch {
    return false;
  }
}
