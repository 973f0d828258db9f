// How a deny_* test states its outcome so that scripts/sabotage.mjs can tell "the layer's refusal
// went away" (what the sabotage check is for) from any other failure (a crash, a timeout, a
// daemon that did not start). A deny test names both sides: the refusal the layer produces and
// the result its allow twin gets without the layer. With the layer off, the run gets the allow
// side's result and the failure message carries DENIAL_GONE, which the script looks for.
import { expect } from 'vitest';

/** The marker scripts/sabotage.mjs looks for in a failed deny test's message. */
export const DENIAL_GONE = 'DENIAL GONE';

const matches = (value: unknown, want: unknown) => (want instanceof RegExp ? want.test(String(value)) : Object.is(value, want) || JSON.stringify(value) === JSON.stringify(want));

/**
 * Requires `received` to be the layer's refusal `denied`. When it is the allow side's result
 * instead, the assertion's message starts with DENIAL_GONE. `context` (a run's stderr, say) is
 * added to the message.
 */
export function expectDenied<T>(received: T, denied: T | RegExp, allowed: T | RegExp, context?: string): void {
  const verdict = matches(received, allowed) ? `${DENIAL_GONE}: the allow side's result came back` : 'not the refusal, nor the allow side';
  const message = context ? `${verdict}; ${context}` : verdict;
  if (denied instanceof RegExp) expect(String(received), message).toMatch(denied);
  else expect(received, message).toEqual(denied);
}
