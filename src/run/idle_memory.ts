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

export class IdleCollector {
  /** The most bytes held since the last collection. */
  private highWater = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    /** Held bytes past which an idle moment gets a collection. */
    private readonly thresholdBytes: number,
    private readonly idleMs: number,
    private readonly isIdle: () => boolean,
  ) {}

  /** Called whenever the bytes held change. */
  held(bytes: number): void {
    this.highWater = Math.max(this.highWater, bytes);
    if (bytes > 0 || this.highWater < this.thresholdBytes || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (!this.isIdle()) return;
      this.highWater = 0;
      collectAndTrim();
    }, this.idleMs);
    this.timer.unref();
  }
}
