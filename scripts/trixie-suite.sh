#!/usr/bin/env bash
# Runs the daemon suites (test/e2e and test/hostile, warm and cold, test/e2e/warm.test.ts's
# warm-vs-cold parity included) inside the Debian 13 (trixie) root that scripts/trixie-rootfs.sh
# caches: the test daemons, the sandbox's /usr/bin/python3 (3.13) and every library they load
# come from that root (glibc 2.41); the kernel is this host's. test/e2e/python_under_test.test.ts
# fails the pass unless a sandboxed run reports the Python and glibc the pass was started for
# (CODEJAIL_EXPECT_PYTHON, CODEJAIL_EXPECT_GLIBC: the root's).
#
# How: a private mount namespace; the cached root read-only under an overlay (a throwaway upper
# directory takes what the pass writes: the sandbox's group, /var/lib/codejail-test); /proc, /sys
# (with /sys/fs/cgroup), /dev and a tmpfs /tmp; this checkout (node_modules, build/ and dist/:
# built on the host, `npx tsc` and node-gyp first) bind-mounted at its own path; then pivot_root
# into it, as container/run-rootfs.sh does (a chroot is not enough: setns() into the runs' mount
# namespace resets a run's root to that namespace's root), and vitest runs there on the root's
# /usr/local/bin/node (this host's node, which scripts/trixie-rootfs.sh copied in).
#
# Arguments, if any, replace the test files (default: test/e2e test/hostile).
# CODEJAIL_TRIXIE_ROOTFS: the cached root (default /var/cache/codejail-rootfs/trixie).
# CODEJAIL_TRIXIE_PASS=skip: skip this pass (e.g. a host that cannot build the root).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${CODEJAIL_TRIXIE_PASS:-}" = skip ]; then
  echo "trixie-suite: skipped (CODEJAIL_TRIXIE_PASS=skip)" >&2
  exit 0
fi
rootfs=${CODEJAIL_TRIXIE_ROOTFS:-/var/cache/codejail-rootfs/trixie}
if [ "$(id -u)" != 0 ]; then
  # As the suites that need root skip themselves without it.
  echo "trixie-suite: skipped: needs root (a mount namespace, pivot_root, a root daemon)" >&2
  exit 0
fi
if [ ! -x "$rootfs/usr/local/bin/node" ] || [ ! -x "$rootfs/usr/bin/python3" ]; then
  echo "trixie-suite: no Debian 13 root in $rootfs; run scripts/trixie-rootfs.sh (scripts/install-deps.sh does)" >&2
  exit 1
fi
python_version=$(chroot "$rootfs" /usr/bin/python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
glibc_version=$(chroot "$rootfs" /usr/bin/getconf GNU_LIBC_VERSION)
files=("$@")
[ "${#files[@]}" -gt 0 ] || files=(test/e2e test/hostile)

checkout=$(pwd -P)
scratch=$(mktemp -d /var/tmp/codejail-trixie.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
mkdir "$scratch/upper" "$scratch/work" "$scratch/root"

echo "== the daemon suites in Debian $(cat "$rootfs/etc/debian_version") (Python $python_version, $glibc_version): ${files[*]}"
started=$SECONDS
status=0
unshare --mount --propagation private -- bash -euc '
  rootfs=$1 scratch=$2 checkout=$3 python_version=$4 glibc=$5
  shift 5
  root=$scratch/root
  mount -t overlay overlay -o "lowerdir=$rootfs,upperdir=$scratch/upper,workdir=$scratch/work" "$root"
  mount -t proc proc "$root/proc"
  mount --rbind /sys "$root/sys"
  mount --rbind /dev "$root/dev"
  mount -t tmpfs -o mode=1777 tmpfs "$root/tmp"
  mkdir -p "$root$checkout" "$root/.oldroot"
  mount --bind "$checkout" "$root$checkout"
  cd "$root"
  pivot_root . .oldroot
  umount -l /.oldroot
  # What codejail setup makes on a host and the test daemons use: the socket group.
  getent group codejail >/dev/null || groupadd --system codejail
  cd "$checkout"
  exec env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TERM="${TERM:-dumb}" \
    CODEJAIL_EXPECT_PYTHON="$python_version" CODEJAIL_EXPECT_GLIBC="$glibc" \
    /usr/local/bin/node node_modules/vitest/vitest.mjs run --project warm --project cold "$@"
' bash "$rootfs" "$scratch" "$checkout" "$python_version" "${glibc_version#glibc }" "${files[@]}" || status=$?
echo "== Debian 13 pass: $((SECONDS - started)) s (exit $status)"
exit "$status"
