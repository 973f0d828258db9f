#!/bin/sh
# Runs the original CodeJail's test suite (codejail/tests of an openedx/codejail checkout) and
# xqueue-watcher's JailedGrader test (tests/test_jailed_grader.py of an openedx/xqueue-watcher
# checkout) as they are, against this package and the codejail daemon at $CODEJAIL_SOCKET.
# Neither suite is part of this repository: they are copied into a temporary work tree beside a
# copy of this package, with upstream/conftest.py (ours) at its top.
#
#   CODEJAIL_SOCKET=/run/codejail/codejail.sock \
#   CODEJAIL_CHECKOUT=~/src/codejail XQUEUE_WATCHER_CHECKOUT=~/src/xqueue-watcher \
#     clients/python/scripts/run-upstream-tests.sh [pytest args...]
#
# XQUEUE_WATCHER_CHECKOUT may be left unset (the codejail suite alone runs). The daemon needs
# the commands "python" and "python3", and defaultLimits.OUTPUT of at least 4 MiB (the suite
# writes 3.8 MB to stdout and to stderr). Needs python3-msgpack, python3-pytest,
# python3-django, python3-six and python3-numpy. The work tree (and TMPDIR for the tests) goes
# beneath $CODEJAIL_UPSTREAM_WORKDIR (default /var/lib/codejail-test), not /tmp: /tmp is empty
# in the sandbox, so a symlink into the caller's /tmp would read as missing where the
# symlink tests expect it to be refused.
set -eu

: "${CODEJAIL_SOCKET:?set CODEJAIL_SOCKET to the codejail daemon socket}"
: "${CODEJAIL_CHECKOUT:?set CODEJAIL_CHECKOUT to a checkout of openedx/codejail}"
PYTHON=${PYTHON:-/usr/bin/python3}
package_dir=$(cd "$(dirname "$0")/.." && pwd)
[ -f "$CODEJAIL_CHECKOUT/codejail/tests/test_jail_code.py" ] ||
  { echo "run-upstream-tests.sh: $CODEJAIL_CHECKOUT has no codejail/tests/test_jail_code.py" >&2; exit 2; }

parent=${CODEJAIL_UPSTREAM_WORKDIR:-/var/lib/codejail-test}
mkdir -p "$parent"
work=$(mktemp -d "$parent/upstream-XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
# The work tree must be readable by the sandbox's uids only through the files a run is sent.
chmod 700 "$work"

mkdir "$work/tmp"
cp -R "$package_dir/codejail" "$work/codejail"
cp -R "$CODEJAIL_CHECKOUT/codejail/tests" "$work/codejail/tests"
cp "$package_dir/upstream/conftest.py" "$work/conftest.py"
# The original's Makefile runs pytest --log-level=DEBUG: some tests read the log.
printf '[pytest]\nlog_level = DEBUG\n' > "$work/pytest.ini"
set -- codejail/tests "$@"
if [ -n "${XQUEUE_WATCHER_CHECKOUT:-}" ]; then
  mkdir "$work/xqueue-watcher"
  for part in xqueue_watcher grader_support tests; do
    cp -R "$XQUEUE_WATCHER_CHECKOUT/$part" "$work/xqueue-watcher/$part"
  done
  set -- xqueue-watcher/tests/test_jailed_grader.py "$@"
fi

cd "$work"
TMPDIR="$work/tmp" PYTHONDONTWRITEBYTECODE=1 PYTHONPATH="$work:$work/xqueue-watcher" \
  CODEJAIL_SOCKET="$CODEJAIL_SOCKET" "$PYTHON" -m pytest -p no:cacheprovider -rs "$@"
