#!/usr/bin/env bash
# Runs the suites that prove the daemon, the client, the end-to-end path and the HTTP API on each
# extra supported Node major (the whole suite runs on the machine's own node first: `npm test`).
# Each pass runs vitest itself under that node, so its workers, the test daemons
# (test/helpers/daemon.ts spawns process.execPath), `codejail serve` and the CLI all run on it,
# and the one native build (N-API) is loaded by it. The nodes come from scripts/node-versions.sh,
# which scripts/install-deps.sh runs.
#
# CODEJAIL_EXTRA_NODE_MAJORS: the majors to run on (default "22 24"; "" runs none).
# CODEJAIL_NODE_PASS=full: the whole of test/daemon, test/client, test/e2e and test/http (warm
#   and cold) instead of the subset below.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE=${CODEJAIL_NODE_CACHE:-/var/cache/codejail-node}
read -r -a majors <<<"${CODEJAIL_EXTRA_NODE_MAJORS-22 24}"

# One pass over the whole of those four directories takes several minutes on a loaded 2-core
# machine; this subset starts real daemons and runs warm and cold python through jailCode,
# safeExec, the CLI and the HTTP API, which is what differs between Node majors (the addon's
# N-API surface, child processes, sockets, streams, http), in well under a minute each.
SUBSET=(
  test/daemon/node_under_test.test.ts
  test/daemon/lifecycle.test.ts
  test/daemon/requests.test.ts
  test/client/client.test.ts
  test/client/cli.test.ts
  test/e2e/jail_code.test.ts
  test/e2e/safe_exec.test.ts
  test/http/code_exec.test.ts
)
if [ "${CODEJAIL_NODE_PASS:-}" = full ]; then
  files=(test/daemon/ test/client/ test/e2e/ test/http/)
  projects=(--project unit --project warm --project cold)
else
  files=("${SUBSET[@]}")
  projects=(--project unit --project warm --project cold)
fi

for major in "${majors[@]}"; do
  bin="$CACHE/$major/bin"
  if [ ! -x "$bin/node" ]; then
    echo "test-node-versions: no Node $major in $CACHE; run scripts/node-versions.sh (scripts/install-deps.sh does)" >&2
    exit 1
  fi
  echo "== the daemon, client, e2e and http suites on Node $("$bin/node" --version)"
  started=$SECONDS
  PATH="$bin:$PATH" CODEJAIL_EXPECT_NODE_MAJOR="$major" "$bin/node" node_modules/vitest/vitest.mjs run "${projects[@]}" "${files[@]}"
  echo "== Node $major: $((SECONDS - started)) s"
done
