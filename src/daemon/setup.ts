// `codejail setup`: creates on this host what the daemon needs, idempotently: the socket group,
// one group and user per slot with fixed ids, and the daemon's directories. Never overwrites a
// config, and refuses (rather than reuses) an id that belongs to someone else.
import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { readAccounts, type AccountTable } from './accounts.js';
import { setupAppArmor } from './apparmor_setup.js';
import { DEFAULT_CONFIG_PATH, type DaemonConfig } from './config.js';
import { prepareRunBase } from './rundir.js';
import { slotUsers } from './slots.js';

interface Account {
  name: string;
  id: number;
}

/** Returns one line per thing done or found, e.g. "created user codejail-s0 (uid 61000)". */
export async function setupHost(config: DaemonConfig): Promise<string[]> {
  if (process.getuid?.() !== 0) throw new Error('codejail setup must run as root');
  const report: string[] = [];
  const groups = readAccounts('/etc/group');
  const users = readAccounts('/etc/passwd');

  const socketGroup = config.socket.group;
  if (groups.byName.has(socketGroup)) {
    report.push(`found group ${socketGroup} (gid ${groups.byName.get(socketGroup)})`);
  } else {
    run('groupadd', ['--system', socketGroup]);
    report.push(`created group ${socketGroup}`);
  }

  for (const slot of slotUsers(config.slots)) {
    report.push(ensureAccount(groups, 'group', slot.user, slot.gid, () => run('groupadd', ['-g', String(slot.gid), slot.user])));
    report.push(
      ensureAccount(users, 'user', slot.user, slot.uid, () =>
        run('useradd', ['--system', '-u', String(slot.uid), '-g', String(slot.gid), '-M', '-d', '/nonexistent', '-s', '/usr/sbin/nologin', slot.user]),
      ),
    );
  }

  const configDir = path.dirname(DEFAULT_CONFIG_PATH);
  report.push((await ensureDir(configDir, 0, 0, 0o755)) + (await exists(DEFAULT_CONFIG_PATH) ? ` (config ${DEFAULT_CONFIG_PATH} kept)` : ' (no config written: built-in defaults apply)'));

  // The socket's directory: the group may reach the socket, nobody else may even see it.
  const socketGid = readAccounts('/etc/group').byName.get(socketGroup) ?? 0;
  report.push(await ensureDir(path.dirname(config.socket.path), 0, socketGid, 0o750));

  const baseExisted = await exists(config.runBase);
  await prepareRunBase(config.runBase);
  report.push(`${baseExisted ? 'found' : 'created'} ${config.runBase} (root 0711)`);

  // Last: the profiles name the run base and the interpreters, which must exist by now.
  report.push(...(await setupAppArmor(config)));
  return report;
}

function ensureAccount(
  table: AccountTable,
  kind: 'user' | 'group',
  name: string,
  id: number,
  create: () => void,
): string {
  const idLabel = kind === 'user' ? 'uid' : 'gid';
  const existingId = table.byName.get(name);
  if (existingId === id) return `found ${kind} ${name} (${idLabel} ${id})`;
  if (existingId !== undefined) {
    throw new Error(`${kind} ${name} exists with ${idLabel} ${existingId}, expected ${id}: remove it or change slots.firstUid`);
  }
  const owner = table.byId.get(id);
  if (owner !== undefined) throw new Error(`${idLabel} ${id} already belongs to ${kind} ${owner}: change slots.firstUid`);
  create();
  return `created ${kind} ${name} (${idLabel} ${id})`;
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

function run(program: string, args: string[]): void {
  try {
    execFileSync(program, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const stderr = String((err as { stderr?: unknown }).stderr ?? '').trim();
    throw new Error(`${program} ${args.join(' ')} failed: ${stderr || (err as Error).message}`);
  }
}

async function exists(p: string): Promise<boolean> {
  return fs.lstat(p).then(
    () => true,
    () => false,
  );
}
