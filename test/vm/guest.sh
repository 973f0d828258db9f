#!/bin/sh
# Runs inside the test VM (scripts/vm/run.sh boots it with codejail.cmd=<this file>): mounts what
# the daemon looks at (securityfs for AppArmor, cgroup2 with every controller), then runs the
# guest suite from this checkout (the host's root, read-only, under a tmpfs overlay).
set -eu
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8
mountpoint -q /sys/kernel/security || mount -t securityfs none /sys/kernel/security
mountpoint -q /sys/fs/cgroup || mount -t cgroup2 none /sys/fs/cgroup
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
exec node test/vm/guest-suite.mjs /vm-results
