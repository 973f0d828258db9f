// Typed face of the C++ addon (native/). Every privileged act on processes goes through here:
// the daemon never forks, changes credentials, mounts, enters a namespace or kills by uid by
// itself. Root file-system work (run directories, src/run/rundir.ts) and cgroupfs writes
// (src/layers/cgroups.ts) are plain TypeScript; README ("What runs as root") says why each is safe.
import { createRequire } from 'node:module';
import path from 'node:path';
import { PACKAGE_ROOT } from './package.js';

/** Resource limits the child sets on itself, [soft, hard]. Omitted means inherited. */
export interface NativeRlimits {
  cpu?: [number, number];
  as?: [number, number];
  fsize?: [number, number];
  nproc?: [number, number];
  nofile?: [number, number];
  core?: [number, number];
  /** Bytes of POSIX message queues the real uid may hold (RLIMIT_MSGQUEUE). */
  msgqueue?: [number, number];
  /** Bytes of memory a process may lock, unswappable (RLIMIT_MEMLOCK). */
  memlock?: [number, number];
  /** Signals queued, and POSIX timers, at once for the real uid (RLIMIT_SIGPENDING). */
  sigpending?: [number, number];
  /** Bytes of the main thread's stack (RLIMIT_STACK). */
  stack?: [number, number];
}

/** Landlock policy for one run. Paths that do not exist are skipped. */
export interface NativeLandlock {
  /** Files or directories that may be read and executed (interpreter, ELF loader). */
  execute: string[];
  /** Files or directories that may be read (read_file, read_dir). */
  read: string[];
  /** Directories where everything is allowed except execute (the run directory). */
  readWrite: string[];
  /** Files that may be read and written but not created or removed (/dev/null). */
  readWriteFiles: string[];
  /** ABI >= 4: handle TCP bind/connect so that both are denied. */
  denyTcp: boolean;
  /** ABI >= 6: scope abstract Unix sockets and signals to the sandbox. */
  scope: boolean;
}

/**
 * A run's plan: what its child applies to itself between clone and execve (or, warm, between fork
 * and the run's code). Each field but file, argv, env, landlock, apparmorProfile, resultChannel and
 * channelFd (which the addon prepares into more) is a row of CJ_PLAN_FIELDS in native/plan.h, read
 * by its kind; the addon refuses a key it has no row for.
 */
export interface NativePlan {
  /** Absolute path of the program to execve. */
  file: string;
  argv: string[];
  /** "NAME=value" strings: the whole environment of the child. */
  env: string[];
  /** Absolute working directory. */
  cwd: string;
  /** Drop to this uid/gid (setgroups([gid]), setresgid, setresuid). Needs root. */
  uid?: number;
  gid?: number;
  rlimits?: NativeRlimits;
  /** fd of a network namespace to join with setns (a pre-made, empty one). */
  netnsFd?: number;
  /** fd of a mount namespace to join with setns (resets root and cwd; the plan's cwd applies after). */
  mntnsFd?: number;
  /** fd of a cgroup.procs file to write the child's pid into (cgroup v2 leaf or v1). */
  cgroupProcsFds?: number[];
  landlock?: NativeLandlock;
  /** Install the built-in seccomp-bpf policy (built once, before any fork). */
  seccomp?: boolean;
  /** AppArmor profile to switch to at execve ("exec <profile>"), or stack on it when confined. */
  apparmorProfile?: string;
  /** prctl(PR_SET_NO_NEW_PRIVS). Forced on when landlock or seccomp is set. */
  noNewPrivs?: boolean;
  /** Give the child a fourth pipe as fd 3 (a result channel apart from stdout). */
  resultChannel?: boolean;
  /** SIGKILL the child if the daemon dies. */
  parentDeathSignal?: boolean;
  /** This fd of ours becomes the child's fd 3 (a warm template's channel); not with resultChannel. */
  channelFd?: number;
  /**
   * Written to the child's /proc/self/oom_score_adj (-1000..1000) first thing, while it is still
   * root: its children inherit it, and as root the value is also its floor (it cannot lower it).
   * Unset: the child keeps ours.
   */
  oomScoreAdj?: number;
}

/** The daemon's ends of a warm run's pipes (sendWarmRun). */
export interface NativeWarmEnds {
  stdin: number;
  stdout: number;
  stderr: number;
  result?: number;
}

export interface NativeChild {
  pid: number;
  pidfd: number;
  /** Parent ends of the pipes: write to stdin, read stdout and stderr. */
  stdin: number;
  stdout: number;
  stderr: number;
  /** Read end of the child's fd 3, when resultChannel was asked for. */
  result?: number;
  /**
   * The daemon's peak RSS (KiB) just after the child's execve. The child is cloned with CLONE_VM
   * and the kernel's exec_mmap() folds the peak RSS of the memory it leaves, the daemon's, into
   * the child's maxrss: an exit maxRssKb at or below this may be the daemon's figure, not the run's.
   */
  inheritedRssKb: number;
}

export interface NativeExit {
  /** Exit code, or null when killed by a signal. */
  code: number | null;
  signal: number | null;
  /** CPU time of the child (and its reaped descendants) in microseconds. */
  userUs: number;
  systemUs: number;
  /**
   * wait4's ru_maxrss in KiB: the peak RSS of the process and its reaped descendants, but never
   * below the daemon's peak at the exec (see NativeChild.inheritedRssKb).
   */
  maxRssKb: number;
}

/** A failed set-up step in the child, reported through the CLOEXEC error pipe. */
export interface NativeSetupError extends Error {
  step: string;
  errno: number;
  code: string;
}

/** A run disk's tmpfs options. */
export interface NativeRunDisk {
  sizeBytes: number;
  inodes: number;
  /** Mode of the tmpfs root. */
  mode: number;
  uid: number;
  gid: number;
}

export interface NativePeerCred {
  pid: number;
  uid: number;
  gid: number;
}

/** What a socket fd is, as getsockopt and getsockname tell. */
export interface NativeSocketInfo {
  /** SO_DOMAIN: the address family (AF_UNIX is 1). */
  domain: number;
  /** SO_TYPE: SOCK_STREAM is 1, SOCK_DGRAM 2, SOCK_SEQPACKET 5. */
  type: number;
  /** SO_ACCEPTCONN: listen() was called on it. */
  listening: boolean;
  /**
   * A Unix socket's bound path; an abstract name as /proc/net/unix lists it, each NUL (the first
   * included) written '@'. Absent when unnamed or not Unix.
   */
  path?: string;
}

interface Addon {
  spawn(plan: NativePlan): NativeChild;
  watchExit(pidfd: number, pid: number, onExit: (exit: NativeExit) => void): void;
  pidfdSignal(pidfd: number, signal: number): boolean;
  /**
   * SIGKILLs every process of `uid` and returns once none is left (zombies reaped), so the slot
   * can be reused. Throws with code EBUSY if some remain after about a second. Blocks meanwhile:
   * for tools and tests; the daemon uses killUidRound.
   */
  killUid(uid: number): number;
  /**
   * One round, which never waits: reaps the zombie children of uids [reapFirstUid, reapFirstUid +
   * reapCount) (the runs' orphans; other children, like libuv's, are left alone), SIGKILLs every
   * process of `uid`, and probes. true: none is left; false: some remain (dying, or zombies whose
   * parent has not reaped them yet): try again later. Throws on anything else.
   */
  killUidRound(uid: number, reapFirstUid: number, reapCount: number): boolean;
  /** killUidRound on the thread pool: the event loop does not wait for the killer helper. */
  killUidRoundAsync(uid: number, reapFirstUid: number, reapCount: number): Promise<boolean>;
  /**
   * Arms a REALTIME deadline on the addon's deadline thread: after `ms`, unless the process has
   * exited, it is SIGKILLed through (a dup of) `pidfd`, and then its process group `pgid`. Needs
   * nothing of the event loop. Returns an id for disarmDeadline.
   */
  armDeadline(pidfd: number, pgid: number, ms: number): number;
  /** Disarms a deadline and closes its fds; true when it fired (the process was killed by it). */
  disarmDeadline(id: number): boolean;
  /** Deadlines armed and not yet disarmed (each holds two fds). */
  armedDeadlines(): number;
  /** PR_SET_CHILD_SUBREAPER: runs' orphans come back to us to be reaped, not to init. */
  becomeSubreaper(): void;
  closeFd(fd: number): void;
  landlockAbi(): number;
  /** malloc_trim(0): memory glibc holds free goes back to the system; true when some did. */
  mallocTrim(): boolean;
  seccompSupported(): boolean;
  /**
   * Makes a namespace on a throwaway thread and returns an fd of it. 'mnt': a private copy of the
   * daemon's mount namespace with each existing directory of `hide` covered by an empty tmpfs
   * no entry can be added to (mode 0555, one inode: EACCES for a slot uid, ENOSPC for root).
   */
  createNamespace(kind: 'net' | 'mnt', hide?: string[]): number;
  peerCred(fd: number): NativePeerCred;
  /** Throws with code ENOTSOCK for an fd that is not a socket, EBADF for one not open. */
  socketInfo(fd: number): NativeSocketInfo;
  notify(socketPath: string, message: string): void;
  /**
   * Makes `runBase` a shared mount (bind-mounting it onto itself first when `bindFirst`), so
   * that run disks mounted beneath it propagate into the runs' slave mount namespace.
   */
  shareRunBase(runBase: string, bindFirst: boolean): void;
  /** Mounts a fresh tmpfs (nosuid, nodev, noexec) on `dir`: a run's disk. 0 means unlimited. */
  mountRunDisk(dir: string, options: NativeRunDisk): void;
  /**
   * Writes files[i] = (names[i], data[i], modes[i]) beneath `dir`, in order, each created O_EXCL,
   * owned by `owner` and given its mode. Names are resolved by openat2 (or, where it is missing
   * or filtered, or with `forceWalk`, by a walk of the same strength): never through a symlink,
   * never out of `dir` or across a mount. Every parent must exist. Stops at the first failure and
   * throws it with its errno `code`, its `step` (open, write, fchown, fchmod, close) and the
   * failing file's `index` (-1: `dir` itself); the files before it stay written. Returns how many
   * it wrote.
   */
  writeRunFiles(dir: string, names: string[], data: Uint8Array[], modes: number[], owner: { uid: number; gid: number }, forceWalk?: boolean): number;
  /**
   * umount2(MNT_DETACH | UMOUNT_NOFOLLOW) on the thread pool (freeing a full tmpfs takes ms);
   * rejects with the errno code (EINVAL: not a mount point).
   */
  unmountRunDisk(dir: string): Promise<void>;
  /** A SOCK_SEQPACKET socket pair (close-on-exec): [daemon's end, the template's end]. */
  channelPair(): [number, number];
  /**
   * Reads a channel on the event loop: each message with the fds it carried (close-on-exec, now
   * the caller's), `data` null when a message was cut short. `onEnd` once at end of file (null) or
   * on a socket error (its text). Returns an id for unwatchChannel.
   */
  watchChannel(fd: number, onMessage: (data: Buffer | null, fds: number[]) => void, onEnd: (error: string | null) => void): number;
  unwatchChannel(id: number): void;
  /** Sends one message without fds; throws with code EAGAIN when the socket buffer is full. */
  channelSend(fd: number, data: Buffer): void;
  /**
   * Prepares `plan` for a warm child (native/prepare.cc, as spawn does for a cold one) and sends
   * it (native/plan.h) to a template with the fds it names; returns the daemon's pipe ends. Throws like spawn for a plan that cannot be made, and
   * with step 'send' when sending fails (code EAGAIN: the template is behind). `held`: a run
   * started ahead of its request (HLD1), whose child waits on its stdin for its go record.
   */
  sendWarmRun(fd: number, token: number, plan: NativePlan, tail: Buffer, held?: boolean): NativeWarmEnds;
  /** The name of a confinement step (cj_step_name); -1: "message" (a run the template could not read). */
  stepName(step: number): string;
  /** Whether the process of a pidfd has exited (it polls readable), without waiting. */
  pidfdExited(pidfd: number): boolean;
}

const require = createRequire(import.meta.url);
const root = PACKAGE_ROOT;

let addon: Addon | undefined;

/**
 * The warm templates' confinement library (libcodejail_warm.so: cj_warm_apply), built beside the
 * addon and shipped in the same directory: build/Release/codejail_warm.so, or in a prebuild
 * (scripts/prebuild.sh) tagged with the C library the addon's name carries
 * (codejail.napi.glibc.node, codejail_warm.glibc.so). scripts/install.mjs follows the same rule.
 */
export function warmLibraryPath(): string {
  const addonPath = require('node-gyp-build').resolve(root) as string;
  const libc = /\.(glibc|musl)\.node$/.exec(path.basename(addonPath))?.[1];
  return path.join(path.dirname(addonPath), libc ? `codejail_warm.${libc}.so` : 'codejail_warm.so');
}

/** Loads the addon once (prebuild or build/Release). Throws with a clear message when absent. */
export function native(): Addon {
  if (!addon) {
    try {
      addon = require('node-gyp-build')(root) as Addon;
    } catch (err) {
      throw new Error(
        `codejail: the native addon is not built (${(err as Error).message}); run "npm run build:native"`,
      );
    }
  }
  return addon;
}
