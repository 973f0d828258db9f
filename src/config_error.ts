// The operator's configuration is wrong: a key of the config file, or a command it names that
// cannot run as configured. Raised by the config loader and by command discovery alike, and
// reported as one line per problem, without a stack.
export class ConfigError extends Error {
  /** One line per problem, each naming its key (check-config prints them one per line). */
  readonly issues: string[];

  constructor(message: string, issues?: string[]) {
    super(message);
    this.name = 'ConfigError';
    this.issues = issues ?? [message];
  }
}
