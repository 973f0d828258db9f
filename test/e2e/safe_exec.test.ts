// safeExec end to end: client -> socket -> root daemon -> the harness in a confined child, its
// result on the fd 3 channel (jailCode's resultChannel). The key cases of
// test/client/safe_exec_harness.test.ts, through the real sandbox.
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { SafeExecError } from '../../src/client/index.js';
import type { SafeExecOptions } from '../../src/client/index.js';
import { dedent, safeExecCases } from '../helpers/cases.js';
import { daemonSuite } from '../helpers/suite.js';
import { EXEC_CALL_MARKS, EXEC_CALL_MARKS_PATTERN } from '../helpers/python_version.js';

describe.skipIf(process.getuid?.() !== 0)('safeExec end to end', () => {
  const suite = daemonSuite({}, (client) => {
    // Room for a loaded test machine; the cases themselves take milliseconds.
    client.setLimit('REALTIME', 10);
    client.setLimit('CPU', 5);
  });
  const exec = (code: string, globals: Record<string, unknown> = {}, options?: SafeExecOptions) =>
    suite.client.safeExec(code, globals, options);

  it('sets values', async () => {
    const globs: Record<string, unknown> = {};
    await exec('a = 17', globs);
    expect(globs.a).toBe(17);
  });

  it('globals in and out: out = input * 2; container.append(4)', () => safeExecCases.globalsInAndOut(suite.client));

  it('complex globals: bytes decoded, a bad bytes value dropped', async () => {
    const globs = await exec(
      dedent(`
        test_dict = {1: bytes('a', 'utf8'), 2: 'b', 3: {1: bytes('b', 'utf8'), 2: (1, bytes('a', 'utf8'))}}
        bad_val = b'\\x99'
        d = {1: b'a'}
        `),
    );
    expect(globs).toEqual({
      test_dict: { '1': 'a', '2': 'b', '3': { '1': 'b', '2': [1, 'a'] } },
      d: { '1': 'a' },
    });
  });

  it('copies files and imports from a pythonPath directory', () => safeExecCases.filesAndPythonPath(suite.client));

  it('functions calling each other, and printing, do not disturb globals', () => safeExecCases.printingDoesNotDisturbGlobals(suite.client));

  it('an exception raises SafeExecError with the traceback and leaves the globals unchanged', () =>
    safeExecCases.exceptionRaisesSafeExecError(suite.client));

  it('binary extra files, and a zip on pythonPath provided by extraFiles', async () => {
    const zip = execFileSync('/usr/bin/python3', [
      '-c',
      dedent(`
        import io, sys, zipfile
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zipf:
            zipf.writestr("zipped_module1.py", "def func1(x):\\n    return 2*x + 3\\n")
        sys.stdout.buffer.write(buf.getvalue())
        `),
    ]);
    const globs = await exec("import zipped_module1 as zm1\na = zm1.func1(10)\nalso = open('also.dat', 'rb').read().hex()", {}, {
      pythonPath: ['code.zip'],
      extraFiles: [
        ['code.zip', zip],
        ['also.dat', Buffer.from([0x01, 0xff, 0x02, 0xfe])],
      ],
    });
    expect(globs).toEqual({ a: 23, also: '01ff02fe' });
  });

  it('non-ASCII round-trips; unpaired surrogates are dropped without error', async () => {
    const globs = await exec(
      dedent(`
        g = globals()
        for i in range(0xD800, 0xE000):
            g[chr(i)] = 'key'
            g['v%x' % i] = chr(i)
        del g, i
        ü = ключ + '日本'
        `),
      { ключ: 'значение', js: '\ud800' },
    );
    expect(globs).toEqual({ ключ: 'значение', ü: 'значение日本' });
  });

  it('drops __builtins__, modules, functions and objects; keeps NaN, Infinity, big ints, bytes in', async () => {
    const globs = await exec(
      dedent(`
        import os
        def f(): pass
        o = object()
        t = (1, 2)
        n = float('nan')
        i = float('inf')
        big = 2**64
        ok = type(b) is int and b == 2**70 and buf == b'\\xff\\x00'
        `),
      { b: 2n ** 70n, buf: Buffer.from([0xff, 0x00]) },
    );
    expect(Object.keys(globs).sort()).toEqual(['b', 'big', 'i', 'n', 'ok', 't']);
    expect(globs.t).toEqual([1, 2]);
    expect(globs.n).toBeNaN();
    expect(globs.i).toBe(Infinity);
    expect(globs.big).toBe(2n ** 64n);
    expect(globs.b).toBe(2n ** 70n);
    expect(globs.ok).toBe(true);
  });

  it('a forked child cannot write the result channel', async () => {
    const globs = await exec(
      dedent(`
        import os
        pid = os.fork()
        if pid == 0:
            for fd in range(3, 32):
                try:
                    os.write(fd, b'["d","evil",1]')
                except OSError:
                    pass
            in_child = True
        else:
            os.waitpid(pid, 0)
            in_parent = True
        `),
    );
    expect(globs).toEqual({ pid: expect.any(Number), in_parent: true });
  });

  describe("the original's exact results", () => {
    const failure = (code: string, options?: SafeExecOptions) =>
      exec(code, {}, options).then(
        () => expect.unreachable('safeExec succeeded'),
        (err: unknown) => {
          expect(err).toBeInstanceOf(SafeExecError);
          return err as SafeExecError;
        },
      );

    it("a failed run's message is exactly the original's; the code's stdout is discarded, its stderr kept", async () => {
      const err = await failure("print('to stdout')\nimport sys\nsys.stderr.write(\"it's\\n\")\nraise ValueError('soup')");
      const stderr = err.stderr.toString();
      expect(stderr).toMatch(
        new RegExp(
          `^it's\\nTraceback \\(most recent call last\\):\\n  File "jailed_code", line \\d+, in <module>\\n    exec\\(code, g_dict\\)\\n${EXEC_CALL_MARKS_PATTERN}` +
            `  File "<string>", line 4, in <module>\\nValueError: soup\\n$`,
        ),
      );
      expect(err.stdout.length).toBe(0);
      const line = /line (\d+)/.exec(stderr)![1];
      expect(err.message).toBe(
        "Couldn't execute jailed code: stdout: b'', stderr: b'it\\'s\\nTraceback (most recent call last):\\n" +
          `  File "jailed_code", line ${line}, in <module>\\n    exec(code, g_dict)\\n${EXEC_CALL_MARKS.replace(/\n/g, '\\n')}` +
          `  File "<string>", line 4, in <module>\\nValueError: soup\\n' with status code: 1`,
      );
      expect(err).toMatchObject({ status: 1, timedOut: false, truncated: false });
    });

    it('deny_safe_exec_starting_a_program: subprocess.run(sys.executable) raises PermissionError', async () => {
      const err = await failure('import subprocess, sys\nsubprocess.run(sys.executable)');
      expect(err.stderr.toString()).toMatch(/\nPermissionError: \[Errno 13\] Permission denied: '\/[^']*python3[.0-9]*'\n$/);
      expect(err.status).toBe(1);
    });

    it('allow_safe_exec_fork_without_exec', async () => {
      const globs = await exec('import os\npid = os.fork()\nif pid == 0: os._exit(5)\nstatus = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])\ndel pid, os');
      expect(globs).toEqual({ status: 5 });
    });

    it('a timeout reads "stdout: b\'\', stderr: b\'\' with status code: -9"; timedOut is a field', async () => {
      const err = await failure('import time\nprint("waiting")\ntime.sleep(60)', { limits: { REALTIME: 1 } });
      expect(err.message).toBe("Couldn't execute jailed code: stdout: b'', stderr: b'' with status code: -9");
      expect(err).toMatchObject({ status: -9, timedOut: true });
    });
  });
});
