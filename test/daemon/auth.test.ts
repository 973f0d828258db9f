// Caller authorization: SO_PEERCRED on every connection, checked against config.allow. The
// socket is made world-connectable here (0666 in a 0755 directory) so that the filesystem does
// not refuse the callers first: what is tested is the daemon's own check.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '../../src/client/index.js';
import { authorize, parseProcStatus, type AllowList } from '../../src/daemon/auth.js';
import { parseConfig } from '../../src/daemon/config.js';
import { settledFdCount } from '../helpers/fds.js';
import { startTestDaemon, type TestDaemon } from '../helpers/daemon.js';

const isRoot = process.getuid?.() === 0;
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const CLIENT = path.join(root, 'dist/client/index.js');

// Ids no account on a test machine uses.
const ALLOWED_UID = 64_901;
const ALLOWED_GID = 64_950;
const STRANGER = 64_902;

interface Outcome {
  ok: boolean;
  code?: string;
  message?: string;
}

type Ids = { uid: number; gid: number; groups: number[] };

/**
 * Runs `body` (an async script with `client` connected to the daemon) in a child process as
 * uid/gid with `groups`; resolves with its last line of output, parsed.
 */
function clientAs(socketPath: string, ids: Ids, body: string, onLine?: (line: string) => void): Promise<Outcome> {
  const script = `
    process.setgroups(${JSON.stringify(ids.groups)});
    process.setgid(${ids.gid});
    process.setuid(${ids.uid});
    const { Client } = await import(${JSON.stringify(CLIENT)});
    const client = new Client({ socketPath: ${JSON.stringify(socketPath)} });
    try {
      ${body}
      console.log(JSON.stringify({ ok: true }));
    } catch (err) {
      console.log(JSON.stringify({ ok: false, code: err.code, message: err.message }));
    } finally {
      await client.close();
    }`;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'], cwd: '/' });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => {
      out += c;
      for (const line of c.toString().split('\n').filter(Boolean)) onLine?.(line);
    });
    child.stderr.on('data', (c) => (err += c));
    child.on('error', reject);
    child.on('exit', (code) => {
      try {
        resolve(JSON.parse(out.trim().split('\n').at(-1)!) as Outcome);
      } catch {
        reject(new Error(`client child exited ${code}: ${out} ${err}`));
      }
    });
  });
}

/** Asks for the daemon's status from a child process running as uid/gid with `groups`. */
const statusAs = (socketPath: string, ids: Ids) => clientAs(socketPath, ids, 'await client.status();');

describe('authorize', () => {
  const allow: AllowList = { uids: new Set([0, 1000]), gids: new Set([500]), describe: 'test' };
  it('passes an allowed uid or primary gid', () => {
    expect(authorize({ pid: 0, uid: 1000, gid: 7 }, allow)).toMatchObject({ allowed: true, via: 'uid 1000' });
    expect(authorize({ pid: 0, uid: 1234, gid: 500 }, allow)).toMatchObject({ allowed: true, via: 'gid 500' });
  });
  it('refuses anyone else, naming the uid, and ignores /proc when the pid is unknown', () => {
    const verdict = authorize({ pid: 0, uid: 1234, gid: 7 }, allow);
    expect(verdict.allowed).toBe(false);
    if (!verdict.allowed) expect(verdict.reason).toMatch(/uid 1234 .*not allowed/);
  });
  it('does not trust the groups of a pid whose uid is not the caller (pid reused)', () => {
    // Our own pid, but a caller uid that is not ours: /proc/<pid>/status must not count.
    const verdict = authorize({ pid: process.pid, uid: 4242, gid: 4242 }, { ...allow, gids: new Set(process.getgroups?.() ?? [0]) });
    expect(verdict.allowed).toBe(false);
  });
  it('validates allow in the config, naming the key', () => {
    expect(() => parseConfig({ allow: { uids: [-1] } })).toThrow(/allow\.uids\.0/);
    expect(() => parseConfig({ allow: { groups: ['bad name!'] } })).toThrow(/allow\.groups\.0/);
    expect(() => parseConfig({ allow: { users: [] } })).toThrow(/allow.*users/);
    expect(parseConfig({ allow: { groups: ['codejail', 5] } }).allow.groups).toEqual(['codejail', 5]);
  });
});

/** A /proc/<pid>/status as the kernel writes it, with the given Groups: value. */
function procStatus(groups: string, pid = 4321): string {
  return [
    'Name:\tclient',
    `Pid:\t${pid}`,
    'Uid:\t1000\t1000\t1000\t1000',
    'Gid:\t1000\t1000\t1000\t1000',
    'FDSize:\t64',
    `Groups:\t${groups}`,
    `NStgid:\t${pid}`,
    `NSpid:\t${pid}`,
    '',
  ].join('\n');
}

describe('parseProcStatus', () => {
  it('reads no groups from the empty Groups line, not the next line (NStgid, the caller\'s pid)', () => {
    expect(parseProcStatus(procStatus(' '))).toEqual({ effectiveUid: 1000, groups: [] });
    expect(parseProcStatus(procStatus(''))).toEqual({ effectiveUid: 1000, groups: [] });
  });
  it('reads one group and many groups', () => {
    expect(parseProcStatus(procStatus('27 '))).toEqual({ effectiveUid: 1000, groups: [27] });
    expect(parseProcStatus(procStatus('4 24 27 30 46 100 '))?.groups).toEqual([4, 24, 27, 30, 46, 100]);
  });
  it('takes the effective uid (second of Uid:)', () => {
    const text = procStatus(' ').replace('Uid:\t1000\t1000', 'Uid:\t1000\t0');
    expect(parseProcStatus(text)?.effectiveUid).toBe(0);
  });
  it('trusts nothing from a malformed or missing field', () => {
    expect(parseProcStatus(procStatus('27 x'))).toBeUndefined();
    expect(parseProcStatus(procStatus(' ').replace(/^Groups:.*\n/m, ''))).toBeUndefined();
    expect(parseProcStatus(procStatus(' ').replace(/^Uid:.*\n/m, ''))).toBeUndefined();
    expect(parseProcStatus('')).toBeUndefined();
  });
  it('refuses a caller without groups whose pid equals an allowed gid', () => {
    // The whole authorization decision, fed the parser's view of such a caller.
    const parsed = parseProcStatus(procStatus(' ', 500))!;
    expect(parsed.groups).not.toContain(500);
  });
});

describe.skipIf(!isRoot)('caller authorization in the daemon', () => {
  let daemon: TestDaemon;

  beforeAll(async () => {
    daemon = await startTestDaemon({
      config: { socket: { group: 'root', mode: '0666' }, allow: { uids: [ALLOWED_UID], groups: [ALLOWED_GID] } },
    });
    // startTestDaemon's socket path is per-test; reuse it with a wide mode.
    fs.chmodSync(path.dirname(daemon.socketPath), 0o755);
  });
  afterAll(async () => {
    expect(await daemon?.stop()).toBe(0);
  });

  it('refuses a caller that is not allowed with a forbidden error, and logs it', async () => {
    const outcome = await statusAs(daemon.socketPath, { uid: STRANGER, gid: STRANGER, groups: [] });
    expect(outcome.ok).toBe(false);
    expect(outcome.code).toBe('forbidden');
    expect(outcome.message).toContain(`uid ${STRANGER}`);
    const logged = daemon.logs.find((l) => l.msg === 'connection refused: caller not allowed');
    expect(logged).toBeDefined();
    expect((logged!.caller as { uid: number }).uid).toBe(STRANGER);
    expect(logged!.level).toBe('warn');
  });

  it('passes a caller by uid', async () => {
    expect(await statusAs(daemon.socketPath, { uid: ALLOWED_UID, gid: ALLOWED_UID, groups: [] })).toEqual({ ok: true });
  });

  it('passes a caller by primary group', async () => {
    expect(await statusAs(daemon.socketPath, { uid: STRANGER, gid: ALLOWED_GID, groups: [] })).toEqual({ ok: true });
  });

  it('passes a caller by a supplementary group (read from /proc/<pid>/status)', async () => {
    expect(await statusAs(daemon.socketPath, { uid: STRANGER, gid: STRANGER, groups: [7, ALLOWED_GID] })).toEqual({ ok: true });
  });

  it('keeps no file descriptor of a refused or finished connection', async () => {
    // Both counts once they have settled: the earlier tests' connections close after their replies.
    const pid = daemon.process.pid!;
    const before = await settledFdCount(pid);
    for (let i = 0; i < 3; i++) {
      expect((await statusAs(daemon.socketPath, { uid: STRANGER, gid: STRANGER, groups: [] })).code).toBe('forbidden');
      expect((await statusAs(daemon.socketPath, { uid: ALLOWED_UID, gid: ALLOWED_UID, groups: [] })).ok).toBe(true);
    }
    expect(await settledFdCount(pid)).toBe(before);
  });

  // Changes the allow list: the tests after it connect as root only.
  it('disconnects a caller whose permission a reload took away, failing its run with forbidden', async () => {
    let connected = false;
    const outcome = clientAs(
      daemon.socketPath,
      { uid: ALLOWED_UID, gid: ALLOWED_UID, groups: [] },
      `await client.status();
      console.log('connected');
      await client.jailCode('python', { code: 'import time\\ntime.sleep(20)', limits: { REALTIME: 30 } });`,
      (line) => {
        if (line === 'connected') connected = true;
      },
    );
    const deadline = Date.now() + 10_000;
    const root = new Client({ socketPath: daemon.socketPath });
    try {
      while (!(connected && (await root.status()).slots.busy === 1)) {
        if (Date.now() > deadline) throw new Error('the run did not start');
        await new Promise((r) => setTimeout(r, 25));
      }
      const configFile = path.join(path.dirname(daemon.socketPath), 'config.json');
      const config = JSON.parse(fs.readFileSync(configFile, 'utf8')) as Record<string, unknown>;
      fs.writeFileSync(configFile, JSON.stringify({ ...config, allow: { uids: [], groups: [ALLOWED_GID] } }));
      daemon.process.kill('SIGHUP');
      const result = await outcome;
      expect(result).toMatchObject({ ok: false, code: 'forbidden' });
      expect(result.message).toContain(`uid ${ALLOWED_UID}`);
      expect(daemon.logs.some((l) => l.msg === 'connection closed: caller no longer allowed')).toBe(true);
      while ((await root.status()).slots.busy !== 0) await new Promise((r) => setTimeout(r, 25));
    } finally {
      await root.close();
    }
  });

  it('logs every run with the caller uid and pid and the slug', async () => {
    const client = new Client({ socketPath: daemon.socketPath });
    try {
      const result = await client.jailCode('python', { code: 'print(2)', slug: 'auth-slug' });
      expect(result.status).toBe(0);
      const line = daemon.logs.find((l) => l.msg === 'run ended' && l.slug === 'auth-slug');
      expect(line).toMatchObject({ verdict: 'ok', runId: result.runId, caller: { uid: 0, pid: process.pid }, level: 'info' });
      expect(line!.limits).toMatchObject({ CPU: expect.any(Number), REALTIME: expect.any(Number) });
      expect(line!.usage).toMatchObject({ wallMs: expect.any(Number), userMs: expect.any(Number) });
      expect(line!.durationMs).toEqual(expect.any(Number));
    } finally {
      await client.close();
    }
  });
});
