// Hostile review, items 1 and 7 and the DISK limit: what a run leaves in its directory, and what
// a request makes the daemon create, must cost the run (its DISK), never the daemon or the next
// run, and must never stop the daemon from starting again.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { mountsBeneath } from '../../src/run/rundir.js';
import { Client } from '../../src/client/index.js';
import { encodeFrame, FrameDecoder, PROTOCOL_VERSION } from '../../src/protocol/index.js';
import { expectDenied } from '../helpers/denial.js';
import { daemonSuite } from '../helpers/suite.js';
import { startTestDaemon, TEST_RUN_PATH } from '../helpers/daemon.js';
import { heldRunDirs, runBaseLeftovers } from '../helpers/run_base.js';

const isRoot = process.getuid?.() === 0;
const sabotaged = (process.env.CODEJAIL_SABOTAGE ?? '').split(',');

/**
 * Run directories left under the run base, by name as bytes: the slots' empty mount points aside,
 * and the directories of the runs the daemon of `client` holds ahead (warm.holdAhead: README,
 * "Held runs"), which stay mounted between runs by design.
 */
async function runBaseEntries(runBase: string, client?: Client): Promise<Buffer[]> {
  return runBaseLeftovers(runBase, 4, client ? await heldRunDirs(client) : []);
}

/** Mounts beneath the run base, the held runs' own aside (as runBaseEntries). */
async function mountsLeft(runBase: string, client?: Client): Promise<string[]> {
  const held = client ? (await heldRunDirs(client)).map((dir) => path.join(runBase, dir)) : [];
  return mountsBeneath(runBase).filter((mount) => !held.includes(mount));
}

/** Sends one request frame as it is (no client-side checks) and returns the reply. */
async function rawRequest(socketPath: string, fields: Record<string, unknown>): Promise<{ ok: boolean; error?: { code: string; message: string } }> {
  const socket = net.connect(socketPath);
  const decoder = new FrameDecoder();
  try {
    socket.write(encodeFrame({ v: PROTOCOL_VERSION, id: 1, ...fields }));
    for await (const chunk of socket) {
      const [reply] = decoder.push(chunk as Buffer);
      if (reply) return reply as never;
    }
    throw new Error('the daemon closed the connection without a reply');
  } finally {
    socket.destroy();
  }
}

/**
 * Mounts beneath `dir` in each mount namespace the daemon holds an fd of (the runs' shared one,
 * with the mntns layer), read with nsenter.
 */
function mountsBeneathInRunNamespaces(daemonPid: number, dir: string): { namespaces: number; mounts: string[] } {
  const found: string[] = [];
  let namespaces = 0;
  const fdDir = `/proc/${daemonPid}/fd`;
  for (const fd of fs.readdirSync(fdDir)) {
    let target: string;
    try {
      target = fs.readlinkSync(`${fdDir}/${fd}`);
    } catch {
      continue;
    }
    if (!target.startsWith('mnt:')) continue;
    namespaces++;
    const info = spawnSync('nsenter', [`--mount=${fdDir}/${fd}`, 'cat', '/proc/self/mountinfo'], { encoding: 'utf8' });
    expect(info.status, info.stderr).toBe(0);
    found.push(...mountsBeneath(dir, info.stdout));
  }
  return { namespaces, mounts: found };
}

const NON_UTF8_TREE = `
import os
os.close(os.open(b'tmp/bad\\xff\\xfename', os.O_CREAT | os.O_WRONLY))
os.makedirs(b'tmp/dir\\xc3\\x28/inner\\xfe', exist_ok=True)
for i in range(50):
    with open(b'tmp/dir\\xc3\\x28/inner\\xfe/f%d' % i, 'wb') as f:
        f.write(b'x' * 1000)
print('made')
`;

describe.skipIf(!isRoot)('hostile: run directories', () => {
  describe.each([
    ['with the disk layer', {}],
    ['without it (plain directories, removed by a walk)', { layers: { disk: 'off' } }],
  ])('%s', (_, config) => {
    const suite = daemonSuite({ config: { ...config, defaultLimits: { FSIZE: 1_000_000 } } });

    it('support_rundir_non_utf8_names_leave_nothing_behind', async () => {
      const result = await suite.client.jailCode('python', { code: NON_UTF8_TREE });
      expect(result.stderr.toString()).toBe('');
      expect(result.stdout.toString()).toBe('made\n');
      // A run's directory goes in its clean-up, after the reply: once no slot is busy.
      await suite.idle();
      expect(await runBaseEntries(suite.daemon.runBase, suite.client)).toEqual([]);
      expect(await mountsLeft(suite.daemon.runBase, suite.client)).toEqual([]);
      expect(suite.daemon.logs.filter((l) => l.msg === 'could not remove a run directory')).toEqual([]);
    });

    it('support_request_files_implying_too_many_directories_are_refused', async () => {
      // 400 names 31 levels deep, each under its own top directory: 12 400 directories. The
      // review's 2000 such names made 62 000 directories (14 s of the slot's time).
      const files = Array.from({ length: 400 }, (_, i) => ({
        type: 'file',
        name: [`top${i}`, ...Array.from({ length: 30 }, (__, d) => `d${d}`), 'f'].join('/'),
        data: Buffer.from('x'),
      }));
      const reply = await rawRequest(suite.daemon.socketPath, { op: 'jail_code', command: 'python', code: Buffer.from('print(1)'), files });
      expect(reply).toMatchObject({ ok: false, error: { code: 'bad_request' } });
      expect(reply.error!.message).toMatch(/exceed 10000 entries/);
      // Refused while it was prepared: nothing is left at the reply. A held run's directory was
      // made before the request and goes in the slot's clean-up, after the reply.
      if (TEST_RUN_PATH === 'held') await suite.idle();
      expect(await runBaseEntries(suite.daemon.runBase, suite.client)).toEqual([]);
    });
  });

  describe('one slot: a run finds nothing of the run before it in its slot', () => {
    // One slot, so every run has the same uid and, with the disk layer, the same mount point:
    // only a fresh run disk and the sweep stand between one run and the next.
    const suite = daemonSuite({ config: { slots: { count: 1 }, defaultLimits: { FSIZE: 1_000_000 } } });
    // Files in its tmp/, and a setsid()'d process that keeps a file of the run disk open and its
    // cwd in it (what would keep a detached tmpfs alive), holding its pid.
    const DIRTY = `
import os, time
open('tmp/left', 'w').write('left')
os.mkdir('tmp/dir')
pid = os.fork()
if pid == 0:
    os.setsid()
    fd = os.open('tmp/held', os.O_CREAT | os.O_WRONLY)
    os.chdir('tmp/dir')
    time.sleep(60)
    os._exit(0)
time.sleep(0.05)
print(pid, os.getcwd())
`;
    const check = (pid: string) => `
import os
fds = []
for fd in range(1024):
    try:
        os.fstat(fd)
        fds.append(fd)
    except OSError:
        pass
try:
    os.kill(${pid}, 0)
    alive = 'alive'
except ProcessLookupError:
    alive = 'gone'
except PermissionError:
    alive = 'alive'  # it exists, as another uid (the uid layer off: nothing swept it)
print(sorted(os.listdir('.')), os.listdir('tmp'), fds, alive, os.getcwd())
`;

    it('deny_uid_sweep_the_next_run_of_a_slot_finds_no_file_fd_or_process_of_the_previous', async () => {
      for (let round = 0; round < 3; round++) {
        const dirty = await suite.client.jailCode('python', { code: DIRTY });
        expect(dirty.stderr.toString()).toBe('');
        const [pid, dir] = dirty.stdout.toString().trim().split(' ');
        const next = await suite.client.jailCode('python', { code: check(pid!) });
        expect(next.stderr.toString()).toBe('');
        const out = next.stdout.toString();
        // Without the uid sweep the previous run's process is still there (the allow side).
        expectDenied(out.slice(0, out.lastIndexOf(' ')), "['jailed_code', 'tmp'] [] [0, 1, 2] gone", / alive$/, `round ${round}`);
        // With the disk layer in the same directory (the slot's mount point, a fresh disk on it);
        // without it in a new one.
        const cwd = out.trim().slice(out.lastIndexOf(' ') + 1);
        if (sabotaged.includes('disk')) expect(cwd).not.toBe(dir);
        else expect(cwd).toBe(dir);
      }
      await suite.idle();
      expect(await runBaseEntries(suite.daemon.runBase, suite.client)).toEqual([]);
      expect(await mountsLeft(suite.daemon.runBase, suite.client)).toEqual([]);
      // Nor in the runs' own mount namespace (mntns layer), where a run disk left mounted would
      // have the next one mounted beneath it, out of the next run's sight.
      const inRuns = mountsBeneathInRunNamespaces(suite.daemon.process.pid!, suite.daemon.runBase);
      expect(inRuns.namespaces).toBe(sabotaged.includes('mntns') ? 0 : 1);
      const held = (await heldRunDirs(suite.client)).map((dir) => path.join(suite.daemon.runBase, dir));
      expect(inRuns.mounts.filter((mount) => !held.includes(mount))).toEqual([]);
    });

    // Not on the held path: there the slot's mount point holds its next run's disk between runs
    // (README, "Held runs"), and a mounted directory cannot be removed from under it.
    it.skipIf(sabotaged.includes('disk') || TEST_RUN_PATH === 'held')('support_slot_takes_a_new_mount_point_when_its_own_is_gone', async () => {
      // The slot's mount point lives between runs in runBase, where something else may remove it
      // (an operator's clean-up, a tmp cleaner aging an idle directory): the slot must not fail
      // every run after that (it kept mounting on the vanished path, ENOENT, for good).
      expect((await suite.client.jailCode('python', { code: 'print(1)' })).stdout.toString()).toBe('1\n');
      await suite.idle();
      const runBase = suite.daemon.runBase;
      const [mountPoint, ...others] = fs.readdirSync(runBase);
      expect(others).toEqual([]);
      fs.rmdirSync(path.join(runBase, mountPoint!));
      const outcomes: string[] = [];
      for (let i = 0; i < 3; i++) {
        outcomes.push(
          await suite.client.jailCode('python', { code: 'print(2)' }).then(
            (r) => r.stdout.toString(),
            (err: { code?: string }) => `failed: ${err.code}`,
          ),
        );
        await suite.idle();
      }
      // The run that found it gone may fail, with setup_failed (not internal); the slot serves
      // again after it.
      expect(['2\n', 'failed: setup_failed']).toContain(outcomes[0]);
      expect(outcomes.slice(1)).toEqual(['2\n', '2\n']);
      expect(await runBaseEntries(runBase)).toEqual([]);
    });
  });

  describe('the DISK limit', () => {
    const suite = daemonSuite({ config: { defaultLimits: { FSIZE: 100_000_000 } } });

    it('deny_disk_bytes_past_the_limit_give_enospc', async () => {
      const code = `
try:
    with open('tmp/fill', 'wb') as f:
        for _ in range(64):
            f.write(b'x' * (1 << 20))
    print('wrote 64 MiB')
except OSError as e:
    print('errno', e.errno)
`;
      // REALTIME for the sabotaged run, which writes all 64 MiB to a busy disk.
      const result = await suite.client.jailCode('python', { code, limits: { DISK: 8 * 1024 * 1024, REALTIME: 20 } });
      // Without the limit the run directory is on the host's disk and takes all 64 MiB.
      expectDenied(result.stdout.toString(), 'errno 28\n', 'wrote 64 MiB\n', `status ${result.status}: ${result.stderr.toString()}`);
      expect(result.limits.DISK).toBe(8 * 1024 * 1024);
    });

    it('deny_disk_inodes_past_the_limit_give_enospc, and the next run starts clean and fast', async () => {
      const code = `
import os
n = 0
try:
    while n < 2000:
        os.mkdir('tmp/d%d' % n)
        n += 1
    print('made', n)
except OSError as e:
    print('errno', e.errno, 'after', n)
`;
      const result = await suite.client.jailCode('python', { code, limits: { DISK: 4 * 1024 * 1024, REALTIME: 20, CPU: 5 } });
      // 4 MiB of DISK is 1024 inodes; the run directory's own entries use a few.
      // Without the limit every directory is made on the host's disk (about twice the limit's
      // inodes: a few seconds on a busy disk, hence the REALTIME that only the sabotaged run needs).
      expectDenied(result.stdout.toString(), /^errno 28 after 10[12]\d\n$/, 'made 2000\n', `status ${result.status}: ${result.stderr.toString()}`);
      const next = await suite.client.jailCode('python', { code: "import os\nprint(os.listdir('tmp'))" });
      expect(next.stdout.toString()).toBe('[]\n');
      await suite.idle();
      expect(await runBaseEntries(suite.daemon.runBase, suite.client)).toEqual([]);
    });

    it("deny_disk_request_files_past_the_limit_are_refused_naming_disk", async () => {
      const outcome = await suite.client
        .jailCode('python', { code: 'print(1)', extraFiles: [['big.bin', Buffer.alloc(2 * 1024 * 1024)]], limits: { DISK: 1024 * 1024 } })
        .then(
          (r) => `ran: ${r.stdout.toString()}`,
          (err: Error & { code?: string }) => `${err.code}: ${err.message}`,
        );
      // Without the limit the files are written and the run goes ahead.
      expectDenied(outcome, /^bad_request: .*extraFiles\[0\] "big.bin": does not fit: the request's files exceed the run's DISK limit/, 'ran: 1\n');
      // Refused while it was prepared: nothing is left at the reply. A held run's directory was
      // made before the request and goes in the slot's clean-up, after the reply.
      if (TEST_RUN_PATH === 'held') await suite.idle();
      expect(await runBaseEntries(suite.daemon.runBase, suite.client)).toEqual([]);
    });

    it('deny_disk_noexec_an_elf_the_run_wrote_cannot_be_loaded_by_ld_so', async () => {
      // The interpreter may read and map its own binary; a copy of it in the run directory is
      // new code as far as the host is concerned, and ld.so would run it without any exec right.
      const code = `
import os, shutil, subprocess, sys
shutil.copy(sys.executable, 'tmp/py')
loader = next(p for p in ['/lib64/ld-linux-x86-64.so.2', '/lib/ld-linux-aarch64.so.1'] if os.path.exists(p))
r = subprocess.run([loader, 'tmp/py', '-c', 'print("RAN")'], capture_output=True)
print(r.returncode, r.stdout.decode().strip(), r.stderr.decode().strip())
`;
      // Cold: a warm run cannot start ld.so at all (seccomp and Landlock refuse its execve), so
      // warm this test would show nothing of the noexec mount.
      const result = await suite.client.jailCode('python', { code, limits: { NPROC: 30, REALTIME: 5, CPU: 5 }, warm: false });
      // Returncode, the copy's stdout (none: it never ran), ld.so's complaint; without the noexec
      // mount the copy runs.
      expectDenied(result.stdout.toString(), /^[1-9]\d* {2}.*failed to map segment from shared object/, /^0 RAN /, result.stderr.toString());
    });

    it('refuses a DISK past its ceiling, and DISK 0 (unlimited) under a ceiling', async () => {
      await expect(suite.client.jailCode('python', { code: 'print(1)', limits: { DISK: 2 * 1024 ** 3 } })).rejects.toMatchObject({
        code: 'limit_exceeds_ceiling',
      });
      await expect(suite.client.jailCode('python', { code: 'print(1)', limits: { DISK: 0 } })).rejects.toThrow(/DISK 0 \(unlimited\) is not allowed/);
    });

    it('status says what bounds memory and the run directory on this host', async () => {
      const status = await suite.client.status();
      expect(status.memory).toMatch(/^each process at most 1 GiB of address space \(VMEM\), at most 15 processes \(NPROC\); /);
      expect(status.disk).toBe(sabotaged.includes('disk') ? expect.stringMatching(/^not bounded/) : 'a tmpfs of 64 MiB per run directory (DISK), in memory');
    });
  });

  it('support_startup_leftovers_with_non_utf8_names_and_mounts_do_not_stop_the_daemon', async () => {
    // What a daemon killed mid-run leaves: a run directory with names that are not UTF-8, one
    // still mounted (its run disk), and one that cannot be removed at all (immutable would need
    // chattr; a directory we keep busy as a mount point of something else serves).
    const first = await startTestDaemon();
    const runBase = first.runBase;
    const client = new Client({ socketPath: first.socketPath });
    try {
      await client.status();
    } finally {
      await client.close();
    }
    first.process.kill('SIGKILL');
    await new Promise((resolve) => first.process.once('exit', resolve));
    const leftover = Buffer.from(path.join(runBase, 'aa'.repeat(16)));
    fs.mkdirSync(leftover);
    const deep = Buffer.concat([leftover, Buffer.from('/dir\xff', 'latin1')]);
    fs.mkdirSync(deep);
    fs.writeFileSync(Buffer.concat([deep, Buffer.from('/f\xfe', 'latin1')]), 'x'.repeat(10_000));
    const mounted = path.join(runBase, 'bb'.repeat(16));
    fs.mkdirSync(mounted);
    expect(spawnSync('mount', ['-t', 'tmpfs', 'codejail-run', mounted]).status).toBe(0);
    fs.writeFileSync(path.join(mounted, 'left'), 'x');

    const second = await startTestDaemon({ config: { runBase } });
    try {
      expect(await runBaseEntries(runBase)).toEqual([]);
      expect(mountsBeneath(runBase)).toEqual([]);
      const again = new Client({ socketPath: second.socketPath });
      try {
        expect((await again.jailCode('python', { code: 'print(1)' })).stdout.toString()).toBe('1\n');
      } finally {
        await again.close();
      }
    } finally {
      expect(await second.stop()).toBe(0);
      await first.stop();
    }
  });
});
