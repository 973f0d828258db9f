// What the soak reads from outside the daemon, as root, from /proc: its RSS and fds, its warm
// templates, the processes of its slot uids, the run directories and the mounts under its run
// base. And the two clocks the suite keeps: an event-loop stall seen from a client (a cheap
// request's latency while the load runs) and waiting for a state instead of sleeping for it.
import fs from 'node:fs';
import { Client } from '../../src/client/index.js';
import type { TestDaemon } from '../helpers/daemon.js';
import { runBaseLeftovers } from '../helpers/run_base.js';

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

function readProc(pid: number | 'self', file: string): string | null {
  try {
    return fs.readFileSync(`/proc/${pid}/${file}`, 'utf8');
  } catch {
    return null;
  }
}

export function rssKb(pid: number): number | null {
  const m = readProc(pid, 'status')?.match(/^VmRSS:\s+(\d+)/m);
  return m ? Number(m[1]) : null;
}

/**
 * Where a process's resident memory is, in kB, for a failed bound to say: glibc's main heap
 * ([heap]), other anonymous memory (V8's heap, the other arenas, large buffers), files.
 */
export function rssWhere(pid: number): string {
  const smaps = readProc(pid, 'smaps');
  if (!smaps) return 'gone';
  const kb: Record<string, number> = { heap: 0, anon: 0, file: 0 };
  let kind = 'anon';
  for (const line of smaps.split('\n')) {
    const mapping = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (mapping) {
      const name = mapping[1]!;
      kind = name === '[heap]' ? 'heap' : name.startsWith('/') ? 'file' : 'anon';
      continue;
    }
    const rss = /^Rss:\s+(\d+) kB/.exec(line);
    if (rss) kb[kind]! += Number(rss[1]);
  }
  return `glibc heap ${kb.heap} kB, other anonymous ${kb.anon} kB, files ${kb.file} kB`;
}

/**
 * RSS read for 2 s once idle, its median: one read is at the mercy of the collector. Serve and
 * the daemon give memory back once idle for a second, at most one collection per 5 s (their idle
 * collectors), so the reads start 7 s after the call: an RSS taken before that collection and
 * one taken after it are not comparable.
 */
export async function idleRss(pid: number): Promise<number> {
  await sleep(7000);
  const reads: number[] = [];
  for (let i = 0; i < 10; i++) {
    reads.push(rssKb(pid) ?? 0);
    await sleep(200);
  }
  return percentile(reads, 50);
}

/** The highest RSS of `pid` while `work` runs (read every 50 ms), and how long it ran. */
export async function peakRssDuring(pid: number, work: Promise<unknown>): Promise<{ peakKb: number; ms: number }> {
  const t = performance.now();
  let peakKb = rssKb(pid) ?? 0;
  const timer = setInterval(() => (peakKb = Math.max(peakKb, rssKb(pid) ?? 0)), 50);
  try {
    await work;
  } finally {
    clearInterval(timer);
  }
  return { peakKb: Math.max(peakKb, rssKb(pid) ?? 0), ms: Math.round(performance.now() - t) };
}

export function fdCount(pid: number): number | null {
  try {
    return fs.readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return null;
  }
}

function allPids(): number[] {
  return fs
    .readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .map(Number);
}

function parentOf(pid: number): number | null {
  const stat = readProc(pid, 'stat');
  if (!stat) return null;
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
}

/** Live warm templates of the daemon `daemonPid`: its children running warm_template.py. */
export function templatePids(daemonPid: number): number[] {
  return allPids().filter((pid) => {
    if (parentOf(pid) !== daemonPid) return false;
    const state = readProc(pid, 'status')?.match(/^State:\s+(\S)/m)?.[1];
    return state !== 'Z' && (readProc(pid, 'cmdline') ?? '').includes('warm_template.py');
  });
}

export interface SlotRange {
  firstUid: number;
  count: number;
}

/** The daemon's slot uids, read from the config file it was started with. */
export function slotRangeOf(daemon: TestDaemon): SlotRange {
  const args = daemon.process.spawnargs;
  const config = JSON.parse(fs.readFileSync(args[args.indexOf('--config') + 1]!, 'utf8')) as { slots: SlotRange };
  return config.slots;
}

/**
 * The runs the daemon holds ahead now (warm.holdAhead: README, "Held runs"), from its status: a
 * held run's process, directory and mounts stay between runs by design, so they are not
 * leftovers. None on the other paths.
 */
export interface HeldNow {
  pids: number[];
  dirs: string[];
}

const NONE_HELD: HeldNow = { pids: [], dirs: [] };

export async function heldNow(socketPath: string): Promise<HeldNow> {
  const client = new Client({ socketPath });
  try {
    const runs = (await client.status()).held?.runs ?? [];
    return { pids: runs.flatMap((run) => (run.pid === undefined ? [] : [run.pid])), dirs: runs.map((run) => run.dir) };
  } finally {
    await client.close();
  }
}

/**
 * The held pass (warm.holdAhead): a SIGHUP replaces the templates, whose held runs are discarded,
 * and no run is held again until a run ends. Resolves once none is listed. Taken before the
 * daemon's fds are counted, which would count a held run's pipes and pidfd; a no-op when none is
 * held (the other paths).
 */
export async function dropHeldRuns(socketPath: string, daemonPid: number): Promise<void> {
  if ((await heldNow(socketPath)).dirs.length === 0) return;
  process.kill(daemonPid, 'SIGHUP');
  await settle(async () => (await heldNow(socketPath)).dirs.length, (n) => n === 0, 20_000);
}

/**
 * Every process with a real, effective or saved uid in the slot range (a held run's child aside):
 * what a run left behind.
 */
export function slotProcesses(slots: SlotRange, held: HeldNow = NONE_HELD): Array<{ pid: number; uid: number; state: string; cmd: string }> {
  const out = [];
  for (const pid of allPids()) {
    if (held.pids.includes(pid)) continue;
    const status = readProc(pid, 'status');
    const m = status?.match(/^Uid:\s+(\d+)\s+(\d+)\s+(\d+)/m);
    if (!status || !m) continue;
    const uids = [m[1], m[2], m[3]].map(Number);
    const uid = uids.find((u) => u >= slots.firstUid && u < slots.firstUid + slots.count);
    if (uid === undefined) continue;
    const state = status.match(/^State:\s+(\S)/m)?.[1] ?? '?';
    const cmd = (readProc(pid, 'cmdline') ?? '').replace(/\0/g, ' ').slice(0, 80);
    out.push({ pid, uid, state, cmd });
  }
  return out;
}

/** Run directories left under the run base: the slots' empty mount points aside (test/helpers/run_base.ts). */
export function runDirEntries(runBase: string, slots?: number, held: HeldNow = NONE_HELD): string[] {
  return runBaseLeftovers(runBase, slots, held.dirs).map((name) => name.toString('latin1'));
}

/** Mounts below the run base (a run's disk or bind mounts), seen from `pid`'s mount namespace. */
export function mountsUnder(runBase: string, pid: number | 'self', held: HeldNow = NONE_HELD): number {
  const info = readProc(pid, 'mountinfo');
  if (info === null) return 0;
  // A held run's directory is mounted once (its disk); a second mount on it, or one below it, counts.
  const heldMounted = new Set<string>();
  return info.split('\n').filter((line) => {
    const point = line.split(' ')[4];
    if (!point?.startsWith(`${runBase}/`)) return false;
    const dir = point.slice(runBase.length + 1);
    if (held.dirs.includes(dir) && !heldMounted.has(dir)) {
      heldMounted.add(dir);
      return false;
    }
    return true;
  }).length;
}

/**
 * Polls `probe` until `done` holds for its value or `ms` pass; returns the last value. State is
 * awaited, never slept for: clean-up (sweeps, run directories, a template's replacement) ends
 * after the replies.
 */
export async function settle<T>(probe: () => T | Promise<T>, done: (value: T) => boolean, ms: number, every = 100): Promise<T> {
  const until = Date.now() + ms;
  let value = await probe();
  while (!done(value) && Date.now() < until) {
    await sleep(every);
    value = await probe();
  }
  return value;
}

/**
 * A value once it has stopped moving: `probe` read every `every` ms until `stableFor` equal
 * reads in a row (or `ms` pass). Baselines (RSS, fds) are taken like this, when idle.
 */
export async function stableValue(probe: () => number | null, ms = 15_000, every = 200, stableFor = 5): Promise<number | null> {
  const until = Date.now() + ms;
  let last = probe();
  let same = 0;
  while (same < stableFor && Date.now() < until) {
    await sleep(every);
    const now = probe();
    same = now === last ? same + 1 : 0;
    last = now;
  }
  return last;
}

/**
 * The event loop as a caller sees it: `ping` (a status request, a GET) issued every `everyMs`
 * while the load runs; its longest latency is the longest stall a caller waited through. A ping
 * that fails (the daemon was being restarted) is counted apart, not as a stall.
 */
export class StallMonitor {
  private readonly latencies: number[] = [];
  /** The longest ping of each phase the load went through, so that a stall has a cause. */
  private readonly maxByPhase: Record<string, number> = {};
  private phase = 'load';
  failures = 0;
  private running = true;
  private paused = false;
  /** Bumped by each pause: a ping that spans a pause was cut by it, not lost. */
  private pauses = 0;
  private readonly loop: Promise<void>;
  constructor(ping: () => Promise<unknown>, everyMs = 100, timeoutMs = 30_000) {
    this.loop = (async () => {
      while (this.running) {
        if (!this.paused) {
          const t = performance.now();
          const pauses = this.pauses;
          try {
            await withTimeout(ping(), timeoutMs);
            const ms = performance.now() - t;
            if (pauses === this.pauses) {
              this.latencies.push(ms);
              this.maxByPhase[this.phase] = Math.round(Math.max(this.maxByPhase[this.phase] ?? 0, ms));
            }
          } catch {
            if (pauses === this.pauses && !this.paused) this.failures++;
          }
        }
        await sleep(everyMs);
      }
    })();
  }
  /** Names what the load is doing from now on (a fault, a fuzz), for maxByPhase. */
  enter(phase: string): void {
    this.phase = phase;
  }
  /** Stops counting while the thing pinged is down on purpose (a daemon restart). */
  pause(paused: boolean): void {
    if (paused) this.pauses++;
    this.paused = paused;
  }
  async stop(): Promise<{ n: number; p50: number; p99: number; max: number; failures: number; maxByPhase: Record<string, number> }> {
    this.running = false;
    await this.loop;
    const round = (ms: number) => Math.round(ms * 10) / 10;
    return {
      n: this.latencies.length,
      p50: round(percentile(this.latencies, 50)),
      p99: round(percentile(this.latencies, 99)),
      max: round(Math.max(0, ...this.latencies)),
      failures: this.failures,
      maxByPhase: this.maxByPhase,
    };
  }
}

export function percentile(values: number[], p: number): number {
  if (!values.length) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

export class Hung extends Error {
  constructor(ms: number) {
    super(`no answer within ${ms} ms`);
    this.name = 'Hung';
  }
}

export function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Hung(ms)), ms);
    }),
  ]);
}
