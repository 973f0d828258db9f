// Behaviours of the original CodeJail's jail_code and safe_exec that hold whatever runs the code:
// the daemon's sandbox (test/e2e) and the client's unsafe mode (test/client/unsafe.test.ts).
// Each case takes a Client, runs, asserts, and returns the result for any checks that only one
// side can make (the confinement layers, the daemon's logs).
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';
import { SafeExecError, type Client, type JailCodeResult } from '../../src/client/index.js';
import { EXEC_CALL_MARKS_PATTERN } from './python_version.js';

const fixtures = path.join(path.dirname(fileURLToPath(import.meta.url)), '../fixtures');
export const fixture = (name: string) => path.join(fixtures, name);

export const dedent = (s: string) => {
  const lines = s.replace(/^\n/, '').split('\n');
  const indent = Math.min(...lines.filter((l) => l.trim()).map((l) => l.match(/^ */)![0].length));
  return lines.map((l) => l.slice(indent)).join('\n');
};

const py = (client: Client, options: Parameters<Client['jailCode']>[1]) => client.jailCode('python', options);

/** Resolves with the SafeExecError `code` raises; fails the test if safeExec succeeds. */
export async function safeExecFailure(client: Client, code: string, globals: Record<string, unknown> = {}): Promise<SafeExecError> {
  try {
    await client.safeExec(code, globals);
  } catch (err) {
    expect(err).toBeInstanceOf(SafeExecError);
    return err as SafeExecError;
  }
  throw new Error('safeExec did not fail');
}

export const jailCodeCases = {
  async helloWorld(client: Client): Promise<JailCodeResult> {
    const r = await py(client, { code: "print('Hello, world!')" });
    expect(r.stdout.toString()).toBe('Hello, world!\n');
    expect(r.stderr.toString()).toBe('');
    expect(r.status).toBe(0);
    return r;
  },

  async argv(client: Client): Promise<JailCodeResult> {
    const r = await py(client, { code: "import sys; print(':'.join(sys.argv[1:]))", argv: ['Hello', 'world', '-x'] });
    expect(r.stdout.toString()).toBe('Hello:world:-x\n');
    return r;
  },

  async exceptionTraceback(client: Client): Promise<JailCodeResult> {
    const r = await py(client, { code: "raise Exception('FAIL')" });
    expect(r.status).not.toBe(0);
    expect(r.stdout.toString()).toBe('');
    // Python >= 3.9 names the script by its absolute path: the run directory, then jailed_code.
    expect(r.stderr.toString()).toMatch(
      /^Traceback \(most recent call last\):\n {2}File "\/[^"]+\/jailed_code", line 1, in <module>\n {4}raise Exception\('FAIL'\)\nException: FAIL\n$/,
    );
    return r;
  },

  async stdin(client: Client): Promise<JailCodeResult> {
    const r = await py(client, { code: 'import json,sys; print(sum(json.load(sys.stdin)))', stdin: '[1, 2.5, 33]' });
    expect(r.stdout.toString().trim()).toBe('36.5');
    return r;
  },

  async filesCopied(client: Client): Promise<JailCodeResult> {
    const r = await py(client, { code: "print('Look:', open('hello.txt').read())", files: [fixture('hello.txt')] });
    expect(r.stdout.toString()).toBe('Look: Hello there.\n\n');
    return r;
  },

  async directoriesCopied(client: Client): Promise<JailCodeResult> {
    const r = await py(client, {
      code: dedent(`
        import os
        res = []
        for path, dirs, files in os.walk("."):
            res.append((path, sorted(dirs), sorted(files)))
        for row in sorted(res):
            print(row)
        `),
      files: [fixture('pylib')],
    });
    expect(r.stdout.toString()).toBe(
      dedent(`
        ('.', ['pylib', 'tmp'], ['jailed_code'])
        ('./pylib', ['sub'], ['module.py'])
        ('./pylib/sub', [], ['data.txt'])
        ('./tmp', [], [])
        `),
    );
    return r;
  },

  async binaryExtraFiles(client: Client): Promise<JailCodeResult> {
    const r = await py(client, {
      extraFiles: [
        ['run.py', Buffer.from("import os\nprint(sorted(os.listdir('.')))\nprint(open('also.txt', 'rb').read())\n")],
        ['also.txt', Buffer.from([0, 1, 2, 255, 254])],
      ],
      argv: ['run.py'],
    });
    expect(r.stdout.toString()).toBe("['also.txt', 'run.py', 'tmp']\nb'\\x00\\x01\\x02\\xff\\xfe'\n");
    return r;
  },

  async cpuLimit(client: Client): Promise<JailCodeResult> {
    client.setLimit('CPU', 1);
    client.setLimit('REALTIME', 100);
    const r = await py(client, { code: 'print(sum(range(2**31-1)))' });
    expect(r.stdout.toString()).toBe('');
    expect(r.status).toBe(-os.constants.signals.SIGXCPU);
    return r;
  },

  async realtimeKill(client: Client, slug?: string): Promise<JailCodeResult> {
    client.setLimit('REALTIME', 1);
    const r = await py(client, { code: "import time; time.sleep(1.5); print('Done!')", slug });
    expect(r.stdout.toString()).toBe('');
    expect(r.status).toBe(-9);
    expect(r.timedOut).toBe(true);
    return r;
  },
};

export const safeExecCases = {
  async globalsInAndOut(client: Client): Promise<void> {
    const globs: Record<string, unknown> = { input: 21, container: [1, 2, 3] };
    const result = await client.safeExec('out = input * 2; container.append(4)', globs);
    expect(result).toEqual({ input: 21, container: [1, 2, 3, 4], out: 42 });
    expect(globs).toEqual(result);
  },

  async exceptionRaisesSafeExecError(client: Client): Promise<void> {
    const globs: Record<string, unknown> = { keep: [1] };
    const err = await safeExecFailure(
      client,
      "import sys\nsys.stderr.write('own words\\n')\nkeep.append(2)\nraise ValueError(\"That's not how you pour soup!\")",
      globs,
    );
    // As the original's test: the message writes the output as a bytes repr, so ' may be escaped.
    expect(err.message).toMatch(/ValueError: That\\?'s not how you pour soup!/);
    expect(err.stderr.toString()).toContain('own words\n');
    expect(err.stderr.toString()).toMatch(new RegExp(`  File "jailed_code", line \\d+, in <module>\\n    exec\\(code, g_dict\\)\\n${EXEC_CALL_MARKS_PATTERN}  File "<string>", line 4, in <module>\\nValueError`));
    expect(err.status).toBe(1);
    expect(globs).toEqual({ keep: [1] });
  },

  async filesAndPythonPath(client: Client): Promise<void> {
    const globs = await client.safeExec("import module\na = module.const\nb = open('hello.txt').read()", {}, {
      files: [fixture('hello.txt')],
      pythonPath: [fixture('pylib')],
    });
    expect(globs).toEqual({ a: 42, b: 'Hello there.\n' });
  },

  async printingDoesNotDisturbGlobals(client: Client): Promise<void> {
    const globs = await client.safeExec('def f():\n    return 1723\ndef g():\n    return f()\nx = g()\nprint(\'["d","evil",1]\')');
    expect(globs).toEqual({ x: 1723 });
  },
};
