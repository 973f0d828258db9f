#!/usr/bin/env bash
# Installs the Debian packages codejail's build and tests use, if any is missing. Idempotent; run
# as root on Debian 12. Node.js 20.17+, 22 or 24 is expected to be installed already (Debian 12's
# own nodejs is 18, too old for node-gyp 12 and vitest); the other supported majors, which
# `npm test` also runs on, are fetched into a cache by scripts/node-versions.sh (below).
set -euo pipefail

# Build: g++, make, python3 (node-gyp). Sandbox: python3 is the default command. Setup: passwd
# (useradd/groupadd). Tests: procps; python3-numpy and python3-venv (the sandbox environment
# tests); python3-requests (the HTTP API tests post as edx-platform does); apparmor
# (apparmor_parser checks the profiles offline); qemu-system-x86 and busybox-static (the VM in
# which test/vm proves AppArmor and cgroup v2 under Debian's kernel); systemd and dbus (the VM's
# PID 1 in test/vm/systemd.test.ts is the host's systemd, and systemd-analyze security talks to it
# over D-Bus: a container-based CI host may have neither); haproxy (test/multihost runs it as a
# plain process, its own config, as the load balancer in front of two daemons);
# python3-kubernetes (test/deploy checks deploy/kubernetes offline against the API's models, and
# reads the YAML with python3-yaml, which it brings); the Python package (clients/python, tested by
# test/e2e/python_package.test.ts): python3-msgpack (its one dependency), python3-setuptools (pip
# install --no-build-isolation), python3-pytest (runs its tests), python3-django and python3-six
# (the original CodeJail's tests import them); debootstrap (the root file system without a
# compiler in which test/package installs the packed tarball: scripts/nocompiler-rootfs.sh, and the
# stand-in base of the container image); buildah (builds container/Dockerfile, whose unpacked
# image test/container runs: scripts/container-image.sh).
PACKAGES=(python3 g++ make passwd procps python3-numpy python3-requests python3-venv apparmor qemu-system-x86 busybox-static systemd dbus haproxy python3-kubernetes python3-msgpack python3-setuptools python3-pytest python3-django python3-six debootstrap buildah)

node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$node_major" -lt 20 ]; then
  echo "install-deps: Node.js >= 20 is required (found: $(node --version 2>/dev/null || echo none))" >&2
  exit 1
fi

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "install-deps: not root on a Debian-like system; skipping package installation" >&2
  exit 0
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

# The VM suites' kernels and initramfs, Debian 12's and Debian 13's (scripts/vm/build.sh is
# idempotent; trixie's comes through a private apt configuration, the host's sources untouched).
# Built here rather than by the test so that a download problem fails with its own message; once
# a kernel's cache exists, test/vm runs on it instead of skipping.
"$(dirname "$0")/vm/build.sh"
CODEJAIL_VM_KERNEL=trixie "$(dirname "$0")/vm/build.sh"

# The other supported Node majors (scripts/test-node-versions.sh runs the daemon, client, e2e and
# http suites on each). Idempotent, like the VM's cache: a cached major is not fetched again.
"$(dirname "$0")/node-versions.sh"

# The root file system without a compiler in which test/package/prebuilt_install.test.ts installs
# the packed tarball (debootstrap; idempotent, cached like the VM's kernel).
"$(dirname "$0")/nocompiler-rootfs.sh"

# The Debian 13 root in which scripts/trixie-suite.sh (the last pass of `npm test`) runs the daemon
# suites on Python 3.13 and glibc 2.41 (debootstrap; idempotent, cached like the one above).
"$(dirname "$0")/trixie-rootfs.sh"

# The container image built from this tree (container/Dockerfile, over a stand-in base), unpacked,
# which test/container/entrypoint.test.ts runs under exactly the README's capability set. Cached
# per source tree (a change to the Dockerfile, the lock, native/, src/... builds it again); a
# failed build fails here, with buildah's output.
"$(dirname "$0")/container-image.sh"
