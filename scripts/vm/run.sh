#!/usr/bin/env bash
# Boots the codejail test VM and runs one command inside it:
#   scripts/vm/run.sh [--systemd] RESULTS_DIR COMMAND
# With --systemd the guest's PID 1 is systemd (unified cgroup v2 hierarchy) and COMMAND runs as
# the unit codejail-vm.service once the guest has booted (scripts/vm/init); without it, a shell
# runs COMMAND straight after the switch to the shared root.
# COMMAND is an absolute path on this host (the guest sees the host's root read-only, with a
# tmpfs overlay on top); it runs as root in the guest with RESULTS_DIR mounted writable at
# /vm-results, which is how results come back. The serial console is this script's stdout.
# Exit status: the command's, or 98 when the guest did not report one (crash, timeout).
# CODEJAIL_VM_KERNEL=bookworm (default, Debian 12's 6.1) or trixie (Debian 13's 6.12) picks the
# kernel (scripts/vm/kernels.sh).
#
# Software emulation (TCG), not KVM: with KVM the guest hangs after the boot loader on this
# project's machines, and TCG works everywhere, nested CI runners included.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/kernels.sh"
TIMEOUT=${CODEJAIL_VM_TIMEOUT:-900}
MEMORY=${CODEJAIL_VM_MEMORY:-2048}

die() { echo "scripts/vm/run.sh: $*" >&2; exit 2; }
init_args=
if [ "${1:-}" = --systemd ]; then
  # fstab=no, luks=no: the host's /etc/fstab and /etc/crypttab name its disks, which the guest has
  # not got; waiting for them would end the boot in emergency mode.
  init_args="codejail.init=systemd systemd.unit=codejail-vm.target systemd.unified_cgroup_hierarchy=1 fstab=no luks=no"
  shift
fi
[ $# -eq 2 ] || die "usage: run.sh [--systemd] RESULTS_DIR COMMAND"
results=$(realpath "$1")
cmd=$2
[ -d "$results" ] || die "results directory $results does not exist"
case "$cmd" in /*) ;; *) die "COMMAND must be an absolute path, got $cmd" ;; esac
case "$cmd" in *[[:space:]]*) die "COMMAND must not contain spaces (it travels on the kernel command line)" ;; esac
[ -x "$cmd" ] || die "$cmd is not executable"
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 is missing: apt-get install qemu-system-x86"

# One VM at a time per cache, whichever kernel: test files run in parallel, and two emulated
# guests on a small machine would each take twice as long (and build.sh must not run twice at
# once). The lock is released when this script exits.
mkdir -p "$CACHE"
exec 9>"$CACHE/run.lock"
if ! flock -n 9; then
  echo "scripts/vm/run.sh: another VM of $CACHE is running; waiting for it" >&2
  flock 9
fi
"$HERE/build.sh" >&2

log=$(mktemp)
trap 'rm -f "$log"' EXIT
# -no-reboot + panic=1: if anything kills the guest's init, qemu exits instead of looping.
set +e
timeout --foreground -k 10 "$TIMEOUT" qemu-system-x86_64 \
  -accel tcg -cpu max -smp 2 -m "$MEMORY" -nographic -no-reboot \
  -kernel "$KERNEL_CACHE/vmlinuz" -initrd "$KERNEL_CACHE/initramfs.cpio.gz" \
  -append "console=ttyS0 quiet loglevel=3 panic=1 apparmor=1 security=apparmor codejail.cmd=$cmd $init_args" \
  -virtfs local,path=/,mount_tag=hostroot,security_model=passthrough,readonly=on,multidevs=remap \
  -virtfs "local,path=$results,mount_tag=results,security_model=passthrough,multidevs=remap" \
  -nic none < /dev/null | tee "$log"
qemu_status=${PIPESTATUS[0]}
set -e
status=$(sed -n 's/^CODEJAIL_VM_EXIT=\([0-9]*\).*/\1/p' "$log" | tail -1)
if [ -z "$status" ]; then
  [ "$qemu_status" = 124 ] && die "the VM did not finish within ${TIMEOUT}s" >&2
  echo "scripts/vm/run.sh: the guest ended without reporting a status (qemu exit $qemu_status)" >&2
  exit 98
fi
exit "$status"
