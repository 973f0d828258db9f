// Local account tables (/etc/passwd, /etc/group), read directly: the daemon needs only fixed,
// local system accounts, and must not depend on NSS services being reachable at start.
import { readFileSync } from 'node:fs';

export interface AccountTable {
  byName: Map<string, number>;
  /** The first name listed for each id. */
  byId: Map<number, string>;
}

/** Parses passwd(5)/group(5) text: name:x:id:... */
export function parseAccounts(text: string): AccountTable {
  const byName = new Map<string, number>();
  const byId = new Map<number, string>();
  for (const line of text.split('\n')) {
    const [name, , idField] = line.split(':');
    if (!name || !idField || !/^\d+$/.test(idField)) continue;
    const id = Number(idField);
    byName.set(name, id);
    if (!byId.has(id)) byId.set(id, name);
  }
  return { byName, byId };
}

/** Reads a table; a missing file is an empty table. */
export function readAccounts(file: '/etc/passwd' | '/etc/group' | string): AccountTable {
  let text = '';
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  return parseAccounts(text);
}
