// Held runs (warm.holdAhead, src/run/held.ts): an idle slot holds its next warm run started
// ahead, its child confined and waiting for its go. A request that fits takes it; one that does
// not, a replaced template and a stopping daemon discard it; nothing of a slot's previous run
// reaches it, and the limits its plan was confined with are the request's own.
import fs from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { Client, type JailCodeResult } from '../../src/client/index.js';
import { readProc, until } from '../helpers/proc.js';
import { startTestDaemon, type TestDaemon } from '../helpers/daemon.js';

const isRoot = process.getuid?.() === 0;


/** read(2)'s number, as /proc/<pid>/syscall shows it. */
const READ_SYSCALL = process.arch === 'arm64' ? 63 : 0;

const statusField = (pid: number, field: string) => readProc(pid, 'status')?.match(new RegExp(`^${field}:\\s+(.*)$`, 'm'))?.[1];

/** Live processes whose real uid is `uid`. */
function processesOfUid(uid: number): number[] {
  return fs
    .readdirSync('/proc')
    .filter((e) => /^\d+$/.test(e))
    .map(Number)
    .filter((pid) => {
      const uids = statusField(pid, 'Uid');
      const state = statusField(pid, 'State');
      return uids !== undefined && Number(uids.split(/\s+/)[0]) === uid && !state?.startsWith('Z');
    });
}

describe.skipIf(!isRoot)('held runs (warm.holdAhead)', () => {
  let daemon: TestDaemon | undefined;
  let client: Client | undefined;
  // One slot: every run after the first is its slot's next run.
  let slotUid = 0;

  async function start(): Promise<{ daemon: TestDaemon; client: Client }> {
    daemon = await startTestDaemon({ config: { slots: { count: 1 }, warm: { enabled: true, holdAhead: true } } });
    client = new Client({ socketPath: daemon.socketPath });
    slotUid = daemon.firstUid;
    return { daemon, client };
  }

  afterEach(async () => {
    await client?.close();
    await daemon?.stop();
    client = undefined;
    daemon = undefined;
  });

  const run = (c: Client, code: string, more: Parameters<Client['jailCode']>[1] = {}): Promise<JailCodeResult> =>
    c.jailCode('python', { code, profile: true, ...more });

  /** The slot's held child, once it holds one. */
  async function heldChild(c: Client): Promise<number> {
    await until('the slot to hold its next run', async () => (await c.status()).held?.holding === 1);
    const pids = processesOfUid(slotUid);
    expect(pids, 'one process of the slot uid: its held child').toHaveLength(1);
    return pids[0]!;
  }

  /**
   * The slot's held child, after runs until it holds one: a run that ends while its template is
   * away (killed, restarting) leaves its slot holding none until the next run ends.
   */
  async function heldAfterRuns(c: Client): Promise<number> {
    await until('a run to end with its template ready', async () => {
      await run(c, 'print(0)');
      await new Promise((r) => setTimeout(r, 100));
      return (await c.status()).held?.holding === 1;
    });
    return heldChild(c);
  }

  it('support_a_request_that_fits_takes_the_held_run: the second run of the same kind goes from it', async () => {
    const { client } = await start();
    const first = await run(client, 'print(1)');
    expect(first.usage.stages?.held).toBeUndefined();
    await heldChild(client);
    const second = await run(client, 'print(2)');
    expect(second.stdout.toString()).toBe('2\n');
    expect(second.status).toBe(0);
    expect(second.usage.stages).toMatchObject({ warm: true, held: true });
    const { held } = await client.status();
    expect(held).toMatchObject({ used: 1 });
  });

  it('deny_a_held_child_runs_before_its_go: confined, as the slot, in its run directory, reading its stdin', async () => {
    const { client } = await start();
    await run(client, 'print(1)');
    const pid = await heldChild(client);
    expect(statusField(pid, 'NoNewPrivs')).toBe('1');
    // A host-wide OOM takes it first, as any run (src/run/oom.ts).
    expect(readProc(pid, 'oom_score_adj')?.trim()).toBe('1000');
    expect(statusField(pid, 'Seccomp')).toBe('2');
    expect(statusField(pid, 'Uid')?.split(/\s+/).map(Number)).toEqual([slotUid, slotUid, slotUid, slotUid]);
    // read(0, ...): its first argument fd 0.
    await until('the held child to wait in read(0)', () => new RegExp(`^${READ_SYSCALL} 0x0 `).test(readProc(pid, 'syscall') ?? ''));
    // Through the magic link: its directory is in the runs' mount namespace. Only the run's own
    // TMPDIR, empty (src/run/rundir.ts).
    expect(fs.readdirSync(`/proc/${pid}/cwd`)).toEqual(['tmp']);
    expect(fs.readdirSync(`/proc/${pid}/cwd/tmp`)).toEqual([]);
    // Its fds: its own three pipes (jailCode: no result channel), nothing of the template's or of
    // the slot's previous run.
    expect(fs.readdirSync(`/proc/${pid}/fd`).map(Number).sort()).toEqual([0, 1, 2]);
    // Forked from the template (no memory but the template's), not from any run.
    const parent = Number(statusField(pid, 'PPid'));
    expect(readProc(parent, 'cmdline') ?? '').toContain('warm_template.py');
  });

  it('deny_a_held_run_finds_the_previous_runs_files_or_processes', async () => {
    const { client } = await start();
    // The first run leaves a file (in tmp/, the one place it may write) and a process behind: the
    // sweep kills the process, the release removes the file.
    const leaver = "import os, time\nopen('tmp/secret', 'w').close()\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(60)\n    os._exit(0)\nprint('left')";
    expect((await run(client, leaver)).stdout.toString()).toBe('left\n');
    // heldChild() finds one process of the slot's uid: the held child, not the first run's.
    const pid = await heldChild(client);
    expect(fs.readdirSync(`/proc/${pid}/cwd`)).toEqual(['tmp']);
    const second = await run(client, "import os\nprint(sorted(os.listdir('.')), os.listdir('tmp'))");
    expect(second.usage.stages?.held).toBe(true);
    expect(second.stdout.toString()).toBe("['jailed_code', 'tmp'] []\n");
  });

  it('deny_a_held_run_for_other_limits_is_taken: a request of other limits discards it and gets its own', async () => {
    const { client } = await start();
    await run(client, 'print(1)', { limits: { FSIZE: 100_000 } });
    await heldChild(client);
    const other = await run(client, "import resource\nprint(resource.getrlimit(resource.RLIMIT_FSIZE)[0])", { limits: { FSIZE: 200_000 } });
    expect(other.usage.stages?.held).toBeUndefined();
    expect(other.stdout.toString()).toBe('200000\n');
    // Held for the new limits now, and what its plan fixed is the request's.
    await heldChild(client);
    const same = await run(client, "import resource\nprint(resource.getrlimit(resource.RLIMIT_FSIZE)[0])", { limits: { FSIZE: 200_000 } });
    expect(same.usage.stages?.held).toBe(true);
    expect(same.stdout.toString()).toBe('200000\n');
  });

  it('allow_a_held_run_takes_the_requests_own_realtime_and_output: the daemon applies them at its go', async () => {
    const { client } = await start();
    await run(client, 'print(1)', { limits: { REALTIME: 5, OUTPUT: 1000 } });
    await heldChild(client);
    const cut = await run(client, "print('x' * 100)", { limits: { REALTIME: 5, OUTPUT: 10 } });
    expect(cut.usage.stages?.held).toBe(true);
    expect(cut.truncated).toBe(true);
    expect(cut.stdout.length).toBeLessThanOrEqual(10);
    await heldChild(client);
    const late = await run(client, 'import time\ntime.sleep(3)', { limits: { REALTIME: 0.5, OUTPUT: 1000 } });
    expect(late.usage.stages?.held).toBe(true);
    expect(late.timedOut).toBe(true);
  });

  it('allow_a_held_safe_exec_gets_its_globals_and_stdin_intact', async () => {
    const { client } = await start();
    await client.safeExec('a = 1', {}, { profile: true });
    await heldChild(client);
    let stages: unknown;
    const big = 'x'.repeat(3 * 1024 * 1024);
    const out = await client.safeExec('n = len(s)', { s: big }, { profile: true, onUsage: (usage) => (stages = usage.stages) });
    expect(out.n).toBe(big.length);
    expect(stages).toMatchObject({ held: true });
  });

  // A hold given up (its template stopped while it confined the child): the slot waits for that
  // child's end before its sweep (it could take the slot's uid after), at most
  // LATE_CHILD_WAIT_MS, then is quarantined; a template stopped for good is found by its ping
  // and killed (a given-up run does not shield it). Either way the slot serves again, and
  // nothing of the slot's uid is left but a held run.
  for (const stopped of ['1500 ms', 'for good'] as const) {
    it(`support_a_given_up_hold_waits_for_its_late_child: template stopped ${stopped}`, async () => {
      const { daemon, client } = await start();
      let givenUp = false;
      // The stop must land between a run's reply and its slot's next hold: tried a few times.
      for (let attempt = 0; attempt < 5 && !givenUp; attempt++) {
        const template = Number(statusField(await heldAfterRuns(client), 'PPid'));
        const seen = daemon.logs.length;
        // Other limits: the held run is discarded, this one made afresh; its slot's next hold is
        // for these limits, sent after the reply, to a template stopped just then.
        await run(client, 'print(2)', { limits: { FSIZE: 1000 + attempt } });
        process.kill(template, 'SIGSTOP');
        await new Promise((r) => setTimeout(r, stopped === 'for good' ? 1_000 : 1_500));
        if (stopped !== 'for good') process.kill(template, 'SIGCONT');
        givenUp = daemon.logs.slice(seen).some((line) => line.msg === 'a held run could not be started ahead; the slot starts its next run on demand');
      }
      expect(givenUp, 'a hold was given up').toBe(true);
      const after = await run(client, 'print(3)');
      expect(after.stdout.toString()).toBe('3\n');
      const held = await heldAfterRuns(client);
      expect(processesOfUid(slotUid)).toEqual([held]);
    }, 90_000);
  }

  it('support_a_replaced_template_and_a_stopping_daemon_discard_held_runs', async () => {
    const { daemon: started, client } = await start();
    await run(client, 'print(1)');
    const first = await heldChild(client);
    started.process.kill('SIGHUP');
    await until('the held child of the old template to go', () => readProc(first, 'status') === undefined || /^State:\s+Z/m.test(readProc(first, 'status')!));
    const after = await run(client, 'print(2)');
    expect(after.stdout.toString()).toBe('2\n');
    await heldChild(client);
    const runBase = started.runBase;
    daemon = undefined;
    await started.stop();
    expect(processesOfUid(slotUid)).toEqual([]);
    expect(fs.existsSync(runBase) ? fs.readdirSync(runBase).filter((e) => !e.startsWith('.')) : []).toEqual([]);
  });
});
