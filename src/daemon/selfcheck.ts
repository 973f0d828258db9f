// The self-check the daemon runs before it accepts a single request: through the real runner,
// with every configured layer, one run that must work and a few that must be denied. A failure
// means the sandbox is not what the operator thinks it is, so the daemon refuses to serve.
import type { Limits } from '../protocol/index.js';
import type { LayerName } from './config.js';
import type { Layers } from './layers.js';
import type { Logger } from './log.js';
import type { Runner } from './runner.js';

interface Check {
  name: string;
  code: string;
  /** Layers any one of which should make the check pass; empty for the run that must work. */
  enforcedBy: LayerName[];
}

// Each deny check prints DENIED only on the specific refusal we expect (PermissionError), so a
// check cannot pass by crashing for an unrelated reason.
const MUST_WORK: Check = { name: 'print(1) runs', code: 'print(1)\n', enforcedBy: [] };
const MUST_BE_DENIED: Check[] = [
  {
    name: 'reading /etc/passwd is denied',
    code: "try:\n    open('/etc/passwd').read()\n    print('ALLOWED')\nexcept PermissionError:\n    print('DENIED')\n",
    enforcedBy: ['landlock', 'apparmor'],
  },
  {
    name: 'creating an AF_INET socket is denied',
    code:
      'import socket\ntry:\n    socket.socket(socket.AF_INET, socket.SOCK_STREAM)\n    print("ALLOWED")\n' +
      'except PermissionError:\n    print("DENIED")\n',
    enforcedBy: ['seccomp', 'apparmor'],
  },
  {
    name: 'executing /usr/bin/true with os.execv is denied',
    code: "import os\ntry:\n    os.execv('/usr/bin/true', ['true'])\nexcept PermissionError:\n    print('DENIED')\n",
    enforcedBy: ['landlock', 'apparmor'],
  },
  {
    name: 'executing /usr/bin/true with subprocess is denied',
    code:
      "import subprocess\ntry:\n    subprocess.run(['/usr/bin/true'])\n    print('ALLOWED')\n" +
      'except PermissionError:\n    print("DENIED")\n',
    enforcedBy: ['landlock', 'apparmor'],
  },
];

export interface CheckOutcome {
  name: string;
  outcome: 'passed' | 'failed' | 'skipped';
  detail?: string;
}

export class SelfCheckError extends Error {
  constructor(readonly outcomes: CheckOutcome[]) {
    const failed = outcomes.filter((o) => o.outcome === 'failed');
    super(`self-check failed, refusing to serve: ${failed.map((o) => `${o.name}: ${o.detail}`).join('; ')}`);
    this.name = 'SelfCheckError';
  }
}

/** Runs the checks with `command` (a Python). Throws SelfCheckError naming each failed check. */
export async function runSelfCheck(options: {
  runner: Runner;
  layers: Layers;
  command: string;
  ceilings: Limits;
  log: Logger;
}): Promise<CheckOutcome[]> {
  const { runner, layers, command, log } = options;
  // Generous time: the first interpreter start after boot reads everything from disk.
  const limits = { CPU: withinCeiling(5, options.ceilings.CPU), REALTIME: withinCeiling(20, options.ceilings.REALTIME) };
  const outcomes: CheckOutcome[] = [];

  const attempt = async (check: Check, expected: string, requireCleanStderr: boolean): Promise<CheckOutcome> => {
    try {
      const result = await runner.run({ command, code: Buffer.from(check.code), files: [], extraFiles: [], argv: [], limits, slug: 'self-check' });
      const stdout = Buffer.from(result.stdout).toString('utf8');
      const stderr = Buffer.from(result.stderr).toString('utf8');
      if (result.status === 0 && stdout === expected && (!requireCleanStderr || stderr === '')) {
        return { name: check.name, outcome: 'passed' };
      }
      return {
        name: check.name,
        outcome: 'failed',
        detail: `status ${result.status}, stdout ${JSON.stringify(stdout.slice(0, 200))}, stderr ${JSON.stringify(stderr.slice(-500))}`,
      };
    } catch (err) {
      return { name: check.name, outcome: 'failed', detail: (err as Error).message };
    }
  };

  outcomes.push(await attempt(MUST_WORK, '1\n', true));
  for (const check of MUST_BE_DENIED) {
    if (layers.unsafe) {
      outcomes.push({ name: check.name, outcome: 'skipped', detail: 'unsafe mode: nothing is denied' });
      continue;
    }
    if (!check.enforcedBy.some((layer) => layers[layer])) {
      outcomes.push({ name: check.name, outcome: 'skipped', detail: `none of ${check.enforcedBy.join(', ')} is active` });
      continue;
    }
    outcomes.push(await attempt(check, 'DENIED\n', false));
  }

  for (const o of outcomes) {
    const fields = { check: o.name, outcome: o.outcome, detail: o.detail };
    if (o.outcome === 'failed') log.error('self-check failed', fields);
    else if (o.outcome === 'skipped') log.warn('self-check skipped', fields);
    else log.info('self-check passed', fields);
  }
  if (outcomes.some((o) => o.outcome === 'failed')) throw new SelfCheckError(outcomes);
  return outcomes;
}

function withinCeiling(wanted: number, ceiling: number): number {
  return ceiling === 0 ? wanted : Math.min(wanted, ceiling);
}
