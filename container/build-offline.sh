#!/bin/sh
# Builds container/Dockerfile with Debian's buildah where node:20-bookworm-slim cannot be pulled
# (no registry reachable but Debian's and npm's): a stand-in base is made first, a debootstrap'd
# Debian 12 with this host's Node 20 and npm under /usr/local, as the official image has them.
# Not the real base image: it proves the Dockerfile's steps, not the official image's contents.
#   container/build-offline.sh WORKDIR   (as root, from the repository's root; needs buildah,
#                                         debootstrap; prints the unpacked image's root at the end)
# Then: container/run-rootfs.sh ROOTFS SOCKET_DIR RUNS_DIR, or
#       CODEJAIL_TEST_IMAGE_ROOTFS=ROOTFS npx vitest run test/container
set -eu
[ "$#" -eq 1 ] || { echo "usage: $0 WORKDIR" >&2; exit 2; }
work=$(readlink -f "$1")
b="buildah --storage-driver vfs"
node_bin=$(readlink -f "$(command -v node)")
node_prefix=$(dirname "$(dirname "$node_bin")")
case "$(node -p 'process.versions.node.split(".")[0]')" in
  20) ;;
  *) echo "$0: this host's node is not Node 20" >&2; exit 1 ;;
esac

base="$work/rootfs"
if [ ! -x "$base/usr/local/bin/node" ]; then
  debootstrap --variant=minbase bookworm "$base" http://deb.debian.org/debian
  mkdir -p "$base/usr/local/bin" "$base/usr/local/lib/node_modules" "$base/usr/local/include" "$base/usr/local/etc"
  cp "$node_bin" "$base/usr/local/bin/node"
  cp -a "$node_prefix/lib/node_modules/npm" "$base/usr/local/lib/node_modules/"
  ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$base/usr/local/bin/npm"
  ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$base/usr/local/bin/npx"
  cp -a "$node_prefix/include/node" "$base/usr/local/include/"
  # This host's CA bundle, for a network whose TLS needs it (npm ci).
  cp /etc/ssl/certs/ca-certificates.crt "$base/usr/local/etc/host-ca.crt"
  printf 'cafile=/usr/local/etc/host-ca.crt\nfund=false\naudit=false\nupdate-notifier=false\n' >"$base/usr/local/etc/npmrc"
fi
$b rmi -f docker.io/library/node:20-bookworm-slim >/dev/null 2>&1 || true
c=$($b from scratch)
m=$($b mount "$c")
cp -a "$base/." "$m/"
$b umount "$c" >/dev/null
$b config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --cmd node "$c"
$b commit -q "$c" docker.io/library/node:20-bookworm-slim >/dev/null
$b rm "$c" >/dev/null

$b build --pull=never --isolation chroot --network host -f container/Dockerfile -t localhost/codejail:offline .
c=$($b from --pull=never localhost/codejail:offline)
$b mount "$c"
