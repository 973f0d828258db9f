#!/bin/sh
# Builds container/Dockerfile with Debian's buildah where node:20-bookworm-slim cannot be pulled
# (no registry reachable but Debian's and npm's): a stand-in base is made first, a debootstrap'd
# Debian 12 with this host's Node 20 and npm under /usr/local, as the official image has them.
# Not the real base image: it proves the Dockerfile's steps, not the official image's contents.
#   container/build-offline.sh WORKDIR [IMAGE_ROOT]
# As root, from the repository's root; needs buildah and debootstrap. WORKDIR keeps the stand-in
# base (WORKDIR/rootfs, made once) and buildah's storage while it builds (WORKDIR/storage, emptied
# at the end: nothing is left in buildah's default storage either). The image's root is written
# to IMAGE_ROOT, default WORKDIR/image (replaced), and printed.
# Then: container/run-rootfs.sh IMAGE_ROOT SOCKET_DIR RUNS_DIR, or
#       CODEJAIL_TEST_IMAGE_ROOTFS=IMAGE_ROOT npx vitest run test/container
# (scripts/container-image.sh builds it for the tests, cached per source tree.)
set -eu
[ "$#" -ge 1 ] && [ "$#" -le 2 ] || { echo "usage: $0 WORKDIR [IMAGE_ROOT]" >&2; exit 2; }
mkdir -p "$1"
work=$(readlink -f "$1")
out=${2:-$work/image}
node_bin=$(readlink -f "$(command -v node)")
node_prefix=$(dirname "$(dirname "$node_bin")")
case "$(node -p 'process.versions.node.split(".")[0]')" in
  20) ;;
  *) echo "$0: this host's node is not Node 20" >&2; exit 1 ;;
esac

base="$work/rootfs"
if [ ! -x "$base/usr/local/bin/node" ]; then
  # Made beside its place and renamed into it: an interrupted debootstrap leaves no half-made base.
  staging="$work/rootfs.build"
  rm -rf "$staging"
  # In a mount namespace of its own: what it mounts in the root (/proc, /sys, in a container /dev
  # binds) goes with it even when it is killed before it unmounts, instead of staying mounted on
  # the host for the next build's rm -rf of the staging directory to reach through.
  unshare --mount --propagation private -- debootstrap --variant=minbase bookworm "$staging" http://deb.debian.org/debian
  mkdir -p "$staging/usr/local/bin" "$staging/usr/local/lib/node_modules" "$staging/usr/local/include" "$staging/usr/local/etc"
  cp "$node_bin" "$staging/usr/local/bin/node"
  cp -a "$node_prefix/lib/node_modules/npm" "$staging/usr/local/lib/node_modules/"
  ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$staging/usr/local/bin/npm"
  ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$staging/usr/local/bin/npx"
  cp -a "$node_prefix/include/node" "$staging/usr/local/include/"
  # This host's CA bundle, for a network whose TLS needs it (npm ci).
  cp /etc/ssl/certs/ca-certificates.crt "$staging/usr/local/etc/host-ca.crt"
  printf 'cafile=/usr/local/etc/host-ca.crt\nfund=false\naudit=false\nupdate-notifier=false\n' >"$staging/usr/local/etc/npmrc"
  rm -rf "$staging/var/cache/apt/archives/"*.deb
  rm -rf "$base"
  mv -T "$staging" "$base"
fi

# A storage of its own, emptied after each build: no layer cache (every step runs again, as a
# fresh `docker build` would) and nothing that grows from one build to the next. overlay: a
# committed layer is its diff, not a copy of the whole root as with vfs.
storage="$work/storage"
b="buildah --root $storage/root --runroot $storage/run --storage-driver overlay"
cleanup() {
  $b rm --all >/dev/null 2>&1 || true
  $b rmi --all --force >/dev/null 2>&1 || true
  rm -rf "$storage"
}
cleanup
trap cleanup EXIT
c=$($b from scratch)
m=$($b mount "$c")
cp -a "$base/." "$m/"
$b umount "$c" >/dev/null
$b config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --cmd node "$c"
$b commit -q "$c" docker.io/library/node:20-bookworm-slim >/dev/null
$b rm "$c" >/dev/null

rm -rf "$out"
$b build --pull=never --isolation chroot --network host -f container/Dockerfile -t localhost/codejail:offline --output "type=local,dest=$out" . >&2
[ -x "$out/opt/codejail/container/entrypoint.sh" ] || { echo "$0: no image root at $out" >&2; exit 1; }
# buildah makes the destination 0700; an image's root is 0755 (the slot users must reach
# /usr/bin/python3 through it: the daemon refuses to start otherwise).
chmod 0755 "$out"
echo "$out"
