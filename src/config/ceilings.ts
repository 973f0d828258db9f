// The config's ceilings: what no request may exceed, and the check the config's own default
// limits must pass too (src/run/limits.ts applies it to each request). The built-in ceilings are
// a column of the one table of limits, src/protocol/limits.ts.
import { DEFAULT_CEILINGS, LIMIT_NAMES, type Limits } from '../protocol/index.js';

export { DEFAULT_CEILINGS };

/**
 * Returns the first ceiling violation, or undefined. For every limit but FSIZE a value of 0
 * disables the limit, so 0 is refused wherever a nonzero ceiling exists; FSIZE 0 means "no file
 * may be written", the strictest setting, and is always allowed.
 */
export function ceilingViolation(limits: Limits, ceilings: Limits): string | undefined {
  for (const name of LIMIT_NAMES) {
    const value = limits[name];
    const ceiling = ceilings[name];
    if (ceiling === 0) continue;
    if (value === 0 && name !== 'FSIZE') {
      return `${name} 0 (unlimited) is not allowed: the ceiling is ${ceiling}`;
    }
    if (value > ceiling) return `${name} ${value} exceeds the ceiling of ${ceiling}`;
  }
  return undefined;
}
