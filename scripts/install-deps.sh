#!/usr/bin/env bash
# Installs the Debian packages codejail's build and tests use, if any is missing. Idempotent; run
# as root on Debian 12. Node.js 20 is expected to be installed already (Debian 12's own nodejs
# is 18, too old for node-gyp 12 and vitest).
set -euo pipefail

# Build: g++, make, python3 (node-gyp). Sandbox: python3 is the default command. Setup: passwd
# (useradd/groupadd). Tests: procps.
PACKAGES=(python3 g++ make passwd procps)

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
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
