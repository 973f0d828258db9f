#!/usr/bin/env node
// The `codejail` command: run code through the daemon, inspect it, set the host up, benchmark it.
import { PACKAGE_VERSION } from '../package.js';
import { UsageError } from './args.js';
import { BENCH_USAGE, bench } from './bench.js';
import { CHECK_USAGE, check } from './check.js';
import { CHECK_CONFIG_USAGE, checkConfig } from './check_config.js';
import { METRICS_USAGE, metrics } from './metrics.js';
import { RUN_FAILED_EXIT, RUN_USAGE, run } from './run.js';
import { SERVE_USAGE, serve } from './serve.js';
import { SETUP_USAGE, setup } from './setup.js';
import { STATUS_USAGE, status } from './status.js';
import { CODEJAIL_USAGE as USAGE } from './usage.js';
import type { OperatorTexts } from '../setup/operator_files.js';

interface Subcommand {
  usage: string;
  main(args: string[]): Promise<number>;
  /** Exit code when the subcommand fails other than by a usage error. */
  failureExit: number;
}

const SUBCOMMANDS: Record<string, Subcommand> = {
  run: { usage: RUN_USAGE, main: run, failureExit: RUN_FAILED_EXIT },
  status: { usage: STATUS_USAGE, main: status, failureExit: 1 },
  setup: { usage: SETUP_USAGE, main: (args) => setup(args, operatorTexts), failureExit: 1 },
  bench: { usage: BENCH_USAGE, main: bench, failureExit: 1 },
  check: { usage: CHECK_USAGE, main: check, failureExit: 1 },
  metrics: { usage: METRICS_USAGE, main: metrics, failureExit: 1 },
  'check-config': { usage: CHECK_CONFIG_USAGE, main: checkConfig, failureExit: 1 },
  serve: { usage: SERVE_USAGE, main: serve, failureExit: 1 },
};

/** What `codejail setup` installs besides the host's set-up: made from every command's --help text. */
async function operatorTexts(): Promise<OperatorTexts> {
  const [{ manPages }, { bashCompletion }] = await Promise.all([import('./man.js'), import('./completion.js')]);
  return { manPages: manPages(), completion: bashCompletion() };
}

const USAGE_EXIT = 2;

async function main(argv: string[]): Promise<number> {
  const [name, ...args] = argv;
  if (name === '--version' || name === '-V') {
    process.stdout.write(`codejail ${PACKAGE_VERSION}\n`);
    return 0;
  }
  if (name === undefined || name === '-h' || name === '--help' || name === 'help') {
    process.stdout.write(USAGE + '\n');
    return name === undefined ? USAGE_EXIT : 0;
  }
  const subcommand = SUBCOMMANDS[name];
  if (!subcommand) {
    process.stderr.write(`codejail: unknown command '${name}'\n${USAGE}\n`);
    return USAGE_EXIT;
  }
  const terminator = args.indexOf('--');
  const optionArgs = terminator === -1 ? args : args.slice(0, terminator);
  if (optionArgs.includes('-h') || optionArgs.includes('--help')) {
    process.stdout.write(subcommand.usage + '\n');
    return 0;
  }
  try {
    return await subcommand.main(args);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`codejail ${name}: ${err.message}\nRun 'codejail ${name} --help' for usage.\n`);
      return USAGE_EXIT;
    }
    // Failures a user can act on (daemon unreachable, refused request, unreadable file, bad
    // config) get one line; errors that only a bug in codejail raises keep their stack.
    const isBug = err instanceof TypeError || err instanceof ReferenceError || err instanceof RangeError;
    const description = err instanceof Error ? (isBug ? err.stack : err.message) : String(err);
    process.stderr.write(`codejail ${name}: ${description}\n`);
    return subcommand.failureExit;
  }
}

process.exitCode = await main(process.argv.slice(2));
