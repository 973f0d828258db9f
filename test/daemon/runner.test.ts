// Runner paths that need no real sandbox: set-up failure, a slot that cannot be swept, slots an
// earlier daemon left busy, bad argv. The addon is faked; the run directory is real (in a temp
// dir, no ownership changes).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { parseConfig } from '../../src/daemon/config.js';
import type { CommandProfile } from '../../src/run/commands.js';
import type { Layers } from '../../src/layers/index.js';
import { silentLogger } from '../../src/log.js';
import { Runner } from '../../src/daemon/runner.js';
import { RequestError } from '../../src/protocol/errors.js';
import { slotUsers } from '../../src/run/slot_users.js';
import { SlotPool } from '../../src/daemon/slots.js';

// warm: the Runner goes by the templates it is handed (setup's `warm`), not by this flag.
const profile: CommandProfile = {
  name: 'python', kind: 'python', warm: false, preload: [],
  path: '/usr/bin/python3', executable: '/usr/bin/python3', args: [], env: {}, execute: [], read: [],
};
// kill 'uid' without the uid layer: run dirs are written without chown, kills go to the fake.
const layers: Layers = {
  unsafe: false, uid: false, rlimits: true, disk: false, landlock: false, landlockAbi: 0, seccomp: false, cgroups: false, mntns: false, netns: false,
  apparmor: false,
  kill: 'uid', report: {}, confinement: ['rlimits'],
};

function setup(addon: Record<string, unknown>, count = 1, warm?: Map<string, unknown>) {
  // The daemon's sweeps call the thread-pool variant; these fakes answer both alike.
  const round = addon.killUidRound as ((...args: number[]) => boolean) | undefined;
  if (round) addon = { ...addon, killUidRoundAsync: async (...args: number[]) => round(...args) };
  const runBase = fs.mkdtempSync(path.join(os.tmpdir(), 'cj-runner-'));
  const config = parseConfig({ runBase, slots: { firstUid: 61000, count } });
  const slotList = slotUsers(config.slots);
  const slots = new SlotPool(slotList, 4);
  const lines: Array<{ level: string; msg: string; fields: Record<string, unknown> }> = [];
  const log = Object.fromEntries(
    (['debug', 'info', 'warn', 'error'] as const).map((level) => [level, (msg: string, fields: Record<string, unknown> = {}) => lines.push({ level, msg, fields })]),
  );
  const runner = new Runner({ config, layers, commands: new Map([['python', profile]]), slots, addon: addon as never, log: { ...silentLogger, ...log }, ...(warm ? { warm: warm as never } : {}) });
  return { runBase, slots, slotList, runner, lines };
}
const request = { command: 'python', code: Buffer.from('print(1)'), files: [], extraFiles: [], argv: [], limits: {} };

/**
 * A started run with no process behind it (the warm path's RunProcess, faked): its pipes are at
 * EOF at once; it exits when killed, or by itself when `exitNow`.
 */
function fakeRun(exitNow: boolean) {
  let exit!: (status: { code: number | null; signal: number | null; userUs: number; systemUs: number }) => void;
  const exited = new Promise<{ code: number | null; signal: number | null; userUs: number; systemUs: number }>((resolve) => (exit = resolve));
  if (exitNow) exit({ code: 0, signal: null, userUs: 0, systemUs: 0 });
  const pipe = () => ({ closed: Promise.resolve(), contents: () => Buffer.alloc(0), destroy: () => {} });
  return {
    stdin: { destroy: () => {} },
    stdout: pipe(),
    stderr: pipe(),
    exited,
    armDeadline: () => () => false,
    kill: () => exit({ code: null, signal: 9, userUs: 0, systemUs: 0 }),
    release: () => {},
  };
}

describe('Runner', () => {
  let runBase: string | undefined;
  // performance too: a sweep's time budget is measured with performance.now().
  beforeEach(() => vi.useFakeTimers({ toFake: ['setTimeout', 'performance'] }));
  afterEach(() => {
    vi.useRealTimers();
    if (runBase) fs.rmSync(runBase, { recursive: true, force: true });
  });

  it('reports a failed set-up step as setup_failed, counts it, and leaves nothing behind', async () => {
    const killUidRound = vi.fn(() => true);
    const t = setup({
      spawn: () => {
        throw Object.assign(new Error('landlock_restrict_self: Operation not permitted'), { step: 'landlock_restrict_self', errno: 1, code: 'EPERM' });
      },
      killUidRound,
    });
    runBase = t.runBase;
    await expect(t.runner.run(request)).rejects.toMatchObject({ code: 'setup_failed', message: expect.stringContaining('"landlock_restrict_self"') });
    expect(t.runner.counters.setupFailures).toBe(1);
    // The slot's clean-up finishes after the reply.
    await t.runner.drained();
    // The round also reaps zombies of every slot uid, not only this slot's.
    expect(killUidRound).toHaveBeenCalledWith(61000, 61000, 1);
    expect(fs.readdirSync(t.runBase)).toEqual([]);
    expect(t.slots.busy).toBe(0);
  });

  it('refuses unknown commands and ceilings before taking a slot', async () => {
    const t = setup({});
    runBase = t.runBase;
    await expect(t.runner.run({ ...request, command: 'ruby' })).rejects.toMatchObject({ code: 'unknown_command' });
    await expect(t.runner.run({ ...request, limits: { CPU: 1000 } })).rejects.toMatchObject({ code: 'limit_exceeds_ceiling' });
    expect(t.slots.busy).toBe(0);
  });

  it('quarantines a slot whose processes survive the kill, until a sweep succeeds', async () => {
    let clean = false;
    const killUidRound = vi.fn(() => clean);
    const t = setup({
      spawn: () => {
        throw Object.assign(new Error('clone3 failed'), { step: 'clone3', errno: 11, code: 'EAGAIN' });
      },
      killUidRound,
    });
    runBase = t.runBase;
    const run = t.runner.run(request);
    run.catch(() => undefined);
    await vi.advanceTimersByTimeAsync(2500); // the sweep's rounds, for its whole budget
    await expect(run).rejects.toMatchObject({ code: 'setup_failed' });
    // Still busy, and its directory kept until the uid is clean.
    expect(t.slots.busy).toBe(1);
    expect(t.runner.quarantinedSlots).toBe(1);
    expect(fs.readdirSync(t.runBase)).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(2000 + 2500); // the first retry's sweep fails too
    expect(t.slots.busy).toBe(1);
    // Visible in the status reply: which slot, why, and how many sweeps failed.
    expect(t.runner.quarantineReport()).toEqual([
      { index: 0, uid: 61000, reason: 'processes of its uid survived the kill', sinceMs: expect.any(Number), sweeps: 2 },
    ]);
    clean = true;
    await vi.advanceTimersByTimeAsync(4000); // the second succeeds
    await vi.waitFor(() => expect(t.slots.busy).toBe(0));
    expect(t.runner.quarantinedSlots).toBe(0);
    expect(t.runner.quarantineReport()).toEqual([]);
    expect(fs.readdirSync(t.runBase)).toEqual([]);
  });

  it('a sweep retries its kill rounds on timers, never in a loop that blocks the event loop', async () => {
    let rounds = 0;
    const t = setup({
      spawn: () => {
        throw Object.assign(new Error('clone3 failed'), { step: 'clone3', errno: 11, code: 'EAGAIN' });
      },
      // Before the fix a single killUid call looped natively for about a second.
      killUid: () => {
        throw Object.assign(new Error('killUid: Device or resource busy'), { code: 'EBUSY' });
      },
      killUidRound: () => ++rounds >= 4,
    });
    runBase = t.runBase;
    const run = t.runner.run(request);
    run.catch(() => undefined);
    await vi.advanceTimersByTimeAsync(0);
    expect(rounds).toBe(1); // one round, then a timer
    await vi.advanceTimersByTimeAsync(10); // 1 + 2 + 4 ms later: the fourth round finds the uid clean
    await expect(run).rejects.toMatchObject({ code: 'setup_failed' });
    expect(rounds).toBe(4);
    expect(t.runner.quarantinedSlots).toBe(0);
    expect(t.slots.busy).toBe(0);
  });

  it('support_start_waits_for_slots_to_drain_and_quarantines_one_that_does_not', async () => {
    let slot0Rounds = 0;
    // Slot 0 drains after a few rounds; slot 1 never does.
    const killUidRound = vi.fn((uid: number) => (uid === 61000 ? ++slot0Rounds >= 3 : false));
    const t = setup({ killUidRound }, 2);
    runBase = t.runBase;
    const drained = t.runner.drainAtStart(t.slotList);
    await vi.advanceTimersByTimeAsync(5500);
    expect(await drained).toBe(1);
    expect(t.lines.filter((l) => l.msg.startsWith('waiting for processes')).map((l) => l.fields.slot)).toEqual([0, 1]);
    expect(t.lines.filter((l) => l.msg === 'slot drained').map((l) => l.fields.slot)).toEqual([0]);
    expect(t.lines.filter((l) => l.msg.startsWith('slot quarantined')).map((l) => l.fields.slot)).toEqual([1]);
    // Slot 1 is out of the pool: slot 0 serves, and a second run waits.
    expect(t.runner.quarantinedSlots).toBe(1);
    expect(t.slots.total).toBe(2);
    expect(t.slots.busy).toBe(1);
    const slot = await t.slots.acquire();
    expect(slot.index).toBe(0);
    t.slots.release(slot);
  });

  it('deny_nul_in_argv_is_a_setup_failure: it is bad_request, refused before taking a slot', async () => {
    const spawn = vi.fn();
    const t = setup({ spawn, killUidRound: () => true });
    runBase = t.runBase;
    await expect(t.runner.run({ ...request, argv: ['fine', 'a\0b'] })).rejects.toMatchObject({
      code: 'bad_request',
      message: 'argv[1] holds a NUL byte, which no program can receive',
    });
    expect(spawn).not.toHaveBeenCalled();
    expect(t.runner.counters.setupFailures).toBe(0);
    expect(t.slots.busy).toBe(0);
  });

  it('deny_slot_handed_on_before_its_sweep_ended: a cancelled run keeps its slot until its sweep is over', async () => {
    // The cancelled run left a process that takes a while to die: the sweep's rounds find it
    // until `leftover` is cleared. Before the fix the slot went to the next run at once, and the
    // sweep's rounds went on killing that run's processes (the slot's uid).
    let leftover = true;
    const killUidRound = vi.fn(() => !leftover);
    const runs = [fakeRun(false), fakeRun(true)];
    const warm = new Map([['python', { start: () => Promise.resolve(runs.shift()) }]]);
    const t = setup({ killUidRound, closeFd: () => {} }, 1, warm);
    runBase = t.runBase;
    const caller = new AbortController();
    const first = t.runner.run(request, caller.signal);
    first.catch(() => undefined);
    await vi.advanceTimersByTimeAsync(0);
    caller.abort(new RequestError('cancelled', 'the client disconnected'));
    await expect(first).rejects.toMatchObject({ code: 'cancelled' });
    let nextStarted = false;
    const next = t.runner.run(request, undefined, { started: () => (nextStarted = true) });
    await vi.advanceTimersByTimeAsync(300);
    expect(killUidRound.mock.calls.length).toBeGreaterThan(2); // the sweep is still at work
    expect(nextStarted).toBe(false);
    leftover = false;
    await vi.advanceTimersByTimeAsync(200);
    expect(nextStarted).toBe(true);
    await expect(next).resolves.toMatchObject({ status: 0 });
    await t.runner.drained();
    expect(t.runner.quarantinedSlots).toBe(0);
    expect(t.slots.busy).toBe(0);
  });

  it('deny_slot_handed_on_before_its_sweep_ended: also when supervising the run threw after its sweep began', async () => {
    let leftover = true;
    const killUidRound = vi.fn(() => !leftover);
    const broken = fakeRun(true);
    broken.stdout.contents = () => {
      throw new Error('the output could not be read');
    };
    const runs = [broken, fakeRun(true)];
    const warm = new Map([['python', { start: () => Promise.resolve(runs.shift()) }]]);
    const t = setup({ killUidRound, closeFd: () => {} }, 1, warm);
    runBase = t.runBase;
    const first = t.runner.run(request);
    first.catch(() => undefined);
    let nextStarted = false;
    const next = t.runner.run(request, undefined, { started: () => (nextStarted = true) });
    await vi.advanceTimersByTimeAsync(300);
    await expect(first).rejects.toThrow('the output could not be read');
    expect(nextStarted).toBe(false);
    leftover = false;
    await vi.advanceTimersByTimeAsync(200);
    expect(nextStarted).toBe(true);
    await expect(next).resolves.toMatchObject({ status: 0 });
  });
});
