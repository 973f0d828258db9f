#!/bin/sh
# Runs inside the test VM booted with systemd as PID 1 (scripts/vm/run.sh --systemd starts it as
# the unit codejail-vm.service once the guest is up): the systemd suite, from this checkout (the
# host's root, read-only, under a tmpfs overlay), against the compiled dist/.
set -eu
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
exec node test/vm/guest-systemd.mjs /vm-results
