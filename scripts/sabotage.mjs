#!/usr/bin/env node
// Sabotage check: for each layer, run the security suites with that layer turned off
// (CODEJAIL_SABOTAGE=<layer>) and require every deny_<layer>* test to FAIL, then run them with
// every layer on and require them to pass. A deny test that still passes with its layer off
// proves nothing about that layer, and this script says which. The switches and their prefixes
// are the layers' own (src/layers/*.ts `sabotage`), read from the compiled registry.
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

function run(sabotage, prefix) {
  const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'cj-sabotage-')), 'report.json');
  spawnSync('npx', ['vitest', 'run', ...suites, '-t', prefix, '--reporter=json', `--outputFile=${out}`], {
    env: { ...process.env, CODEJAIL_SABOTAGE: sabotage },
    stdio: 'ignore',
  });
  const report = JSON.parse(fs.readFileSync(out, 'utf8'));
  fs.rmSync(path.dirname(out), { recursive: true, force: true });
  return report.testResults.flatMap((f) => f.assertionResults).filter((t) => t.title.startsWith(prefix) && t.status !== 'skipped' && t.status !== 'pending');
}

let bad = 0;
for (const [layer, prefix] of Object.entries(SABOTAGE)) {
  const on = run('', prefix);
  const off = run(layer, prefix);
  for (const t of on) {
    const sabotaged = off.find((o) => o.fullName === t.fullName);
    const ok = t.status === 'passed' && sabotaged?.status === 'failed';
    if (!ok) bad++;
    console.log(`${ok ? 'ok  ' : 'BAD '} ${layer.padEnd(9)} ${t.title}: on=${t.status} off=${sabotaged?.status ?? 'missing'}`);
  }
  if (on.length === 0) console.log(`--   ${layer.padEnd(9)} no ${prefix}* tests ran here`);
}
console.log(bad ? `${bad} deny test(s) do not depend on their layer` : 'every deny test fails with its layer off and passes with it on');
process.exit(bad ? 1 : 0);
