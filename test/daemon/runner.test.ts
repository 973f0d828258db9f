// Runner paths that need no real sandbox: set-up failure and a slot that cannot be swept. The
// addon is faked; the run directory is real (in a temp dir, no ownership changes).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { parseConfig } from '../../src/daemon/config.js';
import type { CommandProfile } from '../../src/daemon/interpreter.js';
import type { Layers } from '../../src/daemon/layers.js';
import { silentLogger } from '../../src/daemon/log.js';
import { Runner } from '../../src/daemon/runner.js';
import { SlotPool, slotUsers } from '../../src/daemon/slots.js';

const profile: CommandProfile = { name: 'python', path: '/usr/bin/python3', executable: '/usr/bin/python3', args: [], env: {}, execute: [], read: [] };
// kill 'uid' without the uid layer: run dirs are written without chown, kills go to the fake.
const layers: Layers = {
  unsafe: false, uid: false, rlimits: true, landlock: false, landlockAbi: 0, seccomp: false, netns: false, apparmor: false,
  kill: 'uid', report: {}, confinement: ['rlimits'],
};

function setup(addon: Record<string, unknown>) {
  const runBase = fs.mkdtempSync(path.join(os.tmpdir(), 'cj-runner-'));
  const config = parseConfig({ runBase, slots: { firstUid: 61000, count: 1 } });
  const slots = new SlotPool(slotUsers(config.slots), 4);
  const runner = new Runner({ config, layers, commands: new Map([['python', profile]]), slots, addon: addon as never, log: silentLogger });
  return { runBase, slots, runner };
}
const request = { command: 'python', code: Buffer.from('print(1)'), files: [], extraFiles: [], argv: [], limits: {} };

describe('Runner', () => {
  let runBase: string | undefined;
  beforeEach(() => vi.useFakeTimers({ toFake: ['setTimeout'] }));
  afterEach(() => {
    vi.useRealTimers();
    if (runBase) fs.rmSync(runBase, { recursive: true, force: true });
  });

  it('reports a failed set-up step as setup_failed, counts it, and leaves nothing behind', async () => {
    const killUid = vi.fn(() => 0);
    const t = setup({
      spawn: () => {
        throw Object.assign(new Error('landlock_restrict_self: Operation not permitted'), { step: 'landlock_restrict_self', errno: 1, code: 'EPERM' });
      },
      killUid,
    });
    runBase = t.runBase;
    await expect(t.runner.run(request)).rejects.toMatchObject({ code: 'setup_failed', message: expect.stringContaining('"landlock_restrict_self"') });
    expect(t.runner.counters.setupFailures).toBe(1);
    expect(killUid).toHaveBeenCalledWith(61000);
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
    let failures = 2;
    const killUid = vi.fn(() => {
      if (failures-- > 0) throw Object.assign(new Error('processes of uid 61000 remain'), { code: 'EBUSY' });
      return 0;
    });
    const t = setup({
      spawn: () => {
        throw Object.assign(new Error('clone3 failed'), { step: 'clone3', errno: 11, code: 'EAGAIN' });
      },
      killUid,
    });
    runBase = t.runBase;
    await expect(t.runner.run(request)).rejects.toMatchObject({ code: 'setup_failed' });
    // Still busy, and its directory kept until the uid is clean.
    expect(t.slots.busy).toBe(1);
    expect(fs.readdirSync(t.runBase)).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(2000); // second sweep fails too
    expect(t.slots.busy).toBe(1);
    await vi.advanceTimersByTimeAsync(4000); // third succeeds
    await vi.waitFor(() => expect(t.slots.busy).toBe(0));
    expect(fs.readdirSync(t.runBase)).toEqual([]);
  });
});
