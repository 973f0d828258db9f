// Caller authorization. The socket's mode and group are the first gate; this is the second, and
// the one that holds when an operator widens the socket's mode or hands the listening fd to
// systemd: every connection's peer credentials (SO_PEERCRED, filled in by the kernel at connect
// time, so a client cannot choose them) are checked against config.allow.
import { readFileSync } from 'node:fs';
import { readAccounts } from '../accounts.js';
import type { DaemonConfig } from '../config/schema.js';
import type { Logger } from '../log.js';

export interface Caller {
  pid: number;
  uid: number;
  gid: number;
}

/** config.allow with group names resolved to gids. */
export interface AllowList {
  uids: Set<number>;
  gids: Set<number>;
  /** What was configured, for logs and refusal messages. */
  describe: string;
}

/**
 * Resolves config.allow against /etc/group. A group name that does not exist is logged and
 * skipped (it may be created later by `codejail setup`; a SIGHUP then picks it up), never fatal:
 * an unknown name can only narrow who passes.
 */
export function resolveAllowList(config: DaemonConfig, log: Logger): AllowList {
  const groups = config.allow.groups ?? [config.socket.group];
  const byName = readAccounts('/etc/group').byName;
  const gids = new Set<number>();
  groups.forEach((group, index) => {
    if (typeof group === 'number') {
      gids.add(group);
      return;
    }
    const gid = byName.get(group);
    if (gid === undefined) log.warn(`allow.groups[${index}]: group "${group}" does not exist; ignored`, { group });
    else gids.add(gid);
  });
  // Root and the daemon's own uid own the socket file anyway; refusing them protects nothing.
  const uids = new Set<number>([0, ...config.allow.uids]);
  const own = process.getuid?.();
  if (own !== undefined) uids.add(own);
  const describe = `uids ${[...uids].sort((a, b) => a - b).join(',')}; gids ${[...gids].sort((a, b) => a - b).join(',') || '(none)'}`;
  return { uids, gids, describe };
}

export type Verdict = { allowed: true; via: string } | { allowed: false; reason: string };

/**
 * Whether `caller` may use the daemon. The uid and the primary gid come from SO_PEERCRED; the
 * supplementary groups from /proc/<pid>/status, whose pid the kernel gave us (never a path a
 * client named). That file is read only when uid and primary gid did not already decide, and
 * its Uid line must still match the peer's uid: if the caller exited and its pid was reused,
 * the groups of an unrelated process must not count.
 */
export function authorize(caller: Caller, allow: AllowList): Verdict {
  if (allow.uids.has(caller.uid)) return { allowed: true, via: `uid ${caller.uid}` };
  if (allow.gids.has(caller.gid)) return { allowed: true, via: `gid ${caller.gid}` };
  const supplementary = supplementaryGroups(caller);
  const match = supplementary?.find((gid) => allow.gids.has(gid));
  if (match !== undefined) return { allowed: true, via: `group ${match}` };
  const groups = supplementary === undefined ? 'its supplementary groups could not be read' : `groups ${supplementary.join(',') || '(none)'}`;
  return {
    allowed: false,
    reason: `uid ${caller.uid} (gid ${caller.gid}, ${groups}) is not allowed to use codejaild; allowed: ${allow.describe}`,
  };
}

/** The Groups: line of /proc/<pid>/status, or undefined when the process is gone or not ours to see. */
function supplementaryGroups(caller: Caller): number[] | undefined {
  // pid 0: the peer is in a pid namespace we cannot see into.
  if (!Number.isInteger(caller.pid) || caller.pid <= 0) return undefined;
  let text: string;
  try {
    text = readFileSync(`/proc/${caller.pid}/status`, 'utf8');
  } catch {
    return undefined;
  }
  const status = parseProcStatus(text);
  // SO_PEERCRED records the effective uid at connect().
  if (status === undefined || status.effectiveUid !== caller.uid) return undefined;
  return status.groups;
}

export interface ProcStatusIds {
  effectiveUid: number;
  groups: number[];
}

/**
 * The effective uid and the supplementary groups of a /proc/<pid>/status text, or undefined when
 * either field is missing or malformed. Each field is read from its own line and nowhere else: a
 * process without supplementary groups has "Groups:\t \n", and a pattern that lets whitespace
 * run on past the newline would take the next line ("NStgid:\t<pid>") as its groups, so that a
 * caller's pid counted as a group. Every value must be a decimal number, or nothing counts.
 */
export function parseProcStatus(text: string): ProcStatusIds | undefined {
  const fields = new Map<string, string>();
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':');
    if (colon > 0) fields.set(line.slice(0, colon), line.slice(colon + 1));
  }
  const numbers = (value: string | undefined): number[] | undefined => {
    if (value === undefined) return undefined;
    const words = value.split(/[\t ]+/).filter(Boolean);
    if (!words.every((w) => /^\d{1,10}$/.test(w))) return undefined;
    return words.map(Number);
  };
  // Uid: real, effective, saved, fs.
  const uids = numbers(fields.get('Uid'));
  const groups = numbers(fields.get('Groups'));
  if (uids === undefined || uids.length !== 4 || groups === undefined) return undefined;
  return { effectiveUid: uids[1]!, groups };
}
