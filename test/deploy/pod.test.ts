// The grader pod of deploy/kubernetes run without a kubelet: its two containers' processes as
// the DaemonSet describes them, on this host. The daemon: the image's entrypoint (from the source
// tree) with the ConfigMap's config.json, root with exactly the container's capabilities as its
// bounding set (setpriv), in a private mount namespace whose /etc/group has the image's codejail
// group. The front end: `codejail serve` with the ConfigMap's serve.json, as the container's
// runAsUser and runAsGroup, no other group. Then the probes as the kubelet would run them: the
// daemon's `codejail check`, the front end's GET /health/ and GET /metrics, and a code-exec.
//
// What differs from a pod, and why: the volumes' paths (the socket's directory, the run base and
// /etc/codejail) are moved under temporary directories, the slot uids to this test's own, and the
// front end listens on a free loopback port: this host's real /run/codejail, /var/lib/codejail,
// slot uids 61000-61007 and port 8080 may be in use.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parsePythonJson } from '../../src/http/python_json.js';
import { followLogLines } from '../helpers/log_lines.js';
import { CLI_MAIN } from '../helpers/serve.js';
import { IMAGE_ROOT, readManifests, root } from './manifests.js';

const isRoot = process.getuid?.() === 0;
const hasTools = spawnSync('sh', ['-c', 'command -v setpriv && command -v unshare'], { stdio: 'ignore' }).status === 0;
const ENTRYPOINT = path.join(root, 'container/entrypoint.sh');

const { configMapFile, container, env } = readManifests();
const daemonContainer = container('codejaild');
const httpContainer = container('http');

interface Proc {
  process: ChildProcess;
  logs: Array<Record<string, unknown>>;
  /** Resolves with the log line `msg`, or undefined if the process exits first. */
  waitFor(msg: string): Promise<Record<string, unknown> | undefined>;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function follow(child: ChildProcess): Proc {
  const logs: Array<Record<string, unknown>> = [];
  const waiters: Array<[string, (line: Record<string, unknown> | undefined) => void]> = [];
  followLogLines([child.stdout, child.stderr], (line) => {
    logs.push(line);
    for (const [msg, resolve] of waiters) if (line.msg === msg) resolve(line);
  });
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  return {
    process: child,
    logs,
    exit,
    waitFor: (msg) =>
      new Promise((resolve) => {
        const seen = logs.find((l) => l.msg === msg);
        if (seen) return resolve(seen);
        waiters.push([msg, resolve]);
        void exit.then(() => resolve(undefined));
      }),
  };
}

async function stop(proc: Proc | undefined): Promise<{ code: number | null; signal: NodeJS.Signals | null } | undefined> {
  if (!proc) return undefined;
  const { process: child } = proc;
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
  const killer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  const result = await proc.exit;
  clearTimeout(killer);
  return result;
}

describe.skipIf(!isRoot || !hasTools)('deploy/kubernetes: the grader pod without a kubelet', () => {
  // The pod's volumes, moved: the socket's hostPath and /etc/codejail to a temporary directory,
  // the run base's emptyDir to /var/lib as the test daemons' are (the disk layer bind-mounts it).
  let tmp: string | undefined;
  const volumes: Record<string, string> = {};
  const moved = (p: string): string => {
    const volume = Object.keys(volumes).find((v) => p === v || p.startsWith(`${v}/`));
    if (!volume) throw new Error(`${p} is on none of the pod's volumes`);
    return volumes[volume] + p.slice(volume.length);
  };
  // Above the multihost test's (70000-73999) and the helper's (62000-69999) slot uids.
  const firstUid = 74_000 + (process.pid % 500) * 8;
  let daemon: Proc | undefined;
  let serve: Proc | undefined;

  afterAll(async () => {
    await stop(serve);
    await stop(daemon);
    const runs = volumes['/var/lib/codejail'];
    if (runs) spawnSync('umount', ['--recursive', '--lazy', runs], { stdio: 'ignore' });
    for (const dir of [runs, tmp]) if (dir) fs.rmSync(dir, { recursive: true, force: true });
  }, 90_000);

  it('support_k8s_pod_serves_with_its_config_identities_and_probes', async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cj-pod-'));
    fs.chmodSync(tmp, 0o755);
    volumes['/run/codejail'] = path.join(tmp, 'run-codejail');
    volumes['/etc/codejail'] = path.join(tmp, 'etc-codejail');
    volumes['/var/lib/codejail'] = `/var/lib/codejail-test-pod-${process.pid}`;
    for (const dir of Object.values(volumes)) fs.mkdirSync(dir, { recursive: true, mode: 0o755 });

    // The ConfigMap's files, their paths moved and the slot uids this test's own.
    const configPath = env(daemonContainer, 'CODEJAIL_CONFIG')!;
    const config = JSON.parse(configMapFile(daemonContainer, configPath));
    config.socket.path = moved(config.socket.path);
    config.runBase = moved(config.runBase);
    config.slots.firstUid = firstUid;
    fs.writeFileSync(moved(configPath), JSON.stringify(config));
    const servePath = httpContainer.args[httpContainer.args.indexOf('--config') + 1];
    const serveConfig = JSON.parse(configMapFile(httpContainer, servePath));
    serveConfig.socket = moved(serveConfig.socket);
    fs.writeFileSync(moved(servePath), JSON.stringify(serveConfig));
    fs.chmodSync(moved(servePath), 0o644);

    // The image's groups: its codejail group has the gid the Dockerfile gives it (CODEJAIL_GID).
    const gid = Number(/^ARG CODEJAIL_GID=(\d+)$/m.exec(fs.readFileSync(path.join(root, 'container/Dockerfile'), 'utf8'))![1]);
    const groups = fs
      .readFileSync('/etc/group', 'utf8')
      .split('\n')
      .filter((line) => line && !line.startsWith('codejail:') && line.split(':')[2] !== String(gid));
    fs.writeFileSync(path.join(tmp, 'group'), `${[...groups, `codejail:x:${gid}:`].join('\n')}\n`);

    // codejaild: the entrypoint, root, with the container's capabilities only.
    const caps = (daemonContainer.securityContext.capabilities.add as string[]).map((c) => `+${c.toLowerCase()}`).join(',');
    daemon = follow(
      spawn(
        'unshare',
        ['--mount', '--propagation', 'private', '--', 'sh', '-c', 'mount --bind "$0" /etc/group && exec setpriv --bounding-set "$1" -- "$2"', path.join(tmp, 'group'), `-all,${caps}`, ENTRYPOINT],
        { stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env.PATH, CODEJAIL_CONFIG: moved(configPath) } },
      ),
    );
    const ready = await daemon.waitFor('ready');
    expect(ready, daemon.logs.map((l) => JSON.stringify(l)).join('\n')).toBeDefined();
    const socket = fs.statSync(config.socket.path);
    expect(socket.isSocket()).toBe(true);
    expect(socket.gid).toBe(gid);
    expect(socket.mode & 0o777).toBe(0o660);

    // Its startup and liveness probe, as the kubelet runs it in the container.
    const probe: string[] = daemonContainer.livenessProbe.exec.command;
    expect(daemonContainer.startupProbe.exec.command).toEqual(probe);
    const args = probe.slice(1).map((a) => (a.startsWith(`${IMAGE_ROOT}/`) ? path.join(root, a.slice(IMAGE_ROOT.length + 1)) : a.startsWith('/run/') ? moved(a) : a));
    const check = spawnSync(process.execPath, args, { encoding: 'utf8', timeout: daemonContainer.livenessProbe.timeoutSeconds * 1000 });
    expect(check.status, `${check.stdout}${check.stderr}`).toBe(0);
    expect(check.stdout).toMatch(/^self-check passed/);

    // The front end: the container's uid and gid, no other group (Node's spawn clears them).
    const { runAsUser, runAsGroup } = httpContainer.securityContext;
    const cwd = path.join(tmp, 'http');
    fs.mkdirSync(cwd, { mode: 0o755 });
    const command: string[] = [...httpContainer.command.slice(2), ...httpContainer.args];
    expect(command.slice(0, 2)).toEqual(['node', `${IMAGE_ROOT}/dist/cli/main.js`]);
    serve = follow(
      spawn(process.execPath, [CLI_MAIN, ...command.slice(2).map((a) => (a === servePath ? moved(a) : a)), '--listen', '127.0.0.1:0'], {
        uid: runAsUser,
        gid: runAsGroup,
        cwd,
        stdio: ['ignore', 'pipe', 'pipe'],
      }),
    );
    const serving = await serve.waitFor('ready');
    expect(serving, serve.logs.map((l) => JSON.stringify(l)).join('\n')).toMatchObject({ maxInFlight: serveConfig.maxInFlight });
    const url = `http://${serving!.listen as string}`;

    // Its readiness and liveness probes, then what the Service brings it.
    const health = await fetch(`${url}${httpContainer.readinessProbe.httpGet.path}`);
    expect([health.status, await health.json()]).toEqual([200, { status: 'OK' }]);
    const alive = await fetch(`${url}${httpContainer.livenessProbe.httpGet.path}`);
    expect(alive.status).toBe(200);
    await alive.text();
    const body = new FormData();
    body.append('payload', JSON.stringify({ code: 'import os\nout = [x * 2, os.getuid() >= first]', globals_dict: { x: 21, first: firstUid } }));
    const res = await fetch(`${url}/api/v0/code-exec`, { method: 'POST', body });
    const text = await res.text();
    expect([res.status, parsePythonJson(text)], text).toEqual([200, { globals_dict: { x: 21, first: firstUid, out: [42, true] } }]);

    // Shut down as the pod's preStop hooks order it: the front end, then the daemon.
    expect(await stop(serve)).toEqual({ code: 0, signal: null });
    expect(await stop(daemon)).toEqual({ code: 0, signal: null });
    expect(fs.existsSync(config.socket.path)).toBe(false);
    expect(fs.readdirSync(config.runBase)).toEqual([]);
  }, 120_000);
});
