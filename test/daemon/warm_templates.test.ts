// Warm templates over their life (src/run/template.ts WarmCommand): a template killed under a
// run ends that run and the daemon runs cold until a new one is ready; `warm.maxForks` and SIGHUP
// replace it, the old one finishing its runs first; a preload that does not import stops the
// start, naming the module; hundreds of runs and replacements leave no fd or process behind.
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Client, type JailCodeResult } from '../../src/client/index.js';
import { dedent } from '../helpers/cases.js';
import { readProc, until } from '../helpers/proc.js';
import { startTestDaemon, type TestDaemon, type TestDaemonOptions } from '../helpers/daemon.js';

const isRoot = process.getuid?.() === 0;

/** MiB a warm run importing a preloaded numpy gets beyond a cold one's VMEM (a known difference). */
const WARM_NUMPY_EXTRA_MIB = 31;


const parentOf = (pid: number) => Number(readProc(pid, 'status')?.match(/^PPid:\s+(\d+)/m)?.[1]);

function processes(): number[] {
  return fs.readdirSync('/proc').filter((e) => /^\d+$/.test(e)).map(Number);
}

/** Live templates of this daemon: its children running warm_template.py (zombies are not). */
function templatesOf(daemon: TestDaemon): number[] {
  return processes().filter((pid) => {
    if (parentOf(pid) !== daemon.process.pid) return false;
    const state = readProc(pid, 'status')?.match(/^State:\s+(\S)/m)?.[1];
    return state !== 'Z' && (readProc(pid, 'cmdline') ?? '').includes('warm_template.py');
  });
}

/** The forked runs of a template. */
const childrenOf = (pid: number) => processes().filter((p) => parentOf(p) === pid);

/**
 * The runs of a template that are in their code's time.sleep (clock_nanosleep, syscall 230 on
 * x86_64): forked is not enough, a child killed before it reported itself confined has not
 * started, and its run goes cold (a minute of sleep, then).
 */
const sleepingChildrenOf = (pid: number) => childrenOf(pid).filter((p) => readProc(p, 'syscall')?.split(' ')[0] === '230');

const alive = (pid: number) => readProc(pid, 'status') !== undefined && !/^State:\s+Z/m.test(readProc(pid, 'status')!);

const fdCount = (pid: number) => fs.readdirSync(`/proc/${pid}/fd`).length;

/**
 * The daemon's fds once it is idle: no slot busy, nothing queued. A run's clean-up (the sweep's
 * last kill rounds, which scan /proc, and the run directory's removal) goes on after its reply
 * and holds fds meanwhile: a count taken then is one too high, and the test comparing with it
 * fails when the daemon later reads one fewer. The same count twice, a status round trip apart.
 */
async function idleFdCount(client: Client, pid: number): Promise<number> {
  let last = -1;
  await until('the daemon to be idle with a steady fd count', async () => {
    const { slots, queue } = await client.status();
    if (slots.busy > 0 || queue.depth > 0) return false;
    const now = fdCount(pid);
    const steady = now === last;
    last = now;
    return steady;
  });
  return last;
}

const logged = (daemon: TestDaemon, msg: string) => daemon.logs.filter((l) => typeof l.msg === 'string' && l.msg.startsWith(msg));

describe.skipIf(!isRoot)('warm templates over their life', () => {
  let daemon: TestDaemon | undefined;
  let client: Client | undefined;

  async function start(options: TestDaemonOptions = {}): Promise<{ daemon: TestDaemon; client: Client }> {
    daemon = await startTestDaemon({ ...options, config: { ...options.config, warm: { enabled: true, ...(options.config?.warm as object) } } });
    client = new Client({ socketPath: daemon.socketPath });
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

  it('a template killed mid-run: its runs fail template_lost, runs go cold, then warm again once it is back, no fd left', async () => {
    const { daemon, client } = await start();
    const [template] = templatesOf(daemon);
    expect(template).toBeGreaterThan(0);
    const daemonPid = daemon.process.pid!;
    // A run in every slot first: whatever a slot's first run opens once is open before the count.
    await Promise.all([0, 1, 2, 3].map(() => run(client, 'import time\ntime.sleep(0.2)', { limits: { REALTIME: 30 } })));
    const fdsBefore = await idleFdCount(client, daemonPid);
    const inFlight = [0, 1, 2].map(() =>
      run(client, "import time\nprint('start', flush=True)\ntime.sleep(60)", { limits: { REALTIME: 120 } }).catch((err: Error) => err),
    );
    await until('the warm runs to be in their code', () => sleepingChildrenOf(template!).length === 3);
    process.kill(template!, 'SIGKILL');
    // Review: they came back as a plain -9, a wrong result. The template's death ended them.
    for (const killed of await Promise.all(inFlight)) expect(killed).toMatchObject({ code: 'template_lost' });
    await until('the daemon to log the template gone', () => logged(daemon, 'warm template gone').length === 1);

    // Until a new template says it is ready, runs go cold (restarted after 1 s: when the machine is
    // so slow that it is back before the reply, this run may be warm, and that is right too).
    const readyBefore = logged(daemon, 'warm template ready').length;
    const meanwhile = await run(client, 'print(1)');
    expect(meanwhile.stdout.toString()).toBe('1\n');
    if (logged(daemon, 'warm template ready').length === readyBefore) expect(meanwhile.usage.stages?.warm).toBe(false);

    await until('a new template', () => logged(daemon, 'warm template ready').length > readyBefore);
    const again = await run(client, 'print(2)');
    expect(again.usage.stages?.warm).toBe(true);
    expect(again.stdout.toString()).toBe('2\n');
    const now = templatesOf(daemon);
    expect(now).toHaveLength(1);
    expect(now[0]).not.toBe(template);
    expect(await idleFdCount(client, daemonPid)).toBe(fdsBefore);
  });

  it('warm.maxForks replaces the template; the old one exits once its run in flight is over', async () => {
    const { daemon, client } = await start({ config: { warm: { maxForks: 5 } } });
    // The start-up self-check's runs count too: wait until its replacements are over.
    await until('one template', () => templatesOf(daemon).length === 1);
    const [first] = templatesOf(daemon);
    const replacedBefore = logged(daemon, 'warm template replaced').length;
    // A run that outlives the replacement.
    const long = run(client, "import time\ntime.sleep(6)\nprint('slept')", { limits: { REALTIME: 60 } });
    let longDone = false;
    void long.then(() => (longDone = true));
    await until('the long run to be forked', () => childrenOf(first).length > 0);
    for (let i = 0; i < 5 && logged(daemon, 'warm template replaced').length === replacedBefore; i++) {
      expect((await run(client, `print(${i})`)).usage.stages?.warm).toBe(true);
    }
    await until('the replacement', () => logged(daemon, 'warm template replaced').length > replacedBefore);
    expect(logged(daemon, 'warm template replaced')[replacedBefore].reason).toBe('5 forks');
    const next = Number(logged(daemon, 'warm template ready').at(-1)!.pid);
    expect(next).not.toBe(first);
    // While its run is in flight, the old template drains: alive, its one run going on.
    const after = await run(client, 'print("new")');
    expect(after.usage.stages?.warm).toBe(true);
    if (!longDone) {
      expect(alive(first)).toBe(true);
      expect(childrenOf(first)).toHaveLength(1);
    }
    const slept = await long;
    expect(slept.status).toBe(0);
    expect(slept.stdout.toString()).toBe('slept\n');
    await until('the old template to exit', () => !alive(first));
    expect(templatesOf(daemon)).toEqual([next]);
  });

  it('deny_warm_template_holds_no_daemon_secret_nor_fd: its environment, and its fds beyond stdio and its channel', async () => {
    const { daemon } = await start();
    const [template] = templatesOf(daemon);
    const environ = readProc(template, 'environ')!.split('\0').filter(Boolean);
    expect(environ.join('\n')).not.toContain('HONEY_BOO_BOO');
    expect(environ.map((e) => e.split('=')[0]).sort()).toEqual(['HOME', 'LANG', 'PATH', 'TMPDIR']);
    // 0-2: its output pipes to the daemon; 3: /dev/null held in place; the channel; nothing of
    // the daemon's (its listening socket, runs' pipes, other templates).
    const fds = fs.readdirSync(`/proc/${template}/fd`).map((fd) => {
      try {
        return `${fd} ${fs.readlinkSync(`/proc/${template}/fd/${fd}`)}`;
      } catch {
        return `${fd} gone`;
      }
    });
    const sockets = fds.filter((fd) => fd.includes('socket:'));
    expect(sockets.length, fds.join('\n')).toBe(1);
    expect(fds.length, fds.join('\n')).toBeLessThanOrEqual(6);
  });

  it('SIGHUP replaces the template, and with it the layout its runs share', async () => {
    const { daemon, client } = await start();
    const [first] = templatesOf(daemon);
    const layout = "print(hex(id(None)), hash('codejail'))";
    const before = (await run(client, layout)).stdout.toString();
    expect((await run(client, layout)).stdout.toString()).toBe(before);
    daemon.process.kill('SIGHUP');
    await until('the replacement', () => logged(daemon, 'warm template replaced').length === 1);
    expect(logged(daemon, 'warm template replaced')[0].reason).toBe('reload');
    await until('the old template to exit', () => !alive(first));
    const [second] = templatesOf(daemon);
    expect(second).not.toBe(first);
    const r = await run(client, layout);
    expect(r.usage.stages?.warm).toBe(true);
    expect(r.stdout.toString()).not.toBe(before);
  });

  it('warm.maxForks 1: a replacement per run under load, every run right, one template at the end', async () => {
    const { daemon, client } = await start({ config: { warm: { maxForks: 1 } } });
    let next = 0;
    const worker = async () => {
      while (next < 40) {
        const i = next++;
        const r = await run(client, `print(${i})`);
        expect(r.stdout.toString()).toBe(`${i}\n`);
        expect(r.status).toBe(0);
      }
    };
    await Promise.all([worker(), worker(), worker(), worker()]);
    expect(logged(daemon, 'warm template replaced').length).toBeGreaterThanOrEqual(2);
    await until('one template left', () => templatesOf(daemon).length === 1);
  });

  it('warm.maxAgeSeconds replaces a template that old at its next run', async () => {
    const { daemon, client } = await start({ config: { warm: { maxAgeSeconds: 1 } } });
    const [first] = templatesOf(daemon);
    await new Promise((r) => setTimeout(r, 1500));
    expect((await run(client, 'print(1)')).usage.stages?.warm).toBe(true);
    await until('the replacement', () => logged(daemon, 'warm template replaced').length >= 1);
    expect(logged(daemon, 'warm template replaced')[0].reason).toBe('1 s old');
    await until('the old template to exit', () => !alive(first));
  });

  it('a stopped daemon leaves no template, and no run of one, behind', async () => {
    const { daemon, client } = await start({ config: { shutdownGraceMs: 200 } });
    const templates = templatesOf(daemon);
    const inFlight = run(client, 'import time\ntime.sleep(60)', { limits: { REALTIME: 120 } }).catch((err: Error) => err);
    await until('the warm run to be forked', () => childrenOf(templates[0]).length > 0);
    const runs = childrenOf(templates[0]);
    await daemon.stop();
    await inFlight;
    await until('the templates and their runs to be gone', () => [...templates, ...runs].every((pid) => !alive(pid)), 10_000);
  });

  it('a warm run has the credentials, capabilities, no_new_privs and seccomp of a cold run', async () => {
    // Read from outside: a run may not read /proc/self/status (Landlock).
    const { daemon, client } = await start();
    const { slots } = JSON.parse(fs.readFileSync(path.join(path.dirname(daemon.socketPath), 'config.json'), 'utf8')) as {
      slots: { firstUid: number; count: number };
    };
    const inSlots = (uid: number) => uid >= slots.firstUid && uid < slots.firstUid + slots.count;
    const sleeper = "import time\nprint('up', flush=True)\ntime.sleep(30)";
    // Not Seccomp_filters: a warm run has two, its template's and the one-rule tail it adds
    // (native/seccomp.cc), which together are the policy a cold run installs as one.
    const fields = ['Uid', 'Gid', 'Groups', 'CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb', 'NoNewPrivs', 'Seccomp', 'Seccomp_filters', 'Speculation_Store_Bypass'];
    const statusOf = async (warm: boolean): Promise<string> => {
      const before = new Set(processes());
      const running = run(client, sleeper, { warm, limits: { REALTIME: 60 } });
      // Its own process in a slot's uid, confined to the end (seccomp is the last step; a cold
      // one has also exec'd the interpreter on its script).
      const confined = (p: number) =>
        !before.has(p) &&
        inSlots(Number(readProc(p, 'status')?.match(/^Uid:\s+(\d+)/m)?.[1])) &&
        /^Seccomp:\s+2$/m.test(readProc(p, 'status') ?? '') &&
        (warm || (readProc(p, 'cmdline') ?? '').includes('jailed_code'));
      let pid = 0;
      await until('the run to start', () => (pid = processes().find(confined) ?? 0) > 0);
      const status = readProc(pid, 'status')!;
      const uid = status.match(/^Uid:\s+(\d+)/m)![1]!;
      const gid = status.match(/^Gid:\s+(\d+)/m)![1]!;
      void running.catch(() => {});
      process.kill(pid, 'SIGKILL');
      await running.catch(() => {});
      return status
        .split('\n')
        .filter((line) => fields.includes(line.split(':')[0]!))
        .join('\n')
        .replaceAll(uid, 'UID')
        .replaceAll(gid, 'GID');
    };
    const warm = await statusOf(true);
    const cold = await statusOf(false);
    expect(warm).toContain('NoNewPrivs:\t1');
    expect(warm).toMatch(/CapEff:\t0+\n/);
    expect(warm).toContain('Seccomp_filters:\t2');
    expect(cold).toContain('Seccomp_filters:\t1');
    const alike = (status: string) => status.replace(/^Seccomp_filters:.*$/m, '');
    expect(alike(warm)).toBe(alike(cold));
  });

  it('a warm run whose client goes away is killed, and its slot serves the next run', async () => {
    const { daemon } = await start({ config: { slots: { count: 1 } } });
    const [template] = templatesOf(daemon);
    const leaving = new Client({ socketPath: daemon.socketPath });
    const abandoned = run(leaving, 'import time\ntime.sleep(60)', { limits: { REALTIME: 120 } }).catch((err: Error) => err);
    await until('the warm run to be forked', () => childrenOf(template!).length === 1);
    const [child] = childrenOf(template!);
    await leaving.close();
    await abandoned;
    await until('the abandoned run to be gone', () => !alive(child!), 10_000);
    const next = await run(client!, 'print(1)');
    expect(next.usage.stages?.warm).toBe(true);
    expect(next.stdout.toString()).toBe('1\n');
  });

  it('support_the_template_filters_itself_with_the_seccomp_layer_and_not_without', async () => {
    // With the layer active, the template installs the warm policy but setns on itself once it
    // is ready (its runs add only setns); with the layer off, nothing of seccomp is anywhere.
    const seccompOf = (pid: number) => /^Seccomp:\s+(\d+)$/m.exec(readProc(pid, 'status') ?? '')?.[1];
    const on = await start();
    expect(templatesOf(on.daemon).map(seccompOf)).toEqual(['2']);
    await on.client.close();
    await on.daemon.stop();
    const off = await start({ config: { layers: { seccomp: 'off' } } });
    expect(templatesOf(off.daemon).map(seccompOf)).toEqual(['0']);
    const r = await run(off.client, 'print(1)');
    expect(r.usage.stages?.warm).toBe(true);
  });

  it('a run whose child outlives it leaves no zombie under the template or the daemon', async () => {
    const { daemon, client } = await start();
    const [template] = templatesOf(daemon);
    const r = await run(
      client,
      "import os, time\npid = os.fork()\nif pid == 0:\n    os.setsid()\n    time.sleep(30)\n    os._exit(0)\nprint('parent leaves', pid)",
      { limits: { NPROC: 4 } },
    );
    expect(r.usage.stages?.warm).toBe(true);
    const said = /^parent leaves (\d+)\n$/.exec(r.stdout.toString());
    expect(said).not.toBeNull();
    // The reply can come before the sweep killed the child left behind (its last rounds run after
    // the reply), and a killed child is a zombie until reaped: the state to wait for is the child
    // gone, reaped by whoever is its parent; then nothing of the run may be a zombie either.
    const orphan = Number(said![1]);
    await until('the child the run left to be killed and reaped', () => readProc(orphan, 'status') === undefined, 10_000);
    // A process that has just exited is a zombie until its parent reaps it (the run's own process
    // under the template, the kill round's clones under the daemon: the reply does not wait for
    // those reaps). The bug is a zombie nobody reaps: one still there seconds later.
    const zombies = () =>
      processes().filter((pid) => [template, daemon.process.pid].includes(parentOf(pid)) && /^State:\s+Z/m.test(readProc(pid, 'status') ?? ''));
    let left: number[] = [];
    await until('no zombie under the template or the daemon', () => (left = zombies()).length === 0, 5_000).catch(() => undefined);
    expect(left).toEqual([]);
    expect((await run(client, 'print(1)')).stdout.toString()).toBe('1\n');
  });

  // Was a bug: a template that stops answering (SIGSTOP here; a hang in general) stayed 'ready':
  // each run sent to it waited 10 s and failed setup_failed, and so did every later one. Now the
  // run waits FORK_REPORT_MS (3 s), starts cold, and the template is killed and restarted.
  it('a template that stops answering: runs still run (cold) and it is replaced', async () => {
    const { daemon, client } = await start();
    const [template] = templatesOf(daemon);
    process.kill(template, 'SIGSTOP');
    try {
      const first = await run(client, 'print(1)', { limits: { REALTIME: 5 } });
      expect(first.stdout.toString()).toBe('1\n');
      expect(first.usage.stages?.warm).toBe(false);
      const second = await run(client, 'print(2)', { limits: { REALTIME: 5 } });
      expect(second.stdout.toString()).toBe('2\n');
      expect(daemon.logs.some((l) => /did not fork a run in time/.test(String(l.msg)))).toBe(true);
      await until('a new template', () => templatesOf(daemon).some((pid) => pid !== template));
    } finally {
      try {
        process.kill(template, 'SIGCONT');
      } catch {
        // Killed and reaped already.
      }
    }
  }, 60_000);

  // Review: a template stopped after it forked a run never reported that run's exit, so the run
  // waited (REALTIME 3 s, waited 15) until something else noticed the template. Now an exit the
  // template leaves unreported for REAP_LATE_MS ends the run, with the zombie's own status.
  it('a template stopped while its run ends: the run ends with its own status, the template is replaced', async () => {
    const { daemon, client } = await start();
    const [template] = templatesOf(daemon);
    const running = run(client, 'import time\ntime.sleep(1)\nprint("done")\nraise SystemExit(3)', { limits: { REALTIME: 3 } });
    // Stopped once it has forked the run (its child is there), not after a guess at how long that takes.
    await until('the template to fork the run', () => childrenOf(template!).length > 0);
    process.kill(template!, 'SIGSTOP');
    try {
      const started = performance.now();
      const result = await running;
      expect(result.usage.stages?.warm).toBe(true);
      expect({ status: result.status, stdout: result.stdout.toString(), timedOut: result.timedOut }).toEqual({ status: 3, stdout: 'done\n', timedOut: false });
      expect(performance.now() - started).toBeLessThan(10_000);
      expect(daemon.logs.some((l) => /did not reap a run that ended/.test(String(l.msg)))).toBe(true);
      await until('a new template', () => templatesOf(daemon).some((pid) => pid !== template));
    } finally {
      try {
        process.kill(template!, 'SIGCONT');
      } catch {
        // Killed and reaped already.
      }
    }
  }, 60_000);

  // Review: the argv size check counted bytes, not their JSON (a control character takes 6): such
  // an argv passed it, failed to send (EMSGSIZE) and logged "template is behind" on every run.
  it('an argv too large for the channel once escaped runs cold, without a word about the template', async () => {
    const { daemon, client } = await start();
    const argv = Array.from({ length: 1024 }, () => '\x01'.repeat(56));
    const r = await run(client, 'import sys\nprint(len(sys.argv), sum(map(len, sys.argv)))', { argv });
    expect(r.stdout.toString()).toBe(`1025 ${1024 * 56 + 'jailed_code'.length}\n`);
    expect(r.usage.stages?.warm).toBe(false);
    expect(daemon.logs.filter((l) => /behind/.test(String(l.msg)))).toEqual([]);
  });

  // Found by CI: the child dropped the template's selector to hide it, and the collector freed it
  // later, inside the run: it closed its old epoll fd's number, by then the harness's result
  // channel (safeExec failed with EBADF whenever the code collected garbage).
  it('support_warm_collecting_garbage_closes_nothing_of_the_run', async () => {
    const { client } = await start();
    for (let i = 0; i < 5; i++) {
      const globals = await client.safeExec('import gc\nbig = [str(i) * 10 for i in range(2000)]\ngc.collect()\nout = len(big)', {});
      expect(globals).toMatchObject({ out: 2000 });
    }
  });

  const withNumpy = { config: { commands: { python: { path: '/usr/bin/python3', kind: 'python', args: ['-E', '-B'], preload: ['numpy'] } } } };
  // python3-numpy missing: test/e2e/numpy.test.ts says so.
  const noNumpy = !fs.existsSync('/usr/lib/python3/dist-packages/numpy/__init__.py');

  // Review: numpy's global generator was seeded once, when the template imported numpy, so every
  // warm run drew the same numbers (a grader's "random" inputs known to anyone after one run).
  it.skipIf(noNumpy)('deny_warm_numpy_random_state_shared_between_runs', async () => {
    const { client } = await start(withNumpy);
    const code = 'import numpy as np\nprint(np.random.randint(1 << 30, size=4).tolist())';
    const draws = [];
    for (let i = 0; i < 3; i++) {
      const r = await run(client, code, { limits: { REALTIME: 20, CPU: 10 } });
      expect(r.usage.stages?.warm).toBe(true);
      draws.push(r.stdout.toString());
    }
    expect(new Set(draws).size).toBe(3);
  });

  // Review: the template's frames below the run's code reached its table of children, so a run
  // saw the pids (and run count) of other runs in flight. Three runs that overlap (each one's
  // start before every one's end, checked) each walk every frame below the program (the
  // template's: the walk must reach them) and every value their locals reach, a few levels deep,
  // collecting the ints; no other run's pid may be among them.
  it('deny_warm_run_sees_no_other_runs_through_the_template_frames', async () => {
    const { client } = await start();
    const code = dedent(`
      import os, sys, time
      start = time.time()
      found, seen, frames = set(), set(), 0
      def collect(value, depth):
          if id(value) in seen or depth > 4:
              return
          seen.add(id(value))
          if isinstance(value, bool):
              return
          if isinstance(value, int):
              found.add(value)
          elif isinstance(value, dict):
              for k, v in list(value.items()):
                  collect(k, depth + 1)
                  collect(v, depth + 1)
          elif isinstance(value, (list, tuple, set, frozenset)):
              for v in list(value):
                  collect(v, depth + 1)
          elif hasattr(value, '__dict__') and not isinstance(value, type(sys)):
              collect(vars(value), depth + 1)
      f = sys._getframe(1)
      while f is not None:
          frames += 1
          collect(dict(f.f_locals), 0)
          f = f.f_back
      time.sleep(1)
      print(os.getpid(), frames, start, time.time(), sorted(found))
      `);
    const results = await Promise.all([0, 1, 2].map(() => run(client, code, { limits: { REALTIME: 20 } })));
    const runs = results.map((r) => {
      expect(r.usage.stages?.warm, r.stderr.toString()).toBe(true);
      const [pid, frames, start, end, ints] = r.stdout.toString().trim().split(' ', 4).concat([r.stdout.toString().slice(r.stdout.toString().indexOf('['))]);
      return { pid: Number(pid), frames: Number(frames), start: Number(start), end: Number(end), ints: JSON.parse(ints!) as number[] };
    });
    expect(Math.max(...runs.map((r) => r.start)), 'the runs overlapped').toBeLessThan(Math.min(...runs.map((r) => r.end)));
    for (const r of runs) {
      // The template's frames (python/warm_template.py; test/e2e/warm.test.ts pins their number).
      expect(r.frames).toBe(6);
      const others = runs.filter((o) => o !== r).map((o) => o.pid);
      expect(r.ints.filter((i) => others.includes(i)), `run ${r.pid} sees another run's pid`).toEqual([]);
    }
  });

  it.skipIf(noNumpy)('a numpy preload (BLAS threads in the template) gives warm runs the cold results', async () => {
    const { client } = await start(withNumpy);
    const code =
      "import numpy as np, threading\na = np.arange(40000.).reshape(200, 200)\nprint((a @ a).sum(), np.linalg.det(np.eye(50) * 2))\nprint(threading.active_count())";
    const warm = await run(client, code, { limits: { REALTIME: 20, CPU: 10 } });
    const cold = await run(client, code, { warm: false, limits: { REALTIME: 20, CPU: 10 } });
    expect(warm.usage.stages?.warm).toBe(true);
    expect(cold.usage.stages?.warm).toBe(false);
    expect({ out: warm.stdout.toString(), err: warm.stderr.toString(), status: warm.status }).toEqual({
      out: cold.stdout.toString(),
      err: cold.stderr.toString(),
      status: cold.status,
    });
    expect(warm.status).toBe(0);
  });

  // Known difference (src/run/template.ts withVmAllowance): VMEM is raised by everything the
  // template has mapped beyond a fresh interpreter, preloads included, so a warm run that imports
  // a preloaded module gets that module's mappings as extra room, where a cold run pays for them:
  // at VMEM 256 MiB, MemoryError comes after 239 MiB warm and 208 cold (python3-numpy 2.4 here).
  // Counting only the template's own mappings would move the gap to runs that do not import
  // numpy; which of the two to favour is the lead's call. Pinned exactly, so a change either way
  // (a numpy of another size, an allowance computed otherwise) shows.
  it.skipIf(noNumpy)('VMEM 256 MiB with a numpy preload: a warm run that imports numpy gets exactly WARM_NUMPY_EXTRA_MIB more before MemoryError (a known difference)', async () => {
    const { daemon, client } = await start(withNumpy);
    const code = dedent(`
      import numpy
      chunks = []
      try:
          while True:
              chunks.append(bytearray(1 << 20))
      except MemoryError:
          pass
      print(len(chunks))
      `);
    const limits = { VMEM: 256 * 1024 * 1024, REALTIME: 20 };
    const warmRun = await run(client, code, { limits });
    const coldRun = await run(client, code, { limits, warm: false });
    expect([warmRun.usage.stages?.warm, coldRun.usage.stages?.warm]).toEqual([true, false]);
    const warm = Number(warmRun.stdout.toString());
    const cold = Number(coldRun.stdout.toString());
    const allowanceKb = logged(daemon, 'warm template ready')[0]?.vmAllowanceKb;
    expect(cold).toBeGreaterThan(100);
    expect(warm - cold, `MiB before MemoryError: warm ${warm}, cold ${cold} (allowance ${allowanceKb} KiB)`).toBe(WARM_NUMPY_EXTRA_MIB);
  });

  it('a preload that does not import stops the start, naming the module', async () => {
    const failed = await startTestDaemon({
      config: {
        warm: { enabled: true },
        commands: { python: { path: '/usr/bin/python3', kind: 'python', args: ['-E', '-B'], preload: ['json', 'no_such_module_cj'] } },
      },
      expectExit: true,
    });
    const code = await failed.stop();
    expect(code).not.toBe(0);
    expect(JSON.stringify(failed.logs)).toContain('no_such_module_cj');
  });

  it('200 warm runs and their replacements leave the daemon fds and template processes as they were', async () => {
    const { daemon, client } = await start({ config: { warm: { maxForks: 50 } } });
    const daemonPid = daemon.process.pid!;
    // A run in every slot first: whatever a slot's first run opens once (its cgroup, lazily
    // made) is open before the count.
    const firsts = await Promise.all([0, 1, 2, 3].map(() => run(client, 'import time\ntime.sleep(0.2)', { limits: { REALTIME: 30 } })));
    expect(firsts.map((r) => r.usage.stages?.warm)).toEqual([true, true, true, true]);
    const fdsBefore = await idleFdCount(client, daemonPid);
    const templatesBefore = templatesOf(daemon).length;
    let warm = 0;
    let next = 0;
    const worker = async () => {
      while (next < 200) {
        const i = next++;
        const r = await run(client, `print(${i})`);
        expect(r.stdout.toString()).toBe(`${i}\n`);
        if (r.usage.stages?.warm) warm++;
      }
    };
    await Promise.all([worker(), worker(), worker(), worker()]);
    expect(warm).toBe(200);
    expect(logged(daemon, 'warm template replaced').length).toBeGreaterThanOrEqual(3);
    // The last replacement's old template drains and exits on its own time.
    await until('one template, no run children', () => templatesOf(daemon).length === templatesBefore && childrenOf(templatesOf(daemon)[0]!).length === 0);
    expect(await idleFdCount(client, daemonPid)).toBe(fdsBefore);
  });

  // Review: a warm run's clone(CLONE_PARENT) child is the template's, which never reaped it: the
  // zombie, of the slot's uid, made every sweep fail, and the slot was quarantined for good (8
  // such runs took every slot). The template now reaps any child it did not fork. Seccomp is off
  // here: it refuses CLONE_PARENT, and this pins the template's own reaping.
  it('deny_warm_run_child_left_unreaped_under_the_template: it is reaped, and the slot serves on', async () => {
    const { daemon, client } = await start({ config: { slots: { count: 1 }, layers: { seccomp: 'off' } } });
    const [template] = templatesOf(daemon);
    const cloneParent = (flags: string) =>
      dedent(`
        import ctypes, os
        libc = ctypes.CDLL(None, use_errno=True)
        pid = libc.syscall(56, ${flags}, 0, 0, 0, 0)
        if pid == 0:
            os._exit(0)
        print("cloned", pid > 0)
      `);
    // A child that signals its exit (SIGCHLD), then one that signals nothing.
    for (const flags of ['0x8000 | 17', '0x8000', '0x8000 | 17']) {
      const r = await Promise.race([
        run(client, cloneParent(flags), { limits: { REALTIME: 5 } }),
        new Promise<never>((_, reject) => setTimeout(() => reject(new Error('no slot took the run: quarantined')), 15_000)),
      ]);
      expect(r.usage.stages?.warm).toBe(true);
      expect(r.stdout.toString()).toBe('cloned True\n');
    }
    expect(logged(daemon, 'slot quarantined')).toEqual([]);
    const zombies = () => childrenOf(template!).filter((pid) => /^State:\s+Z/m.test(readProc(pid, 'status') ?? ''));
    await until('no zombie under the template', () => zombies().length === 0, 5_000);
    expect(daemon.logs.some((l) => /made the template's child/.test(String(l.message)))).toBe(true);
  }, 90_000);

  // Review: runs in flight when the template died came back as a plain -9, one of them a run that
  // had printed its full output and exited. Now a run that ended by itself gets its own result
  // (the status the kernel keeps for it), and one the template's death ended fails template_lost.
  for (const end of ['SIGKILL', 'replaced'] as const) {
    it(`a template stopped, then ${end === 'SIGKILL' ? 'killed' : 'replaced for it'}: the run that ended gets its own result, the others template_lost`, async () => {
      const { daemon, client } = await start();
      const [template] = templatesOf(daemon);
      const ended = run(client, 'import time\ntime.sleep(0.8)\nprint("done")\nraise SystemExit(3)', { limits: { REALTIME: 30 } });
      const running = [0, 1].map(() =>
        run(client, "import time\nprint('start', flush=True)\ntime.sleep(60)", { limits: { REALTIME: 120 } }).catch((err: Error) => err),
      );
      await until('the warm runs to be in their code', () => sleepingChildrenOf(template!).length === 3);
      process.kill(template!, 'SIGSTOP');
      try {
        // The first run ends while the template is stopped: its zombie waits for the template.
        await until('the first run to end', () => childrenOf(template!).some((pid) => /^State:\s+Z/m.test(readProc(pid, 'status') ?? '')), 10_000);
        if (end === 'SIGKILL') process.kill(template!, 'SIGKILL');
        const result = await ended;
        expect({ status: result.status, stdout: result.stdout.toString(), warm: result.usage.stages?.warm }).toEqual({ status: 3, stdout: 'done\n', warm: true });
        for (const lost of await Promise.all(running)) expect(lost).toMatchObject({ code: 'template_lost' });
        await until('a new template', () => templatesOf(daemon).some((pid) => pid !== template));
        const again = await run(client, 'print(2)');
        expect(again.stdout.toString()).toBe('2\n');
      } finally {
        try {
          process.kill(template!, 'SIGCONT');
        } catch {
          // Killed and reaped already.
        }
      }
    }, 60_000);
  }

  // Review: a template's health and age were looked at only when a warm run was dispatched: a
  // template stopped while idle stayed "ready" (the next run waited on it for 3 s), and an old
  // one served on until a run came. A timer does both now.
  it('an idle template that stops answering is replaced, no run needed', async () => {
    const { daemon } = await start();
    const [template] = templatesOf(daemon);
    process.kill(template!, 'SIGSTOP');
    try {
      await until('a new template', () => templatesOf(daemon).some((pid) => pid !== template), 20_000);
      expect(logged(daemon, 'a warm template does not answer')).toHaveLength(1);
    } finally {
      try {
        process.kill(template!, 'SIGCONT');
      } catch {
        // Killed and reaped already.
      }
    }
  }, 60_000);

  it('an idle template past warm.maxAgeSeconds is replaced, no run needed', async () => {
    const { daemon } = await start({ config: { warm: { maxAgeSeconds: 2 } } });
    const [first] = templatesOf(daemon);
    await until('the replacement', () => logged(daemon, 'warm template replaced').length >= 1, 15_000);
    expect(logged(daemon, 'warm template replaced')[0]!.reason).toBe('2 s old');
    await until('the old template to exit', () => !alive(first!));
    expect(logged(daemon, 'a warm template does not answer')).toHaveLength(0);
  }, 60_000);
});
