// Unsafe mode: the same jailCode/safeExec behaviours as the daemon's (the shared cases of
// test/helpers/cases.ts), with no daemon and no root, through both ways of starting the process:
// the native addon and the prlimit fallback used when the addon is not built.
import fs from 'node:fs';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Client, CodejailError } from '../../src/client/index.js';
import { UnsafeRunner, type UnsafeSpawner } from '../../src/client/unsafe.js';
import { jailCodeCases, safeExecCases } from '../helpers/cases.js';

const warnings: Error[] = [];
const onWarning = (warning: Error) => void warnings.push(warning);

beforeAll(() => {
  process.on('warning', onWarning);
});
afterAll(() => {
  process.off('warning', onWarning);
});

/** An unsafe client whose runs are started by `spawner` (the client itself always picks 'auto'). */
function unsafeClient(spawner: UnsafeSpawner): Client {
  const client = new Client({ unsafe: true });
  if (spawner !== 'auto') (client as unknown as { unsafe: UnsafeRunner }).unsafe = new UnsafeRunner(undefined, spawner);
  return client;
}

describe.each(['auto', 'prlimit'] as const)('unsafe mode (%s)', (spawner) => {
  let client: Client;

  beforeEach(() => {
    client = unsafeClient(spawner);
  });
  afterEach(async () => {
    await client.close();
  });

  describe('jailCode', () => {
    it('hello world, confinement none', async () => {
      const r = await jailCodeCases.helloWorld(client);
      expect(r.confinement).toBe('none');
      expect(r.usage.wallMs).toBeGreaterThan(0);
    });
    it('argv', () => jailCodeCases.argv(client));
    it('stdin is provided', () => jailCodeCases.stdin(client));
    it('ends with an exception whose traceback names jailed_code line 1', () => jailCodeCases.exceptionTraceback(client));
    it('files are copied', () => jailCodeCases.filesCopied(client));
    it('directories are copied', () => jailCodeCases.directoriesCopied(client));
    it('executing binary extra files', () => jailCodeCases.binaryExtraFiles(client));
    it('CPU 1 on a busy loop gives status -SIGXCPU', () => jailCodeCases.cpuLimit(client));
    it('REALTIME kills a sleeper with -9', () => jailCodeCases.realtimeKill(client));

    it('output past OUTPUT is dropped and reported as truncated', async () => {
      const r = await client.jailCode('python', { code: 'import sys\nsys.stdout.write("x" * 100000)', limits: { OUTPUT: 1000 } });
      expect(r.status).toBe(0);
      expect(r.stdout.length).toBe(1000);
      expect(r.truncated).toBe(true);
    });

    it('runs in a private temp dir with TMPDIR inside it and a clean environment, removed afterwards', async () => {
      process.env.CODEJAIL_UNSAFE_TEST_SECRET = 'caller secret';
      try {
        const r = await client.jailCode('python', {
          code: 'import json, os\nprint(json.dumps([os.getcwd(), dict(os.environ)]))',
        });
        const [cwd, env] = JSON.parse(r.stdout.toString()) as [string, Record<string, string>];
        expect(Object.keys(env).sort()).toEqual(['HOME', 'LANG', 'PATH', 'TMPDIR']);
        expect(env.TMPDIR).toBe(`${cwd}/tmp`);
        expect(env.HOME).toBe(env.TMPDIR);
        expect(fs.existsSync(cwd)).toBe(false);
      } finally {
        delete process.env.CODEJAIL_UNSAFE_TEST_SECRET;
      }
    });

    it('FSIZE applies: the default 0 refuses any file write', async () => {
      const r = await client.jailCode('python', { code: "import os\nwith open(os.environ['TMPDIR'] + '/f', 'w') as f:\n    f.write('x' * 10)" });
      expect(r.status).not.toBe(0);
      expect(r.stderr.toString()).toContain('File too large');
    });

    it('VMEM applies: 80 MB makes a 100 MB bytearray fail with MemoryError', async () => {
      const r = await client.jailCode('python', { code: 'print(len(bytearray(100000000)))', limits: { VMEM: 80_000_000 } });
      expect(r.stderr.toString()).toContain('MemoryError');
      expect(r.status).toBe(1);
    });

    it('a group of processes is killed at REALTIME, and nothing of it survives', async () => {
      const r = await client.jailCode('python', {
        code: 'import os, time\nif os.fork() == 0:\n    time.sleep(30)\nelse:\n    print(os.getpid(), flush=True)\n    time.sleep(30)',
        limits: { REALTIME: 1 },
      });
      expect(r.status).toBe(-9);
      const pid = Number(r.stdout.toString().trim());
      expect(() => process.kill(pid, 0)).toThrow();
    });

    it('close() kills a run in flight, which rejects with code closed', async () => {
      const running = client.jailCode('python', { code: 'import time; time.sleep(30)', limits: { REALTIME: 60 } });
      await new Promise((resolve) => setTimeout(resolve, 200));
      const begin = Date.now();
      await client.close();
      await expect(running).rejects.toMatchObject({ code: 'closed' });
      expect(Date.now() - begin).toBeLessThan(5000);
      // Still usable afterwards.
      await jailCodeCases.helloWorld(client);
    });

    it('an unknown command is refused, naming the known ones', async () => {
      await expect(client.jailCode('ruby', { code: 'puts 1' })).rejects.toMatchObject({
        code: 'unknown_command',
        message: expect.stringContaining('python'),
      });
      expect(await client.isConfigured('python')).toBe(true);
      expect(await client.isConfigured('ruby')).toBe(false);
    });
  });

  describe('safeExec', () => {
    beforeEach(() => {
      client.setLimit('REALTIME', 10);
      client.setLimit('CPU', 5);
    });
    it('globals in and out', () => safeExecCases.globalsInAndOut(client));
    it('an exception raises SafeExecError', () => safeExecCases.exceptionRaisesSafeExecError(client));
    it('copies files and imports from a pythonPath directory', () => safeExecCases.filesAndPythonPath(client));
    it('printing does not disturb the globals (they come back on fd 3)', () => safeExecCases.printingDoesNotDisturbGlobals(client));
  });
});

describe('unsafe mode, the client', () => {
  it('warns loudly, once per process', () => {
    new Client({ unsafe: true });
    new Client({ unsafe: true });
    const ours = warnings.filter((w) => (w as Error & { code?: string }).code === 'CODEJAIL_UNSAFE');
    expect(ours).toHaveLength(1);
    expect(ours[0]!.message).toContain('WITHOUT a sandbox');
  });

  it('has no daemon to ask for a status', async () => {
    await expect(new Client({ unsafe: true }).status()).rejects.toMatchObject({ code: 'unavailable', message: expect.stringContaining('unsafe') });
  });

  it('runs configured commands, a venv-style path as given, with their env', async () => {
    const client = new Client({
      unsafe: true,
      unsafeCommands: { py: { path: '/usr/bin/python3', args: ['-E', '-B'], env: { GREETING: 'hi' } } },
    });
    const r = await client.jailCode('py', { code: "import os, sys\nprint(os.environ['GREETING'], sys.argv[0])" });
    expect(r.stdout.toString()).toBe('hi jailed_code\n');
    await expect(client.jailCode('python', { code: '' })).rejects.toMatchObject({ code: 'unknown_command' });
  });

  it.each([
    [{ py: { path: 'python3' } }, /path must be an absolute path/],
    [{ py: { path: '/usr/bin/python3', args: [1] } }, /args must be strings/],
    [{ py: { path: '/usr/bin/python3', env: { 'A-B': 'x' } } }, /env "A-B"/],
    [{}, /at least one command/],
  ])('refuses bad unsafeCommands %j', (commands, message) => {
    expect(() => new Client({ unsafe: true, unsafeCommands: commands as never })).toThrow(message);
  });

  it('refuses unsafeCommands without unsafe', () => {
    expect(() => new Client({ unsafeCommands: {} })).toThrow(CodejailError);
  });
});
