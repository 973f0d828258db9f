// What each top-level key of the daemon's configuration is for, in one line: shown by
// `codejail check-config --help` and in codejail-config(5) (src/cli/man.ts), whose defaults come
// from the schema itself. Typed by the schema's keys, so a key added without a line here does not
// compile.
import type { DaemonConfigInput } from '../config/schema.js';

export const CONFIG_KEYS: Readonly<Record<keyof DaemonConfigInput, string>> = {
  socket: '{path, group, mode}: the Unix socket clients connect to, its group and file mode',
  runBase: 'the directory under which each run gets its own run directory (a tmpfs)',
  slots: '{firstUid, count}: the sandbox uids, one run at a time each; no one else may use them',
  queueMax: 'requests that may wait for a free slot before new ones are refused',
  maxFrameBytes: 'the largest request or reply frame, in bytes',
  connections: '{maxBufferedBytes, totalBufferedBytes, perUidBufferedBytes, ...}: per-connection and per-caller bounds',
  commands: 'name -> {path, kind, args, env, read, execute, preload}: the interpreters runs may use',
  warm: '{enabled, maxForks, maxAgeSeconds, holdAhead}: warm templates, when one is replaced, and whether idle slots hold their next run started ahead',
  defaultLimits: 'the limits (CPU, VMEM, REALTIME, ...) of a run that asks for none',
  ceilings: 'the largest limits a request may ask for',
  layers: 'layer -> required | auto | off: which confinement layers must, may or must not apply',
  apparmorProfile: 'the AppArmor profile runs change to (apparmor layer)',
  cgroupMemoryMax: 'memory.max of a run whose VMEM is unlimited (0: none)',
  logLevel: 'debug, info, warn or error',
  allow: '{uids, groups}: who may use the socket (SO_PEERCRED), besides root and the daemon',
  metrics: '{port, host}: Prometheus text on a loopback HTTP port (off without a port)',
  shutdownGraceMs: 'on SIGTERM, how long running work may finish before it is killed',
};

/** The keys as --help and the man page show them: one indented line each. */
export function describeConfigKeys(): string {
  const width = Math.max(...Object.keys(CONFIG_KEYS).map((k) => k.length));
  return Object.entries(CONFIG_KEYS)
    .map(([key, text]) => `  ${key.padEnd(width)}  ${text}`)
    .join('\n');
}
