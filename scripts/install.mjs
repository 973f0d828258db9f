#!/usr/bin/env node
// npm's install step for codejail (package.json "install"). Where a prebuild in prebuilds/
// matches this machine (scripts/prebuild.sh makes them: `npm pack` ships them), it is used and
// nothing is compiled: no compiler, make or headers needed. Otherwise, or with
// npm_config_build_from_source=true (`npm i --build-from-source`), the addon and the warm
// templates' library are compiled from native/ with node-gyp, after saying so and what that
// needs, and failing with the names of the tools that are missing rather than a compiler's error.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const nodeGypBuild = require('node-gyp-build');

/** The addon node-gyp-build would load (build/Release first, then a matching prebuild), if both it and its warm library are there and it loads. */
function usableBuild() {
  let addon;
  try {
    addon = nodeGypBuild.resolve(root);
  } catch {
    return undefined; // neither a build nor a matching prebuild
  }
  // The naming of src/native.ts's warmLibraryPath(): a prebuild's libc tag, or none in build/Release.
  const libc = /\.(glibc|musl)\.node$/.exec(path.basename(addon))?.[1];
  const warm = path.join(path.dirname(addon), libc ? `codejail_warm.${libc}.so` : 'codejail_warm.so');
  if (!fs.existsSync(warm)) return undefined;
  try {
    require(addon);
  } catch (err) {
    process.stderr.write(`codejail: ${path.relative(root, addon)} does not load here (${err.message.split('\n')[0]})\n`);
    return undefined;
  }
  return addon;
}

function onPath(command) {
  return (process.env.PATH ?? '').split(':').some((dir) => {
    try {
      fs.accessSync(path.join(dir || '.', command), fs.constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

const fromSource = process.env.npm_config_build_from_source === 'true';
const found = fromSource ? undefined : usableBuild();
if (found) process.exit(0);

const machine = `${process.platform}-${process.arch}, ${process.env.LIBC ?? (fs.existsSync('/etc/alpine-release') ? 'musl' : 'glibc')}`;
process.stderr.write(
  (fromSource ? 'codejail: building from source (npm_config_build_from_source)' : `codejail: no prebuilt addon in prebuilds/ matches this machine (${machine})`) +
    ': compiling the addon and codejail_warm.so from native/ with node-gyp, which needs g++ (C++17), make, python3 and the Node.js headers\n',
);
const missing = ['g++', 'make', 'python3'].filter((tool) => !onPath(tool));
if (missing.length > 0) {
  process.stderr.write(
    `codejail: cannot compile: ${missing.join(', ')} not found on PATH. Install them (Debian: apt-get install g++ make python3), ` +
      'or install codejail where a prebuild matches (the npm package ships linux-x64 glibc).\n',
  );
  process.exit(1);
}
// A checkout's own node-gyp (a devDependency, the version the build is tested with), else the one
// npm tells its lifecycle scripts about (its own), else one on PATH.
let nodeGyp;
try {
  nodeGyp = require.resolve('node-gyp/bin/node-gyp.js');
} catch {
  nodeGyp = process.env.npm_config_node_gyp;
}
const build = nodeGyp
  ? spawnSync(process.execPath, [nodeGyp, 'rebuild'], { cwd: root, stdio: 'inherit' })
  : spawnSync('node-gyp', ['rebuild'], { cwd: root, stdio: 'inherit' });
if (build.error) process.stderr.write(`codejail: cannot run node-gyp: ${build.error.message}\n`);
process.exit(build.status ?? 1);
