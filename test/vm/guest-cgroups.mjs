// cgroup v2 part of the VM suite (imported by guest-suite.mjs, in the guest). Two passes with
// the uid layer and rlimits off, so that only the cgroup can do what is tested:
//   cgroups   layers.cgroups required: touching MEMORY_TOUCHED (twice memory.max) ends in an OOM
//             kill with a memory verdict, pids.max stops a fork loop, and cgroup.kill ends a
//             setsid()'d double-forked sleeper (without the uid layer the daemon's process-group
//             kill cannot reach it);
//   sabotage  the same probes with cgroups off: the memory is touched and the program ends (the
//             probe is bounded, so the guest's 2 GiB are never at risk), the loop runs to the end
//             and the sleeper survives (the suite kills it), showing each probe detects the layer.
import fs from 'node:fs';

const MEMORY_MAX = 64 * 1024 * 1024;
const NPROC = 8;

const MEMORY_TOUCHED_MIB = 128;
const MEMORY_BOMB = `
chunks = []
for _ in range(${MEMORY_TOUCHED_MIB}):
    chunks.append(bytearray(1 << 20))  # zero-filled: every page is touched
print('touched', len(chunks))
`;

const FORK_LOOP = `
import os, time
n = 0
try:
    for _ in range(${NPROC * 3}):
        pid = os.fork()
        if pid == 0:
            time.sleep(60)
            os._exit(0)
        n += 1
    print('forked', n)
except BlockingIOError:
    print('EAGAIN after', n)
`;

// The grandchild leaves the session and the process group, points its stdio at /dev/null (so
// the run's pipes close), and reports its pid through a pipe before the run ends.
const DOUBLE_FORK = `
import os, time
r, w = os.pipe()
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        null = os.open('/dev/null', os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.write(w, str(os.getpid()).encode())
        os.close(w)
        time.sleep(300)
        os._exit(0)
    os._exit(0)
os.close(w)
print(os.read(r, 32).decode())
`;

function alive(pid) {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  // A zombie is dead for our purpose, but it must have been reaped to count as "nothing left".
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  return !/^\d+ \(.*\) Z /.test(stat);
}

async function runPass(name, layers, { withDaemon, step }, includeMemory) {
  const pass = {};
  try {
    await withDaemon(
      `cgroups-${name}`,
      layers,
      async (client, daemon) => {
        pass.layers = daemon.layers;
        const limits = { CPU: 20, REALTIME: 120, NPROC, VMEM: 0 };
        if (includeMemory) {
          const r = await client.jailCode('python', { code: MEMORY_BOMB, limits });
          pass.memory = { status: r.status, stdout: r.stdout.toString().trim(), oomKilled: r.oomKilled, memoryPeakKb: r.usage.memoryPeakKb, wallMs: r.usage.wallMs, confinement: r.confinement, stderr: r.stderr.toString().slice(-300) };
          step(`${name}: memory bomb ${JSON.stringify(pass.memory)}`);
        }
        if (includeMemory && layers.cgroups !== 'off') {
          // A REALTIME kill goes through cgroup.kill while the main process still runs: it must
          // not wait on the dying process (an exited task leaves its cgroup before it is reaped).
          const t = await client.jailCode('python', { code: 'while True: pass\n', limits: { ...limits, REALTIME: 3 } });
          pass.timeout = { status: t.status, timedOut: t.timedOut, wallMs: t.usage.wallMs };
          step(`${name}: REALTIME kill ${JSON.stringify(pass.timeout)}`);
        }
        const f = await client.jailCode('python', { code: FORK_LOOP, limits });
        pass.pids = { status: f.status, stdout: f.stdout.toString().trim(), stderr: f.stderr.toString().slice(-300) };
        step(`${name}: fork loop ${JSON.stringify(pass.pids)}`);

        const d = await client.jailCode('python', { code: DOUBLE_FORK, limits });
        const pid = Number(d.stdout.toString().trim());
        pass.sleeper = { status: d.status, pid, stderr: d.stderr.toString().slice(-300) };
        // The daemon has swept the run before replying; give a dying task a moment anyway.
        await new Promise((resolve) => setTimeout(resolve, 200));
        pass.sleeper.aliveAfterRun = pid > 0 && alive(pid);
        if (pass.sleeper.aliveAfterRun) process.kill(pid, 'SIGKILL');
        step(`${name}: double-forked sleeper ${JSON.stringify(pass.sleeper)}`);
        const leaves = fs.existsSync('/sys/fs/cgroup/codejail') ? fs.readdirSync('/sys/fs/cgroup/codejail').filter((e) => e.startsWith('slot-')) : [];
        pass.leftoverLeaves = leaves;
      },
      { cgroupMemoryMax: MEMORY_MAX },
    );
  } catch (err) {
    pass.error = String(err?.stack ?? err);
    step(`${name}: ERROR ${pass.error}`);
  }
  return pass;
}

export async function runCgroupChecks(ctx) {
  const out = {};
  out.controllers = fs.readFileSync('/sys/fs/cgroup/cgroup.controllers', 'utf8').trim();
  out.cgroups = await runPass('on', { cgroups: 'required', uid: 'off', rlimits: 'off' }, ctx, true);
  out.sabotage = await runPass('sabotage', { cgroups: 'off', uid: 'off', rlimits: 'off' }, ctx, true);
  return out;
}
