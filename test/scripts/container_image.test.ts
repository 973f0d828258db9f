// scripts/container-image.sh (run by install-deps as root) builds the tree's container image into
// a cache shared by every checkout on the host. Two builds at once (two checkouts' CI jobs, or one
// tree's twice) share the stand-in base's buildah storage, which each empties when it starts, and
// the first to finish removed every other entry of the cache, the other build's staging directory
// included. Fakes stand in for buildah and the stand-in base (no mirror, no registry): the build
// writes the image's two marker files and takes a second.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';

const isRoot = process.getuid?.() === 0;
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const isNode20 = process.versions.node.split('.')[0] === '20';

const FAKE_BUILDAH = `#!/bin/sh
# buildah --root R --runroot R --storage-driver D COMMAND ...
while [ "$#" -gt 0 ]; do
  case "$1" in --root|--runroot|--storage-driver) shift 2 ;; *) break ;; esac
done
cmd=$1; shift
case "$cmd" in
  from) echo fake-container ;;
  mount) d=$(mktemp -d); echo "$d" ;;
  build)
    for arg; do case "$arg" in type=local,dest=*) out=\${arg#type=local,dest=} ;; esac; done
    mkdir -p "$out/opt/codejail/container" "$out/opt/codejail/dist/daemon"
    printf '#!/bin/sh\\n' >"$out/opt/codejail/container/entrypoint.sh"
    chmod 0755 "$out/opt/codejail/container/entrypoint.sh"
    : >"$out/opt/codejail/dist/daemon/main.js"
    sleep 1 ;;
esac
exit 0
`;

function run(env: NodeJS.ProcessEnv): Promise<{ status: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn('bash', [path.join(root, 'scripts/container-image.sh')], { cwd: root, env, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('exit', (status) => resolve({ status, stderr }));
  });
}

describe.skipIf(!isRoot || !isNode20)('scripts/container-image.sh', () => {
  let scratch: string | undefined;
  afterEach(() => {
    if (scratch !== undefined) fs.rmSync(scratch, { recursive: true, force: true });
    scratch = undefined;
  });

  it('support_container_image_two_builds_at_once_both_succeed', async () => {
    scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'cj-container-image-'));
    const bin = path.join(scratch, 'bin');
    fs.mkdirSync(bin);
    fs.writeFileSync(path.join(bin, 'buildah'), FAKE_BUILDAH, { mode: 0o755 });
    fs.writeFileSync(path.join(bin, 'debootstrap'), '#!/bin/sh\nexit 1\n', { mode: 0o755 });
    const cache = path.join(scratch, 'cache');
    // The stand-in base, already made (its debootstrap is not what this is about).
    const base = path.join(cache, `standin-node-${process.version}`, 'rootfs', 'usr/local/bin');
    fs.mkdirSync(base, { recursive: true });
    fs.writeFileSync(path.join(base, 'node'), '', { mode: 0o755 });
    // TMPDIR: the fake's mounts (mktemp -d) go with the scratch directory.
    const env = { ...process.env, PATH: `${bin}:${process.env.PATH}`, CODEJAIL_IMAGE_CACHE: cache, TMPDIR: scratch };
    const [first, second] = await Promise.all([run(env), run(env)]);
    expect(first.status, first.stderr).toBe(0);
    expect(second.status, second.stderr).toBe(0);
    const images = fs.readdirSync(cache).filter((name) => name.startsWith('image-'));
    expect(images).toHaveLength(1);
    expect(images[0]).toMatch(/^image-[0-9a-f]{16}$/);
  }, 60_000);
});
