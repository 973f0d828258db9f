#!/usr/bin/env bash
# Builds prebuilds/<platform>-<arch>/ for the npm tarball (`npm pack` runs it: prepack), so that
# installing the package compiles nothing where a prebuild matches:
#   codejail.napi.<libc>.node  the addon: Node-API, so one build serves every supported Node
#   codejail_warm.<libc>.so    the warm templates' confinement library, loaded by python
# Both are tagged with the C library they were linked against (glibc, or musl on Alpine), which
# node-gyp-build matches at load time and src/native.ts's warmLibraryPath() follows. Built with
# the machine's node and headers (npm's nodedir): a Node-API build does not depend on the Node
# version it was compiled with.
set -euo pipefail
cd "$(dirname "$0")/.."

# node-gyp-build's own test for the C library (it matches the tag with it at load time).
libc=$(node -p "process.env.LIBC || (require('node:fs').existsSync('/etc/alpine-release') ? 'musl' : 'glibc')")
dir="prebuilds/$(node -p 'process.platform + "-" + process.arch')"
rm -rf "$dir"
npx prebuildify --napi --strip --tag-libc --libc "$libc" --target "$(node -p process.versions.node)"
# prebuildify names a Node-API build <package>.<libc>.node (the napi tag says what it is), and
# copies every shared library of build/Release beside it, untagged.
mv "$dir/codejail.$libc.node" "$dir/codejail.napi.$libc.node"
mv "$dir/codejail_warm.so" "$dir/codejail_warm.$libc.so"
# prebuildify moved the addon out of build/Release: put it back, so that a checkout that packed
# still loads its own build (node-gyp-build looks there first).
cp "$dir/codejail.napi.$libc.node" build/Release/codejail.node
ls -l "$dir"
