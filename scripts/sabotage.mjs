#!/usr/bin/env node
// Sabotage check: for each layer, run the security suites with that layer turned off
// (CODEJAIL_SABOTAGE=<layer>) and require every deny_<layer>* test to FAIL, then run them with
// every layer on and require them to pass. A deny test that still passes with its layer off
// proves nothing about that layer, and this script says which. The switches and their prefixes
// are the layers' own (src/layers/*.ts `sabotage`), read from the compiled registry.
// Each check runs on both paths a python run can take (vitest.config.ts's projects): warm (runs
// forked from a template; the suites that need no daemon run here too, once) and cold (a fresh
// interpreter per run). A deny test must depend on its layer on each path it runs on.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

let SABOTAGE;
try {
  ({ SABOTAGE } = await import('../dist/layers/index.js'));
} catch (err) {
  console.error(`cannot read the layer registry from dist/ (build first: npx tsc -p tsconfig.json): ${err.message}`);
  process.exit(2);
}
const suites = process.argv.slice(2).length ? process.argv.slice(2) : ['test/native'];
// CODEJAIL_SABOTAGE_PATHS=warm (or cold) checks one path only; CODEJAIL_SABOTAGE_ONLY=seccomp,landlock
// only those switches (a quicker look while working on one layer).
const PATHS = { warm: ['unit', 'warm'], cold: ['cold'] };
const paths = (process.env.CODEJAIL_SABOTAGE_PATHS ?? 'warm,cold').split(',').filter((p) => p in PATHS);
const only = (process.env.CODEJAIL_SABOTAGE_ONLY ?? '').split(',').filter(Boolean);

function run(runPath, sabotage, prefix) {
  const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'cj-sabotage-')), 'report.json');
  const projects = PATHS[runPath].flatMap((name) => ['--project', name]);
  spawnSync('npx', ['vitest', 'run', ...suites, ...projects, '--passWithNoTests', '-t', prefix, '--reporter=json', `--outputFile=${out}`], {
    env: { ...process.env, CODEJAIL_SABOTAGE: sabotage },
    stdio: 'ignore',
  });
  // No report: none of the suites is in these projects.
  const report = fs.existsSync(out) ? JSON.parse(fs.readFileSync(out, 'utf8')) : { testResults: [] };
  fs.rmSync(path.dirname(out), { recursive: true, force: true });
  return report.testResults
    .flatMap((f) => f.assertionResults.map((t) => ({ ...t, file: f.name })))
    .filter((t) => t.title.startsWith(prefix) && t.status !== 'skipped' && t.status !== 'pending');
}

let bad = 0;
for (const [layer, prefix] of Object.entries(SABOTAGE)) {
  if (only.length && !only.includes(layer)) continue;
  for (const runPath of paths) {
    const on = run(runPath, '', prefix);
    const off = run(runPath, layer, prefix);
    for (const t of on) {
      const sabotaged = off.find((o) => o.file === t.file && o.fullName === t.fullName);
      const ok = t.status === 'passed' && sabotaged?.status === 'failed';
      if (!ok) bad++;
      console.log(`${ok ? 'ok  ' : 'BAD '} ${runPath} ${layer.padEnd(9)} ${t.title}: on=${t.status} off=${sabotaged?.status ?? 'missing'}`);
    }
    if (on.length === 0) console.log(`--   ${runPath} ${layer.padEnd(9)} no ${prefix}* tests ran here`);
  }
}
console.log(bad ? `${bad} deny test(s) do not depend on their layer` : 'every deny test fails with its layer off and passes with it on, on each path');
process.exit(bad ? 1 : 0);
