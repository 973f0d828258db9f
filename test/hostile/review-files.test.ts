// A hostile review of the hardening wave (issue 12): the count of entries a request's names imply
// (rundir.ts impliedEntries) runs on the event loop before anything is written, and adds every
// parent of every name to a Set as its own string: 10 000 names 32 levels deep, 3.9 kB each (a
// 38 MB frame, within every protocol cap), hash about 10 000 x 31 prefixes of 2 kB on average,
// some 600 MB of string hashing. Reviewed: writeRunFiles took 810 ms to refuse such a request,
// and against a daemon, while one such request (valid, 9 968 files) was prepared, a status
// request of another caller waited 1 236 ms (decoding and validating it: about 200 ms more).
import { describe, expect, it } from 'vitest';
import { writeRunFiles } from '../../src/run/run_files.js';
import type { FileEntry } from '../../src/protocol/index.js';

/** `count` files at the protocol's limits: 31 directories of 122 characters, then the file. */
function deepNames(count: number): FileEntry[] {
  const parents = Array.from({ length: 31 }, (_, level) => `d${level}`.padEnd(122, 'x')).join('/');
  return Array.from({ length: count }, (_, i) => ({ type: 'file', name: `${parents}/f${i}`, data: new Uint8Array(0) }) as FileEntry);
}

describe('review: the cost of counting what a request implies', () => {
  it('deny_counting_implied_parents_in_time_quadratic_in_the_depth', async () => {
    const files = deepNames(10_000);
    // What one pass over the names costs on this machine now: each name hashed once into a Set
    // (38 MB). Counting every parent as its own string hashes some 16 times that; a count that
    // takes one pass stays within a few. A ratio, measured here under the same load, rather than
    // milliseconds, which a busy 2-core runner does not keep.
    const onePass = () => {
      const started = performance.now();
      const names = new Set<string>();
      for (const file of files) names.add(`${file.name}/`);
      return performance.now() - started;
    };
    onePass(); // compiled and warm, as writeRunFiles's own loop is after its first names
    const passMs = Math.min(onePass(), onePass(), onePass());
    const refusal = async () => {
      const started = performance.now();
      // Refused before anything is written (10 032 entries): the directory need not exist.
      await expect(
        writeRunFiles({ id: 'review', path: '/nonexistent/review', tmp: '/nonexistent/review/tmp' }, { code: new Uint8Array(1), files, extraFiles: [] }, undefined),
      ).rejects.toThrow(/exceed 10000 entries/);
      return performance.now() - started;
    };
    await refusal();
    const ms = Math.min(await refusal(), await refusal());
    console.log(`review-files: refusal ${ms.toFixed(1)} ms, one pass over the names ${passMs.toFixed(1)} ms (${(ms / passMs).toFixed(1)}x)`);
    expect(ms / passMs).toBeLessThan(6);
  });
});
