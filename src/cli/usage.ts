// The `codejail` command's --help text, apart from main.ts (which runs the command when loaded),
// so that the man page codejail(1) and the bash completion are made from the same text
// (src/cli/man.ts, src/cli/completion.ts).
import { BENCH_USAGE } from './bench.js';
import { CHECK_USAGE } from './check.js';
import { CHECK_CONFIG_USAGE } from './check_config.js';
import { METRICS_USAGE } from './metrics.js';
import { RUN_USAGE } from './run.js';
import { SERVE_USAGE } from './serve.js';
import { SETUP_USAGE } from './setup.js';
import { STATUS_USAGE } from './status.js';

export const CODEJAIL_USAGE = `usage: codejail <command> [options]
commands:
  run     run code in the sandbox and print its output
  status  show the daemon's layers, slots and queue
  setup   create the group, slot users and directories the daemon needs (root)
  bench   compare jailCode latency and throughput with bare interpreter spawns
  check   run the daemon's self-check now and print its layers and probes
  metrics print the daemon's metrics (Prometheus text format)
  check-config  validate the daemon's configuration file
  serve   serve codejail-service's HTTP API as a client of the daemon (not as root)
Run 'codejail <command> --help' for a command's options; 'codejail --version' prints the version.`;

/** Each subcommand's --help text, in CODEJAIL_USAGE's order. */
export const SUBCOMMAND_USAGES: Readonly<Record<string, string>> = {
  run: RUN_USAGE,
  status: STATUS_USAGE,
  setup: SETUP_USAGE,
  bench: BENCH_USAGE,
  check: CHECK_USAGE,
  metrics: METRICS_USAGE,
  'check-config': CHECK_CONFIG_USAGE,
  serve: SERVE_USAGE,
};
