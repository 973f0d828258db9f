// `codejail run`: one jailCode call from the command line.
import { readFile } from 'node:fs/promises';
import { buffer } from 'node:stream/consumers';
import { parseArgs } from 'node:util';
import { Client, LIMIT_NAMES } from '../client/index.js';
import type { LimitName, Limits } from '../client/index.js';
import { UsageError, withUsageErrors } from './args.js';

export const RUN_USAGE = `usage: codejail run [-c CODE | FILE] [--stdin FILE] [--limit NAME=VALUE]... [--file PATH]...
                    [--command python] [--socket PATH] [-- ARGS...]
  -c CODE            the code to run (or FILE: a file holding it)
  --stdin FILE       feed FILE to the run's stdin ('-' for this process's stdin)
  --limit NAME=VALUE set a limit for this run: ${LIMIT_NAMES.join(', ')} (repeatable)
  --file PATH        copy a file, directory or symlink into the run directory (repeatable)
  --command NAME     the daemon's command to run the code with (default python)
  --socket PATH      the daemon's socket (default $CODEJAIL_SOCKET or /run/codejail/codejail.sock)
  -- ARGS...         arguments for the code
Prints the run's stdout and stderr and exits with its status (128+N when killed by signal N),
or 125 when codejail could not run it.`;

/** What `run` exits with when no run happened (the convention of env(1) and container runners). */
export const RUN_FAILED_EXIT = 125;

function parseLimit(spec: string): [LimitName, number] {
  const match = /^([A-Z]+)=(.+)$/.exec(spec);
  if (!match) throw new UsageError(`--limit ${spec}: expected NAME=VALUE, e.g. CPU=2`);
  const [, name, value] = match as unknown as [string, string, string];
  if (!(LIMIT_NAMES as readonly string[]).includes(name)) {
    throw new UsageError(`--limit ${spec}: unknown limit ${name}; limits are ${LIMIT_NAMES.join(', ')}`);
  }
  const number = Number(value);
  if (!Number.isFinite(number)) throw new UsageError(`--limit ${spec}: ${value} is not a number`);
  return [name as LimitName, number];
}

/** The exit code that reports a run's status: its exit code, or 128+N for signal N (status -N). */
export function exitCodeForStatus(status: number): number {
  return status < 0 ? 128 - status : status;
}

export async function run(args: string[]): Promise<number> {
  const { values, tokens } = withUsageErrors(() =>
    parseArgs({
      args,
      options: {
        c: { type: 'string', short: 'c' },
        stdin: { type: 'string' },
        limit: { type: 'string', multiple: true },
        file: { type: 'string', multiple: true },
        command: { type: 'string', default: 'python' },
        socket: { type: 'string' },
      },
      allowPositionals: true,
      strict: true,
      tokens: true,
    }),
  );
  // Positionals before '--' name the code file; those after it are the code's arguments.
  const terminator = tokens.find((t) => t.kind === 'option-terminator')?.index ?? Infinity;
  const positionals = tokens.filter((t) => t.kind === 'positional');
  const codeFiles = positionals.filter((t) => t.index < terminator).map((t) => t.value);
  const argv = positionals.filter((t) => t.index > terminator).map((t) => t.value);

  if (codeFiles.length > 1) {
    throw new UsageError(`unexpected argument '${codeFiles[1]}'; pass the code's arguments after --`);
  }
  if (values.c !== undefined && codeFiles.length > 0) throw new UsageError(`give either -c CODE or FILE, not both`);
  if (values.c === undefined && codeFiles.length === 0) throw new UsageError('nothing to run: give -c CODE or FILE');
  const limits: Partial<Limits> = Object.fromEntries((values.limit ?? []).map(parseLimit));

  const code = values.c ?? (await readFile(codeFiles[0]!));
  const stdin =
    values.stdin === undefined ? undefined : values.stdin === '-' ? await buffer(process.stdin) : await readFile(values.stdin);

  const client = new Client({ socketPath: values.socket });
  try {
    const result = await client.jailCode(values.command, { code, stdin, argv, limits, files: values.file ?? [] });
    process.stdout.write(result.stdout);
    process.stderr.write(result.stderr);
    if (result.truncated) process.stderr.write('codejail: output was truncated at the OUTPUT limit\n');
    if (result.timedOut) process.stderr.write('codejail: the run was killed when its REALTIME limit ran out\n');
    return exitCodeForStatus(result.status);
  } finally {
    await client.close();
  }
}
