// The AppArmor layer (native/apparmor.cc): the child switches to (or stacks) the sandbox profile
// at execve. Its deny tests need a kernel with AppArmor: they run in the VM suite (test/vm).
import { existsSync, readFileSync } from 'node:fs';
import { defineLayer, type Detection } from './layer.js';
import { EXECV, INET_SOCKET, READ_PASSWD, SUBPROCESS } from './probes.js';

const APPARMOR_DIR = '/sys/kernel/security/apparmor';

export const apparmor = defineLayer({
  name: 'apparmor',
  defaultMode: 'auto',
  detect: (ctx) => probeAppArmor(ctx.config.apparmorProfile),
  plan: (input) => ({ apparmorProfile: input.apparmorProfile }),
  probes: [READ_PASSWD, INET_SOCKET, EXECV, SUBPROCESS],
  // Only in test/vm (a kernel with AppArmor), where the guest runs each probe with AppArmor alone
  // on and then alone off in one boot; scripts/sabotage.mjs checks that those pairs exist.
  sabotage: { apparmor: 'deny_apparmor' },
});

function probeAppArmor(profile: string): Detection<object> {
  if (!existsSync(APPARMOR_DIR)) return { available: false, detail: `${APPARMOR_DIR} does not exist (AppArmor is not enabled in this kernel)` };
  let profiles: string;
  try {
    profiles = readFileSync(`${APPARMOR_DIR}/profiles`, 'utf8');
  } catch (err) {
    return { available: false, detail: `cannot read ${APPARMOR_DIR}/profiles: ${(err as Error).message}` };
  }
  // Lines look like "codejail-sandbox (enforce)". A profile in complain mode only logs.
  const line = profiles.split('\n').find((l) => l.replace(/ \([a-z]+\)$/, '') === profile);
  if (!line) {
    return { available: false, detail: `profile "${profile}" is not loaded (codejail setup renders, installs and loads it)` };
  }
  if (!line.endsWith('(enforce)')) return { available: false, detail: `profile "${profile}" is loaded but not enforcing: ${line}` };
  return { available: true, detail: `profile ${profile}` };
}
