// The tarball `npm pack` makes carries prebuilds/linux-x64 (the Node-API addon and the warm
// templates' library, glibc-tagged: scripts/prebuild.sh, run by prepack), so installing it, in a
// project and with `npm i -g`, compiles nothing: here with a PATH on which there is no compiler,
// make or python3 (only node and sh), and npm told not to build from source. `codejail setup` then
// `codejaild` work from the global install, and serve a warm and a cold run to the local
// install's client. The same in a Debian 12 root file system that has no compiler, make or
// Python headers at all (scripts/nocompiler-rootfs.sh caches it; skipped without the cache).
// Without a matching prebuild, the install says what compiling needs and which of those tools it
// did not find.
// The pack runs in a copy of the checkout: prebuildify rebuilds build/ where it runs, which other
// test files are loading at the same time.
import { spawn, spawnSync, type SpawnOptions } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '../../src/client/index.js';
import { followLogLines, type LogLine } from '../helpers/log_lines.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const isRoot = process.getuid?.() === 0;
const NPM_CLI = (() => {
  const found = spawnSync('sh', ['-c', 'command -v npm'], { encoding: 'utf8' }).stdout.trim();
  return found ? fs.realpathSync(found) : '';
})();
// Not under /tmp: the runs' mount namespace empties /tmp, /home and /root, where the warm
// template would not find its script (issue 18's other half).
const WORK = path.join('/var/lib/codejail-pkg-test', String(process.pid));
const ROOTFS = process.env.CODEJAIL_ROOTFS_CACHE ?? '/var/cache/codejail-rootfs/bookworm';
const COPY_SKIP = new Set(['node_modules', 'build', 'dist', 'prebuilds', 'test', '.git', '.vm']);

/** Runs a command to its end without blocking this worker (a pack compiles for a minute or two). */
function run(command: string, args: string[], options: SpawnOptions = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], ...options });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(stdout) : reject(new Error(`${command} ${args.join(' ')} exited ${code}:\n${stdout}\n${stderr}`))));
  });
}

describe.runIf(isRoot && NPM_CLI !== '')('installing the packed tarball without a compiler', () => {
  let tarball = '';
  let noCompilerEnv: NodeJS.ProcessEnv = {};

  beforeAll(async () => {
    fs.rmSync(WORK, { recursive: true, force: true });
    const checkout = path.join(WORK, 'checkout');
    fs.cpSync(root, checkout, { recursive: true, filter: (source) => path.dirname(source) !== root || !COPY_SKIP.has(path.basename(source)) });
    fs.symlinkSync(path.join(root, 'node_modules'), path.join(checkout, 'node_modules'));
    await run(process.execPath, [NPM_CLI, 'pack', '--pack-destination', WORK], { cwd: checkout });
    tarball = path.join(WORK, fs.readdirSync(WORK).find((name) => name.endsWith('.tgz'))!);

    // Only node and sh: no g++, cc, make or python3 for an install step to find.
    const tools = path.join(WORK, 'tools');
    fs.mkdirSync(tools);
    fs.symlinkSync(process.execPath, path.join(tools, 'node'));
    fs.symlinkSync('/bin/sh', path.join(tools, 'sh'));
    noCompilerEnv = { HOME: process.env.HOME, PATH: `${tools}:/usr/sbin:/sbin`, npm_config_build_from_source: 'false', npm_config_prefer_offline: 'true', npm_config_audit: 'false', npm_config_fund: 'false' };
  }, 300_000);

  afterAll(() => {
    fs.rmSync(WORK, { recursive: true, force: true });
  });

  it('carries the glibc-tagged Node-API addon and warm library in prebuilds/linux-x64', async () => {
    const listing = (await run('tar', ['-tzf', tarball])).split('\n');
    expect(listing).toContain('package/prebuilds/linux-x64/codejail.napi.glibc.node');
    expect(listing).toContain('package/prebuilds/linux-x64/codejail_warm.glibc.so');
    expect(listing).toContain('package/scripts/install.mjs');
    expect(listing.filter((f) => f.startsWith('package/build/'))).toEqual([]);
  });

  it('installs into a project and globally, compiling nothing; setup and codejaild then serve a warm and a cold run', async () => {
    const project = path.join(WORK, 'project');
    fs.mkdirSync(project);
    fs.writeFileSync(path.join(project, 'package.json'), '{"name":"grader","private":true}\n');
    await run(process.execPath, [NPM_CLI, 'install', tarball], { cwd: project, env: noCompilerEnv });
    const prefix = path.join(WORK, 'global');
    await run(process.execPath, [NPM_CLI, 'install', '--global', '--prefix', prefix, tarball], { cwd: WORK, env: noCompilerEnv });

    const local = path.join(project, 'node_modules/codejail');
    const global = path.join(prefix, 'lib/node_modules/codejail');
    for (const installed of [local, global]) {
      expect(fs.existsSync(path.join(installed, 'build')), `${installed}/build`).toBe(false);
      expect(fs.readdirSync(path.join(installed, 'prebuilds/linux-x64')).sort()).toEqual(['codejail.napi.glibc.node', 'codejail_warm.glibc.so']);
    }

    const firstUid = 79_000 + (process.pid % 100) * 4;
    const runBase = path.join('/var/lib/codejail-test', `pkg-${process.pid}`);
    const socketPath = path.join(WORK, 'codejail.sock');
    const configFile = path.join(WORK, 'config.json');
    fs.writeFileSync(configFile, JSON.stringify({ runBase, slots: { firstUid, count: 2 }, socket: { path: socketPath, group: 'codejail', mode: '0660' } }));
    const setupReport = await run(path.join(prefix, 'bin/codejail'), ['setup', '--config', configFile], { env: noCompilerEnv });
    expect(setupReport).toMatch(/^\w+ \/usr\/local\/share\/man\/man8\/codejaild\.8 \(codejaild\(8\)\)$/m);

    const daemon = spawn(path.join(prefix, 'bin/codejaild'), ['--config', configFile], { env: noCompilerEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    const logs: LogLine[] = [];
    try {
      await new Promise<void>((resolve, reject) => {
        followLogLines([daemon.stdout, daemon.stderr], (line) => {
          logs.push(line);
          if (line.msg === 'ready') resolve();
        });
        daemon.on('exit', (code) => reject(new Error(`codejaild exited ${code}:\n${logs.map((l) => JSON.stringify(l)).join('\n')}`)));
      });
      const { Client } = (await import(path.join(local, 'dist/client/index.js'))) as typeof import('../../src/client/index.js');
      const client = new Client({ socketPath });
      try {
        const warm = await client.jailCode('python', { code: 'print("warm", 6 * 7)' });
        const cold = await client.jailCode('python', { code: 'print("cold", 6 * 7)', warm: false });
        expect([warm.status, warm.stdout.toString()]).toEqual([0, 'warm 42\n']);
        expect([cold.status, cold.stdout.toString()]).toEqual([0, 'cold 42\n']);
      } finally {
        await client.close();
      }
      expect(logs.some((l) => l.msg === 'warm template ready')).toBe(true);
    } finally {
      daemon.kill('SIGTERM');
      await new Promise((resolve) => (daemon.exitCode === null ? daemon.once('exit', resolve) : resolve(null)));
      spawnSync('umount', ['--recursive', '--lazy', runBase], { stdio: 'ignore' });
      fs.rmSync(runBase, { recursive: true, force: true });
      fs.rmSync(`${runBase}.codejaild.pid`, { force: true });
      // setup made the slots' accounts in the host's /etc: they go with the test.
      for (const uid of [firstUid, firstUid + 1]) {
        spawnSync('userdel', [`codejail-${uid}`], { stdio: 'ignore' });
        spawnSync('groupdel', [`codejail-${uid}`], { stdio: 'ignore' });
      }
    }
    expect(fs.existsSync(path.join(global, 'build'))).toBe(false);
  }, 300_000);

  it.runIf(fs.existsSync(path.join(ROOTFS, 'usr/local/bin/node')))(
    'installs with npm i -g in a root file system without a compiler, where setup and codejaild then serve a warm and a cold run',
    async () => {
      // The cached root under a private overlay: what the install writes is thrown away.
      const merged = path.join(WORK, 'rootfs');
      for (const dir of ['rootfs', 'rootfs-upper', 'rootfs-work', 'rootfs-socket', 'rootfs-runs']) fs.mkdirSync(path.join(WORK, dir));
      await run('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${ROOTFS},upperdir=${WORK}/rootfs-upper,workdir=${WORK}/rootfs-work`, merged]);
      const firstUid = 79_400 + (process.pid % 100) * 4;
      fs.mkdirSync(path.join(merged, 'etc/codejail'), { recursive: true });
      fs.writeFileSync(path.join(merged, 'etc/codejail/config.json'), JSON.stringify({ slots: { firstUid, count: 2 } }));
      fs.copyFileSync(tarball, path.join(merged, 'root/codejail.tgz'));
      fs.copyFileSync('/etc/resolv.conf', path.join(merged, 'etc/resolv.conf'));
      fs.copyFileSync('/etc/ssl/certs/ca-certificates.crt', path.join(merged, 'root/host-ca.crt'));
      fs.mkdirSync(path.join(merged, 'root/.npm'), { recursive: true });
      fs.mkdirSync(path.join(merged, 'run/codejail'), { recursive: true });
      fs.mkdirSync(path.join(merged, 'var/lib/codejail'), { recursive: true });
      fs.mkdirSync(path.join(merged, '.oldroot'), { recursive: true });
      // As container/run-rootfs.sh does: pivot_root, not chroot (setns() into the runs' mount
      // namespace would reset a run's root to the host's). The host's npm cache is lent for the
      // dependencies, so the install needs no network.
      const script = `
        m=$1 npm_cache=$2 socket_dir=$3 runs_dir=$4
        mount -t proc proc "$m/proc"
        mount --rbind /sys "$m/sys"
        mount --rbind /dev "$m/dev"
        mount -t tmpfs tmpfs "$m/tmp"
        mount --bind "$npm_cache" "$m/root/.npm"
        mount --bind "$socket_dir" "$m/run/codejail"
        mount --bind "$runs_dir" "$m/var/lib/codejail"
        cd "$m"
        pivot_root . .oldroot
        umount -l /.oldroot
        export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
        for tool in cc gcc g++ c++ make; do ! command -v $tool >/dev/null || { echo "$tool is in the root file system" >&2; exit 3; }; done
        npm_config_build_from_source=false npm_config_prefer_offline=true npm_config_cafile=/root/host-ca.crt npm install --global /root/codejail.tgz >&2
        codejail setup >&2
        exec codejaild`;
      const npmCache = path.join(process.env.HOME ?? '/root', '.npm');
      const inside = spawn('unshare', ['--mount', '--propagation', 'private', '--fork', 'sh', '-euc', script, 'sh', merged, npmCache, `${WORK}/rootfs-socket`, `${WORK}/rootfs-runs`], {
        stdio: ['ignore', 'pipe', 'pipe'],
        // Not this process's: under npm its npm_config_* (prefix, cache...) would steer the install.
        env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' },
      });
      const exited = new Promise<number | null>((resolve) => inside.on('exit', (code) => resolve(code)));
      const logs: LogLine[] = [];
      try {
        await new Promise<void>((resolve, reject) => {
          followLogLines([inside.stdout, inside.stderr], (line) => {
            logs.push(line);
            if (line.msg === 'ready') resolve();
          });
          void exited.then((code) => reject(new Error(`the root file system's codejaild exited ${code}:\n${logs.map((l) => JSON.stringify(l)).join('\n')}`)));
        });
        const installed = path.join(merged, 'usr/local/lib/node_modules/codejail');
        expect(fs.existsSync(path.join(installed, 'build'))).toBe(false);
        expect(fs.readdirSync(path.join(installed, 'prebuilds/linux-x64')).sort()).toEqual(['codejail.napi.glibc.node', 'codejail_warm.glibc.so']);
        expect(logs.some((l) => String(l.msg).includes('/usr/local/share/man/man8/codejaild.8'))).toBe(true);
        const client = new Client({ socketPath: path.join(WORK, 'rootfs-socket/codejail.sock') });
        try {
          const warm = await client.jailCode('python', { code: 'import sys; print("warm", sys.version_info[:2])' });
          const cold = await client.jailCode('python', { code: 'print("cold", 6 * 7)', warm: false });
          expect([warm.status, warm.stdout.toString()]).toEqual([0, 'warm (3, 11)\n']);
          expect([cold.status, cold.stdout.toString()]).toEqual([0, 'cold 42\n']);
        } finally {
          await client.close();
        }
        expect(logs.some((l) => l.msg === 'warm template ready')).toBe(true);
      } finally {
        // The daemon is unshare's child: SIGTERM it and wait for unshare, which waits for it.
        if (inside.exitCode === null) {
          const children = fs.readFileSync(`/proc/${inside.pid}/task/${inside.pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean);
          for (const pid of children) process.kill(Number(pid), 'SIGTERM');
        }
        await exited;
        spawnSync('umount', ['--lazy', merged], { stdio: 'ignore' });
      }
    },
    300_000,
  );

  it('without a matching prebuild, says what compiling needs and which of those tools it did not find', async () => {
    const unpacked = path.join(WORK, 'no-prebuild');
    fs.mkdirSync(unpacked);
    await run('tar', ['-xzf', tarball, '-C', unpacked, '--strip-components=1']);
    fs.rmSync(path.join(unpacked, 'prebuilds'), { recursive: true });
    fs.symlinkSync(path.join(root, 'node_modules'), path.join(unpacked, 'node_modules'));
    const result = spawnSync(process.execPath, ['scripts/install.mjs'], { cwd: unpacked, env: noCompilerEnv, encoding: 'utf8' });
    expect(result.status).toBe(1);
    expect(result.stderr).toContain('no prebuilt addon in prebuilds/ matches this machine (linux-x64, glibc)');
    expect(result.stderr).toContain('needs g++ (C++17), make, python3 and the Node.js headers');
    expect(result.stderr).toContain('cannot compile: g++, make, python3 not found on PATH');
    expect(fs.existsSync(path.join(unpacked, 'build'))).toBe(false);
  });
});
