// The original CodeJail's limit layering: DEFAULT_LIMITS, then what set_limit() changed, then the
// overrides registered for the call's context, then the call's own limits.
import { DEFAULT_LIMITS, LIMIT_NAMES, describeIssues, limitsSchema } from '../protocol/index.js';
import type { LimitName, Limits } from '../protocol/index.js';
import { CodejailError } from './errors.js';

function isLimitName(name: string): name is LimitName {
  return (LIMIT_NAMES as readonly string[]).includes(name);
}

/** Checks a limit's name and value the way the daemon will, so mistakes surface where they are made. */
function checkedLimit(name: string, value: unknown): [LimitName, number] {
  if (!isLimitName(name)) {
    throw new CodejailError('bad_request', `unknown limit '${name}'; limits are ${LIMIT_NAMES.join(', ')}`);
  }
  const parsed = limitsSchema.safeParse({ [name]: value });
  if (!parsed.success) throw new CodejailError('bad_request', `limit ${describeIssues(parsed.error)}`);
  return [name, value as number];
}

/** Validates a partial limits object (a call's `limits` option). Undefined values are skipped. */
export function checkedLimits(limits: Partial<Record<string, unknown>>): Partial<Limits> {
  const out: Partial<Limits> = {};
  for (const [name, value] of Object.entries(limits)) {
    if (value === undefined) continue;
    const [checkedName, checkedValue] = checkedLimit(name, value);
    out[checkedName] = checkedValue;
  }
  return out;
}

/** One client's limit settings: its defaults and its per-context overrides. */
export class LimitSettings {
  private readonly defaults: Partial<Limits> = {};
  private readonly overridesByContext = new Map<string, Partial<Limits>>();

  /** Like the original's set_limit: the value every later call uses unless overridden. */
  set(name: string, value: number): void {
    const [checkedName, checkedValue] = checkedLimit(name, value);
    this.defaults[checkedName] = checkedValue;
  }

  /** Like the original's override_limit: the value used only by calls that name `context`. */
  override(name: string, value: number, context: string): void {
    if (typeof context !== 'string' || context === '') {
      throw new CodejailError('bad_request', 'a limit override needs a non-empty context name');
    }
    const [checkedName, checkedValue] = checkedLimit(name, value);
    let overrides = this.overridesByContext.get(context);
    if (!overrides) {
      overrides = {};
      this.overridesByContext.set(context, overrides);
    }
    overrides[checkedName] = checkedValue;
  }

  /**
   * The limits a call with this context and these explicit limits asks for: only those that were
   * set (setLimit, overrideLimit, the call's own). The daemon's configured defaults fill the rest,
   * so an operator's defaultLimits apply to every call that does not choose a value itself.
   */
  requested(context?: string, explicit: Partial<Record<string, unknown>> = {}): Partial<Limits> {
    const overrides = context ? this.overridesByContext.get(context) : undefined;
    return { ...this.defaults, ...overrides, ...checkedLimits(explicit) };
  }

  /**
   * The complete limits such a call runs under when the daemon's defaults are the built-in ones
   * (DEFAULT_LIMITS), as in unsafe mode; a daemon's result reports the limits it applied.
   */
  effective(context?: string, explicit: Partial<Record<string, unknown>> = {}): Limits {
    return { ...DEFAULT_LIMITS, ...this.requested(context, explicit) };
  }
}
