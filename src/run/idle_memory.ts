// Gives memory back once a long-lived process (`codejail serve`, the daemon) goes idle after
// holding a lot of it. V8 collects when
// allocating, so the garbage of a burst of large payloads (hundreds of MB) stayed resident for
// good in a service that then sat idle: nothing allocated, nothing collected. A full collection
// is asked for once nothing is held and the service has stayed so for a moment; it costs tens
// of milliseconds, paid only after a burst, when no request waits. The Buffers it frees are
// glibc's, which keeps most of that room (60-130 MB after a burst of 4-8 MiB bodies) until
// malloc_trim gives it back.
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

export interface IdleCollectorOptions {
  /** Held bytes past which an idle moment gets a collection. */
  thresholdBytes: number;
  /** Resident memory above its idle level past which an idle moment gets one as well. */
  growthBytes: number;
  /** How long after the last byte is given back the service is looked at. */
  idleMs: number;
  /** When a collection left the memory above its level: how long until a second look. */
  followUpMs: number;
  /** Whether nothing is held now. */
  isIdle: () => boolean;
  /** For tests: the resident set size and the collection. */
  probe?: { rss(): number; collect(): void };
}

/**
 * Collects when the service goes idle after a burst: one that held `thresholdBytes` or more, or
 * one that left the resident set `growthBytes` above its idle level (the lowest seen at an idle
 * moment or after a collection). Bytes held alone are a proxy: a burst of requests that did not
 * overlap never reaches the threshold, yet leaves as much garbage and as much of glibc's room.
 * A collection that finds memory still held (a reply still being written) is followed by a
 * second look; memory still above its level then is the new level, so a service whose live
 * memory grew is not collected at every idle moment.
 */
export class IdleCollector {
  /** The most bytes held since the last collection. */
  private highWater = 0;
  /** The resident set's idle level, once measured. */
  private level: number | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly probe: { rss(): number; collect(): void };

  constructor(private readonly options: IdleCollectorOptions) {
    this.probe = options.probe ?? { rss: () => process.memoryUsage.rss(), collect: collectAndTrim };
  }

  /** Called whenever the bytes held change. */
  held(bytes: number): void {
    this.highWater = Math.max(this.highWater, bytes);
    if (bytes === 0) this.arm(this.options.idleMs, false);
  }

  private arm(ms: number, followUp: boolean): void {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.look(followUp);
    }, ms);
    this.timer.unref();
  }

  private look(followUp: boolean): void {
    // Busy again: the next time nothing is held arms another look.
    if (!this.options.isIdle()) return;
    const rss = this.probe.rss();
    const level = this.level ?? rss;
    if (this.highWater < this.options.thresholdBytes && rss <= level + this.options.growthBytes) {
      this.level = Math.min(level, rss);
      return;
    }
    this.highWater = 0;
    this.probe.collect();
    const after = this.probe.rss();
    if (after <= level + this.options.growthBytes) this.level = Math.min(level, after);
    else if (followUp) this.level = after;
    else {
      this.level = level;
      this.arm(this.options.followUpMs, true);
    }
  }
}
