// `codejail check-config`: validates a daemon configuration without starting anything, the way
// the daemon would read it (at start and on SIGHUP). Prints OK or one line per problem.
import { parseArgs } from 'node:util';
import { describeConfigKeys } from '../daemon/config_doc.js';
import { withUsageErrors } from './args.js';

export const CHECK_CONFIG_USAGE = `usage: codejail check-config [--config FILE]
Validates the daemon's configuration (default /etc/codejail/config.json) and prints OK, or each
problem with the key it concerns (exit 1). Also warns about groups that do not exist.

The configuration is one JSON object; every key is optional (codejail-config(5) shows the
defaults):
${describeConfigKeys()}`;

export async function checkConfig(args: string[]): Promise<number> {
  const { values } = withUsageErrors(() => parseArgs({ args, options: { config: { type: 'string' } }, strict: true }));
  const { ConfigError, DEFAULT_CONFIG_PATH, loadConfig } = await import('../daemon/config.js');
  const { readAccounts } = await import('../accounts.js');
  const file = values.config ?? DEFAULT_CONFIG_PATH;
  let config;
  try {
    config = loadConfig(values.config);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    const issues = err.issues.length > 1 ? err.issues : [err.message];
    process.stdout.write(`${file}: ${issues.length} problem${issues.length === 1 ? '' : 's'}\n${issues.map((i) => `  ${i}\n`).join('')}`);
    return 1;
  }
  // Valid, but a group that does not exist makes the daemon fall back (socket 0600, allow entry
  // ignored): worth saying, not an error, since `codejail setup` creates the socket group.
  const groups = readAccounts('/etc/group').byName;
  const warnings: string[] = [];
  if (!groups.has(config.socket.group)) warnings.push(`socket.group: group "${config.socket.group}" does not exist (run codejail setup)`);
  (config.allow.groups ?? []).forEach((g, i) => {
    if (typeof g === 'string' && !groups.has(g)) warnings.push(`allow.groups.${i}: group "${g}" does not exist`);
  });
  process.stdout.write(`OK: ${file}${values.config === undefined ? ' (built-in defaults where it does not exist)' : ''}\n`);
  for (const warning of warnings) process.stdout.write(`warning: ${warning}\n`);
  return 0;
}
