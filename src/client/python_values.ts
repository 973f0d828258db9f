// Python's values as JavaScript holds them, where the safe_exec codec (globals_codec.ts) and
// codejail serve's JSON reader (src/http/python_json.ts) must agree: a whole-number float kept
// apart from an int, an int's digits as a number or a BigInt, and a dict key set as data.

/**
 * A Python float whose value is a whole number (2.0), kept apart from the int 2 where a caller
 * asks for it (`wholeFloats: 'python'`): a JavaScript number cannot tell them apart, and
 * codejail-service's callers see the difference in the JSON they get back.
 */
export class PythonFloat {
  constructor(readonly value: number) {}

  valueOf(): number {
    return this.value;
  }

  /** As Python's repr() writes a whole-number float: 2.0, -0.0, 1e+16. */
  toString(): string {
    const v = this.value;
    if (Object.is(v, -0)) return '-0.0';
    if (Math.abs(v) >= 1e16) return v.toExponential();
    return `${v}.0`;
  }
}

/** Digits of an int's text, without its sign: what a bound on an int's size counts. */
export function intDigits(text: string): number {
  return text.length - (text.charCodeAt(0) === 0x2d /* - */ ? 1 : 0);
}

/**
 * An int's decimal text (already checked: an optional '-' and digits) as JavaScript holds it: a
 * number where that is exact, else a BigInt. Python has no negative zero int: "-0" is 0.
 */
export function intFromText(text: string): number | bigint {
  const value = Number(text);
  return Number.isSafeInteger(value) ? value || 0 : BigInt(text);
}

/**
 * Sets `key` of `fresh`, a plain object this code just made, as its own data property. There an
 * assignment does that for every key but __proto__ (Object.prototype's accessor, which would set
 * the prototype), and costs a third of defineProperty: only __proto__ takes the slow way.
 */
export function setOnFresh(fresh: Record<string, unknown>, key: string, value: unknown): void {
  if (key === '__proto__') Object.defineProperty(fresh, key, { value, writable: true, enumerable: true, configurable: true });
  else fresh[key] = value;
}
