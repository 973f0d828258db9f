// The daemon's configuration: a JSON file (default /etc/codejail/config.json) checked against the
// schema of src/config/schema.ts made for LAYERS, so a file only names what it changes.
import { readFileSync } from 'node:fs';
import { configSchemaFor, DEFAULT_CONFIG_PATH, type DaemonConfig } from '../config/schema.js';
import { LAYERS } from '../layers/index.js';
import { describeIssues } from '../protocol/index.js';
import { ConfigError } from '../config_error.js';

export { ConfigError, DEFAULT_CONFIG_PATH };

export const configSchema = configSchemaFor(LAYERS);

/** The embedded configuration (what a missing default config file means). */
export function defaultConfig(): DaemonConfig {
  return configSchema.parse({});
}

/** Validates an in-memory configuration (tests, embedding); throws ConfigError naming each bad key. */
export function parseConfig(input: unknown, source = 'config'): DaemonConfig {
  const parsed = configSchema.safeParse(input);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.length ? i.path.join('.') : '(config)'}: ${i.message}`);
    throw new ConfigError(`${source}: ${describeIssues(parsed.error)}`, issues);
  }
  return parsed.data;
}

/**
 * Loads the configuration. Without `file`, reads DEFAULT_CONFIG_PATH and falls back to the
 * embedded defaults when it does not exist. A file given explicitly must exist and be valid.
 */
export function loadConfig(file?: string): DaemonConfig {
  const target = file ?? DEFAULT_CONFIG_PATH;
  let text: string;
  try {
    text = readFileSync(target, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (file === undefined && code === 'ENOENT') return defaultConfig();
    throw new ConfigError(`config ${target}: cannot be read (${code ?? (err as Error).message})`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`config ${target}: is not valid JSON (${(err as Error).message})`);
  }
  return parseConfig(json, `config ${target}`);
}
