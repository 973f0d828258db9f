// Gives memory back once a long-lived process (`codejail serve`, the daemon) goes idle after
// holding a lot of it. V8 collects when
// allocating, so the garbage of a burst of large payloads (hundreds of MB) stayed resident for
// good in a service that then sat idle: nothing allocated, nothing collected. A full collection
// is asked for once nothing is held and the service has stayed so for a moment; it costs tens
// of milliseconds, paid only after a burst, when no request waits. The Buffers it frees are
// glibc's, which keeps most of that room (60-130 MB after a burst of 4-8 MiB bodies) until
// malloc_trim gives it back.
import fs from 'node:fs';
import v8 from 'node:v8';
import vm from 'node:vm';
import { native } from '../native.js';

let gc: (() => void) | undefined;

/** V8's full collection (`global.gc`), exposed once at first use. */
function collect(): void {
  if (!gc) {
    v8.setFlagsFromString('--expose-gc');
    gc = vm.runInNewContext('gc') as () => void;
  }
  gc();
}

/** malloc_trim through the addon; without the addon (not built) the collection alone. */
function trimMalloc(): void {
  try {
    native().mallocTrim();
  } catch {
    // Nothing to give back by this means.
  }
}

/** A full collection, then glibc's free room back to the system: for an idle moment only. */
export function collectAndTrim(): void {
  collect();
  trimMalloc();
}

/** The resident anonymous memory of this process, in bytes: not the file pages the kernel may drop. */
function residentAnonymous(): number {
  try {
    const kb = /^RssAnon:\s+(\d+) kB/m.exec(fs.readFileSync('/proc/self/status', 'latin1'));
    if (kb) return Number(kb[1]) * 1024;
  } catch {
    // No /proc: the whole resident set.
  }
  return process.memoryUsage.rss();
}

/** Full collections in a row that must leave the memory above its level before the level rises. */
const COLLECTIONS_BEFORE_THE_LEVEL_RISES = 3;

export interface IdleCollectorOptions {
  /** Held bytes past which an idle moment gets a collection. */
  thresholdBytes: number;
  /** The service's own memory (resident, less `buffered`) above its idle level past which an idle moment gets one as well. */
  growthBytes: number;
  /** How long nothing must have been held before the service is looked at. */
  idleMs: number;
  /**
   * The least time between two collections, and between the looks while callers have replies to
   * take; doubled, up to maxGapMs, after each collection that left the memory above its level
   * and after each such look, and back to this with new work or a collection that brought the
   * memory back to its level.
   */
  minGapMs: number;
  maxGapMs: number;
  /** Whether nothing is held now. */
  isIdle: () => boolean;
  /**
   * Bytes the service holds for its callers now (replies not yet taken): memory a collection
   * cannot give back, but that is not the service's own either, so it never raises the level.
   */
  buffered?: () => number;
  /** Told of each collection: the service's own memory before and after, the level and the next gap (for a debug log). */
  onCollect?: (memory: { ownBefore: number; ownAfter: number; idleLevel: number; nextGapMs: number }) => void;
  /** Told of each look that found the service idle and nothing to give back (for a debug log). */
  onLook?: (memory: { own: number; idleLevel: number }) => void;
  /** For tests: the clock, the resident memory and the collection. */
  probe?: { now(): number; resident(): number; collect(): void };
}

/**
 * Collects once the service has been idle for a moment after a burst: one that held
 * `thresholdBytes` or more at once, or one that left its own memory (resident, less what it
 * holds for callers: `buffered`) `growthBytes` above its idle level (the lowest measured after a collection or at an idle moment: the first look
 * collects to measure it). Bytes held are a proxy: requests that do not overlap hold little at
 * once and leave as much behind. Collections are at least `minGapMs` apart, and a collection
 * that leaves the memory above its level (a reply still being written, or live memory that grew)
 * is followed by another look after a gap that doubles each time such a collection repeats
 * (up to `maxGapMs`); so is a look while callers have replies to take. The level rises only to
 * what three collections in a row left: garbage is gone after one, so it
 * never becomes the level, and a service whose live memory grew for good gets a level that says
 * so (without traffic, serve's third such collection comes 30 s after its first) instead of a
 * gap that keeps growing and makes the garbage of every later burst wait for it. A look that
 * finds the memory back at the level starts the count again.
 */
export class IdleCollector {
  /** The most bytes held since the last collection. */
  private highWater = 0;
  /** The resident memory's idle level, once measured. */
  private level: number | undefined;
  /** When nothing was last held since something was (probe.now()). */
  private idleSince = 0;
  private gapMs: number;
  private lastCollection = -Infinity;
  /** Collections in a row that left the memory above the level. */
  private collectionsAbove = 0;
  private collectionCount = 0;
  private timer: NodeJS.Timeout | undefined;
  private readonly probe: { now(): number; resident(): number; collect(): void };

  constructor(private readonly options: IdleCollectorOptions) {
    this.gapMs = options.minGapMs;
    this.probe = options.probe ?? { now: () => performance.now(), resident: residentAnonymous, collect: collectAndTrim };
  }

  /** Called whenever the bytes held change. */
  held(bytes: number): void {
    this.highWater = Math.max(this.highWater, bytes);
    if (bytes > 0) {
      // New work: no look while it lasts (one due now would find it idle between two of its
      // requests), and its garbage is looked at once it is done, not after a gap grown by the
      // collections before it (the level's rise after three of them bounds how often they repeat).
      this.gapMs = this.options.minGapMs;
      this.stop();
      return;
    }
    this.idleSince = this.probe.now();
    this.arm(this.options.idleMs);
  }

  /** Collections so far (the daemon's metrics). */
  get collections(): number {
    return this.collectionCount;
  }

  /** No more looks (the service stopped). */
  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private arm(ms: number): void {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.look();
    }, ms);
    this.timer.unref();
  }

  private look(): void {
    // Busy again: the next time nothing is held arms another look.
    if (!this.options.isIdle()) return;
    const now = this.probe.now();
    // Not yet idle for idleMs since the last request, nor gapMs since the last collection.
    const wait = Math.max(this.idleSince + this.options.idleMs, this.lastCollection + this.gapMs) - now;
    if (wait > 0) return this.arm(wait);
    // The service's own memory: what it holds for callers (replies not yet taken) is neither
    // garbage a collection could give back nor growth of its own.
    const own = this.probe.resident() - this.buffered();
    if (this.level !== undefined && this.highWater < this.options.thresholdBytes && own <= this.level + this.options.growthBytes) {
      this.level = Math.min(this.level, own);
      this.collectionsAbove = 0;
      this.options.onLook?.({ own, idleLevel: this.level });
      this.lookWhileBuffered();
      return;
    }
    this.highWater = 0;
    this.probe.collect();
    this.collectionCount++;
    this.lastCollection = now;
    const after = this.probe.resident() - this.buffered();
    if (this.level === undefined || after <= this.level + this.options.growthBytes) {
      this.level = Math.min(this.level ?? after, after);
      this.gapMs = this.options.minGapMs;
      this.collectionsAbove = 0;
      this.lookWhileBuffered();
    } else if (++this.collectionsAbove >= COLLECTIONS_BEFORE_THE_LEVEL_RISES) {
      // Three full collections in a row could not give it back: it is live memory (or glibc's
      // room around live blocks), not garbage, and the level rises to it, or every burst after it
      // would wait out a gap of up to maxGapMs before its own garbage went.
      this.level = after;
      this.collectionsAbove = 0;
      this.gapMs = this.options.minGapMs;
      this.lookWhileBuffered();
    } else {
      this.gapMs = Math.min(this.gapMs * 2, this.options.maxGapMs);
      this.arm(this.gapMs);
    }
    this.options.onCollect?.({ ownBefore: own, ownAfter: after, idleLevel: this.level, nextGapMs: this.gapMs });
  }

  private buffered(): number {
    return this.options.buffered?.() ?? 0;
  }

  /**
   * While callers have replies yet to take, another look after a gap that doubles (no
   * collection unless the service's own memory grew): once they took them, or left without, what
   * the replies held is garbage, and nothing else would come to look at it.
   */
  private lookWhileBuffered(): void {
    if (this.buffered() === 0) return;
    this.gapMs = Math.min(this.gapMs * 2, this.options.maxGapMs);
    this.arm(this.gapMs);
  }

}
