// `codejail setup`: creates on this host what the daemon needs, idempotently: the socket group,
// one group and user per slot with fixed ids (named by id, so that daemons with different slot
// ranges can share a host), and the daemon's directories. Never overwrites a config, and refuses
// (rather than reuses) an id that belongs to someone else.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { readAccounts, type AccountTable } from '../accounts.js';
import { setupAppArmor, type InstallOptions } from './apparmor.js';
import { runTool } from './host_files.js';
import type { SetupRecord } from './record.js';
import { DEFAULT_CONFIG_PATH, type DaemonConfig } from '../config/schema.js';
import { prepareRunBase } from '../run/rundir.js';
import { slotUsers, type SlotUser } from '../run/slot_users.js';

export interface AccountOptions {
  /**
   * A directory holding the etc/passwd and etc/group to change instead of the host's (passed to
   * groupadd and useradd as --prefix): for tests.
   */
  prefix?: string;
  /** Where each account created is recorded, for `codejail setup --uninstall`. */
  record?: SetupRecord;
}

export interface HostOptions extends AccountOptions {
  /** The configuration's directory (default: /etc/codejail): tests use their own. */
  configDir?: string;
  apparmor?: InstallOptions;
}

/** Returns one line per thing done or found, e.g. "created user codejail-61000 (uid 61000)". */
export async function setupHost(config: DaemonConfig, options: HostOptions = {}): Promise<string[]> {
  if (process.getuid?.() !== 0) throw new Error('codejail setup must run as root');
  const { record } = options;
  // The configuration's directory first: the record of what setup creates is kept in it.
  const configDir = options.configDir ?? path.dirname(DEFAULT_CONFIG_PATH);
  const configFile = path.join(configDir, path.basename(DEFAULT_CONFIG_PATH));
  const configDirLine = await ensureDir(configDir, 0, 0, 0o755);
  if (configDirLine.startsWith('created')) record?.add({ kind: 'dir', path: configDir, role: 'configDir' });
  const configLine = configDirLine + ((await exists(configFile)) ? ` (config ${configFile} kept)` : ' (no config written: built-in defaults apply)');
  const report = setupAccounts(config, options);
  report.push(configLine);
  const socketGroup = config.socket.group;

  // The socket's directory: the group may reach the socket, nobody else may even see it.
  const socketGid = readAccounts(path.join(options.prefix ?? '/', 'etc/group')).byName.get(socketGroup) ?? 0;
  const socketDir = path.dirname(config.socket.path);
  const socketDirLine = await ensureDir(socketDir, 0, socketGid, 0o750);
  if (socketDirLine.startsWith('created')) record?.add({ kind: 'dir', path: socketDir, role: 'socketDir' });
  report.push(socketDirLine);

  const baseExisted = await exists(config.runBase);
  await prepareRunBase(config.runBase);
  if (!baseExisted) record?.add({ kind: 'dir', path: config.runBase, role: 'runBase' });
  report.push(`${baseExisted ? 'found' : 'created'} ${config.runBase} (root 0711)`);

  // Last: the profiles name the run base and the interpreters, which must exist by now.
  report.push(...(await setupAppArmor(config, { ...options.apparmor, record })));
  return report;
}

/** One account found, or to create. */
interface Step {
  line: string;
  create?: () => void;
}

/**
 * The socket group, and one group and user per slot. Returns one line per account. Every
 * account is checked before any is created: a refused setup leaves the tables as they were.
 */
export function setupAccounts(config: DaemonConfig, options: AccountOptions = {}): string[] {
  const prefixArgs = options.prefix === undefined ? [] : ['--prefix', options.prefix];
  const etc = (file: string) => path.join(options.prefix ?? '/', 'etc', file);
  const groups = readAccounts(etc('group'));
  const users = readAccounts(etc('passwd'));
  const steps: Step[] = [];

  const socketGroup = config.socket.group;
  if (groups.byName.has(socketGroup)) {
    steps.push({ line: `found group ${socketGroup} (gid ${groups.byName.get(socketGroup)})` });
  } else {
    steps.push({
      line: `created group ${socketGroup}`,
      create: () => {
        runTool('groupadd', [...prefixArgs, '--system', socketGroup]);
        // groupadd chose the id: recorded as it is now, so that uninstall can tell it is the same group.
        const gid = readAccounts(etc('group')).byName.get(socketGroup);
        if (gid !== undefined) options.record?.add({ kind: 'group', name: socketGroup, id: gid });
      },
    });
  }

  for (const slot of slotUsers(config.slots)) {
    steps.push(
      checkAccount(groups, 'group', slot, slot.gid, () => {
        runTool('groupadd', [...prefixArgs, '-g', String(slot.gid), slot.user]);
        options.record?.add({ kind: 'group', name: slot.user, id: slot.gid });
      }),
    );
    steps.push(
      checkAccount(users, 'user', slot, slot.uid, () => {
        runTool('useradd', [
          ...prefixArgs,
          ...['--system', '-u', String(slot.uid), '-g', String(slot.gid), '-M', '-d', '/nonexistent', '-s', '/usr/sbin/nologin', slot.user],
        ]);
        options.record?.add({ kind: 'user', name: slot.user, id: slot.uid });
      }),
    );
  }

  return steps.map((step) => {
    step.create?.();
    return step.line;
  });
}

/** Whether a slot's account is there (by its name, or the name an earlier setup gave it) or can be made. */
function checkAccount(table: AccountTable, kind: 'user' | 'group', slot: SlotUser, id: number, create: () => void): Step {
  const idLabel = kind === 'user' ? 'uid' : 'gid';
  const name = slot.user;
  const existingId = table.byName.get(name);
  if (existingId === id) return { line: `found ${kind} ${name} (${idLabel} ${id})` };
  if (existingId !== undefined) {
    throw new Error(`${kind} ${name} exists with ${idLabel} ${existingId}, expected ${id}: remove it or change slots.firstUid`);
  }
  const owner = table.byId.get(id);
  // An install from before accounts were named by id: the same slot of the same range, kept.
  if (owner !== undefined && owner === slot.legacyUser) {
    return { line: `found ${kind} ${owner} (${idLabel} ${id}, the name an earlier setup gave slot ${slot.index})` };
  }
  if (owner !== undefined) {
    const another = owner.startsWith('codejail-')
      ? ' (a slot of another configuration: the slot ranges of daemons on one host must not overlap)'
      : '';
    throw new Error(`${idLabel} ${id} already belongs to ${kind} ${owner}${another}: change slots.firstUid`);
  }
  return { line: `created ${kind} ${name} (${idLabel} ${id})`, create };
}

async function ensureDir(dir: string, uid: number, gid: number, mode: number): Promise<string> {
  const existed = await exists(dir);
  // Missing parents get the usual 0755: only the leaf carries the restrictive mode.
  await fs.mkdir(path.dirname(dir), { recursive: true, mode: 0o755 });
  if (!existed) await fs.mkdir(dir, { mode });
  const stat = await fs.lstat(dir);
  if (!stat.isDirectory()) throw new Error(`${dir} exists and is not a directory`);
  await fs.lchown(dir, uid, gid);
  await fs.chmod(dir, mode);
  return `${existed ? 'found' : 'created'} ${dir} (${uid}:${gid} ${mode.toString(8).padStart(4, '0')})`;
}

async function exists(p: string): Promise<boolean> {
  return fs.lstat(p).then(
    () => true,
    () => false,
  );
}
