// Who a slot is: its uid and gid, and the names `codejail setup` gives its account. Apart from
// slot.ts (the run lifecycle) because the layers, the daemon's slot pool and setup all name a
// slot without running anything in it.
/** A slot's identity: slot i of the range runs as uid = gid = firstUid + i. */
export interface SlotIdentity {
  index: number;
  uid: number;
  gid: number;
}

export interface SlotRange {
  firstUid: number;
  count: number;
}

export interface SlotUser extends SlotIdentity {
  /** The name `codejail setup` gives the slot's user and group: codejail-<uid>. */
  user: string;
  /**
   * The name earlier setups gave slot i of any range, codejail-s<i>. Still accepted for the same
   * uid (existing installs keep working), but no longer created: it made a second range's slot 0
   * collide with the first range's.
   */
  legacyUser: string;
}

/**
 * The slots of a range with their account names. Named by uid, not by index, so that daemons
 * with different slot ranges can share a host (their ranges must not overlap: the names cannot
 * tell two daemons' use of one uid apart).
 */
export function slotUsers(range: SlotRange): SlotUser[] {
  return Array.from({ length: range.count }, (_, index) => {
    const uid = range.firstUid + index;
    return { index, uid, gid: uid, user: `codejail-${uid}`, legacyUser: `codejail-s${index}` };
  });
}
