#!/usr/bin/env bash
# The unpacked container image that test/container/entrypoint.test.ts runs
# (allow_container_image_rootfs_serves_with_the_set): container/Dockerfile built by
# container/build-offline.sh over its stand-in base, cached per source tree.
#   scripts/container-image.sh          build it unless the cache has this tree's (install-deps)
#   scripts/container-image.sh --find   print this tree's image root, or say why there is none
#                                       (exit 1); the test asks this, so it never runs a stale one
# Cache: $CODEJAIL_IMAGE_CACHE, default /var/cache/codejail-image. The image contains the built
# package, so its key is everything the image is made of: the files the build context lets through
# (container/Dockerfile.dockerignore's allow-list: package.json and its lock, native/, src/,
# python/...), their modes, the Dockerfile, this build's scripts and this host's Node (copied into
# the stand-in base). Any change there builds a new image; only the latest is kept. The stand-in
# base (a debootstrap, the slow part) is kept per Node version and made once. It is not the
# root file system of scripts/nocompiler-rootfs.sh: that one has python3, which
# node:20-bookworm-slim has not, and a base with python3 would hide a Dockerfile that forgot it.
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${CODEJAIL_IMAGE_CACHE:-/var/cache/codejail-image}

image_key() {
  local context
  mapfile -t context < <(sed -n 's/^!//p' container/Dockerfile.dockerignore)
  {
    node --version
    # __pycache__: excluded from the context too (a test run may write it after this build).
    find container/Dockerfile container/Dockerfile.dockerignore container/build-offline.sh scripts/container-image.sh "${context[@]}" \
      -name __pycache__ -prune -o \( -type f -o -type l \) -print0 | LC_ALL=C sort -z | xargs -0 stat -c '%a %N'
    find container/Dockerfile container/Dockerfile.dockerignore container/build-offline.sh scripts/container-image.sh "${context[@]}" \
      -name __pycache__ -prune -o -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
  } | sha256sum | cut -c1-16
}

key=$(image_key)
image="$cache/image-$key"
built() { [ -x "$image/opt/codejail/container/entrypoint.sh" ] && [ -f "$image/opt/codejail/dist/daemon/main.js" ]; }

if [ "${1:-}" = --find ]; then
  if built; then
    echo "$image"
    exit 0
  fi
  others=$(cd "$cache" 2>/dev/null && ls -d image-* 2>/dev/null | tr '\n' ' ' || true)
  echo "no container image root for this source tree (key $key) in $cache${others:+, only ${others% }, of other trees}; build it with scripts/container-image.sh (root, buildah, debootstrap, host Node 20)" >&2
  exit 1
fi
[ "$#" -eq 0 ] || { echo "usage: $0 [--find]" >&2; exit 2; }

if built; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "container-image: needs root (buildah, debootstrap); skipping" >&2
  exit 0
fi
if [ "$(node -p 'process.versions.node.split(".")[0]')" != 20 ]; then
  # The stand-in base carries this host's node as node:20-bookworm-slim's.
  echo "container-image: this host's node is $(node --version), not Node 20; skipping" >&2
  exit 0
fi
for tool in buildah debootstrap; do
  command -v "$tool" >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$tool"
done

mkdir -p "$cache"
# One build at a time per cache (checkouts on one host share it): builds share the stand-in
# base's buildah storage, which each empties when it starts, and each removes every other entry
# of the cache when done, another build's staging directory included. The one that waited finds
# the image built when the keys match.
exec 9>"$cache/.lock"
flock 9
if built; then
  exit 0
fi
staging="$image.build.$$"
trap 'rm -rf "$staging"' EXIT
started=$(date +%s)
echo "container-image: building container/Dockerfile (key $key) into $image" >&2
container/build-offline.sh "$cache/standin-node-$(node --version)" "$staging" >&2
mv -T "$staging" "$image"
trap - EXIT
# Older trees' images, and stand-in bases of another Node.
for old in "$cache"/image-* "$cache"/standin-node-*; do
  case "$old" in
    "$image" | "$cache/standin-node-$(node --version)") ;;
    *) rm -rf "$old" ;;
  esac
done
echo "container-image: $image ($(($(date +%s) - started)) s, $(du -sh "$image" | cut -f1))" >&2
