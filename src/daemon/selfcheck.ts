// The self-check the daemon runs before it accepts a single request: through the real runner,
// with every configured layer, one run that must work and a few that must be denied, on each
// path a run may take (cold, and warm where the command has a template). A failure
// means the sandbox is not what the operator thinks it is, so the daemon refuses to serve.
import type { Limits } from '../protocol/index.js';
import { LAYERS, type LayerName, type Layers, type SelfCheckProbe } from '../layers/index.js';
import type { Logger } from '../log.js';
import type { Runner } from './runner.js';

interface Check extends SelfCheckProbe {
  /** Layers any one of which should make the check pass; empty for the run that must work. */
  enforcedBy: LayerName[];
}

const MUST_WORK: Check = { name: 'print(1) runs', code: 'print(1)\n', enforcedBy: [] };

/** Every layer's probes, each once, in the order the layers list them first. */
function mustBeDenied(): Check[] {
  const checks = new Map<SelfCheckProbe, Check>();
  for (const layer of LAYERS) {
    for (const probe of layer.probes ?? []) {
      const check = checks.get(probe) ?? { ...probe, enforcedBy: [] };
      check.enforcedBy.push(layer.name);
      checks.set(probe, check);
    }
  }
  return [...checks.values()];
}

/** Refusals that mean a probe's run was never made or lost with its template: not a verdict on the sandbox. */
const COULD_NOT_RUN = new Set(['overloaded', 'template_lost', 'cancelled', 'shutting_down']);

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
  /** Ends the check: the run in progress is cancelled and no other starts (the caller reports why). */
  signal?: AbortSignal;
  /**
   * The start-up check, before serving: it waits for a slot even while every slot is
   * quarantined, and a run that could not be made (the warm template did not take it, a refusal)
   * fails it. While serving, such a run says nothing about the sandbox (a template being
   * replaced, a full queue): it is skipped, with why, and only a run that ran counts.
   */
  startUp?: boolean;
}): Promise<CheckOutcome[]> {
  const { runner, layers, command, log, signal } = options;
  const startUp = options.startUp === true;
  const notRun = (name: string, detail: string): CheckOutcome => ({ name, outcome: startUp ? 'failed' : 'skipped', detail });
  // Generous time: the first interpreter start after boot reads everything from disk.
  const limits = { CPU: withinCeiling(5, options.ceilings.CPU), REALTIME: withinCeiling(20, options.ceilings.REALTIME) };
  const outcomes: CheckOutcome[] = [];

  // A warm command runs every check twice: cold (a fresh interpreter, as `warm: false` and a
  // fallback run it) and warm (a fork of its template), since each path applies the plan itself.
  const paths: Array<{ warm: boolean; suffix: string }> = runner.isWarm(command)
    ? [
        { warm: false, suffix: '' },
        { warm: true, suffix: ', warm' },
      ]
    : [{ warm: false, suffix: '' }];

  const attempt = async (check: Check, expected: string, requireCleanStderr: boolean, path: { warm: boolean; suffix: string }): Promise<CheckOutcome> => {
    const name = check.name + path.suffix;
    try {
      const result = await runner.run({
        command,
        code: Buffer.from(check.code),
        files: [],
        extraFiles: [],
        argv: [],
        limits,
        slug: 'self-check',
        warm: path.warm,
        profile: true,
      }, signal, { patient: startUp });
      const stdout = Buffer.from(result.stdout).toString('utf8');
      const stderr = Buffer.from(result.stderr).toString('utf8');
      if (path.warm && result.usage.stages?.warm !== true) {
        return notRun(name, 'ran cold: the warm template did not take the run');
      }
      if (result.status === 0 && stdout === expected && (!requireCleanStderr || stderr === '')) {
        return { name, outcome: 'passed' };
      }
      return {
        name,
        outcome: 'failed',
        detail: `status ${result.status}, stdout ${JSON.stringify(stdout.slice(0, 200))}, stderr ${JSON.stringify(stderr.slice(-500))}`,
      };
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      const couldNotRun = typeof code === 'string' && COULD_NOT_RUN.has(code);
      return couldNotRun ? notRun(name, (err as Error).message) : { name, outcome: 'failed', detail: (err as Error).message };
    }
  };

  for (const path of paths) {
    if (signal?.aborted) break;
    outcomes.push(await attempt(MUST_WORK, '1\n', true, path));
    for (const check of mustBeDenied()) {
      if (signal?.aborted) break;
      const name = check.name + path.suffix;
      if (layers.unsafe) {
        outcomes.push({ name, outcome: 'skipped', detail: 'unsafe mode: nothing is denied' });
        continue;
      }
      if (!check.enforcedBy.some((layer) => layers[layer])) {
        outcomes.push({ name, outcome: 'skipped', detail: `none of ${check.enforcedBy.join(', ')} is active` });
        continue;
      }
      outcomes.push(await attempt(check, 'DENIED\n', false, path));
    }
  }

  // Cut short: what ran says nothing about the rest (the caller reports the reason).
  if (signal?.aborted) return outcomes;
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
