// Hostile review, the client's side (issue 12): what a sandbox writes, and what can change in a
// directory passed as `files`, must cost the caller's process little and never make it read
// something it was not given.
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { collectFiles } from '../../src/client/files.js';
import { SafeExecError, safeExec } from '../../src/client/safe_exec.js';

/**
 * The race of review item 12, made deterministic: the client's lstat is wrapped so that a test
 * can change the tree right before or right after the client looked at one path.
 */
const lstatHooks = vi.hoisted(() => ({
  before: undefined as ((p: string) => void) | undefined,
  after: undefined as ((p: string) => void) | undefined,
}));
vi.mock('node:fs/promises', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:fs/promises')>();
  const lstat = (async (p: Parameters<typeof real.lstat>[0], options?: { bigint?: boolean }) => {
    lstatHooks.before?.(String(p));
    const stats = await real.lstat(p, options);
    lstatHooks.after?.(String(p));
    return stats;
  }) as typeof real.lstat;
  return { ...real, lstat, default: { ...real, lstat } };
});

const PYTHON = '/usr/bin/python3';

/**
 * A jailCode that runs the real harness as the daemon would (run dir as cwd, the result channel
 * on fd 3) without a daemon: the code is hostile, the sandbox is not the point here.
 */
const harnessClient = {
  jailCode(_command: string, options: { code: string; stdin: string }): Promise<{ stdout: Buffer; stderr: Buffer; status: number; result: Buffer }> {
    const dir = mkdtempSync(path.join(tmpdir(), 'cj-hostile-'));
    writeFileSync(path.join(dir, 'jailed_code'), options.code);
    return new Promise((resolve, reject) => {
      const child = spawn(PYTHON, ['-E', '-B', 'jailed_code'], { cwd: dir, stdio: ['pipe', 'pipe', 'pipe', 'pipe'], env: { PATH: '/usr/bin:/bin' } });
      const chunks: Buffer[][] = [[], [], [], []];
      for (const fd of [1, 2, 3]) (child.stdio[fd] as NodeJS.ReadableStream).on('data', (chunk: Buffer) => chunks[fd].push(chunk));
      child.on('error', reject);
      child.on('close', (code) => {
        rmSync(dir, { recursive: true, force: true });
        resolve({ stdout: Buffer.concat(chunks[1]), stderr: Buffer.concat(chunks[2]), status: code ?? -1, result: Buffer.concat(chunks[3]) });
      });
      child.stdin!.end(options.stdin);
    });
  },
};

/**
 * Code that writes `payload` (a Python bytes expression) to the result channel itself, behind
 * the harness's back, and exits at once: the harness moves fd 3 to a private close-on-exec fd,
 * which the code finds among its own fds.
 */
const writeChannel = (payload: string) => `
import os, stat
for name in os.listdir('/proc/self/fd'):
    fd = int(name)
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        continue
    if fd > 2 and (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)) and not os.get_inheritable(fd):
        data = memoryview(${payload})
        while data:
            data = data[os.write(fd, data):]
os._exit(0)
`;

/** A client whose run reported exactly `result` on the channel. */
const replying = (result: string | Buffer) => ({
  jailCode: async () => ({ stdout: Buffer.alloc(0), stderr: Buffer.alloc(0), status: 0, result: Buffer.from(result) }),
});

async function refusal(run: Promise<unknown>): Promise<SafeExecError> {
  const err = await run.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(SafeExecError);
  return err as SafeExecError;
}

describe('hostile: a safeExec result cannot stall the caller (review item 5)', () => {
  it('deny_result_huge_int: an int of a million digits written to the channel is refused before BigInt()', async () => {
    const globs = { a: 1 };
    const err = await refusal(safeExec(harnessClient, writeChannel(`b'["d","x",["i","' + b'7' * 1_000_000 + b'"]]'`), globs));
    expect(err.message).toMatch(/an int of 1000000 digits, more than the 4300 allowed: resultBounds\.maxIntDigits/);
    expect(globs).toEqual({ a: 1 });
  });

  it("deny_result_30M_digits: the review's 30-million-digit int is refused by the size bound", async () => {
    const err = await refusal(safeExec(harnessClient, writeChannel(`b'["d","x",["i","' + b'7' * 30_000_000 + b'"]]'`), {}));
    expect(err.message).toMatch(/30000018 bytes, more than the 16777216 allowed: resultBounds\.maxBytes/);
  });

  it('deny_result_deep_nesting: lists nested 100000 deep are refused before parsing', async () => {
    const deep = '["d","x",' + '["l",'.repeat(100_000) + '1' + ']'.repeat(100_000) + ']';
    const err = await refusal(safeExec(replying(deep), 'x = 1', {}));
    expect(err.message).toMatch(/lists or dicts nested more than 1000 deep: resultBounds\.maxDepth/);
  });

  it('deny_result_huge_list: a list of two million items is refused before parsing', async () => {
    const err = await refusal(safeExec(harnessClient, writeChannel(`b'["d","x",["l"' + b',0' * 2_000_000 + b']]'`), {}));
    expect(err.message).toMatch(/more than 200000 values: resultBounds\.maxValues/);
  });

  it('deny_result_huge_dict: a dict of a million keys is refused before parsing', async () => {
    const err = await refusal(
      safeExec(harnessClient, writeChannel(`b'["d"' + b''.join(b',"k%d",0' % i for i in range(1_000_000)) + b']'`), {}),
    );
    expect(err.message).toMatch(/more than 200000 values: resultBounds\.maxValues/);
  });

  it('deny_result_bounds_are_bounds: brackets, commas and backslashes inside strings count for nothing', async () => {
    const text = JSON.stringify(['d', 'x', '['.repeat(5000) + ','.repeat(5000) + '\\"'.repeat(10)]);
    await expect(safeExec(replying(text), 'x = 1', {})).resolves.toEqual({ x: '['.repeat(5000) + ','.repeat(5000) + '\\"'.repeat(10) });
  });

  it('allow_result_bounds_option: a caller may raise a bound for one call', async () => {
    const big = `["d","x",["i","${'7'.repeat(5000)}"]]`;
    await expect(safeExec(replying(big), 'x = 1', {})).rejects.toThrow(/resultBounds\.maxIntDigits/);
    const result = await safeExec(replying(big), 'x = 1', {}, { resultBounds: { maxIntDigits: 5000 } });
    expect(result.x).toBe(BigInt('7'.repeat(5000)));
    await expect(safeExec(replying(big), 'x = 1', {}, { resultBounds: { maxDepth: 0 } })).rejects.toThrow(
      /resultBounds\.maxDepth must be a positive integer/,
    );
  });
});

describe('hostile: files that change while the client reads them (review item 12)', () => {
  let root: string;
  let secretDir: string;
  /**
   * A hook that runs `change` once, at the `nth` lstat of a path ending in `suffix` (matched on
   * the last components only: inside a directory the client may name a child through the
   * directory's fd).
   */
  const onceAt = (suffix: string, change: () => void, nth = 1) => (p: string) => {
    if (!p.endsWith(suffix) || --nth > 0) return;
    lstatHooks.before = lstatHooks.after = undefined;
    change();
  };
  const afterLstatOf = (suffix: string, change: () => void, nth = 1) => void (lstatHooks.after = onceAt(suffix, change, nth));
  const beforeLstatOf = (suffix: string, change: () => void, nth = 1) => void (lstatHooks.before = onceAt(suffix, change, nth));
  const contents = (entries: Awaited<ReturnType<typeof collectFiles>>) =>
    entries.flatMap((e) => (e.type === 'file' ? [Buffer.from(e.data).toString()] : []));

  beforeEach(() => {
    root = mkdtempSync(path.join(tmpdir(), 'cj-hostile-files-'));
    // Stands for /etc/shadow: readable by the client, not by whoever writes into `files`.
    secretDir = path.join(root, 'secret');
    mkdirSync(secretDir);
    writeFileSync(path.join(secretDir, 'data.txt'), 'SECRET');
    mkdirSync(path.join(root, 'given', 'sub'), { recursive: true });
    writeFileSync(path.join(root, 'given', 'data.txt'), 'mine');
    writeFileSync(path.join(root, 'given', 'sub', 'data.txt'), 'mine too');
  });

  afterEach(() => {
    lstatHooks.before = undefined;
    lstatHooks.after = undefined;
    rmSync(root, { recursive: true, force: true });
  });

  it('deny_files_symlink_after_lstat: a file swapped for a symlink after lstat is refused, not followed', async () => {
    const file = path.join(root, 'given', 'data.txt');
    afterLstatOf('/data.txt', () => {
      unlinkSync(file);
      symlinkSync(path.join(secretDir, 'data.txt'), file);
    });
    await expect(collectFiles([file])).rejects.toThrow(/files: '.*data\.txt' changed while it was being read/);
  });

  it('deny_files_symlink_after_lstat_in_dir: the same inside a directory walk', async () => {
    // given/data.txt is looked at first, then given/sub/data.txt.
    afterLstatOf(
      '/data.txt',
      () => {
        const file = path.join(root, 'given', 'sub', 'data.txt');
        unlinkSync(file);
        symlinkSync(path.join(secretDir, 'data.txt'), file);
      },
      2,
    );
    await expect(collectFiles([path.join(root, 'given')])).rejects.toThrow(/changed while it was being read/);
  });

  it('deny_files_fifo_after_lstat: a file swapped for a FIFO after lstat is refused without waiting for a writer', async () => {
    const file = path.join(root, 'given', 'data.txt');
    afterLstatOf('/data.txt', () => {
      unlinkSync(file);
      execFileSync('mkfifo', [file]);
    });
    await expect(collectFiles([file])).rejects.toThrow(/is not a regular file, directory or symlink/);
  }, 10_000);

  it('deny_files_dir_symlink_after_lstat: a directory swapped for a symlink after lstat is refused, not walked', async () => {
    const sub = path.join(root, 'given', 'sub');
    afterLstatOf('/sub', () => {
      rmSync(sub, { recursive: true });
      symlinkSync(secretDir, sub);
    });
    await expect(collectFiles([path.join(root, 'given')])).rejects.toThrow(/files: '.*sub' changed while it was being read/);
  });

  it('deny_files_parent_swapped_during_walk: a directory replaced after it was opened does not redirect its children', async () => {
    const sub = path.join(root, 'given', 'sub');
    // Right before the client looks at sub's child: sub was opened and listed.
    beforeLstatOf('/data.txt', () => {
      renameSync(sub, `${sub}.old`);
      symlinkSync(secretDir, sub);
    });
    const entries = await collectFiles([sub]);
    expect(contents(entries)).toEqual(['mine too']);
  });
});
