// The sources of binding.gyp's two targets, found here so that a new file needs no line there:
// the addon links every native/*.cc but the warm library's own (warm_apply.cc); the warm library
// (loaded by each template, which its children use) links every one but the daemon's own, the
// N-API files (addon*.cc) and those listed in DAEMON_ONLY. A layer's .cc, which holds both its
// daemon-side preparation and its child-side step, lands in both.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));

const WARM_ONLY = ['warm_apply.cc'];
const DAEMON_ONLY = ['spawn.cc', 'prepare.cc', 'deadline.cc', 'channel.cc', 'warm_send.cc', 'rundisk.cc', 'runfiles.cc'];

const target = process.argv[2];
const all = fs.readdirSync(here).filter((name) => name.endsWith('.cc')).sort();
const chosen =
  target === 'addon'
    ? all.filter((name) => !WARM_ONLY.includes(name))
    : all.filter((name) => !name.startsWith('addon') && !DAEMON_ONLY.includes(name));
if (target !== 'addon' && target !== 'warm') throw new Error('usage: node native/sources.mjs addon|warm');
process.stdout.write(chosen.map((name) => path.posix.join('native', name)).join(' ') + '\n');
