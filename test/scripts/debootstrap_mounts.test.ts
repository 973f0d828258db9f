// scripts/trixie-rootfs.sh, scripts/nocompiler-rootfs.sh and container/build-offline.sh run
// debootstrap as root on the CI host. debootstrap mounts /proc and /sys in the root it makes (and,
// in an lxc container, binds /dev/pts and /dev/shm there), and unmounts them only if it gets to
// run its exit trap: killed outright (the OOM killer, a CI runner's SIGKILL) it left them mounted
// on the host, and the scripts' rm -rf of the half-made root (the rootfs scripts' clean-up;
// build-offline.sh's next build) then reached through them into the host's directories. A fake
// debootstrap stands in for the real one (no mirror needed): it binds a directory of the "host"
// into the root it makes, then dies by SIGKILL.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { mountsBeneath } from '../../src/run/rundir.js';

const isRoot = process.getuid?.() === 0;
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** A scratch directory with a "host" directory holding a sentinel and a fake debootstrap. */
function scene(scratch: string): { host: string; env: NodeJS.ProcessEnv } {
  const host = path.join(scratch, 'host-shm');
  fs.mkdirSync(host);
  fs.writeFileSync(path.join(host, 'sentinel'), 'of the host');
  const bin = path.join(scratch, 'bin');
  fs.mkdirSync(bin);
  // debootstrap [options] SUITE TARGET MIRROR: the target is the next to last argument.
  fs.writeFileSync(
    path.join(bin, 'debootstrap'),
    `#!/bin/sh
set -e
for arg; do target=$mirror; mirror=$arg; done
mkdir -p "$target/dev/shm"
mount --bind ${JSON.stringify(host)} "$target/dev/shm"
kill -KILL $$
`,
    { mode: 0o755 },
  );
  return { host, env: { ...process.env, PATH: `${bin}:${process.env.PATH}` } };
}

describe.skipIf(!isRoot)('scripts that run debootstrap', () => {
  let scratch: string | undefined;
  afterEach(() => {
    if (scratch === undefined) return;
    for (const point of mountsBeneath(scratch)) spawnSync('umount', ['-l', point]);
    fs.rmSync(scratch, { recursive: true, force: true });
    scratch = undefined;
  });

  // The two cached roots' scripts share the pattern (a staging root, an EXIT trap's rm -rf).
  for (const { name, script, envVar, dir } of [
    { name: 'trixie_rootfs', script: 'trixie-rootfs.sh', envVar: 'CODEJAIL_TRIXIE_ROOTFS', dir: 'trixie' },
    { name: 'nocompiler_rootfs', script: 'nocompiler-rootfs.sh', envVar: 'CODEJAIL_ROOTFS_CACHE', dir: 'bookworm' },
  ]) {
    it(`support_${name}_a_killed_debootstrap_leaks_no_mount_and_its_clean_up_removes_nothing_beyond_the_root`, () => {
      scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'cj-debootstrap-'));
      const { host, env } = scene(scratch);
      const target = path.join(scratch, 'cache', dir);
      const run = spawnSync('bash', [path.join(root, 'scripts', script)], {
        env: { ...env, [envVar]: target },
        encoding: 'utf8',
        timeout: 60_000,
      });
      expect(run.status, run.stderr).not.toBe(0);
      // The host's files are untouched (the clean-up's rm -rf deleted the sentinel through the
      // bind left mounted), nothing of debootstrap's stays mounted, the half-made root is gone.
      expect(fs.readdirSync(host)).toEqual(['sentinel']);
      expect(mountsBeneath(scratch)).toEqual([]);
      expect(fs.readdirSync(path.dirname(target))).toEqual([]);
    });
  }

  it('support_build_offline_a_killed_debootstrap_leaks_no_mount_for_the_next_build_to_remove_through', () => {
    scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'cj-debootstrap-'));
    const { host, env } = scene(scratch);
    const work = path.join(scratch, 'work');
    // Twice: the second build's rm -rf of the staging root meets what the first left there.
    for (let build = 0; build < 2; build++) {
      const run = spawnSync('sh', [path.join(root, 'container/build-offline.sh'), work], { cwd: root, env, encoding: 'utf8', timeout: 60_000 });
      expect(run.status, run.stderr).not.toBe(0);
      expect(mountsBeneath(scratch), `build ${build}`).toEqual([]);
    }
    expect(fs.readdirSync(host)).toEqual(['sentinel']);
  });
});
