#!/bin/sh
# codejaild's container entrypoint: starts the daemon with a config fit for a container, in which
# the socket lives on a volume shared with the clients and the run base on a writable volume.
#
# A config file mounted at $CODEJAIL_CONFIG (default /etc/codejail/config.json) is used as is.
# Without one, a config is written from these variables (each checked here, so that a typo stops
# the container with a message naming the variable instead of reaching the JSON):
#   CODEJAIL_SOCKET      the socket's path, on the volume the clients mount (/run/codejail/codejail.sock)
#   CODEJAIL_RUN_BASE    where run directories and run disks are made, on a writable volume
#                        (/var/lib/codejail/runs); never on the image's overlay file system
#   CODEJAIL_FIRST_UID   the first slot uid (61000); the slot uids must belong to nobody else
#                        on the host, since the daemon kills every process of a slot uid
#   CODEJAIL_SLOTS       how many runs at once (16)
#   CODEJAIL_ALLOW_UIDS  comma-separated caller uids allowed besides the socket's group (0)
# Whatever the host must offer (Landlock, namespaces, a delegated cgroup v2, the AppArmor
# profile) is checked by the daemon's own self-check, which refuses to serve when a required
# layer is missing: this script checks only its own variables.
set -eu

fail() {
  echo "codejail entrypoint: $*" >&2
  exit 2
}

here=$(dirname "$(readlink -f "$0")")
main="$here/../dist/daemon/main.js"
[ -f "$main" ] || fail "the daemon is not at $main (is the package built?)"

config="${CODEJAIL_CONFIG:-/etc/codejail/config.json}"
if [ -f "$config" ]; then
  exec node "$main" --config "$config" "$@"
fi
[ -z "${CODEJAIL_CONFIG:-}" ] || fail "CODEJAIL_CONFIG names $config, which is not a file"

socket="${CODEJAIL_SOCKET:-/run/codejail/codejail.sock}"
run_base="${CODEJAIL_RUN_BASE:-/var/lib/codejail/runs}"
first_uid="${CODEJAIL_FIRST_UID:-61000}"
slots="${CODEJAIL_SLOTS:-16}"
allow_uids="${CODEJAIL_ALLOW_UIDS:-0}"

# Paths go into JSON unquoted by any encoder, so only plain characters are accepted.
plain_path() {
  case "$2" in
    /*) ;;
    *) fail "$1 must be an absolute path, not '$2'" ;;
  esac
  case "$2" in
    *[!A-Za-z0-9_./-]*) fail "$1 may hold only A-Z a-z 0-9 _ . / - (got '$2')" ;;
  esac
}
number() {
  case "$2" in
    '' | *[!0-9]*) fail "$1 must be a decimal number, not '$2'" ;;
  esac
}
plain_path CODEJAIL_SOCKET "$socket"
plain_path CODEJAIL_RUN_BASE "$run_base"
number CODEJAIL_FIRST_UID "$first_uid"
number CODEJAIL_SLOTS "$slots"
case "$allow_uids" in
  '' | ,* | *, | *,,* | *[!0-9,]*) fail "CODEJAIL_ALLOW_UIDS must be uids separated by commas, not '$allow_uids'" ;;
esac
# The ranges (slot uids above 1000, at most 4096 slots...) are the daemon's to check: its config
# errors name the key.

# The socket's directory is the shared volume's mount point, or is made in it; the run base is
# made by the daemon.
mkdir -p -m 0755 "$(dirname "$socket")"

# The generated config lives as long as the container (SIGHUP re-reads it); in $TMPDIR, /tmp
# unless set, since the image's other directories may be read-only (--read-only: add --tmpfs /tmp).
dir=$(mktemp -d "${TMPDIR:-/tmp}/codejaild.XXXXXX")
cat >"$dir/config.json" <<JSON
{
  "socket": { "path": "$socket", "group": "codejail", "mode": "0660" },
  "runBase": "$run_base",
  "slots": { "firstUid": $first_uid, "count": $slots },
  "allow": { "uids": [$allow_uids] }
}
JSON
exec node "$main" --config "$dir/config.json" "$@"
