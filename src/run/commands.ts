// What a configured command needs to start inside Landlock. Discovered once at daemon start by
// running the interpreter unconfined (as root, with the same arguments runs get) and asking it
// (its kind's `discover`, src/kinds/), then turned into the read/execute part of the Landlock
// policy. Only what exists is granted, and never a directory that would expose the host (/, /etc,
// /tmp, /home, /proc, /usr/bin, ...).
import { closeSync, existsSync, openSync, readSync, realpathSync, statSync } from 'node:fs';
import path from 'node:path';
import { hiddenDirs } from './hidden_dirs.js';
import { kindNamed, type KindName } from '../kinds/index.js';
import type { NativeLandlock } from '../native.js';
import type { CommandConfig, DaemonConfig } from '../config/schema.js';
import { ConfigError } from '../config_error.js';
import type { Logger } from '../log.js';

/** A command ready to run: its executable and the fixed part of its Landlock policy. */
export interface CommandProfile {
  name: string;
  /** argv[0] as configured (what the program sees as its own name). */
  path: string;
  /** The resolved file execve() opens. */
  executable: string;
  args: string[];
  env: Record<string, string>;
  /** Granted to every run of this command; the run directory is added per run. */
  execute: string[];
  read: string[];
  /** Its kind (src/kinds/). */
  kind: KindName;
  /** Runs fork from a warm template (a kind that has one, unless the config turned it off). */
  warm: boolean;
  /** Modules the warm template imports. */
  preload: string[];
}

const ARCH_TRIPLETS: Partial<Record<NodeJS.Architecture, string>> = {
  x64: 'x86_64-linux-gnu',
  arm64: 'aarch64-linux-gnu',
};
const KNOWN_LOADERS: Partial<Record<NodeJS.Architecture, string[]>> = {
  x64: ['/lib64/ld-linux-x86-64.so.2', '/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2'],
  arm64: ['/lib/ld-linux-aarch64.so.1', '/lib/aarch64-linux-gnu/ld-linux-aarch64.so.1'],
};

/** Files every dynamically linked program reads at start (loader cache, C.UTF-8 locale, randomness). */
const RUNTIME_FILES = ['/etc/ld.so.cache', '/usr/lib/locale/C.utf8', '/usr/lib/locale/locale-archive', '/dev/urandom'];

/** A grant that equals or contains one of these would expose the host. */
const NEVER_ANCESTOR_OF = [
  '/etc', '/tmp', '/var/tmp', '/home', '/root', '/proc', '/sys', '/dev', '/run', '/boot',
  '/usr/bin', '/usr/sbin', '/usr/local/bin', '/var/lib',
];
/** Writable by users or private to them: nothing beneath is granted by discovery. */
const NEVER_BENEATH = ['/tmp', '/var/tmp', '/dev/shm', '/home', '/root', '/proc', '/sys', '/run'];

export function discoverCommands(config: DaemonConfig, log: Logger): Map<string, CommandProfile> {
  const profiles = new Map<string, CommandProfile>();
  for (const [name, command] of Object.entries(config.commands)) {
    profiles.set(name, discoverCommand(name, command, config.runBase, log));
  }
  return profiles;
}

export function discoverCommand(name: string, command: CommandConfig, runBase: string, log: Logger): CommandProfile {
  const where = `commands.${name}`;
  let executable: string;
  try {
    executable = realpathSync(command.path);
  } catch (err) {
    throw new ConfigError(`${where}.path: ${command.path} cannot be resolved (${(err as NodeJS.ErrnoException).code})`);
  }

  // Runs start the interpreter by the configured path (a venv's python finds pyvenv.cfg beside
  // it) and the resolved one: both must be where runs can reach, or every run would fail.
  const argv0 = path.join(realpathSync(path.dirname(path.resolve(command.path))), path.basename(command.path));
  for (const p of new Set([argv0, executable])) {
    const problem = reachProblem(p, runBase);
    if (problem) {
      throw new ConfigError(`${where}.path: ${command.path}${p !== command.path ? ` (${p})` : ''} ${problem}, so no run could start it: ${REACHABLE_HINT}`);
    }
  }

  const forbidden = (p: string) => grantProblem(p, runBase);
  for (const [key, list] of [['read', command.read], ['execute', command.execute]] as const) {
    for (const p of list) {
      // What is granted is the resolved path: /opt/x -> /etc must be refused as /etc.
      const real = realpathOrUndefined(p);
      const problem = forbidden(p) ?? (real === undefined ? undefined : forbidden(real));
      if (problem) throw new ConfigError(`${where}.${key}: ${p}${real && real !== p ? ` (${real})` : ''} ${problem}`);
    }
  }

  const read = new Set<string>();
  const execute = new Set<string>([executable]);
  const loader = elfInterpreter(executable) ?? KNOWN_LOADERS[process.arch]?.find((p) => existsSync(p));
  if (loader && existsSync(loader)) execute.add(realpathSync(loader));

  const triplet = ARCH_TRIPLETS[process.arch];
  const systemLibs = triplet ? [`/usr/lib/${triplet}`, `/lib/${triplet}`] : ['/usr/lib', '/lib'];
  for (const p of [...systemLibs, ...RUNTIME_FILES]) addExisting(read, p);

  const kind = kindNamed(command.kind);
  if (kind.discover) {
    const discovery = kind.discover(command, where);
    const discovered = [...discovery.read];
    if (discovery.dedicated) {
      const { path: dir, what } = discovery.dedicated;
      const real = realpathOrUndefined(dir) ?? dir;
      const problem = reachProblem(real, runBase);
      if (problem) throw new ConfigError(`${where}.path: its ${what} ${real} ${problem}, so no run could use it: ${REACHABLE_HINT}`);
      discovered.push(dir);
    }
    for (const p of discovered) {
      const real = realpathOrUndefined(p);
      if (!real) continue;
      const problem = forbidden(real);
      if (problem) {
        log.warn('not granting a path the interpreter reported', { command: name, path: real, reason: problem });
        continue;
      }
      read.add(real);
    }
  }

  for (const p of command.read) addExisting(read, p);
  for (const p of command.execute) addExisting(execute, p);
  for (const p of execute) read.delete(p);
  return {
    name,
    path: command.path,
    executable,
    args: command.args,
    env: command.env,
    kind: kind.name,
    warm: kind.template !== undefined && command.warm !== false,
    preload: command.preload ?? [],
    execute: [...execute],
    read: dropCovered([...read]),
  };
}

/** The whole Landlock policy of one run of `profile` in `runDir`. */
export function landlockPolicy(profile: CommandProfile, runDir: string): NativeLandlock {
  return {
    execute: profile.execute,
    read: profile.read,
    readWrite: [runDir],
    readWriteFiles: ['/dev/null'],
    denyTcp: true,
    scope: true,
  };
}

/**
 * The ELF interpreter (PT_INTERP) of a 64-bit little-endian executable, or undefined for anything
 * else (static binaries, scripts, other classes), in which case the caller tries known paths.
 */
export function elfInterpreter(file: string): string | undefined {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch {
    return undefined;
  }
  try {
    const header = Buffer.alloc(64);
    if (readSync(fd, header, 0, 64, 0) < 64) return undefined;
    const isElf64Le = header.readUInt32BE(0) === 0x7f454c46 && header[4] === 2 && header[5] === 1;
    if (!isElf64Le) return undefined;
    const phoff = Number(header.readBigUInt64LE(0x20));
    const phentsize = header.readUInt16LE(0x36);
    const phnum = header.readUInt16LE(0x38);
    if (phentsize < 56 || phnum > 256) return undefined;
    const table = Buffer.alloc(phentsize * phnum);
    if (readSync(fd, table, 0, table.length, phoff) < table.length) return undefined;
    for (let i = 0; i < phnum; i++) {
      const entry = i * phentsize;
      const PT_INTERP = 3;
      if (table.readUInt32LE(entry) !== PT_INTERP) continue;
      const offset = Number(table.readBigUInt64LE(entry + 8));
      const size = Number(table.readBigUInt64LE(entry + 32));
      if (size < 2 || size > 4096) return undefined;
      const name = Buffer.alloc(size);
      if (readSync(fd, name, 0, size, offset) < size) return undefined;
      return name.subarray(0, name.indexOf(0) >= 0 ? name.indexOf(0) : size).toString('utf8');
    }
    return undefined;
  } finally {
    closeSync(fd);
  }
}

/** Why granting `p` to sandboxes would be unsafe, or undefined when it is fine. */
export function grantProblem(p: string, runBase: string): string | undefined {
  const target = path.resolve(p);
  if (target === '/') return 'would grant the whole filesystem';
  for (const sensitive of [...NEVER_ANCESTOR_OF, runBase]) {
    if (isWithin(sensitive, target)) return `would grant ${sensitive}`;
  }
  for (const privateDir of [...NEVER_BENEATH, runBase]) {
    if (isWithin(target, privateDir)) return `is beneath ${privateDir}, which sandboxes must not read`;
  }
  return undefined;
}

const REACHABLE_HINT = 'put the interpreter or virtualenv where runs can reach it (beneath /opt or /usr/local, say, readable by all)';

/**
 * Why runs could not reach `p` (a resolved path), or undefined: it lies beneath a directory their
 * mount namespace shows empty (hidden_dirs.ts), or beneath one no sandbox is granted, or
 * behind a directory the slot users may not search (they own nothing on the way, so it is the
 * mode's bits for others that count).
 */
export function reachProblem(p: string, runBase: string): string | undefined {
  const target = path.resolve(p);
  const hidden = hiddenDirs(runBase).hide.find((dir) => isWithin(target, dir));
  if (hidden) return `is beneath ${hidden}, which the runs' mount namespace shows empty`;
  const never = [...NEVER_BENEATH, runBase].find((dir) => isWithin(target, dir));
  if (never) return `is beneath ${never}, which sandboxes are never granted`;
  for (let dir = path.dirname(target); ; dir = path.dirname(dir)) {
    const mode = statSync(dir, { throwIfNoEntry: false })?.mode;
    if (mode !== undefined && (mode & 0o001) === 0) {
      return `is beneath ${dir}, which the slot users may not enter (mode ${(mode & 0o7777).toString(8).padStart(4, '0')})`;
    }
    if (dir === '/') return undefined;
  }
}

/** True when `inner` is `outer` or beneath it. */
function isWithin(inner: string, outer: string): boolean {
  const rel = path.relative(outer, inner);
  return rel === '' || (rel !== '..' && !rel.startsWith('../') && !path.isAbsolute(rel));
}

/** Removes entries that another entry already covers (a file inside a granted directory). */
function dropCovered(paths: string[]): string[] {
  return paths.filter((p) => !paths.some((other) => other !== p && isWithin(p, other)));
}

function addExisting(into: Set<string>, p: string): void {
  const real = realpathOrUndefined(p);
  if (real) into.add(real);
}

function realpathOrUndefined(p: string): string | undefined {
  try {
    return realpathSync(p);
  } catch {
    return undefined;
  }
}
