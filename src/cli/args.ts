// Argument errors of the subcommands, printed by main() with the subcommand's usage.

export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/**
 * Runs a node:util parseArgs call (strict, so unknown flags, missing values and unexpected
 * positionals are errors) and turns its errors, which name the bad flag, into UsageError.
 */
export function withUsageErrors<T>(parse: () => T): T {
  try {
    return parse();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS_')) throw new UsageError((err as Error).message);
    throw err;
  }
}

/** Parses a flag's value as a positive integer, naming the flag when it is not one. */
export function positiveInteger(flag: string, value: string): number {
  const number = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(number) || number < 1) {
    throw new UsageError(`${flag} must be a positive integer, not '${value}'`);
  }
  return number;
}
