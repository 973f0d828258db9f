#!/usr/bin/env bash
# Builds, once, the root file system in which test/package/rootfs_install.test.ts installs the
# packed tarball: a minimal Debian 12 (debootstrap minbase, python3 for the runs) with this host's
# node and npm under /usr/local, and no compiler, make or Python headers (checked at the end).
# Cached like the VM's kernel (scripts/vm/build.sh): $CODEJAIL_ROOTFS_CACHE, default
# /var/cache/codejail-rootfs/bookworm; built beside it and renamed into place, so an interrupted
# build leaves nothing half-made. The test mounts it read-only under an overlay.
# Needs root and debootstrap (installed when missing), and Debian's mirror.
set -euo pipefail

target=${CODEJAIL_ROOTFS_CACHE:-/var/cache/codejail-rootfs/bookworm}
if [ -x "$target/usr/local/bin/node" ] && [ -x "$target/usr/bin/python3" ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "nocompiler-rootfs: needs root (debootstrap); skipping" >&2
  exit 0
fi
command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap

node_bin=$(readlink -f "$(command -v node)")
node_prefix=$(dirname "$(dirname "$node_bin")")
mkdir -p "$(dirname "$target")"
staging=$(mktemp -d "$target.build.XXXXXX")
trap 'rm -rf "$staging"' EXIT
echo "nocompiler-rootfs: debootstrap bookworm (minbase, python3) into $staging" >&2
# In a mount namespace of its own, as in scripts/trixie-rootfs.sh: what it mounts in the root goes
# with it even when it is killed, never left on the host for the clean-up's rm -rf to reach through.
unshare --mount --propagation private -- debootstrap --variant=minbase --include=python3 bookworm "$staging" http://deb.debian.org/debian >&2
mkdir -p "$staging/usr/local/bin" "$staging/usr/local/lib/node_modules" "$staging/usr/local/etc"
cp "$node_bin" "$staging/usr/local/bin/node"
cp -a "$node_prefix/lib/node_modules/npm" "$staging/usr/local/lib/node_modules/"
ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$staging/usr/local/bin/npm"
printf 'fund=false\naudit=false\nupdate-notifier=false\n' >"$staging/usr/local/etc/npmrc"
rm -rf "$staging/var/cache/apt/archives/"*.deb

# What "without a compiler" means here: none of these anywhere in the image.
found=$(cd "$staging" && find usr bin sbin -xdev \( -name 'gcc*' -o -name 'g++*' -o -name 'cc' -o -name 'c++' -o -name 'make' -o -name 'Python.h' -o -name 'node_api.h' \) -print 2>/dev/null | grep -v '^usr/share' || true)
if [ -n "$found" ]; then
  echo "nocompiler-rootfs: the image has build tools: $found" >&2
  exit 1
fi
mv -T "$staging" "$target"
trap - EXIT
echo "nocompiler-rootfs: $target" >&2
