// The addon's spawn contract beyond confinement: which fds a child gets. fd 3 is the result
// channel only when the plan asks for it; otherwise every fd above stderr is closed, so nothing
// of the daemon's (its socket, other runs' pipes) reaches a sandbox. Then what ends a child: kill
// rounds that reap every run's zombies, REALTIME deadlines on the addon's own thread, and what
// the exit's maxRssKb can be trusted for.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import { beforeAll, describe, expect, it } from 'vitest';
import { native, type NativeExit, type NativePlan } from '../../src/native.js';
import { pidfdHoldsUnreaped } from '../../src/run/template.js';
import { PYTHON, isRoot, makeRunDir, processesOf } from '../helpers/sandbox.js';

function readAll(fd: number): Promise<Buffer> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const socket = new net.Socket({ fd, readable: true, writable: false });
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('close', () => resolve(Buffer.concat(chunks)));
  });
}

/** Starts `code` in Python; `finish()` waits for the exit and the outputs and closes the pidfd. */
function startPython(code: string, extra: Partial<NativePlan> = {}) {
  const dir = makeRunDir();
  const child = native().spawn({ file: PYTHON, argv: [PYTHON, '-E', '-B', '-c', code], env: [], cwd: dir, ...extra });
  native().closeFd(child.stdin);
  const outputs = Promise.all([readAll(child.stdout), readAll(child.stderr), child.result === undefined ? undefined : readAll(child.result)]);
  // Watched from the start, as the daemon does: a kill round that reaps it keeps its status.
  const exited = new Promise<NativeExit>((resolve) => native().watchExit(child.pidfd, child.pid, resolve));
  const finish = async () => {
    const exit = await exited;
    native().closeFd(child.pidfd);
    const [stdout, stderr, result] = await outputs;
    return { child, exit, stdout: stdout.toString(), stderr: stderr.toString(), result };
  };
  return { child, finish };
}

const spawnPython = (code: string, extra: Partial<NativePlan> = {}) => startPython(code, extra).finish();

const openFds = () => fs.readdirSync('/proc/self/fd').length;
const stateOf = (pid: number) => /^State:\s+(\S)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
const blockEventLoop = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
async function until(what: string, test: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!test()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

// spawn needs no root without uid/namespace layers, but the suite shares the root helpers.
describe.skipIf(!isRoot)('spawn fds', () => {
  it('support_result_channel_is_fd_3_apart_from_stdout', async () => {
    const r = await spawnPython("import os\nprint('printed')\nos.write(3, b'the result')\nos.close(3)", { resultChannel: true });
    expect(r.exit.code).toBe(0);
    expect(r.stdout).toBe('printed\n');
    expect(r.result?.toString()).toBe('the result');
  });

  it('support_without_result_channel_fd_3_and_above_are_closed', async () => {
    const r = await spawnPython("import os\nprint(sorted(int(n) for n in os.listdir('/proc/self/fd')))");
    expect(r.child.result).toBeUndefined();
    // 0-2 and the fd listdir itself has open: nothing of the parent's.
    expect(JSON.parse(r.stdout)).toEqual([0, 1, 2, 3]);
  });
});

// Two uids of their own: the layer suites use TEST_UID and TEST_UID - 1.
const ZOMBIE_UID = 61990;
const OTHER_UID = 61991;

/** Zombies whose parent is this process (a subreaper: runs' orphans come here), of `uid`. */
function ownZombiesOf(uid: number): number[] {
  return fs
    .readdirSync('/proc')
    .filter((e) => /^\d+$/.test(e))
    .filter((pid) => {
      try {
        const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
        return (
          /^State:\s+Z/m.test(status) && Number(/^PPid:\s+(\d+)/m.exec(status)?.[1]) === process.pid && Number(/^Uid:\s+(\d+)/m.exec(status)?.[1]) === uid
        );
      } catch {
        return false;
      }
    })
    .map(Number);
}

describe.skipIf(!isRoot)('kill rounds and zombies', () => {
  it('deny_foreign_zombie_stops_the_reaping_of_another_uid', async () => {
    // A run of ZOMBIE_UID leaves a zombie grandchild reparented to us, and keeps running.
    const zombieMaker = startPython(
      'import os, time\nc = os.fork()\nif c == 0:\n    if os.fork() == 0:\n        os._exit(0)\n    os._exit(0)\nos.waitpid(c, 0)\ntime.sleep(60)',
      { uid: ZOMBIE_UID, gid: ZOMBIE_UID },
    );
    try {
      await until('the zombie grandchild', () => ownZombiesOf(ZOMBIE_UID).length === 1);
      // A run of OTHER_UID whose setsid()'d child outlives it: after the kill it is a zombie of ours.
      const other = await spawnPython('import os, time\nif os.fork() == 0:\n    os.setsid()\n    os.closerange(0, 3)\n    time.sleep(60)\nprint("done")', {
        uid: OTHER_UID,
        gid: OTHER_UID,
      });
      expect(other.stdout).toBe('done\n');
      // Before the fix the reaping stopped at ZOMBIE_UID's zombie: about a second of rounds, then
      // killUid threw EBUSY, which fails this test (no time bound: a loaded runner keeps none).
      native().killUid(OTHER_UID);
      expect(processesOf(OTHER_UID)).toEqual([]);
      expect(ownZombiesOf(ZOMBIE_UID)).toHaveLength(1); // not in killUid's range: left alone
      // A round given the whole range reaps it too, and leaves the still running main alone.
      let clean = false;
      for (let i = 0; i < 100 && !clean; i++) clean = native().killUidRound(OTHER_UID, ZOMBIE_UID, 2);
      expect(clean).toBe(true);
      expect(ownZombiesOf(ZOMBIE_UID)).toEqual([]);
      expect(processesOf(ZOMBIE_UID)).toEqual([zombieMaker.child.pid]);
    } finally {
      native().killUid(ZOMBIE_UID);
      await zombieMaker.finish();
    }
  });

  it('allow_kill_round_leaves_other_children_to_their_waiters', async () => {
    // A child_process child (root, like libuv's children in the daemon) exits while this thread is
    // busy, so libuv has not reaped it yet when the round runs: the round must leave it to libuv.
    const child = spawn('/bin/sh', ['-c', 'exit 3'], { stdio: 'ignore' });
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    blockEventLoop(300);
    native().killUidRound(OTHER_UID, 1, 65534);
    expect(await exited).toBe(3);
  });

  it('support_a_pidfd_tells_its_zombie_from_a_reaped_pid', async () => {
    // src/run/template.ts reads a warm run's status from /proc/<pid>/stat only while the run's
    // pidfd still holds it unreaped: once reaped, the pid is free and /proc/<pid> may be another's.
    const dir = makeRunDir();
    const child = native().spawn({ file: PYTHON, argv: [PYTHON, '-E', '-B', '-c', 'pass'], env: [], cwd: dir });
    for (const fd of [child.stdin, child.stdout, child.stderr]) native().closeFd(fd);
    try {
      await until('the child to exit', () => native().pidfdExited(child.pidfd));
      expect(stateOf(child.pid)).toBe('Z');
      expect(pidfdHoldsUnreaped(child.pidfd, child.pid)).toBe(true);
      expect(pidfdHoldsUnreaped(child.pidfd, child.pid + 1)).toBe(false);
      await new Promise<NativeExit>((resolve) => native().watchExit(child.pidfd, child.pid, resolve));
      expect(fs.existsSync(`/proc/${child.pid}/stat`) && stateOf(child.pid) === 'Z').toBe(false);
      expect(pidfdHoldsUnreaped(child.pidfd, child.pid)).toBe(false);
    } finally {
      native().closeFd(child.pidfd);
    }
  });

  it('support_kill_round_reaps_a_runs_zombie_behind_a_child_it_leaves_alone', async () => {
    // The round first asks waitid(P_ALL, WNOWAIT) for a zombie child, which names the oldest: here
    // a root child_process child, libuv's to reap. Behind it a run's zombie must still be reaped
    // (by the children lists), or the run's uid would never come clean.
    const other = spawn('/bin/sh', ['-c', 'exit 3'], { stdio: 'ignore' });
    const otherExited = new Promise<number | null>((resolve) => other.once('exit', resolve));
    const run = startPython('pass', { uid: OTHER_UID, gid: OTHER_UID });
    // Neither is reaped meanwhile: libuv and the run's watcher both wait for this thread.
    for (let i = 0; i < 100 && !(stateOf(other.pid!) === 'Z' && stateOf(run.child.pid) === 'Z'); i++) blockEventLoop(50);
    expect([stateOf(other.pid!), stateOf(run.child.pid)]).toEqual(['Z', 'Z']);
    expect(native().killUidRound(OTHER_UID, OTHER_UID, 1)).toBe(true);
    expect(stateOf(other.pid!)).toBe('Z');
    expect((await run.finish()).exit.code).toBe(0);
    expect(await otherExited).toBe(3);
  });

  it('support_kill_round_reports_what_remains_and_keeps_a_watched_status', async () => {
    const sleeper = startPython('import time\ntime.sleep(60)', { uid: OTHER_UID, gid: OTHER_UID });
    // The main process is our child: the round kills it, reaps it for its watcher, then finds the uid clean.
    let rounds = 0;
    for (let clean = false; !clean && rounds < 1000; rounds++) clean = native().killUidRound(OTHER_UID, OTHER_UID, 1);
    expect(rounds).toBeLessThan(1000);
    const r = await sleeper.finish();
    expect(r.exit.signal).toBe(9);
  });
});

describe.skipIf(!isRoot)('REALTIME deadlines', () => {
  // The deadline thread's epoll fd is made once, at the first arming: not a leak.
  beforeAll(async () => {
    const run = startPython('pass');
    native().disarmDeadline(native().armDeadline(run.child.pidfd, run.child.pid, 10_000));
    await run.finish();
  });

  it('deny_deadline_waits_for_the_event_loop', async () => {
    const fdsBefore = openFds();
    const run = startPython('import time\ntime.sleep(60)');
    const deadline = native().armDeadline(run.child.pidfd, run.child.pid, 200);
    // Nothing on this thread runs for 1.5 s: the addon's thread kills the run meanwhile.
    blockEventLoop(1500);
    expect(stateOf(run.child.pid)).toBe('Z');
    const r = await run.finish();
    expect(r.exit.signal).toBe(9);
    expect(native().disarmDeadline(deadline)).toBe(true);
    expect(native().armedDeadlines()).toBe(0);
    expect(openFds()).toBeLessThanOrEqual(fdsBefore);
  });

  it('support_deadline_kills_the_process_group_too', async () => {
    // The child stays in the main process's group; it would hold stdout open for 60 s.
    const run = startPython('import os, time\nif os.fork() == 0:\n    time.sleep(60)\n    os._exit(0)\ntime.sleep(60)');
    const deadline = native().armDeadline(run.child.pidfd, run.child.pid, 100);
    const r = await run.finish(); // both stdout ends closed: both processes died
    expect(r.exit.signal).toBe(9);
    expect(native().disarmDeadline(deadline)).toBe(true);
  });

  it('support_deadline_disarmed_in_time_does_not_fire_or_leak', async () => {
    const fdsBefore = openFds();
    const run = startPython('print(1)');
    const deadline = native().armDeadline(run.child.pidfd, run.child.pid, 10_000);
    expect(native().armedDeadlines()).toBe(1);
    const r = await run.finish();
    expect(r.exit.code).toBe(0);
    expect(native().disarmDeadline(deadline)).toBe(false);
    expect(native().disarmDeadline(deadline)).toBe(false); // twice: harmless
    expect(native().armedDeadlines()).toBe(0);
    expect(openFds()).toBeLessThanOrEqual(fdsBefore);
  });

  it('support_deadline_after_a_normal_exit_is_not_a_timeout', async () => {
    const run = startPython('pass');
    const deadline = native().armDeadline(run.child.pidfd, run.child.pid, 1000);
    // Nobody reaps while the loop is blocked: the deadline expires on an exited, unreaped process.
    blockEventLoop(2000);
    const r = await run.finish();
    expect(r.exit.code).toBe(0);
    expect(native().disarmDeadline(deadline)).toBe(false);
  });
});

describe.skipIf(!isRoot)('maxRssKb', () => {
  it('support_exec_from_the_parents_memory_inherits_its_peak_rss', async () => {
    // Why the daemon reports maxRssKb only above inheritedRssKb: the kernel's exec_mmap() folds
    // the peak RSS of the memory it leaves (ours, CLONE_VM) into the child's maxrss.
    const hog = Buffer.alloc(200 * 1024 * 1024, 1); // make our peak well above python's
    const r = await spawnPython('print(1)');
    expect(hog[hog.length - 1]).toBe(1);
    expect(r.child.inheritedRssKb).toBeGreaterThan(200 * 1024);
    expect(r.exit.maxRssKb).toBeGreaterThan(200 * 1024); // python itself needs about 10 MB
    expect(r.exit.maxRssKb).toBeLessThanOrEqual(r.child.inheritedRssKb);
  });
});

describe.skipIf(!isRoot)('oom_score_adj', () => {
  // Issue 16 item 7: a host-wide OOM must take a run, not the daemon or a host service. The child
  // writes the value while still root; with CAP_SYS_RESOURCE that also makes it its floor:
  // dropped to its uid (and without Landlock, which would hide /proc), it cannot lower it again.
  // Without the capability (a bounding set may lack it) the floor stays the one it inherited, ours.
  // Its children inherit the value.
  const capEff = /^CapEff:\s+([0-9a-f]+)/m.exec(fs.readFileSync('/proc/self/status', 'utf8'))![1]!;
  const CAP_SYS_RESOURCE = 24n;
  const canSetFloor = ((BigInt(`0x${capEff}`) >> CAP_SYS_RESOURCE) & 1n) === 1n;
  const probe = [
    'import os',
    'def show(who): print(who, open("/proc/self/oom_score_adj").read().strip(), flush=True)',
    'show("run")',
    'pid = os.fork()',
    'if pid == 0: show("child"); os._exit(0)',
    'os.waitpid(pid, 0)',
    'try: open("/proc/self/oom_score_adj", "w").write("0"); print("lowered to", open("/proc/self/oom_score_adj").read().strip())',
    'except PermissionError: print("cannot lower")',
  ].join('\n');

  it('support_run_gets_oom_score_adj_1000_as_its_floor_and_its_children_inherit_it', async () => {
    const ours = fs.readFileSync('/proc/self/oom_score_adj', 'utf8');
    const { stdout, stderr } = await spawnPython(probe, { uid: 61999, gid: 61999, oomScoreAdj: 1000 });
    expect(stderr).toBe('');
    expect(stdout).toBe(`run 1000\nchild 1000\n${canSetFloor ? 'cannot lower' : 'lowered to 0'}\n`);
    // Ours is untouched: the child (CLONE_VM until its execve) changed its own value only.
    expect(fs.readFileSync('/proc/self/oom_score_adj', 'utf8')).toBe(ours);
  });

  it('support_oom_score_adj_out_of_range_is_refused_before_the_spawn', () => {
    expect(() => native().spawn({ file: PYTHON, argv: [PYTHON], env: [], cwd: '/', oomScoreAdj: 1001 })).toThrow(/oomScoreAdj/);
  });
});

describe.skipIf(!isRoot)('the plan (native/plan.h)', () => {
  const bare: NativePlan = { file: PYTHON, argv: [PYTHON, '-c', 'pass'], env: [], cwd: '/' };

  // A field added to NativePlan without its row would otherwise be dropped in silence.
  it('support_a_key_without_a_row_is_refused_before_the_spawn', () => {
    const plan = { ...bare, oomScoreAdjust: 1000 } as NativePlan;
    expect(() => native().spawn(plan)).toThrow(/plan\.oomScoreAdjust is not a field of a plan/);
  });

  it('support_a_list_longer_than_its_row_is_refused_before_the_spawn', () => {
    const fd = fs.openSync('/dev/null', 'r');
    try {
      expect(() => native().spawn({ ...bare, cgroupProcsFds: Array(9).fill(fd) })).toThrow(/plan\.cgroupProcsFds holds more than 8 fds/);
    } finally {
      fs.closeSync(fd);
    }
  });

  it('support_uid_without_gid_is_refused_before_the_spawn', () => {
    expect(() => native().spawn({ ...bare, uid: 61999 })).toThrow(/plan\.uid and plan\.gid go together/);
  });
});
