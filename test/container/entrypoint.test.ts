// The container image's entrypoint and capability set (issue 11 §2), proven without a container
// engine: no engine or base image can be had on the test host. container/entrypoint.sh runs as
// root, in a private mount namespace (unshare, as an engine would give it), with the capability
// bounding set reduced by setpriv to exactly the set container/README.md tells `docker run` to
// keep. What this does NOT reproduce: the engine's own seccomp and AppArmor profiles, its cgroup
// namespace, user namespace and overlay root (container/README.md says which of those must be
// relaxed, and why).
//
// allow_*: with exactly the set, the daemon passes its self-check (whose deny probes hold) and
// runs print(1). support_*: each capability in the set is needed; without it the daemon refuses
// to start or the run fails. A capability that turned out not to be needed fails its row and
// must leave the set (README, systemd unit and this list together).
//
// The built image itself: allow_container_image_rootfs_serves_with_the_set runs the unpacked root
// that scripts/container-image.sh built from this tree's container/Dockerfile (install-deps builds
// it; with buildah, over a stand-in base) through container/run-rootfs.sh, with the same workload.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { Client } from '../../src/client/index.js';
import { followLogLines } from '../helpers/log_lines.js';
import { runBaseLeftovers } from '../helpers/run_base.js';
import { waitIdle } from '../helpers/suite.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const ENTRYPOINT = path.join(root, 'container/entrypoint.sh');
const RUN_ROOTFS = path.join(root, 'container/run-rootfs.sh');
/** The built image's test needs an image root: in CI one must be there (a missing one fails). */
const IN_CI = process.env.CI === 'true' || process.env.CI === '1';
const isRoot = process.getuid?.() === 0;
const hasTools = spawnSync('sh', ['-c', 'command -v setpriv && command -v unshare && command -v prlimit'], { stdio: 'ignore' }).status === 0;

/**
 * The image's capability set, each with what it is for (container/README.md lists the same).
 * systemd/codejaild.service also keeps DAC_OVERRIDE and DAC_READ_SEARCH; measured here, neither
 * is needed with the disk layer (required by default: a run directory is a tmpfs, removed by
 * unmounting it), and only DAC_OVERRIDE with the disk layer off (see the rows below).
 */
const CAPABILITIES = {
  setuid: 'each run, and the slot sweep, drop to the slot uid (setresuid)',
  setgid: "each run drops to the slot's gid and clears its supplementary groups (setgroups)",
  kill: "REALTIME and cancellation SIGKILL a run's main process, which runs as another uid",
  sys_admin: "unshare/setns for the runs' network, IPC and mount namespaces; the run disks' mounts",
  sys_chroot: "setns() into the runs' mount namespace",
  chown: 'run directories are handed to slot uids (lchown); the socket to its group',
  fowner: 'chmod of run directories owned by slot uids',
  sys_resource: "a run's rlimit above the daemon's own hard limit (docker --ulimit, a runtime's defaults)",
} as const;
type Capability = keyof typeof CAPABILITIES | 'dac_override' | 'dac_read_search';
const CAP_NUMBERS: Record<Capability, number> = {
  chown: 0,
  dac_override: 1,
  dac_read_search: 2,
  fowner: 3,
  kill: 5,
  setgid: 6,
  setuid: 7,
  sys_chroot: 18,
  sys_admin: 21,
  sys_resource: 24,
};
const SET = Object.keys(CAPABILITIES) as Capability[];

/** A hard RLIMIT_SIGPENDING below the one each run sets itself (128, src/run/limits.ts). */
const LOW_SIGPENDING = 64;

interface Started {
  ready: boolean;
  runBase: string;
  slotUids: number[];
  exitCode: number | null;
  logs: Array<Record<string, unknown>>;
  socketPath: string;
  process: ChildProcess;
  stop(): Promise<void>;
}

const leftovers: Array<() => Promise<void>> = [];
afterAll(async () => {
  await Promise.all(leftovers.map((stop) => stop()));
});

/**
 * Starts the entrypoint with the bounding set `caps` (setpriv execs it, so root's permitted and
 * effective sets become exactly that) in a private mount namespace, on a private socket, run
 * base and pair of slot uids (64700 + 2 * index).
 */
async function startEntrypoint(
  index: number,
  caps: readonly Capability[],
  options: { hardSigpending?: number; layers?: Record<string, string>; imageRootfs?: string } = {},
): Promise<Started> {
  const { hardSigpending } = options;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cj-container-'));
  const socketPath = path.join(dir, 'sock', 'codejail.sock');
  const runBase = `/var/lib/codejail-test-container-${process.pid}-${index}`;
  const firstUid = 64700 + 2 * index;
  // Layers changed: a mounted config file, as a deployment that changes them would use.
  const configEnv: Record<string, string> = {};
  if (options.layers) {
    const config = { socket: { path: socketPath }, runBase, slots: { firstUid, count: 2 }, layers: options.layers };
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config));
    configEnv.CODEJAIL_CONFIG = path.join(dir, 'config.json');
  }
  const prefix = hardSigpending === undefined ? [] : ['prlimit', `--sigpending=${hardSigpending}:${hardSigpending}`, '--'];
  // The image's root, run by container/run-rootfs.sh (with the set it gives): the run base is
  // /var/lib/codejail/runs inside, runBase/runs here.
  const volume = runBase;
  const image = options.imageRootfs;
  if (image) fs.mkdirSync(path.dirname(socketPath), { recursive: true });
  if (image) fs.mkdirSync(volume, { recursive: true });
  const child = image
    ? spawn(RUN_ROOTFS, [image, path.dirname(socketPath), volume, `CODEJAIL_FIRST_UID=${firstUid}`, 'CODEJAIL_SLOTS=2'], {
        stdio: ['ignore', 'pipe', 'pipe'],
      })
    : spawn(
    'unshare',
    ['--mount', '--propagation', 'private', '--', ...prefix, 'setpriv', '--bounding-set', `-all,${caps.map((c) => `+${c}`).join(',')}`, '--', ENTRYPOINT],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        PATH: process.env.PATH,
        CODEJAIL_SOCKET: socketPath,
        CODEJAIL_RUN_BASE: runBase,
        CODEJAIL_FIRST_UID: String(firstUid),
        CODEJAIL_SLOTS: '2',
        // The entrypoint's generated config goes here, removed with the test's directory.
        TMPDIR: dir,
        ...configEnv,
      },
    },
  );
  const logs: Array<Record<string, unknown>> = [];
  let exitCode: number | null = null;
  // 'exit' can come before the last lines of stdout and stderr are read: wait for both streams to
  // end too (a refusal's one log line was lost under load), or 2 s if something still holds them.
  const streamsEnded = Promise.all([child.stdout, child.stderr].map((s) => new Promise((r) => (s!.readableEnded ? r(undefined) : s!.once('close', r)))));
  const exited = new Promise<void>((resolve) =>
    child.on('exit', (code) => {
      exitCode = code;
      void Promise.race([streamsEnded, new Promise((r) => setTimeout(r, 2000))]).then(() => resolve());
    }),
  );
  const ready = await new Promise<boolean>((resolve) => {
    followLogLines([child.stdout, child.stderr], (line) => {
      logs.push(line);
      if (line.msg === 'ready') resolve(true);
    });
    void exited.then(() => resolve(false));
  });
  let stopped: Promise<void> | undefined;
  const stop = () =>
    (stopped ??= (async () => {
      if (child.exitCode === null && child.signalCode === null) {
        // run-rootfs.sh: unshare --fork waits for its child, tini (PID 1 inside), which forwards
        // SIGTERM to the daemon.
        const tini = image ? Number(fs.readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8').trim().split(' ')[0]) : 0;
        if (tini > 0) process.kill(tini, 'SIGTERM');
        else child.kill('SIGTERM');
      }
      const killer = setTimeout(() => child.kill('SIGKILL'), 20_000);
      await exited;
      clearTimeout(killer);
      // A daemon without CAP_KILL leaves a busy run behind: the test kills it (it is root).
      for (const pid of processesOf([firstUid, firstUid + 1])) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // Gone already.
        }
      }
      // The run disks live in the daemon's mount namespace, gone with it; its runBase directory
      // is on the host's file system.
      spawnSync('umount', ['--recursive', '--lazy', runBase], { stdio: 'ignore' });
      fs.rmSync(volume, { recursive: true, force: true });
      fs.rmSync(dir, { recursive: true, force: true });
    })());
  leftovers.push(stop);
  return {
    ready,
    runBase: image ? path.join(volume, 'runs') : runBase,
    slotUids: [firstUid, firstUid + 1],
    get exitCode() {
      return exitCode;
    },
    logs,
    socketPath,
    process: child,
    stop,
  };
}

/** The processes of `uids` still alive (zombies included). */
function processesOf(uids: readonly number[]): number[] {
  const found: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let status: string;
    try {
      status = fs.readFileSync(`/proc/${entry}/status`, 'utf8');
    } catch {
      continue; // gone since the listing
    }
    const uid = Number(/^Uid:\s+(\d+)/m.exec(status)?.[1]);
    if (uids.includes(uid)) found.push(Number(entry));
  }
  return found;
}

/** Runs `code`; resolves with its result, or rejects after `ms` (a run the daemon could not end). */
async function run(client: Client, options: Parameters<Client['jailCode']>[1], ms = 20_000) {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no answer in ${ms} ms`)), ms)));
  try {
    return await Promise.race([client.jailCode('python', options), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * What a served container must do, beyond print(1): a request's files written in, a tree the
 * sandbox made unreadable removed, a process the run left behind swept, a busy run killed at
 * REALTIME. Resolves with 'served' or with what went wrong first.
 */
async function workload(daemon: Started): Promise<string> {
  const client = new Client({ socketPath: daemon.socketPath });
  try {
    const one = await run(client, { code: 'print(1)' });
    if (one.status !== 0 || one.stdout.toString() !== '1\n') return `print(1): status ${one.status}, stderr ${JSON.stringify(one.stderr.toString().slice(-300))}`;
    const files = await run(client, { code: 'print(open("data.txt").read())', extraFiles: [['data.txt', Buffer.from('x')]] });
    if (files.stdout.toString() !== 'x\n') return `extra file: status ${files.status}, stderr ${JSON.stringify(files.stderr.toString().slice(-300))}`;
    const tree = await run(client, {
      code: 'import os, tempfile\nd = tempfile.mkdtemp()\nos.makedirs(d + "/a/b")\nopen(d + "/a/b/f", "w").write("1")\nos.chmod(d + "/a/b", 0)\nos.chmod(d + "/a", 0)\nos.chmod(d, 0)\nprint(1)',
      limits: { FSIZE: 4096 },
    });
    if (tree.stdout.toString() !== '1\n') return `unreadable tree: status ${tree.status}, stderr ${JSON.stringify(tree.stderr.toString().slice(-300))}`;
    const orphan = await run(client, { code: 'import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(60)\nprint(1)' });
    if (orphan.stdout.toString() !== '1\n') return `background process: status ${orphan.status}, stderr ${JSON.stringify(orphan.stderr.toString().slice(-300))}`;
    const busy = await run(client, { code: 'while True: pass', limits: { REALTIME: 1, CPU: 30 } }, 10_000);
    if (busy.status === 0) return 'busy run: not killed';
    const next = await run(client, { code: 'print(1)' });
    if (next.stdout.toString() !== '1\n') return `print(1) after the others: status ${next.status}, stderr ${JSON.stringify(next.stderr.toString().slice(-300))}`;
    // The sweeps run after the replies: wait until no slot is busy (a loaded runner may still be
    // sweeping the slot of the run that left a process), then nothing of the slots may be left.
    await waitIdle(client);
    const alive = processesOf(daemon.slotUids);
    if (alive.length > 0) return `processes of the slot uids left alive: ${alive.join(' ')}`;
    // Every run directory removed once its reply is sent (allow the removal a moment).
    for (let i = 0; i < 50 && runBaseLeftovers(daemon.runBase).length > 0; i++) await new Promise((r) => setTimeout(r, 100));
    const left = runBaseLeftovers(daemon.runBase);
    if (left.length > 0) return `run directories left in the run base: ${left.length}`;
    return 'served';
  } catch (err) {
    return `request failed: ${(err as Error).message.slice(0, 300)}`;
  } finally {
    await client.close();
  }
}

/**
 * The unpacked image to run: CODEJAIL_TEST_IMAGE_ROOTFS (one built by hand: `buildah mount`,
 * `docker export`), else the one scripts/container-image.sh built for exactly this source tree
 * (scripts/install-deps.sh builds it; its --find refuses another tree's, which would test old code).
 */
function imageRootfs(): { rootfs: string } | { missing: string } {
  const named = process.env.CODEJAIL_TEST_IMAGE_ROOTFS;
  if (named) return { rootfs: named };
  const found = spawnSync(path.join(root, 'scripts/container-image.sh'), ['--find'], { encoding: 'utf8', timeout: 60_000 });
  if (found.status === 0) return { rootfs: found.stdout.trim() };
  return { missing: found.stderr.trim() || `scripts/container-image.sh --find: exit ${found.status} ${found.error?.message ?? ''}` };
}

/** The capability bits of `field` (CapBnd, CapEff...) of a process. */
function capMask(pid: number, field: string): bigint {
  const line = fs.readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith(`${field}:`))!;
  return BigInt(`0x${line.split(/\s+/)[1]}`);
}
const maskOf = (caps: readonly Capability[]) => caps.reduce((m, c) => m | (1n << BigInt(CAP_NUMBERS[c])), 0n);
/** What this host grants at all (a capability missing from the test's own bounding set cannot be given back). */
const hostBounding = capMask(process.pid, 'CapBnd');

describe.skipIf(!isRoot || !hasTools)('container entrypoint outside an engine', () => {
  it('support_container_capability_set_matches_readme_within_systemd_unit', () => {
    const expected = SET.map((c) => `CAP_${c.toUpperCase()}`).sort();
    const readme = fs.readFileSync(path.join(root, 'container/README.md'), 'utf8');
    const command = /^ *docker run .*?(?=^\s*$)/ms.exec(readme)![0];
    expect(command).toContain('--cap-drop ALL');
    expect([...command.matchAll(/--cap-add (CAP_[A-Z_]+)/g)].map((m) => m[1]).sort()).toEqual(expected);
    // Nothing the systemd unit takes away is given to the container.
    const unit = fs.readFileSync(path.join(root, 'systemd/codejaild.service'), 'utf8');
    const unitSet = /^CapabilityBoundingSet=(.*)$/m.exec(unit)![1]!.trim().split(/\s+/);
    for (const cap of expected) expect(unitSet).toContain(cap);
  });

  it('support_container_entrypoint_names_a_bad_setting', () => {
    const bad: Array<[string, string]> = [
      ['CODEJAIL_FIRST_UID', '61000; rm -rf /'],
      ['CODEJAIL_SLOTS', '16x'],
      ['CODEJAIL_SOCKET', 'relative/codejail.sock'],
      ['CODEJAIL_RUN_BASE', '/var/lib/"codejail'],
      ['CODEJAIL_ALLOW_UIDS', '0,,1000'],
      ['CODEJAIL_CONFIG', '/nonexistent/config.json'],
    ];
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cj-container-'));
    const privateSettings = {
      CODEJAIL_SOCKET: path.join(dir, 'codejail.sock'),
      CODEJAIL_RUN_BASE: path.join(dir, 'runs'),
      CODEJAIL_FIRST_UID: '64700',
      CODEJAIL_SLOTS: '2',
    };
    for (const [name, value] of bad) {
      // Private values for the others: a check that failed to stop must not start a daemon on
      // the host's default socket and run base.
      const env = { PATH: process.env.PATH, TMPDIR: dir, ...privateSettings, [name]: value };
      const r = spawnSync(ENTRYPOINT, [], { env, encoding: 'utf8', timeout: 10_000 });
      expect(r.status, `${name}=${value}: ${r.stderr}`).toBe(2);
      expect(r.stderr).toContain(name);
    }
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('allow_container_entrypoint_exact_capability_set_serves_print_1', async () => {
    const daemon = await startEntrypoint(0, SET);
    try {
      expect(daemon.ready, JSON.stringify(daemon.logs)).toBe(true);
      // Exactly the set (as far as the host grants it), in the bounding and effective sets.
      const expected = maskOf(SET) & hostBounding;
      expect(capMask(daemon.process.pid!, 'CapBnd')).toBe(expected);
      expect(capMask(daemon.process.pid!, 'CapEff')).toBe(expected);
      // The self-check ran its deny probes and every one held (else no 'ready').
      const checks = daemon.logs.filter((l) => typeof l.check === 'string');
      expect(checks.length).toBeGreaterThan(3);
      expect(checks.every((l) => l.outcome === 'passed'), JSON.stringify(checks)).toBe(true);
      expect(checks.some((l) => /AF_INET socket is denied/.test(String(l.check)))).toBe(true);
      const layers = daemon.logs.find((l) => l.msg === 'ready')!.layers as Record<string, string>;
      for (const layer of ['uid', 'rlimits', 'landlock', 'seccomp', 'netns', 'mntns', 'disk']) expect(layers[layer]).toMatch(/^active/);
      expect(await workload(daemon)).toBe('served');
    } finally {
      await daemon.stop();
    }
    expect(daemon.exitCode).toBe(0);
  }, 60_000);

  it.skipIf(!(hostBounding & maskOf(['sys_resource'])))(
    'allow_container_entrypoint_low_hard_rlimit_served_with_sys_resource',
    async () => {
      const daemon = await startEntrypoint(11, SET, { hardSigpending: LOW_SIGPENDING });
      try {
        expect(daemon.ready, JSON.stringify(daemon.logs)).toBe(true);
        expect(await workload(daemon)).toBe('served');
      } finally {
        await daemon.stop();
      }
    },
    60_000,
  );

  it(
    'allow_container_image_rootfs_serves_with_the_set',
    async (ctx) => {
      const image = imageRootfs();
      if ('missing' in image) {
        if (IN_CI) throw new Error(`CI: the built image's test cannot run: ${image.missing}`);
        console.warn(`allow_container_image_rootfs_serves_with_the_set skipped: ${image.missing}`);
        ctx.skip(image.missing);
        return;
      }
      const daemon = await startEntrypoint(14, SET, { imageRootfs: image.rootfs });
      try {
        expect(daemon.ready, JSON.stringify(daemon.logs)).toBe(true);
        expect(daemon.logs.filter((l) => l.outcome === 'failed')).toEqual([]);
        expect(await workload(daemon)).toBe('served');
      } finally {
        await daemon.stop();
      }
      expect(daemon.logs.at(-1)?.msg).toBe('stopped');
    },
    60_000,
  );

  // Each row starts the entrypoint with one capability fewer. SYS_RESOURCE only matters where
  // the container's hard rlimits are below a run's (docker --ulimit), so its row lowers one.
  describe.concurrent('support_container_each_capability_is_needed', () => {
    const outcomes: string[] = [];
    afterAll(() => {
      // The measured table, for container/README.md.
      console.log(`capability dropped -> outcome\n${outcomes.sort().join('\n')}`);
    });
    // With the disk layer off (a config that turns it off), run directories are plain
    // directories the daemon walks to remove; their tmp/ belongs to the slot uid, mode 0700.
    it('support_container_disk_off_needs_dac_override', async () => {
      const daemon = await startEntrypoint(12, SET, { layers: { disk: 'off' } });
      let outcome: string;
      try {
        outcome = daemon.ready ? await workload(daemon) : `refused to start (exit ${daemon.exitCode})`;
      } finally {
        await daemon.stop();
      }
      outcomes.push(`CAP_DAC_OVERRIDE (absent, disk layer off) -> ${outcome}`);
      expect(outcome).toMatch(/^run directories left/);
    }, 60_000);
    it('allow_container_disk_off_with_dac_override_without_dac_read_search', async () => {
      const daemon = await startEntrypoint(13, [...SET, 'dac_override'], { layers: { disk: 'off' } });
      let outcome: string;
      try {
        outcome = daemon.ready ? await workload(daemon) : `refused to start (exit ${daemon.exitCode})`;
      } finally {
        await daemon.stop();
      }
      outcomes.push(`CAP_DAC_OVERRIDE (added, disk layer off; no DAC_READ_SEARCH) -> ${outcome}`);
      expect(outcome).toBe('served');
    }, 60_000);
    SET.forEach((dropped, i) => {
      it(`support_container_without_${dropped}_refuses_or_fails`, async () => {
        const daemon = await startEntrypoint(1 + i, SET.filter((c) => c !== dropped), { hardSigpending: dropped === 'sys_resource' ? LOW_SIGPENDING : undefined });
        let outcome: string;
        try {
          if (!daemon.ready) {
            await daemon.stop();
            const last = daemon.logs.filter((l) => l.level === 'error' || l.level === 'fatal').at(-1)?.msg;
            outcome = `refused to start (exit ${daemon.exitCode}): ${String(last).slice(0, 300)}`;
          } else {
            const served = await workload(daemon);
            outcome = served === 'served' ? 'WORKS: not needed' : `ready, but ${served}`;
          }
        } finally {
          await daemon.stop();
        }
        outcomes.push(`CAP_${dropped.toUpperCase()} -> ${outcome}`);
        expect(outcome).not.toMatch(/^WORKS/);
        // The daemon itself refused (its JSON log says why) or served and then failed a run: not
        // a broken entrypoint, which would "refuse" every row.
        if (!daemon.ready) expect(daemon.logs.some((l) => l.level === 'error'), JSON.stringify(daemon.logs.slice(-3))).toBe(true);
      }, 60_000);
    });
  });
});
