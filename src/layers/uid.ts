// The uid layer (native/credentials.cc): each run drops to its slot's own uid and gid, with no
// supplementary groups. Also how a run's processes are found and killed: every process of the
// slot's uid, which reaches setsid()'d descendants (the 'kill' sabotage switch).
import { parseAccounts, readAccounts } from '../accounts.js';
import { slotUsers } from '../run/slot.js';
import { defineLayer, LayerError, type Detection, type LayerConfig } from './layer.js';

export const uid = defineLayer<'uid', object, 'uid' | 'kill'>({
  name: 'uid',
  defaultMode: 'required',
  detect: (ctx) => probeSlotUids(ctx.config, ctx.passwd),
  whenInactive(ctx) {
    // Without the uid drop the sandbox keeps root and every capability of the daemon: only the
    // other layers stand between it and the host. Worth saying at the top of the journal.
    ctx.log.warn(
      'THE UID LAYER IS OFF: sandboxed code runs AS ROOT with the daemon\'s capabilities, confined only by ' +
        'the remaining layers. Use this for layer tests only; --unsafe is the development mode.',
      { layer: 'uid' },
    );
  },
  plan: (input) => ({ uid: input.slot.uid, gid: input.slot.gid }),
  sabotage: { uid: 'deny_uid', kill: 'deny_kill' },
});

/**
 * The daemon kills every process of a slot's uid after each run, and the sandbox can touch
 * whatever that uid owns: a slot uid that belongs to a real account is a hard error, whatever the
 * layer mode says. Its own accounts are codejail-<uid>, or codejail-s<i> for slot i as earlier
 * setups named them. Slot uids without a passwd entry work (the kernel needs only the number).
 */
function probeSlotUids(config: LayerConfig, passwdText?: string): Detection<object> {
  const owners = (passwdText !== undefined ? parseAccounts(passwdText) : readAccounts('/etc/passwd')).byId;
  let missing = 0;
  for (const { uid, user, legacyUser } of slotUsers(config.slots)) {
    const owner = owners.get(uid);
    if (owner === undefined) missing++;
    else if (owner !== user && owner !== legacyUser) {
      throw new LayerError(
        `slot uid ${uid} belongs to the account "${owner}", not "${user}": the daemon would kill its ` +
          'processes and share its files with sandboxes. Choose another slots.firstUid.',
      );
    }
  }
  const detail =
    `${config.slots.count} slots from uid ${config.slots.firstUid}` + (missing ? `; ${missing} have no passwd entry, see codejail setup` : '');
  return { available: true, detail };
}
