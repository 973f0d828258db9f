// The self-check on request (`check`, `codejail check`) and runs answer promptly when no slot can
// take a run, instead of waiting in the queue for a slot that never comes back (issue 16 item 3: eight
// requests quarantined every slot, and `codejail check` and /health/ then hung). A slot is
// quarantined here the way a run could: a zombie of its uid whose parent is not the daemon.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '../../src/client/index.js';
import { startTestDaemon, type TestDaemon } from '../helpers/daemon.js';
import { CLI_MAIN } from '../helpers/serve.js';

const isRoot = process.getuid?.() === 0;

async function until(what: string, test: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await test())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** A root python that forks a child of `uid` which exits at once, and never reaps it. */
function zombieOf(uid: number): Promise<{ holder: ChildProcess; zombie: number }> {
  const code = `import os, sys, time
pid = os.fork()
if pid == 0:
    os.setgid(${uid}); os.setuid(${uid}); os._exit(0)
print(pid, flush=True)
time.sleep(120)
`;
  const holder = spawn('/usr/bin/python3', ['-c', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    holder.stdout!.once('data', (chunk: Buffer) => resolve({ holder, zombie: Number(chunk.toString().trim()) }));
    holder.once('error', reject);
  });
}

describe.skipIf(!isRoot)('check when no slot can take a run', () => {
  let daemon: TestDaemon;
  let client: Client;
  let firstUid: number;

  beforeAll(async () => {
    daemon = await startTestDaemon({ config: { slots: { count: 1 } } });
    client = new Client({ socketPath: daemon.socketPath });
    const config = JSON.parse(fs.readFileSync(path.join(path.dirname(daemon.socketPath), 'config.json'), 'utf8')) as { slots: { firstUid: number } };
    firstUid = config.slots.firstUid;
  });
  afterAll(async () => {
    await client?.close();
    await daemon?.stop();
  });

  it('support_check_fails_at_once_naming_the_quarantine_and_passes_once_the_slot_is_back', async () => {
    const { holder, zombie } = await zombieOf(firstUid);
    try {
      await until('the zombie', () => fs.readFileSync(`/proc/${zombie}/stat`, 'utf8').split(') ')[1]!.startsWith('Z'));
      // The run itself is fine; its sweep finds the zombie, which it cannot reap.
      expect((await client.jailCode('python', { code: 'print(1)' })).stdout.toString()).toBe('1\n');
      await until('the quarantine', () => daemon.logs.some((line) => /slot quarantined/.test(String(line.msg))));

      const started = performance.now();
      await expect(client.check()).rejects.toMatchObject({ code: 'overloaded', message: expect.stringMatching(/all 1 slots are quarantined/) });
      const { slots } = await client.status();
      expect(slots).toMatchObject({ total: 1, busy: 1 });
      expect(slots.quarantined).toHaveLength(1);
      // A run is refused too, rather than queued for a slot that may never come back.
      await expect(client.jailCode('python', { code: 'print(2)' })).rejects.toMatchObject({ code: 'overloaded', message: expect.stringMatching(/^no slot can take a run/) });
      const cli = spawnSync(process.execPath, [CLI_MAIN, 'check', '--socket', daemon.socketPath], { encoding: 'utf8', timeout: 20_000 });
      // Both answered without a run: far less than one probe's REALTIME (20 s).
      expect(performance.now() - started).toBeLessThan(10_000);
      expect(cli.status).toBe(1);
      expect(cli.stderr).toMatch(/codejail check: no slot can take a run: all 1 slots are quarantined/);
    } finally {
      holder.kill('SIGKILL');
    }
    // The zombie goes with its parent; the quarantine's next sweep finds the slot clean.
    await until('the slot back in the pool', () => daemon.logs.some((line) => /slot is clean again/.test(String(line.msg))), 20_000);
    expect((await client.check()).ok).toBe(true);
  }, 60_000);

  it('support_codejail_check_gives_up_on_a_daemon_that_does_not_answer', () => {
    // A socket that accepts and never answers: the CLI's own bound.
    const dir = fs.mkdtempSync('/tmp/cj-silent-');
    const socketPath = path.join(dir, 'silent.sock');
    const silent = spawn(process.execPath, ['-e', `require('net').createServer(() => {}).listen(${JSON.stringify(socketPath)}, () => console.log('up'))`], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    try {
      const waitUp = spawnSync('sh', ['-c', `for i in $(seq 100); do [ -S ${socketPath} ] && exit 0; sleep 0.05; done; exit 1`]);
      expect(waitUp.status).toBe(0);
      const cli = spawnSync(process.execPath, [CLI_MAIN, 'check', '--socket', socketPath, '--timeout', '1'], { encoding: 'utf8', timeout: 20_000 });
      expect(cli.status).toBe(1);
      expect(cli.stderr).toMatch(/no answer from the daemon within 1 s/);
    } finally {
      silent.kill('SIGKILL');
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
