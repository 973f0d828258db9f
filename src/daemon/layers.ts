// Which confinement layers this host offers, compared with what the config demands. Fails
// closed: a 'required' layer that is missing stops start-up with a message naming it and why.
// Unsafe mode (--unsafe, or a daemon that is not root) applies rlimits only and says so loudly.
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import type { native } from '../native.js';
import { parseAccounts, readAccounts } from './accounts.js';
import { CgroupTree } from './cgroups.js';
import type { DaemonConfig, LayerMode, LayerName } from './config.js';
import type { Logger } from './log.js';
import { DISK_BYTES_PER_INODE, mountPoints, prepareRunBase, type RunDiskControl } from '../run/rundir.js';
import { slotUsers } from './slots.js';

type Addon = ReturnType<typeof native>;

const APPARMOR_DIR = '/sys/kernel/security/apparmor';

/** Layer name -> human-readable state, logged at start and returned by the status op. */
export type LayerReport = Record<string, string>;

export interface Layers {
  /** No confinement except rlimits: results say confinement 'none'. */
  unsafe: boolean;
  uid: boolean;
  rlimits: boolean;
  landlock: boolean;
  landlockAbi: number;
  seccomp: boolean;
  netns: boolean;
  /** A mount namespace in which host socket directories (/run, /tmp, ...) are empty. */
  mntns: boolean;
  apparmor: boolean;
  /** Per-run cgroup v2 leaves (absent: off). */
  cgroups?: boolean;
  /** Where the runs' cgroups live (when cgroups is active). */
  cgroupTree?: CgroupTree;
  /**
   * Empty network namespaces, one per slot (index = slot index), each joined only by that slot's
   * runs (when netns is active). Abstract Unix socket names live in the network namespace, so
   * runs in one shared namespace could see each other's names.
   */
  netnsFds?: number[];
  /** The daemon's one mount namespace with HIDDEN_DIRS covered, joined by every run (when mntns is active). */
  mntnsFd?: number;
  /** Each run directory is a tmpfs of the run's DISK size (absent: plain directories). */
  disk: boolean;
  runDisk?: RunDiskControl;
  /** The daemon bind-mounted runBase onto itself to share it: unmounted again at close. */
  runBaseBound?: string;
  /**
   * How a run's processes are killed. 'uid' sends SIGKILL to every process of the slot's uid,
   * which reaches setsid()'d descendants; 'process-group' (no uid layer) reaches only the run's
   * own session and is reported as weaker.
   */
  kill: 'uid' | 'process-group';
  report: LayerReport;
  /** What each result's `confinement` says. */
  confinement: string[] | 'none';
}

export class LayerError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LayerError';
  }
}

export interface DetectOptions {
  addon: Addon;
  log: Logger;
  unsafe: boolean;
  /** Defaults to process.getuid() === 0. */
  isRoot?: boolean;
  /** Defaults to reading /etc/passwd. */
  passwd?: string;
  /** Defaults to CgroupTree.open on this host (tests replace it). */
  openCgroups?: (memoryMax: number) => CgroupTree;
}

interface Probe {
  available: boolean;
  /** Why the layer is missing, or a detail of the active layer ("ABI 7"). */
  detail?: string;
}

export function detectLayers(config: DaemonConfig, options: DetectOptions): Layers {
  const isRoot = options.isRoot ?? process.getuid?.() === 0;
  if (options.unsafe || !isRoot) {
    return unsafeLayers(config, options.unsafe ? '--unsafe was given' : 'the daemon is not running as root', options.log);
  }

  const report: LayerReport = {};
  const modes = config.layers;
  const decide = (name: LayerName, probe: () => Probe): boolean => {
    const mode: LayerMode = modes[name];
    if (mode === 'off') {
      report[name] = 'off';
      return false;
    }
    let result: Probe;
    try {
      result = probe();
    } catch (err) {
      // A LayerError is a misconfiguration that no layer mode may wave through.
      if (err instanceof LayerError) throw err;
      result = { available: false, detail: (err as Error).message };
    }
    if (result.available) {
      report[name] = result.detail ? `active (${result.detail})` : 'active';
      return true;
    }
    if (mode === 'required') {
      throw new LayerError(
        `confinement layer "${name}" is required but unavailable: ${result.detail ?? 'not supported'}. ` +
          `Fix the host, or set layers.${name} to "auto" or "off" in the config to run without it.`,
      );
    }
    report[name] = `absent (auto): ${result.detail ?? 'not supported'}`;
    return false;
  };

  const uid = decide('uid', () => probeSlotUids(config, options.passwd));
  if (!uid) {
    // Without the uid drop the sandbox keeps root and every capability of the daemon: only the
    // other layers stand between it and the host. Worth saying at the top of the journal.
    options.log.warn(
      'THE UID LAYER IS OFF: sandboxed code runs AS ROOT with the daemon\'s capabilities, confined only by ' +
        'the remaining layers. Use this for layer tests only; --unsafe is the development mode.',
      { layer: 'uid' },
    );
  }
  const rlimits = decide('rlimits', () => ({ available: true }));
  let landlockAbi = 0;
  const landlock = decide('landlock', () => {
    landlockAbi = options.addon.landlockAbi();
    return landlockAbi > 0
      ? { available: true, detail: `ABI ${landlockAbi}` }
      : { available: false, detail: 'the kernel has no Landlock (or it is disabled)' };
  });
  const seccomp = decide('seccomp', () =>
    options.addon.seccompSupported()
      ? { available: true }
      : { available: false, detail: 'the kernel does not support seccomp filters' },
  );
  const apparmor = decide('apparmor', () => probeAppArmor(config.apparmorProfile));
  // Creates <cgroup>/codejail (directories only, nothing a failed start-up would leak).
  let cgroupTree: CgroupTree | undefined;
  const cgroups = decide('cgroups', () => {
    cgroupTree = (options.openCgroups ?? ((memoryMax) => CgroupTree.open({ memoryMax })))(config.cgroupMemoryMax);
    return { available: true, detail: cgroupTree.root };
  });
  // Before the mount namespace: its copy of runBase must already be the shared mount whose run
  // disks propagate into it.
  let runDisk: RunDiskControl | undefined;
  let runBaseBound: string | undefined;
  const disk = decide('disk', () => {
    prepareRunBase(config.runBase);
    // Mount points are listed by their real paths.
    const runBase = realpathSync(config.runBase);
    const bindFirst = !mountPoints().includes(runBase);
    options.addon.shareRunBase(runBase, bindFirst);
    if (bindFirst) runBaseBound = runBase;
    const { addon } = options;
    runDisk = { mount: (dir, size) => addon.mountRunDisk(dir, size), unmount: (dir) => addon.unmountRunDisk(dir) };
    return { available: true, detail: `a tmpfs per run directory (DISK bytes, one inode per ${DISK_BYTES_PER_INODE} bytes, noexec)` };
  });
  // Last, because these probes create something (fds the daemon keeps): no later check can fail
  // start-up and leak them.
  let mntnsFd: number | undefined;
  const mntns = decide('mntns', () => {
    const { hide, kept } = hiddenDirs(config.runBase);
    mntnsFd = options.addon.createNamespace('mnt', hide);
    return {
      available: true,
      detail: `one shared namespace; empty: ${hide.join(' ')}` + (kept.length ? `; not hidden (holds runBase): ${kept.join(' ')}` : ''),
    };
  });
  let netnsFds: number[] | undefined;
  let netns: boolean;
  try {
    netns = decide('netns', () => {
      netnsFds = createNetnsPerSlot(options.addon, config.slots.count);
      return { available: true, detail: `one empty namespace per slot, ${netnsFds.length} in all` };
    });
  } catch (err) {
    if (mntnsFd !== undefined) options.addon.closeFd(mntnsFd);
    throw err;
  }

  const active = { uid, rlimits, landlock, seccomp, netns, mntns, apparmor, cgroups, disk };
  const names = Object.keys(active) as LayerName[];
  const ordered: LayerReport = {};
  for (const name of names) ordered[name] = report[name]!;
  ordered.kill =
    (uid ? 'uid sweep' : cgroups ? 'cgroup.kill' : 'process group only (no uid layer: setsid() escapes it)') +
    (uid && cgroups ? ' + cgroup.kill' : '');
  return {
    unsafe: false,
    ...active,
    landlockAbi,
    cgroupTree,
    netnsFds,
    mntnsFd,
    runDisk,
    runBaseBound,
    kill: uid ? 'uid' : 'process-group',
    report: ordered,
    confinement: names.filter((name) => active[name]),
  };
}

/**
 * One empty network namespace per slot. Abstract Unix socket names are per network namespace:
 * concurrent runs sharing one could signal each other (a name one run holds makes the other's
 * bind() fail with EADDRINUSE). A slot's runs follow one another and share its namespace. Made
 * at start, about a millisecond and 250 kB of kernel memory each (4096 slots: some 4 s and 1 GB);
 * on failure the ones made so far are closed.
 */
function createNetnsPerSlot(addon: Addon, count: number): number[] {
  const fds: number[] = [];
  try {
    for (let i = 0; i < count; i++) fds.push(addon.createNamespace('net'));
  } catch (err) {
    for (const fd of fds) addon.closeFd(fd);
    throw err;
  }
  return fds;
}

/**
 * Where host services keep their Unix sockets (D-Bus, journald's /dev/log, nscd, X11, user
 * sessions): empty in the sandbox's mount namespace, because Landlock (ABI <= 7) does not
 * mediate connect() on a pathname socket. Sandboxes are never granted anything beneath these
 * anyway (interpreter.ts refuses such grants).
 */
export const HIDDEN_DIRS = ['/run', '/tmp', '/var/tmp', '/dev/shm', '/home', '/root'];

/** HIDDEN_DIRS minus any that holds the run base (the sandbox must reach its run directory). */
export function hiddenDirs(runBase: string): { hide: string[]; kept: string[] } {
  const holdsRunBase = (dir: string) => runBase === dir || runBase.startsWith(`${dir}/`);
  return { hide: HIDDEN_DIRS.filter((d) => !holdsRunBase(d)), kept: HIDDEN_DIRS.filter(holdsRunBase) };
}

function unsafeLayers(config: DaemonConfig, reason: string, log: Logger): Layers {
  const report: LayerReport = {};
  for (const name of Object.keys(config.layers) as LayerName[]) report[name] = `off (unsafe: ${reason})`;
  const rlimits = config.layers.rlimits !== 'off';
  report.rlimits = rlimits ? 'active' : 'off';
  report.kill = 'process group only (unsafe)';
  log.warn(
    `UNSAFE MODE: ${reason}. Code runs WITHOUT confinement (no uid drop, Landlock, seccomp, ` +
      'network namespace or AppArmor), only rlimits. Never expose this daemon to untrusted code.',
    { unsafe: true, reason },
  );
  return {
    unsafe: true,
    uid: false,
    rlimits,
    landlock: false,
    landlockAbi: 0,
    seccomp: false,
    netns: false,
    mntns: false,
    apparmor: false,
    disk: false,
    kill: 'process-group',
    report,
    confinement: 'none',
  };
}

/**
 * The daemon kills every process of a slot's uid after each run, and the sandbox can touch
 * whatever that uid owns: a slot uid that belongs to a real account is a hard error, whatever the
 * layer mode says. Its own accounts are codejail-<uid>, or codejail-s<i> for slot i as earlier
 * setups named them. Slot uids without a passwd entry work (the kernel needs only the number).
 */
function probeSlotUids(config: DaemonConfig, passwdText?: string): Probe {
  const owners = (passwdText !== undefined ? parseAccounts(passwdText) : readAccounts('/etc/passwd')).byId;
  let missing = 0;
  for (const { uid, user, legacyUser } of slotUsers(config.slots)) {
    const owner = owners.get(uid);
    if (owner === undefined) missing++;
    else if (owner !== user && owner !== legacyUser) {
      throw new LayerError(
        `slot uid ${uid} belongs to the account "${owner}", not "${user}": the daemon would kill its ` +
          'processes and share its files with sandboxes. Choose another slots.firstUid.',
      );
    }
  }
  const detail =
    `${config.slots.count} slots from uid ${config.slots.firstUid}` + (missing ? `; ${missing} have no passwd entry, see codejail setup` : '');
  return { available: true, detail };
}

function probeAppArmor(profile: string): Probe {
  if (!existsSync(APPARMOR_DIR)) return { available: false, detail: `${APPARMOR_DIR} does not exist (AppArmor is not enabled in this kernel)` };
  let profiles: string;
  try {
    profiles = readFileSync(`${APPARMOR_DIR}/profiles`, 'utf8');
  } catch (err) {
    return { available: false, detail: `cannot read ${APPARMOR_DIR}/profiles: ${(err as Error).message}` };
  }
  // Lines look like "codejail-sandbox (enforce)". A profile in complain mode only logs.
  const line = profiles.split('\n').find((l) => l.replace(/ \([a-z]+\)$/, '') === profile);
  if (!line) {
    return { available: false, detail: `profile "${profile}" is not loaded (codejail setup renders, installs and loads it)` };
  }
  if (!line.endsWith('(enforce)')) return { available: false, detail: `profile "${profile}" is loaded but not enforcing: ${line}` };
  return { available: true, detail: `profile ${profile}` };
}
