#!/usr/bin/env bash
# Builds, once, the Debian 13 (trixie) root file system in which scripts/trixie-suite.sh runs the
# daemon, the sandbox's interpreter and the daemon suites: Python 3.13 and glibc 2.41 on this
# host's kernel. A debootstrap minbase with python3 and what the suites import (msgpack, numpy,
# venv, requests, pytest, django, six, setuptools: the host's set, scripts/install-deps.sh), procps
# and mount, and this host's node under /usr/local/bin (its dynamic libraries are in any glibc
# 2.28+ root; the checkout's node_modules, build/ and dist/ are bind-mounted in by the suite).
# Cached like the VM's kernel (scripts/vm/build.sh) and the root without a compiler
# (scripts/nocompiler-rootfs.sh): $CODEJAIL_TRIXIE_ROOTFS, default /var/cache/codejail-rootfs/trixie;
# built beside it and renamed into place, so an interrupted build leaves nothing half-made. The
# suite mounts it read-only under an overlay, so a run changes nothing in the cache.
# Needs root and debootstrap (installed when missing), and Debian's mirror.
set -euo pipefail

target=${CODEJAIL_TRIXIE_ROOTFS:-/var/cache/codejail-rootfs/trixie}
PACKAGES=python3,python3-msgpack,python3-numpy,python3-venv,python3-requests,python3-pytest,python3-django,python3-six,python3-setuptools,procps,mount,passwd
# The package list the root was made with: a root made with another list is made again.
stamp=usr/local/share/codejail-rootfs-packages
if [ -x "$target/usr/local/bin/node" ] && [ -x "$target/usr/bin/python3" ] && [ "$(cat "$target/$stamp" 2>/dev/null)" = "$PACKAGES" ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "trixie-rootfs: needs root (debootstrap); skipping" >&2
  exit 0
fi
command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap

node_bin=$(readlink -f "$(command -v node)")
mkdir -p "$(dirname "$target")"
staging=$(mktemp -d "$target.build.XXXXXX")
chmod 0755 "$staging"  # the root directory of the root, which mktemp makes 0700
trap 'rm -rf "$staging"' EXIT
started=$SECONDS
echo "trixie-rootfs: debootstrap trixie (minbase, $PACKAGES) into $staging" >&2
# In a mount namespace of its own: the /proc, /sys (and in a container /dev binds) it mounts in
# the root go with it even when it is killed before it unmounts them, instead of staying mounted
# on the host, where the clean-up's rm -rf would reach through them into the host's directories.
unshare --mount --propagation private -- debootstrap --variant=minbase --include="$PACKAGES" trixie "$staging" http://deb.debian.org/debian >&2
mkdir -p "$staging/usr/local/bin"
cp "$node_bin" "$staging/usr/local/bin/node"
rm -rf "$staging/var/cache/apt/archives/"*.deb
mkdir -p "$(dirname "$staging/$stamp")"
printf '%s\n' "$PACKAGES" >"$staging/$stamp"
# A root made with another package list goes only once its successor is whole.
if [ -e "$target" ]; then
  rm -rf "$target.old"
  mv -T "$target" "$target.old"
fi
mv -T "$staging" "$target"
rm -rf "$target.old"
trap - EXIT
echo "trixie-rootfs: $target ($((SECONDS - started)) s)" >&2
