// The safe_exec request against a real daemon: the daemon runs its own harness, so a client sends
// only the code, the globals and the python path. What the daemon refuses (an unknown command, a
// command that is not Python, python path names that are not plain), what the harness refuses (a
// globals text that is not a tagged dict: exit 2, one line naming it), and the run options.
import { describe, expect, it } from 'vitest';
import { Client, CodejailError, SafeExecError } from '../../src/client/index.js';
import type { SafeExecCall, Usage } from '../../src/client/index.js';
import { Connection } from '../../src/client/connection.js';
import { DEFAULT_MAX_FRAME_BYTES } from '../../src/protocol/index.js';
import { GRADER_CODE, graderGlobals, graderProblem } from '../../src/cli/bench_cases.js';
import { daemonSuite } from '../helpers/suite.js';

/** A client whose safe_exec requests carry `globals` instead of what safeExec encoded. */
class GlobalsClient extends Client {
  constructor(
    socketPath: string,
    private readonly globals: string,
  ) {
    super({ socketPath });
  }

  override sendSafeExec(call: SafeExecCall) {
    return super.sendSafeExec({ ...call, globals: Buffer.from(this.globals) });
  }
}

const rejection = async (promise: Promise<unknown>) =>
  promise.then(
    () => expect.unreachable('it succeeded'),
    (err: unknown) => err as Error,
  );

describe.skipIf(process.getuid?.() !== 0)('the safe_exec request', () => {
  const suite = daemonSuite(
    {
      config: {
        commands: {
          python: { path: '/usr/bin/python3', kind: 'python', args: ['-E', '-B'] },
          bash: { path: '/bin/bash', kind: 'binary', args: ['--norc', '--noprofile'] },
        },
      },
    },
    // Room for a loaded test machine; the runs themselves take milliseconds.
    (client) => client.setLimit('REALTIME', 10),
  );

  /** Sends fields as they are, without the client's checks, and resolves with the raw reply. */
  async function raw(op: string, fields: Record<string, unknown>): Promise<any> {
    const connection = new Connection(suite.daemon.socketPath, DEFAULT_MAX_FRAME_BYTES);
    try {
      return await connection.request(op, { limits: { REALTIME: 10 }, ...fields });
    } finally {
      await connection.close();
    }
  }

  it('support_safe_exec_result_channel: the harness reports the globals on fd 3, not stdout', async () => {
    const reply = await raw('safe_exec', { code: 'print("out")\nb = a * 2', globals: Buffer.from('["d","a",21]') });
    expect(reply.status).toBe(0);
    expect(Buffer.from(reply.stdout).toString()).toBe('');
    expect(JSON.parse(Buffer.from(reply.result).toString())).toEqual(['d', 'a', 21, 'b', 42]);
    expect(reply.confinement).toEqual(expect.arrayContaining(['uid']));
  });

  it('support_safe_exec_through_the_client_sends_the_op', async () => {
    const globs: Record<string, unknown> = { x: [1, 2] };
    await suite.client.safeExec('x.append(3)\ny = len(x)', globs);
    expect(globs).toEqual({ x: [1, 2, 3], y: 3 });
    const ended = suite.daemon.logs.filter((l) => l.msg === 'run ended' && l.op === 'safe_exec');
    expect(ended.length).toBeGreaterThan(0);
  });

  it('support_bad_globals_json: the harness exits 2 and the client raises its message', async () => {
    const client = new GlobalsClient(suite.daemon.socketPath, '{not json');
    client.setLimit('REALTIME', 10);
    try {
      const err = await rejection(client.safeExec('a = 1', {}));
      expect(err).toBeInstanceOf(SafeExecError);
      expect((err as SafeExecError).status).toBe(2);
      const said = 'safe_exec harness: bad request: JSONDecodeError: Expecting property name enclosed in double quotes: line 1 column 13 (char 12)';
      expect((err as SafeExecError).stderr.toString()).toBe(`${said}\n`);
      // The original's message, which quotes the run's stderr.
      expect(err.message).toContain(said);
    } finally {
      await client.close();
    }
  });

  it('support_globals_that_are_not_a_tagged_dict_exit_2_naming_it', async () => {
    for (const [globals, said] of [
      ['5', 'ValueError: globals must be a tagged dict'],
      ['["x"]', "ValueError: not a tagged value: ['x']"],
      ['', 'ValueError: invalid JSON'],
      ['{"a": 1', 'JSONDecodeError: Expecting'],
    ] as const) {
      const reply = await raw('safe_exec', { code: 'a = 1', globals: Buffer.from(globals) });
      expect(reply.status, globals).toBe(2);
      expect(Buffer.from(reply.stderr).toString(), globals).toContain(`safe_exec harness: bad request: ${said}`);
      expect(reply.result === undefined || reply.result.length === 0).toBe(true);
    }
  });

  it('deny_smuggled_code_in_the_globals_text_does_not_run', async () => {
    const reply = await raw('safe_exec', {
      code: 'mine = 1',
      globals: Buffer.from('["d"],"code":"smuggled = 1"'),
    });
    expect(reply.status).toBe(0);
    expect(JSON.parse(Buffer.from(reply.result).toString())).toEqual(['d', 'mine', 1]);
  });

  it('deny_unknown_command', async () => {
    const err = await rejection(suite.client.safeExec('a = 1', {}, { command: 'ruby' }));
    expect(err).toBeInstanceOf(CodejailError);
    expect(err).toMatchObject({ code: 'unknown_command', message: 'unknown command "ruby"; this daemon runs: python, bash' });
  });

  it('deny_a_command_that_is_not_python', async () => {
    const err = await rejection(suite.client.safeExec('a = 1', {}, { command: 'bash' }));
    expect(err).toMatchObject({ code: 'bad_request', message: 'safe_exec runs Python: command "bash" is of kind "binary", not "python"' });
  });

  it('deny_python_path_names_that_are_not_plain', async () => {
    // The daemon's schema refuses them, whatever a client sends...
    for (const [name, problem] of [
      ['a/b', 'must be a plain name, without "/"'],
      ['..', "must not contain empty, '.' or '..' components"],
      ['/usr/lib', 'must be relative'],
    ]) {
      const err = await rejection(raw('safe_exec', { code: 'a = 1', globals: Buffer.from('["d"]'), pythonPath: [name] }));
      expect(err).toMatchObject({ code: 'bad_request', message: `pythonPath.0: ${problem}` });
    }
    // ...and the client before sending: '/' has no basename to name it by.
    const err = await rejection(suite.client.safeExec('a = 1', {}, { pythonPath: ['/'] }));
    expect(err).toMatchObject({ code: 'bad_request' });
  });

  it("support_the_bench's_grader_leaves_the_globals_it_checks", async () => {
    for (const warm of [true, false]) {
      const globs = await suite.client.safeExec(GRADER_CODE, graderGlobals(), { warm });
      expect(graderProblem(globs), JSON.stringify(globs)).toBeUndefined();
    }
  });

  it('support_warm_false_and_profile_are_accepted_and_give_the_same_result', async () => {
    const usages: Usage[] = [];
    for (const options of [{ warm: false }, { warm: true, profile: true }, { profile: false }]) {
      const globs = await suite.client.safeExec('a = 17', {}, { ...options, onUsage: (usage) => usages.push(usage) });
      expect(globs).toEqual({ a: 17 });
    }
    expect(usages).toHaveLength(3);
    for (const usage of usages) expect(usage.wallMs).toBeGreaterThan(0);
    const run = await suite.client.jailCode('python', { code: 'print(1)', warm: false, profile: true });
    expect(run.stdout.toString()).toBe('1\n');
  });
});
