// Which protocol versions a client and a daemon speak, and the rule for peers of different
// versions.

/**
 * Versions on the wire. Every frame carries `v`, the protocol version it is written in.
 * - A client sends the one version it speaks (PROTOCOL_VERSION) and reads replies of that version.
 * - The daemon serves every version it has shipped (SERVED_PROTOCOL_VERSIONS; today only 1),
 *   answering each request in the request's own version. A request of a version it does not
 *   serve (a newer client) gets `bad_version` naming the request's version and the ones it
 *   serves; the client raises that as a CodejailError('bad_version') naming both sides.
 * - What does not bump the version: a new reply field (the client's reply schemas are not
 *   strict, so an older client drops what it does not know), and a new optional request field
 *   or a new op that the client sends only when its caller uses it. Requests are .strict(), so an
 *   older daemon refuses such a request with `bad_request` naming the unknown key (or op) rather
 *   than run it without what the caller asked for: a field an older daemon silently ignored
 *   could loosen a run. Callers that want a new field's feature need a daemon that has it.
 * - What bumps it: a change to what an existing field means or requires, a field every request
 *   must carry, or a reply field removed or retyped. The daemon then keeps serving the old
 *   version (its schemas kept beside the new ones) for as long as clients of it are supported.
 * - The status reply's `protocols` lists the versions a daemon serves (absent: a daemon from
 *   before the rule, which serves version 1 only).
 * test/protocol/versions.test.ts replays version 1 frames recorded as bytes against the daemon.
 */
export const PROTOCOL_VERSION = 1;
/** Every version this daemon answers, oldest first. */
export const SERVED_PROTOCOL_VERSIONS: readonly number[] = [1];

/**
 * Why the daemon refuses a request's `v`, or undefined when it serves that version (an absent
 * `v` is left to the schema, which names it). Names both sides, so that whoever reads the
 * client's error knows which one to upgrade.
 */
export function unservedVersion(version: unknown): string | undefined {
  if (version === undefined) return undefined;
  if (typeof version === 'number' && SERVED_PROTOCOL_VERSIONS.includes(version)) return undefined;
  const theirs = typeof version === 'number' ? `protocol version ${version}` : `a protocol version that is not a number (${typeof version})`;
  const served = SERVED_PROTOCOL_VERSIONS.length === 1 ? `version ${SERVED_PROTOCOL_VERSIONS[0]}` : `versions ${SERVED_PROTOCOL_VERSIONS.join(', ')}`;
  return `the request speaks ${theirs}; this daemon serves protocol ${served}`;
}
