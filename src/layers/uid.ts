// The uid layer (native/credentials.cc): each run drops to its slot's own uid and gid, with no
// supplementary groups. Also how a run's processes are found and killed: every process of the
// slot's uid, which reaches setsid()'d descendants (the 'kill' sabotage switch).
import { readFileSync } from 'node:fs';
import { parseAccounts, readAccounts } from '../accounts.js';
import { slotUsers, type SlotIdentity } from '../run/slot_users.js';
import type { DaemonConfig } from '../config/schema.js';
import { defineLayer, LayerError, type Detection } from './layer.js';

/**
 * What the uid layer's per-run hooks read of Layers: whether the layer is active (`uid`), and the
 * kill method detectLayers derives from it (`kill`). It makes no state of its own.
 */
export interface UidState {
  uid?: boolean;
  kill?: 'uid' | 'process-group';
}

export const uid = defineLayer<'uid', UidState, 'uid' | 'kill'>({
  name: 'uid',
  defaultMode: 'required',
  detect: (ctx) => {
    const missing = missingCapabilities(UID_LAYER_CAPABILITIES);
    if (missing.length) {
      return {
        available: false,
        detail:
          `the daemon lacks ${missing.join(', ')}: it drops each run to its slot's uid and gid (SETUID, SETGID), ` +
          'hands run directories to them (CHOWN, FOWNER) and kills what a run leaves, at its deadline too (KILL)',
      };
    }
    return probeSlotUids(ctx.config, ctx.passwd);
  },
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
  runHooks: (state, ctx) => {
    const owns = state.uid === true;
    const kills = state.kill === 'uid';
    if (!owns && !kills) return undefined;
    return {
      name: 'uid',
      // The run directory is root's, in the slot's group; its tmp/ is the slot's.
      ...(owns ? { runDir: (slot: SlotIdentity) => ({ owner: { uid: slot.uid, gid: slot.gid } }) } : {}),
      ...(kills
        ? {
            // Every process of the slot's uid (the whole tree, setsid()'d or not), and zombies of
            // every slot's uid reparented to the daemon, whichever run left them.
            killRound: (slot: SlotIdentity) => {
              assertKillable(slot);
              return ctx.addon.killUidRoundAsync(slot.uid, ctx.range.firstUid, ctx.range.count);
            },
            killScope: (slot: SlotIdentity) => `uid ${slot.uid}`,
          }
        : {}),
    };
  },
  sabotage: { uid: 'deny_uid', kill: 'deny_kill' },
});

/** Never a system uid, never the daemon's own: a uid round kills every process of it. */
function assertKillable(slot: SlotIdentity): void {
  if (slot.uid < 1000 || slot.uid === process.getuid?.()) throw new Error(`refusing to kill uid ${slot.uid}`);
}

/** What the uid layer does as root, by capability number (linux/capability.h). */
const UID_LAYER_CAPABILITIES: ReadonlyArray<readonly [string, number]> = [
  ['CAP_CHOWN', 0],
  ['CAP_FOWNER', 3],
  ['CAP_KILL', 5],
  ['CAP_SETGID', 6],
  ['CAP_SETUID', 7],
];

/**
 * The capabilities of `wanted` missing from this process's effective set. Without one, a run
 * would fail in a way that says little (a kill that silently does nothing, a slot quarantined
 * for good): better refused at start, naming it (a container started with too few --cap-add).
 */
export function missingCapabilities(wanted: ReadonlyArray<readonly [string, number]>, status?: string): string[] {
  let text = status;
  if (text === undefined) {
    try {
      text = readFileSync('/proc/self/status', 'utf8');
    } catch {
      return [];
    }
  }
  const hex = /^CapEff:\s*([0-9a-f]+)$/m.exec(text)?.[1];
  if (hex === undefined) return [];
  const effective = BigInt(`0x${hex}`);
  return wanted.filter(([, bit]) => (effective & (1n << BigInt(bit))) === 0n).map(([name]) => name);
}

/**
 * The daemon kills every process of a slot's uid after each run, and the sandbox can touch
 * whatever that uid owns: a slot uid that belongs to a real account is a hard error, whatever the
 * layer mode says. Its own accounts are codejail-<uid>, or codejail-s<i> for slot i as earlier
 * setups named them. Slot uids without a passwd entry work (the kernel needs only the number).
 */
function probeSlotUids(config: DaemonConfig, passwdText?: string): Detection<object> {
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
