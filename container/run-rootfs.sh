#!/bin/sh
# Runs an unpacked codejail image (`buildah mount`, or `docker export` extracted) the way an
# engine would, without one: for hosts with no engine, and to check the image's capability set.
#   container/run-rootfs.sh ROOTFS SOCKET_DIR RUNS_DIR [VAR=VALUE...]
# ROOTFS is used in place (it gets /.oldroot); SOCKET_DIR and RUNS_DIR stand for the two volumes.
# The VAR=VALUE pairs are the entrypoint's settings (CODEJAIL_FIRST_UID=..., see README.md).
# Runs as root; the daemon gets private mount and PID namespaces, the image root read-only
# through pivot_root (a chroot is not enough: setns() into the runs' mount namespace resets a
# run's root to that namespace's root), a tmpfs /tmp, tini as PID 1 and exactly the capability
# set of README.md. Stop it with SIGTERM to its tini (which forwards it to the daemon).
set -eu
[ "$#" -ge 3 ] || { echo "usage: $0 ROOTFS SOCKET_DIR RUNS_DIR [VAR=VALUE...]" >&2; exit 2; }
rootfs=$(readlink -f "$1")
socket_dir=$(readlink -f "$2")
runs_dir=$(readlink -f "$3")
shift 3
[ -x "$rootfs/opt/codejail/container/entrypoint.sh" ] || { echo "$rootfs is not a codejail image root" >&2; exit 2; }
for setting in "$@"; do
  case "$setting" in
    CODEJAIL_*=*) ;;
    *) echo "$0: settings are CODEJAIL_NAME=VALUE, not '$setting'" >&2; exit 2 ;;
  esac
done
CAPS=+setuid,+setgid,+kill,+sys_admin,+sys_chroot,+chown,+fowner,+sys_resource

exec unshare --mount --pid --fork --propagation private -- sh -eu -c '
  rootfs=$1 socket_dir=$2 runs_dir=$3 caps=$4
  shift 4
  mkdir -p "$rootfs/run/codejail" "$rootfs/var/lib/codejail" "$rootfs/.oldroot"
  # Read-only, as README.md runs it (--read-only --tmpfs /tmp).
  mount --bind "$rootfs" "$rootfs"
  mount -o remount,bind,ro "$rootfs"
  mount -t proc proc "$rootfs/proc"
  mount --rbind /sys "$rootfs/sys"
  mount --rbind /dev "$rootfs/dev"
  mount -t tmpfs tmpfs "$rootfs/tmp"
  mount --bind "$socket_dir" "$rootfs/run/codejail"
  mount --bind "$runs_dir" "$rootfs/var/lib/codejail"
  cd "$rootfs"
  pivot_root . .oldroot
  umount -l /.oldroot
  exec env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    CODEJAIL_SOCKET=/run/codejail/codejail.sock CODEJAIL_RUN_BASE=/var/lib/codejail/runs "$@" \
    setpriv --bounding-set "-all,$caps" -- /usr/bin/tini -- /opt/codejail/container/entrypoint.sh
' sh "$rootfs" "$socket_dir" "$runs_dir" "$CAPS" "$@"
