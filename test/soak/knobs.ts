// The soak suite's knobs and its seeded randomness. CODEJAIL_SOAK_SCALE multiplies every count
// (1 is sized for CI: a few minutes on 2 cores); CODEJAIL_SOAK_SEED replays a run's choices (the
// workload's mix, its inputs, the fuzz's frames). The timing of faults against runs is not
// replayed: a failure's seed gives the same requests, not the same interleaving.

export const SCALE = Math.max(0.05, Number(process.env.CODEJAIL_SOAK_SCALE ?? '1') || 1);

/** `n` scaled, at least `min`. */
export function scaled(n: number, min = 1): number {
  return Math.max(min, Math.round(n * SCALE));
}

/** A small, fast, seedable generator (mulberry32): the suite's only source of randomness. */
export class Random {
  private state: number;
  constructor(readonly seed: number) {
    this.state = seed >>> 0;
  }
  /** A float in [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
  bytes(n: number): Buffer {
    const out = Buffer.alloc(n);
    for (let i = 0; i < n; i++) out[i] = this.int(256);
    return out;
  }
  /** A name drawn by weight from `table`. */
  weighted<K extends string>(table: Readonly<Record<K, number>>): K {
    const entries = Object.entries(table) as Array<[K, number]>;
    let r = this.next() * entries.reduce((sum, [, w]) => sum + w, 0);
    for (const [name, w] of entries) {
      r -= w;
      if (r <= 0) return name;
    }
    return entries[0]![0];
  }
  /** An independent generator for one part of the suite, so that parts do not shift each other. */
  fork(label: string): Random {
    let h = this.seed ^ 0x9e3779b9;
    for (const ch of label) h = Math.imul(h ^ ch.charCodeAt(0), 0x01000193);
    return new Random(h >>> 0);
  }
}

/** The seed of this process's soak: CODEJAIL_SOAK_SEED, else a fresh one (printed in every summary). */
export const SEED = process.env.CODEJAIL_SOAK_SEED ? Number(process.env.CODEJAIL_SOAK_SEED) >>> 0 : (Date.now() ^ (process.pid << 12)) >>> 0;

/** What a failure message carries so that it can be replayed. */
export const REPLAY = `seed ${SEED} (replay: CODEJAIL_SOAK_SEED=${SEED} CODEJAIL_SOAK_SCALE=${SCALE})`;
