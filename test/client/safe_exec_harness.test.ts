// safeExec and its harness without a daemon: a fake client runs python/safe_exec_harness.py the
// way the daemon does (run dir as cwd, `python3 -E -B jailed_code`, the result channel on fd 3),
// so these exercise the real harness, the tagged encoding and safeExec's handling of results.
// The ports of the original CodeJail's safe_exec and json_safe tests are marked "(original)".
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { collectFiles, encodeExtraFiles } from '../../src/client/files.js';
import type { ExtraFile } from '../../src/client/files.js';
import { DEFAULT_RESULT_BOUNDS, ResultBoundError, decodeResult, encodeGlobals } from '../../src/client/globals_codec.js';
import type { ResultBounds } from '../../src/client/globals_codec.js';
import { pythonBytesRepr } from '../../src/client/python_repr.js';
import { PythonFloat } from '../../src/client/python_values.js';
import { SafeExecError, harnessSource, failureMessage, safeExec } from '../../src/client/safe_exec.js';
import type { SafeExecOptions } from '../../src/client/safe_exec.js';
import { harnessRequest, parseHarnessRequest } from '../helpers/harness_stdin.js';

const PYTHON = '/usr/bin/python3';
const HARNESS = fileURLToPath(new URL('../../python/safe_exec_harness.py', import.meta.url));
/** The line of the harness's `exec(code, g_dict)`, which tracebacks name. */
const EXEC_LINE = readFileSync(HARNESS, 'utf8').split('\n').indexOf('        exec(code, g_dict)') + 1;
const fixtures = path.join(path.dirname(fileURLToPath(import.meta.url)), '../fixtures');
const dedent = (s: string) => {
  const lines = s.replace(/^\n/, '').split('\n');
  const indent = Math.min(...lines.filter((l) => l.trim()).map((l) => l.match(/^ */)![0].length));
  return lines.map((l) => l.slice(indent)).join('\n');
};

interface RunOutput {
  stdout: Buffer;
  stderr: Buffer;
  status: number;
  result?: Buffer;
}

/** Runs `python3 -E -B <script>` in `cwd` with stdin, and fd 3 a pipe unless `noChannel`. */
function runPython(script: string, cwd: string, stdin: string | Buffer, noChannel = false): Promise<RunOutput> {
  return new Promise((resolve, reject) => {
    const child = spawn(PYTHON, ['-E', '-B', script], {
      cwd,
      stdio: noChannel ? ['pipe', 'pipe', 'pipe'] : ['pipe', 'pipe', 'pipe', 'pipe'],
      env: { PATH: '/usr/bin:/bin', LANG: 'C.UTF-8' },
    });
    const chunks: Buffer[][] = [[], [], [], []];
    for (const fd of [1, 2, 3]) {
      const stream = child.stdio[fd] as NodeJS.ReadableStream | null;
      stream?.on('data', (chunk: Buffer) => chunks[fd].push(chunk));
    }
    child.on('error', reject);
    child.on('close', (code, signal) => {
      resolve({
        stdout: Buffer.concat(chunks[1]),
        stderr: Buffer.concat(chunks[2]),
        status: code ?? 128 + (signal ? 9 : 0),
        result: noChannel ? undefined : Buffer.concat(chunks[3]),
      });
    });
    child.stdin!.on('error', () => {});
    child.stdin!.end(stdin);
  });
}

/** Recreates what jailCode would in a fresh run dir, runs the code there, and cleans up. */
const calls: Array<{ command: string; options: any }> = [];
const fakeClient = {
  async jailCode(command: string, options: any): Promise<RunOutput> {
    calls.push({ command, options });
    expect(command).toBe('python');
    const dir = mkdtempSync(path.join(tmpdir(), 'cj-safe-exec-'));
    try {
      for (const entry of await collectFiles(options.files ?? [])) {
        const target = path.join(dir, entry.name);
        if (entry.type === 'dir') mkdirSync(target);
        else if (entry.type === 'symlink') symlinkSync(entry.target, target);
        else writeFileSync(target, entry.data, { mode: entry.executable ? 0o755 : 0o644 });
      }
      for (const [name, data] of encodeExtraFiles((options.extraFiles ?? []) as ExtraFile[])) {
        writeFileSync(path.join(dir, name), data);
      }
      writeFileSync(path.join(dir, 'jailed_code'), options.code);
      const out = await runPython('jailed_code', dir, options.stdin ?? '', !options.resultChannel);
      return out;
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
};

const exec = (code: string, globals: Record<string, unknown> = {}, options?: SafeExecOptions) =>
  safeExec(fakeClient, code, globals, options);

/** The error safeExec rejects with. */
async function failure(code: string, globals: Record<string, unknown> = {}, options?: SafeExecOptions): Promise<SafeExecError> {
  try {
    await exec(code, globals, options);
  } catch (err) {
    expect(err).toBeInstanceOf(SafeExecError);
    return err as SafeExecError;
  }
  throw new Error('safeExec did not fail');
}

describe('safeExec (original tests)', () => {
  it('sets values', async () => {
    const globs: Record<string, unknown> = {};
    await exec('a = 17', globs);
    expect(globs.a).toBe(17);
  });

  it('complex globals: bytes decoded, keys made strings, tuples lists, a bad bytes value dropped', async () => {
    const globs: Record<string, unknown> = {};
    await exec(
      dedent(`
        from builtins import bytes
        test_dict = {1: bytes('a', 'utf8'), 2: 'b', 3: {1: bytes('b', 'utf8'), 2: (1, bytes('a', 'utf8'))}}
        bad_val = b'\\x99'
        `),
      globs,
    );
    expect(globs.test_dict).toEqual({ '1': 'a', '2': 'b', '3': { '1': 'b', '2': [1, 'a'] } });
    expect('bad_val' in globs).toBe(false);
  });

  it('json_safe: bad bytes keys and values drop their entry, good bytes keys become strings', async () => {
    const globs = await exec(
      "globals().update({b'\\x99bad_key': b'good_value', b'good_key': b'\\x99bad_value', b'fine': b'ok', 'a': 'b'})",
    );
    expect(globs).toEqual({ fine: 'ok', a: 'b' });
  });

  it('copies files', async () => {
    const globs: Record<string, unknown> = {};
    await exec("a = 'Look: ' + open('hello.txt').read()", globs, { files: [path.join(fixtures, 'hello.txt')] });
    expect(globs.a).toBe('Look: Hello there.\n');
  });

  it('imports from a pythonPath directory', async () => {
    const globs: Record<string, unknown> = {};
    await exec('import module; a = module.const', globs, { pythonPath: [path.join(fixtures, 'pylib')] });
    expect(globs.a).toBe(42);
    // The directory is sent like `files`, and its basename goes on sys.path.
    const { options } = calls.at(-1)!;
    expect(options.files).toEqual([path.join(fixtures, 'pylib')]);
    expect(parseHarnessRequest(options.stdin).python_path).toEqual(['pylib']);
  });

  it('does not send a pythonPath entry twice when files already has it', async () => {
    const pylib = path.join(fixtures, 'pylib');
    const globs = await exec('import module; a = module.const', {}, { files: [pylib], pythonPath: [pylib] });
    expect(globs.a).toBe(42);
    expect(calls.at(-1)!.options.files).toEqual([pylib]);
  });

  it('runs functions calling each other', async () => {
    const globs: Record<string, unknown> = {};
    await exec(
      dedent(`
        def f():
            return 1723
        def g():
            return f()
        x = g()
        `),
      globs,
    );
    expect(globs.x).toBe(1723);
  });

  it('printing does not disturb globals', async () => {
    const globs: Record<string, unknown> = {};
    await exec("a = 17; print('hi!')", globs);
    expect(globs).toEqual({ a: 17 });
  });

  it('raises SafeExecError with the traceback, leaving the globals unchanged', async () => {
    const globs: Record<string, unknown> = { keep: [1, 2], x: 1 };
    const err = await failure(
      dedent(`
        x = 2
        keep.append(3)
        raise ValueError("That's not how you pour soup!")
        `),
      globs,
    );
    expect(err.status).toBe(1);
    expect(err.stderr.toString()).toBe(
      dedent(`
        Traceback (most recent call last):
          File "jailed_code", line ${EXEC_LINE}, in <module>
            exec(code, g_dict)
          File "<string>", line 3, in <module>
        ValueError: That's not how you pour soup!
        `),
    );
    // The original's message, the output written as Python's bytes repr (both quotes inside: ').
    expect(err.message).toBe(
      `Couldn't execute jailed code: stdout: b'', stderr: b'Traceback (most recent call last):\\n  File "jailed_code", ` +
        `line ${EXEC_LINE}, in <module>\\n    exec(code, g_dict)\\n  File "<string>", line 3, in <module>\\n` +
        `ValueError: That\\'s not how you pour soup!\\n' with status code: 1`,
    );
    expect(globs).toEqual({ keep: [1, 2], x: 1 });
  });

  it('writes binary extra files', async () => {
    const globs: Record<string, unknown> = {};
    await exec(
      dedent(`
        import io
        with io.open("extra.txt", 'r') as f:
            extra = f.read()
        with open("also.dat", 'rb') as f:
            also = f.read().hex()
        `),
      globs,
      {
        extraFiles: [
          ['extra.txt', Buffer.from("I'm extra!\n")],
          ['also.dat', Buffer.from([0x01, 0xff, 0x02, 0xfe])],
        ],
      },
    );
    expect(globs.extra).toBe("I'm extra!\n");
    expect(globs.also).toBe('01ff02fe');
  });

  it('imports from a zip on pythonPath provided by extraFiles', async () => {
    const zip = execFileSync(PYTHON, [
      '-c',
      dedent(`
        import io, sys, textwrap, zipfile
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zipf:
            zipf.writestr("zipped_module1.py", "def func1(x):\\n    return 2*x + 3\\n")
            zipf.writestr("zipped_module2.py", "def func2(s):\\n    return 'X' + s + s + 'X'\\n")
        sys.stdout.buffer.write(buf.getvalue())
        `),
    ]);
    const globs: Record<string, unknown> = {};
    await exec(
      dedent(`
        import zipped_module1 as zm1
        import zipped_module2 as zm2
        a = zm1.func1(10)
        b = zm2.func2("hello")
        `),
      globs,
      { pythonPath: ['code.zip'], extraFiles: [['code.zip', zip]] },
    );
    expect(globs.a).toBe(23);
    expect(globs.b).toBe('XhellohelloX');
    // Provided by extraFiles, so not read from this machine.
    expect(calls.at(-1)!.options.files).toEqual([]);
  });
});

describe('safeExec: values in and out', () => {
  it('globals in and out: out = input * 2; container.append(4)', async () => {
    const globs: Record<string, unknown> = { input: 21, container: [1, 2, 3] };
    const result = await exec('out = input * 2; container.append(4)', globs);
    expect(result).toEqual({ input: 21, container: [1, 2, 3, 4], out: 42 });
    expect(globs).toEqual(result);
  });

  it('replaces the contents of the globals object: deleted and unsendable keys go', async () => {
    const fn = () => 1;
    const globs: Record<string, unknown> = { a: 1, b: 2, fn };
    await exec('del a; c = 3', globs);
    expect(globs).toEqual({ b: 2, c: 3 });
  });

  it('round-trips non-ASCII keys and values', async () => {
    const globs: Record<string, unknown> = { ключ: 'значение', 日本: '語', '😀': ['🎉', { ñ: 'ü' }] };
    const result = await exec(
      "ok = (ключ == 'значение' and 日本 == '語' and globals()['😀'] == ['🎉', {'ñ': 'ü'}])\nü = 'ñ'\nglobals()['ключ2'] = 'знач\\u00e9'",
      globs,
    );
    expect(result).toEqual({
      ключ: 'значение',
      日本: '語',
      '😀': ['🎉', { ñ: 'ü' }],
      ok: true,
      ü: 'ñ',
      ключ2: 'значé',
    });
  });

  it('drops every unpaired surrogate, as key and as value, without error', async () => {
    const result = await exec(
      dedent(`
        g = globals()
        for i in range(0xD800, 0xE000):
            g[chr(i)] = 'key'
            g['v%x' % i] = chr(i)
            g['n%x' % i] = ['fine', {'k': chr(i)}]
            g[('%x' % i).encode() + b'\\xed\\xa0\\x80'] = 'surrogate as bytes'
        del g, i
        good = 'fine'
        `),
    );
    expect(result).toEqual({ good: 'fine' });
  });

  it('drops unpaired surrogates coming from JS (sampled) without error', async () => {
    const codes: number[] = [];
    for (let cp = 0xd800; cp <= 0xdfff; cp += 64) codes.push(cp);
    codes.push(0xdfff);
    const globs: Record<string, unknown> = { plain: 'x' };
    for (const cp of codes) {
      globs[String.fromCharCode(cp)] = 'key';
      globs[`v${cp.toString(16)}`] = String.fromCharCode(cp);
    }
    const result = await exec(
      `seen = sum(1 for k, v in globals().items() if (len(k) == 1 and 0xD800 <= ord(k) < 0xE000) or (isinstance(v, str) and len(v) == 1 and 0xD800 <= ord(v) < 0xE000))`,
      globs,
    );
    expect(result).toEqual({ plain: 'x', seen: codes.length * 2 });
    expect(globs).toEqual(result);
  });

  it('{1: b"a"} -> {"1": "a"}; tuples -> arrays', async () => {
    const result = await exec("d = {1: b'a'}; t = (1, (2, 3), [4, (5,)]); k = {(1, 2): 'x'}; f = {1.5: 'y', None: 'z', True: 'w'}");
    expect(result).toEqual({ d: { '1': 'a' }, t: [1, [2, 3], [4, [5]]], f: { '1.5': 'y', null: 'z', true: 'w' } });
  });

  it('json_safe: top-level keys that are not str become JSON key strings, the last of equal ones kept; str values and keys pass whole', async () => {
    // The harness round-trips the whole dict only when a key is not a str (that trip is what
    // turns keys into strings); str values and keys are checked by their UTF-8 encoding alone.
    const result = await exec("g = globals(); g[1] = 'one'; g['1'] = 'uno'; g[2.5] = 'x'; g[None] = 'n'; s = 'é\\n\"' * 3; e = ''");
    expect(result).toEqual({ '1': 'uno', '2.5': 'x', null: 'n', s: 'é\n"é\n"é\n"', e: '' });
    expect(await exec("s = 'a' * 100000; d = {'k': 'é'}")).toEqual({ s: 'a'.repeat(100000), d: { k: 'é' } });
  });

  it('drops __builtins__, modules, functions, classes, objects and nested unserialisables', async () => {
    const result = await exec(
      dedent(`
        import os, math
        from math import sqrt
        def f(): pass
        class C: pass
        o = C()
        s = {1, 2}
        c = 1 + 2j
        l = [1, object()]
        dd = {'a': f}
        loop = []
        loop.append(loop)
        ok = 1
        `),
    );
    expect(result).toEqual({ ok: 1 });
  });

  it('keeps booleans and None, and dict subclasses as dicts', async () => {
    const result = await exec('import collections\nt, f, n = True, False, None\nod = collections.OrderedDict(a=1)');
    expect(result).toEqual({ t: true, f: false, n: null, od: { a: 1 } });
  });

  it('keeps NaN and +-Infinity both ways', async () => {
    const result = await exec(
      "import math\nok = math.isnan(x) and y == float('inf') and z == -float('inf') and type(x) is float\nn = float('nan')\ni = float('inf')\nm = [-i, 1.5]",
      { x: NaN, y: Infinity, z: -Infinity },
    );
    expect(result.ok).toBe(true);
    expect(result.n).toBeNaN();
    expect(result.i).toBe(Infinity);
    expect(result.m).toEqual([-Infinity, 1.5]);
    expect(result.x).toBeNaN();
  });

  it('big ints come back as BigInt, BigInt goes in as int; safe ints stay numbers', async () => {
    const result = await exec(
      dedent(`
        big = 2**64
        neg = -2**64
        edge = 2**53 - 1
        over = 2**53
        nested = [2**70, {'k': -2**60}]
        ok = type(b) is int and b == 12345678901234567890123 and type(small) is int and small == 5
        twice = b * 2
        `),
      { b: 12345678901234567890123n, small: 5n },
    );
    expect(result.big).toBe(2n ** 64n);
    expect(result.neg).toBe(-(2n ** 64n));
    expect(result.edge).toBe(Number.MAX_SAFE_INTEGER);
    expect(result.over).toBe(2n ** 53n);
    expect(result.nested).toEqual([2n ** 70n, { k: -(2n ** 60n) }]);
    expect(result.ok).toBe(true);
    expect(result.twice).toBe(24691357802469135780246n);
    expect(result.small).toBe(5);
  });

  it('allow_int_4300_digits / deny_int_4301_digits: an int longer than the client accepts is dropped, not sent', async () => {
    // The code lifts the interpreter's own limit (3.11+), which would otherwise drop the entry.
    const result = await exec(
      dedent(`
        import sys
        if hasattr(sys, 'set_int_max_str_digits'):
            sys.set_int_max_str_digits(0)
        longest = 10**4300 - 1
        too_long = -10**4300
        nested = [1, 10**5000]
        kept = 1
        `),
    );
    expect(result.longest).toBe(10n ** 4300n - 1n);
    expect(result).not.toHaveProperty('too_long');
    expect(result).not.toHaveProperty('nested');
    expect(result.kept).toBe(1);
  });

  it('JS numbers: safe integers become int, others float', async () => {
    const result = await exec(
      "kinds = [type(v).__name__ for v in (i, f, big, neg0, tiny)]\nsame = big == 2.0**60 and f == 1.5",
      { i: 3, f: 1.5, big: 2 ** 60, neg0: -0, tiny: 1e-7 },
    );
    expect(result.kinds).toEqual(['int', 'float', 'float', 'int', 'float']);
    expect(result.same).toBe(true);
    expect(result.big).toBe(2 ** 60);
  });

  it('a Buffer or Uint8Array input arrives as bytes', async () => {
    const result = await exec("kinds = [type(buf).__name__, type(u8).__name__]\nhexes = [buf.hex(), u8.hex()]\nnested_ok = nested[0] == b'hi'", {
      buf: Buffer.from([0xff, 0x00, 0x01]),
      u8: new Uint8Array([104, 105]),
      nested: [Buffer.from('hi')],
    });
    expect(result.kinds).toEqual(['bytes', 'bytes']);
    expect(result.hexes).toEqual(['ff0001', '6869']);
    expect(result.nested_ok).toBe(true);
    // Coming back, bytes are decoded as UTF-8, or their entry is dropped.
    expect(result.u8).toBe('hi');
    expect(result.nested).toEqual(['hi']);
    expect('buf' in result).toBe(false);
  });

  it('JS values that cannot be represented are not sent', async () => {
    class Thing {
      x = 1;
    }
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    const globs: Record<string, unknown> = {
      fn: () => 1,
      sym: Symbol('s'),
      undef: undefined,
      date: new Date(),
      map: new Map(),
      thing: new Thing(),
      nestedFn: [1, () => 2],
      hole: [1, , 3], // eslint-disable-line no-sparse-arrays
      cyclic,
      f32: new Float32Array(2),
      ok: { nested: [1, { deeper: null }] },
      [Symbol('k')]: 1,
    };
    const result = await exec('names = sorted(k for k in globals() if k != "__builtins__")', globs);
    expect(result.names).toEqual(['ok']);
    expect(result.ok).toEqual({ nested: [1, { deeper: null }] });
  });

  it('a value used twice (not a cycle) is sent twice', async () => {
    const shared = [1, 2];
    const result = await exec('same = a == b', { a: [shared, shared], b: [[1, 2], [1, 2]] });
    expect(result.same).toBe(true);
  });

  it('a key named __proto__ is an own property, not the prototype', async () => {
    const globs: Record<string, unknown> = {};
    const result = await exec("globals()['__proto__'] = {'polluted': 1}; d = {'__proto__': {'polluted': 2}}", globs);
    expect(Object.getPrototypeOf(result)).toBe(Object.prototype);
    expect(Object.getPrototypeOf(globs)).toBe(Object.prototype);
    expect(Object.getOwnPropertyDescriptor(globs, '__proto__')?.value).toEqual({ polluted: 1 });
    expect(Object.getPrototypeOf(result.d)).toBe(Object.prototype);
    expect(Object.getOwnPropertyDescriptor(result.d, '__proto__')?.value).toEqual({ polluted: 2 });
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});

describe('safeExec: the result channel', () => {
  it('output on stdout, sys.__stdout__ and fd 1 cannot corrupt the result', async () => {
    const result = await exec(
      dedent(`
        import os, sys
        print('["d","evil",1]')
        sys.__stdout__.write('{"evil": 2}\\n')
        sys.__stdout__.flush()
        os.write(1, b'["d","evil",3]')
        a = 1
        `),
    );
    expect(result).toEqual({ a: 1 });
  });

  it('the code cannot write to fd 3: it is closed before the code runs', async () => {
    const result = await exec(
      dedent(`
        import os
        try:
            os.write(3, b'["d","evil",1]')
            wrote = True
        except OSError:
            wrote = False
        `),
    );
    expect(result).toEqual({ wrote: false });
  });

  // Finds the private copy of the channel (a close-on-exec pipe or socket above fd 2; node makes
  // socketpairs, the daemon may make pipes) plus fd 3, so the
  // children below aim at exactly the channel and not at fds this test runner happens to leak.
  const findChannel = dedent(`
    import os, stat
    def _channel_fds():
        fds = []
        for name in os.listdir('/proc/self/fd'):
            fd = int(name)
            try:
                mode = os.fstat(fd).st_mode
            except OSError:
                continue
            if fd > 2 and (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)) and not os.get_inheritable(fd):
                fds.append(fd)
        return fds
    targets = _channel_fds() + [3]
    del _channel_fds
    `);

  it('a forked child cannot write the result channel, and one returning from the code reports nothing', async () => {
    const result = await exec(
      findChannel +
        dedent(`
          def attempt():
              wrote = 0
              for fd in targets:
                  try:
                      os.write(fd, b'["d","evil",1]')
                      wrote += 1
                  except OSError:
                      pass
              return wrote
          pid = os.fork()
          if pid == 0:
              os._exit(attempt())
          child_wrote = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
          pid = os.fork()
          if pid == 0:
              attempt()
              in_child = True  # and back into the harness, which must not report for it
          else:
              os.waitpid(pid, 0)
              in_parent = True
          `),
    );
    expect((result.targets as number[]).length).toBeGreaterThanOrEqual(2);
    expect(result).toEqual({ targets: result.targets, pid: expect.any(Number), child_wrote: 0, in_parent: true });
  });

  it('a forked child that exits cleanly leaves the parent result intact', async () => {
    const result = await exec(
      dedent(`
        import os
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        a = 1
        `),
    );
    expect(result).toEqual({ pid: expect.any(Number), a: 1 });
  });

  it('deny_safe_exec_starting_a_program_even_the_interpreter: PermissionError, as under the original', async () => {
    // Landlock lets the interpreter be executed (the run starts with it); the harness's seccomp
    // filter answers every later execve EACCES. Forking without exec still works.
    const result = await exec(
      dedent(`
        import os, subprocess, sys
        def attempt(start):
            try:
                start()
                return 'started'
            except OSError as e:
                return '%s: %s' % (type(e).__name__, e)
        interpreter = attempt(lambda: subprocess.run([sys.executable, '-c', 'pass']))
        by_name = attempt(lambda: subprocess.run(['python3', '-c', 'pass'], env={'PATH': '/usr/bin:/bin'}))
        spawned = attempt(lambda: os.waitpid(os.posix_spawn('/usr/bin/true', ['true'], {}), 0))
        pid = os.fork()
        if pid == 0:
            try:
                os.execv(sys.executable, [sys.executable, '-c', 'pass'])
            except PermissionError:
                os._exit(13)
            os._exit(0)
        child_exec = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        del attempt, pid
        `),
    );
    const denied = (file: string) => `PermissionError: [Errno 13] Permission denied: '${file}'`;
    expect(result).toEqual({
      interpreter: expect.stringMatching(/^PermissionError: \[Errno 13\] Permission denied: '\/.*python3[.0-9]*'$/),
      by_name: denied('python3'),
      spawned: denied('/usr/bin/true'),
      child_exec: 13,
    });
  });
});

describe('safeExec: failures', () => {
  it('discards what the code prints, keeps what it writes to stderr', async () => {
    const err = await failure("import sys\nprint('before')\nsys.stdout.write('more')\nsys.stderr.write('my own words\\n')\n1/0");
    expect(err.stdout.toString()).toBe('');
    expect(err.stderr.toString()).toMatch(/^my own words\nTraceback \(most recent call last\):\n/);
    expect(err.stderr.toString()).toContain('ZeroDivisionError: division by zero');
    expect(err.message).toMatch(/^Couldn't execute jailed code: stdout: b'', stderr: b'my own words\\nTraceback/);
  });

  it('a syntax error shows the harness frame, then the code as "<string>"', async () => {
    const err = await failure('x = (');
    expect(err.status).toBe(1);
    expect(err.stderr.toString()).toBe(
      [
        'Traceback (most recent call last):',
        `  File "jailed_code", line ${EXEC_LINE}, in <module>`,
        '    exec(code, g_dict)',
        '  File "<string>", line 1',
        '    x = (',
        '        ^',
        "SyntaxError: '(' was never closed",
        '',
      ].join('\n'),
    );
  });

  it("a traceback shows the original's frames: jailed_code's exec, then the code's \"<string>\" without source", async () => {
    const err = await failure('def f():\n    raise KeyError("k")\nf()');
    expect(err.stderr.toString()).toBe(
      [
        'Traceback (most recent call last):',
        `  File "jailed_code", line ${EXEC_LINE}, in <module>`,
        '    exec(code, g_dict)',
        '  File "<string>", line 3, in <module>',
        '  File "<string>", line 2, in f',
        "KeyError: 'k'",
        '',
      ].join('\n'),
    );
  });

  it('a chained exception names the harness frame jailed_code in every part', async () => {
    const err = await failure('try:\n    1/0\nexcept Exception as e:\n    raise KeyError("k") from e');
    const text = err.stderr.toString();
    expect(text).toContain('The above exception was the direct cause of the following exception:');
    expect(text).not.toContain('safe_exec_harness');
    expect(text).not.toMatch(/File "\//);
    expect(text.endsWith(`  File "jailed_code", line ${EXEC_LINE}, in <module>\n    exec(code, g_dict)\n  File "<string>", line 4, in <module>\nKeyError: 'k'\n`)).toBe(true);
  });

  it('a timeout: the message is the original\'s with status -9; "timed out" is in the fields', async () => {
    const client = {
      jailCode: async () => ({ stdout: Buffer.alloc(0), stderr: Buffer.alloc(0), status: -9, timedOut: true, truncated: false }),
    };
    const err = await safeExec(client, 'while True: pass', {}).catch((e: unknown) => e as SafeExecError);
    expect(err).toBeInstanceOf(SafeExecError);
    expect(err.message).toBe("Couldn't execute jailed code: stdout: b'', stderr: b'' with status code: -9");
    expect(err).toMatchObject({ status: -9, timedOut: true, truncated: false });
  });

  it('truncated output is in the fields, not the message', async () => {
    const client = {
      jailCode: async () => ({ stdout: Buffer.alloc(0), stderr: Buffer.from('x'), status: 1, timedOut: false, truncated: true }),
    };
    const err = await safeExec(client, 'a = 1', {}).catch((e: unknown) => e as SafeExecError);
    expect(err.message).toBe("Couldn't execute jailed code: stdout: b'', stderr: b'x' with status code: 1");
    expect(err).toMatchObject({ timedOut: false, truncated: true });
  });

  it('sys.exit(0) in the code is a failure: no globals were reported', async () => {
    const globs = { a: 1 };
    const err = await failure('import sys; a = 2; sys.exit(0)', globs);
    expect(err.status).toBe(0);
    expect(err.message).toContain('without reporting its globals');
    expect(globs).toEqual({ a: 1 });
  });

  it('sys.exit(3) gives its status', async () => {
    const err = await failure('import sys; sys.exit(3)');
    expect(err.status).toBe(3);
  });

  it('a result that cannot be decoded is a SafeExecError', async () => {
    const client = {
      jailCode: async () => ({ stdout: Buffer.alloc(0), stderr: Buffer.alloc(0), status: 0, result: Buffer.from('["x"]') }),
    };
    const globs = { a: 1 };
    await expect(safeExec(client, 'a = 2', globs)).rejects.toThrow(/could not be decoded/);
    expect(globs).toEqual({ a: 1 });
  });

  it('sends the harness with resultChannel and the caller options', async () => {
    await exec('a = 1', {}, { slug: 'my-slug', limitOverridesContext: 'ctx', limits: { CPU: 3 } });
    const { options } = calls.at(-1)!;
    expect(options).toMatchObject({
      code: harnessSource(),
      argv: [],
      slug: 'my-slug',
      limitOverridesContext: 'ctx',
      limits: { CPU: 3 },
      resultChannel: true,
      files: [],
      extraFiles: [],
    });
    expect(parseHarnessRequest(options.stdin)).toEqual({ code: 'a = 1', globals: ['d'], python_path: [] });
  });
});

describe('the harness run directly', () => {
  it('exits 2 with a message when fd 3 is not open', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'cj-harness-'));
    try {
      const out = await runPython(HARNESS, dir, harnessRequest({ code: 'a = 1', globals: ['d'], python_path: [] }), true);
      expect(out.status).toBe(2);
      expect(out.stderr.toString()).toContain('result channel (fd 3) is not open');
      expect(out.stdout.length).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('fails closed: exits 2 without running the code where starting programs cannot be forbidden', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'cj-harness-'));
    try {
      // The harness run as __main__ on a machine it has no seccomp filter for.
      writeFileSync(
        path.join(dir, 'wrapper.py'),
        'import os, runpy, sys\n' +
          'real = os.uname()\n' +
          'os.uname = lambda: os.uname_result(tuple(real)[:4] + ("sparc64",))\n' +
          `runpy.run_path(${JSON.stringify(HARNESS)}, run_name="__main__")\n`,
      );
      const request = harnessRequest({ code: 'open("ran", "w").close()', globals: ['d'], python_path: [] });
      const out = await runPython('wrapper.py', dir, request);
      expect(out.status).toBe(2);
      expect(out.stderr.toString()).toBe("safe_exec harness: cannot forbid starting programs: no seccomp filter for the machine 'sparc64'\n");
      expect(existsSync(path.join(dir, 'ran'))).toBe(false);
      expect(out.result!.length).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('exits 2 naming a malformed request, without running anything', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'cj-harness-'));
    try {
      for (const [request, said] of [
        ['5\na = 1{"globals":{x}', 'JSONDecodeError: Expecting property name enclosed in double quotes: line 1 column 13 (char 12)'],
        ['5\na = 1{"globals":["d",]}', 'ValueError: invalid JSON: expecting a value at offset 16'],
        ['5\na = 1{"python_path":[]}', "KeyError: 'globals'"],
        ['5\na = 1{"globals":["x"]}', "ValueError: not a tagged value: ['x']"],
        ['5\na = 1["d"]', 'ValueError: the request after the code is not a JSON object'],
        ['{"globals":["d"],"code":"a = 1"}', "ValueError: the request does not start with the code's length in bytes and a newline"],
        ['-1\n{"globals":["d"]}', "ValueError: the request does not start with the code's length in bytes and a newline"],
        ['9\na = 1', 'ValueError: the request ends inside its code'],
        [Buffer.from('1\n\xff{"globals":["d"]}', 'latin1'), "UnicodeDecodeError: 'utf-8' codec can't decode byte 0xff in position 0: invalid start byte"],
      ]) {
        const out = await runPython(HARNESS, dir, request!);
        expect(out.stderr.toString(), String(request)).toBe(`safe_exec harness: bad request: ${said}\n`);
        expect(out.status).toBe(2);
        expect(out.result!.length).toBe(0);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('deny_code_smuggled_in_the_globals_text_runs: the harness runs the code before the document only', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'cj-harness-'));
    try {
      const stdin = Buffer.from('5\na = 1{"globals":["d"],"code":"open(\'ran\', \'w\').close()","python_path":[]}');
      const out = await runPython(HARNESS, dir, stdin);
      expect(out.stderr.toString()).toBe('');
      expect(out.status).toBe(0);
      expect(existsSync(path.join(dir, 'ran'))).toBe(false);
      expect(decodeResult(out.result!)).toEqual({ a: 1 });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('writes nothing on the result channel when the code raises', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'cj-harness-'));
    try {
      const out = await runPython(HARNESS, dir, harnessRequest({ code: 'a = 1\nraise ValueError(1)', globals: ['d'], python_path: [] }));
      expect(out.status).toBe(1);
      expect(out.result!.length).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('pythonBytesRepr: the output in the message, as Python writes a bytes repr', () => {
  const table: Array<[string, Buffer]> = [
    ['empty', Buffer.alloc(0)],
    ['newline', Buffer.from('a\nb')],
    ['single quote', Buffer.from("it's")],
    ['double quote', Buffer.from('say "hi"')],
    ['both quotes', Buffer.from('it\'s "x"')],
    ['backslash', Buffer.from('a\\b\\')],
    ['backslash and quote', Buffer.from("\\'")],
    ['NUL', Buffer.from([0, 0x61, 0])],
    ['tab, CR, other controls', Buffer.from('\t\r\x01\x1f\x0b\x0c\x1b')],
    ['DEL and high bytes', Buffer.from([0x7e, 0x7f, 0x80, 0xab, 0xff])],
    ['UTF-8', Buffer.from('ключ 日本')],
    ['every byte', Buffer.from(Array.from({ length: 256 }, (_, i) => i))],
  ];
  it('matches repr(bytes) of the real Python for tricky inputs', () => {
    const script = 'import sys\nfor h in sys.argv[1:]: print(repr(bytes.fromhex(h)))';
    const expected = execFileSync(PYTHON, ['-c', script, ...table.map(([, b]) => b.toString('hex'))]).toString().split('\n');
    table.forEach(([name, bytes], i) => expect(pythonBytesRepr(bytes), name).toBe(expected[i]));
  });

  it('the failure message is exactly the original\'s', () => {
    const run = { stdout: Buffer.from("it's"), stderr: Buffer.from('a\nb\x00\\'), status: -9 };
    expect(failureMessage(run)).toBe(`Couldn't execute jailed code: stdout: b"it's", stderr: b'a\\nb\\x00\\\\' with status code: -9`);
  });
});

describe('encodeGlobals / decodeResult', () => {
  it('encodes every kind of value with its tag', () => {
    expect(
      encodeGlobals({
        s: 'x',
        n: 1,
        f: 1.5,
        nan: NaN,
        inf: Infinity,
        ninf: -Infinity,
        unsafe: 2 ** 60,
        big: 10n ** 20n,
        b: Buffer.from('hi'),
        l: [true, false, null],
        d: { k: 'v' },
      }),
    ).toEqual([
      'd',
      's', 'x',
      'n', 1,
      'f', 1.5,
      'nan', ['f', 'nan'],
      'inf', ['f', 'inf'],
      'ninf', ['f', '-inf'],
      'unsafe', ['f', '1152921504606847000'],
      'big', ['i', '100000000000000000000'],
      'b', ['b', 'aGk='],
      'l', ['l', true, false, null],
      'd', ['d', 'k', 'v'],
    ]); // prettier-ignore
  });

  it('encodes a plain object with a null prototype', () => {
    const o = Object.create(null);
    o.x = 1;
    expect(encodeGlobals({ o })).toEqual(['d', 'o', ['d', 'x', 1]]);
  });

  it('refuses globals that are not an object', () => {
    expect(() => encodeGlobals([] as unknown as Record<string, unknown>)).toThrow(TypeError);
    expect(() => encodeGlobals(null as unknown as Record<string, unknown>)).toThrow(TypeError);
  });

  it('decodes tagged keys and values', () => {
    const r = decodeResult(
      Buffer.from('["d","a",["l",1,["i","-99999999999999999999"],["f","-inf"]],["i","5"],"five",3,"three","__proto__",["d"]]'),
    );
    expect(r.a).toEqual([1, -99999999999999999999n, -Infinity]);
    expect(r['5']).toBe('five');
    expect(r['3']).toBe('three');
    expect(Object.getPrototypeOf(r)).toBe(Object.prototype);
    // (JS orders integer-like keys first, whatever order Python had.)
    expect(Object.keys(r)).toEqual(['3', '5', 'a', '__proto__']);
  });

  it('deny_result_over_bounds: refuses a result over a bound with a ResultBoundError naming it', () => {
    const cases: Array<[string, Partial<ResultBounds>, keyof ResultBounds]> = [
      ['["d","x",["i","-12345"]]', { maxIntDigits: 4 }, 'maxIntDigits'],
      ['["d","x",["l",["l",1]]]', { maxDepth: 2 }, 'maxDepth'],
      ['["d","x",["l",1,2,3]]', { maxValues: 7 }, 'maxValues'],
      ['["d","x",1]', { maxBytes: 10 }, 'maxBytes'],
    ];
    for (const [text, bounds, bound] of cases) {
      expect(() => decodeResult(text, { ...DEFAULT_RESULT_BOUNDS, ...bounds }), text).toThrow(ResultBoundError);
      try {
        decodeResult(Buffer.from(text), { ...DEFAULT_RESULT_BOUNDS, ...bounds });
      } catch (err) {
        expect((err as ResultBoundError).bound).toBe(bound);
      }
      // One more of the bound and the same text decodes.
      const raised = { ...DEFAULT_RESULT_BOUNDS, ...bounds, [bound]: (bounds[bound] as number) + 1 };
      expect(() => decodeResult(text, raised), text).not.toThrow();
    }
  });

  it('an error about a malformed result quotes at most a short preview of it', () => {
    expect(() => decodeResult(`["d","x",["i","${'1'.repeat(100)}x"]]`)).toThrow(/^a bad int: "1{40}\.\.\."$/);
    expect(() => decodeResult(`["d","x",["q",${'1,'.repeat(100_000)}1]]`)).toThrow(/^not a tagged value: a list of 100002 items tagged "q"$/);
  });

  it('a tagged int key becomes its digits, written as String(BigInt) would, and is bounded like a value', () => {
    const r = decodeResult('["d",["i","-0"],1,["i","007"],2,["i","-0012"],3,["i","-99999999999999999999"],4]');
    expect(Object.keys(r)).toEqual(['0', '7', '-12', '-99999999999999999999']);
    expect(() => decodeResult(`["d",["i","${'9'.repeat(4301)}"],1]`)).toThrow(ResultBoundError);
    expect(() => decodeResult('["d",["i","1x"],1]')).toThrow(/a bad int/);
  });

  it('rejects malformed results', () => {
    for (const bad of ['["d","a"]', '["q"]', '[]', '"x"', '["l"]', '["i","1.5"]', '["d","a",["f","abc"]]', 'not json']) {
      expect(() => decodeResult(bad), bad).toThrow();
    }
  });
});

describe('whole-number floats', () => {
  it('come back as numbers by default, as PythonFloats when asked, and go in as floats', () => {
    const text = JSON.stringify(['d', 'f', ['f', '2.0'], 'i', 2, 'h', 2.5, ['f', '3.0'], 1]);
    expect(decodeResult(text)).toEqual({ f: 2, i: 2, h: 2.5, '3.0': 1 });
    const python = decodeResult(text, DEFAULT_RESULT_BOUNDS, 'python');
    expect(python.f).toBeInstanceOf(PythonFloat);
    expect(String(python.f)).toBe('2.0');
    expect(python.i).toBe(2);
    expect(encodeGlobals({ f: new PythonFloat(2), big: new PythonFloat(1e16), z: new PythonFloat(-0) })).toEqual([
      'd',
      'f',
      ['f', '2.0'],
      'big',
      ['f', '1e+16'],
      'z',
      ['f', '-0.0'],
    ]);
  });
});
