#!/usr/bin/env node
// Sabotage check: for each switch, run the security suites with it turned off
// (CODEJAIL_SABOTAGE=<switch>) and require every deny test of its prefix to FAIL because the
// denial went away, then run them with every layer on and require them to pass. A deny test that
// still passes with its layer off proves nothing about that layer, and this script says which.
// The switches and their prefixes are the layers' own (src/layers/*.ts `sabotage`), read from
// the compiled registry.
//
// Strict, so that a green run means something was checked:
//   - the tests a switch must cover are listed first (vitest list), on each path; a switch with no
//     deny test anywhere, or a path where its tests exist but none ran (skipped: not root, a
//     filter gone wrong), is a failure;
//   - a vitest run that errs (a crash, an unhandled error, a file that failed to load or whose
//     hooks failed, a missing report) is a failure, never "no tests here";
//   - with the switch off, each test must fail because the denial went away: it states its allow
//     side (test/helpers/denial.ts expectDenied) and its failure says that the allow side's result
//     came back (DENIAL GONE, off=gone). Failing on any other assertion (off=assert: the result
//     was neither the refusal nor the allow side's), a timeout, a thrown error or a daemon that
//     did not start is a failure of the check.
// Each check runs on both paths a python run can take (vitest.config.ts's projects): warm (runs
// forked from a template; the suites that need no daemon run here too, once) and cold (a fresh
// interpreter per run). A deny test must depend on its layer on each path it runs on.
// Switches whose tests live only in test/vm (AppArmor, cgroups: this kernel may have neither) are
// proved inside the VM, where each probe runs with the layer on and then off in one boot; here
// the script only checks that such tests exist.
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
if (process.getuid?.() !== 0) {
  console.error('sabotage: must run as root (the deny tests skip otherwise, and would prove nothing)');
  process.exit(2);
}
const suites = process.argv.slice(2).length ? process.argv.slice(2) : ['test/native'];
const VM_SUITE = 'test/vm';
// CODEJAIL_SABOTAGE_PATHS=warm (or cold) checks one path only; CODEJAIL_SABOTAGE_ONLY=seccomp,landlock
// only those switches (a quicker look while working on one layer).
const PATHS = { warm: ['unit', 'warm'], cold: ['cold'] };
const paths = (process.env.CODEJAIL_SABOTAGE_PATHS ?? 'warm,cold').split(',').filter((p) => p in PATHS);
// A switch may itself be a comma list (several layers off at once): name it whole, or separate
// several switches with spaces.
const only = (process.env.CODEJAIL_SABOTAGE_ONLY ?? '')
  .split(/\s+/)
  .flatMap((token) => (token in SABOTAGE ? [token] : token.split(',')))
  .filter(Boolean);
const DENIAL_GONE = 'DENIAL GONE'; // test/helpers/denial.ts

const escape = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const title = (fullName) => fullName.split(' > ').pop();
const projectArgs = (names) => names.flatMap((name) => ['--project', name]);

/** A -t pattern for tests whose names hold any of `prefixes`. */
const pattern = (prefixes) => prefixes.map(escape).join('|');

/** The tests of `prefixes` that exist in `files` for these projects, as "file > full name" keys. */
function list(files, projects, prefixes) {
  const r = spawnSync('npx', ['vitest', 'list', ...files, ...projects, '-t', pattern(prefixes), '--json'], { encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`vitest list failed (${r.status}):\n${r.stderr.slice(-3000)}`);
  const start = r.stdout.indexOf('[');
  const tests = start < 0 ? [] : JSON.parse(r.stdout.slice(start));
  return new Set(tests.filter((t) => prefixes.some((prefix) => title(t.name).startsWith(prefix))).map((t) => `${t.file} > ${t.name}`));
}

/**
 * Runs the deny tests of `prefixes` in `files` with `sabotage` off. Returns the tests (by key), or
 * a reason the run cannot be trusted: no report, a file-level error, an unhandled error, or a
 * non-zero exit that failed tests do not explain.
 */
function run(files, projects, sabotage, prefixes) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cj-sabotage-'));
  const out = path.join(dir, 'report.json');
  const r = spawnSync('npx', ['vitest', 'run', ...files, ...projects, '-t', pattern(prefixes), '--reporter=json', `--outputFile=${out}`, '--reporter=dot'], {
    env: { ...process.env, CODEJAIL_SABOTAGE: sabotage },
    encoding: 'utf8',
    maxBuffer: 64 << 20,
  });
  const output = `${r.stdout}\n${r.stderr}`;
  let report;
  try {
    report = JSON.parse(fs.readFileSync(out, 'utf8'));
  } catch (err) {
    return { error: `no report (vitest exited ${r.status ?? r.signal}): ${err.message}\n${output.slice(-2000)}` };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const tests = new Map();
  const fileErrors = [];
  for (const file of report.testResults) {
    if (file.message) fileErrors.push(`${file.name}: ${file.message.slice(0, 500)}`);
    for (const t of file.assertionResults) tests.set(`${file.name} > ${[...t.ancestorTitles, t.title].join(' > ')}`, t);
  }
  const failed = [...tests.values()].filter((t) => t.status === 'failed').length;
  if (fileErrors.length) return { error: `a file failed outside its tests:\n${fileErrors.join('\n')}` };
  if (/Unhandled (Errors?|Rejection)/.test(output)) return { error: `unhandled errors:\n${output.slice(-2000)}` };
  if (r.status !== 0 && failed === 0) return { error: `vitest exited ${r.status ?? r.signal} with no failed test:\n${output.slice(-2000)}` };
  return { tests };
}

/**
 * A deny test's outcome with its switch off: ok 'gone' (it says the allow side's result came
 * back), or bad, with why: 'assert' (it failed on an assertion, but not with the allow side's
 * result), passed, missing, a timeout or a thrown error.
 */
function offVerdict(t) {
  if (!t) return { bad: 'missing' };
  if (t.status !== 'failed') return { bad: t.status };
  const message = (t.failureMessages ?? []).join('\n');
  if (message.includes(DENIAL_GONE)) return { ok: 'gone' };
  if (/^AssertionError\b/.test(message.trimStart())) {
    return { bad: 'assert', why: `failed on an assertion without the allow side's result (${DENIAL_GONE}): ${message.split('\n')[0].slice(0, 160)}` };
  }
  return { bad: `failed, not on an assertion: ${message.split('\n')[0].slice(0, 160)}` };
}

let bad = 0;
let checked = 0;
// How the deny tests failed with their layer off: the allow side seen (gone, the only pass) or
// only some assertion (assert).
const offKinds = { gone: 0, assert: 0 };
let inVmOnly = 0;
const started = Date.now();
const switches = Object.entries(SABOTAGE).filter(([name]) => !only.length || only.includes(name));
const found = new Map(switches.map(([name]) => [name, 0]));
// Per path: one list and one run with every layer on for all the switches' tests, then one run
// per switch with it off, each over only the files that hold its tests (collecting every suite
// file costs more than running a few tests).
for (const runPath of paths) {
  const projects = projectArgs(PATHS[runPath]);
  const pathStarted = Date.now();
  const everyPrefix = switches.map(([, prefix]) => prefix);
  const listed = everyPrefix.length ? list(suites, projects, everyPrefix) : new Set();
  const files = (keys) => [...new Set([...keys].map((key) => key.split(' > ')[0]))];
  const expectedOf = new Map(switches.map(([name, prefix]) => [name, new Set([...listed].filter((key) => title(key).startsWith(prefix)))]));
  const on = listed.size ? run(files(listed), projects, '', everyPrefix) : { tests: new Map() };
  if (on.error) {
    bad++;
    console.log(`BAD  ${runPath} the run with every layer on cannot be trusted: ${on.error}`);
    continue;
  }
  for (const [name, prefix] of switches) {
    const expected = expectedOf.get(name);
    if (expected.size === 0) {
      console.log(`--   ${runPath} ${name.padEnd(9)} no ${prefix}* tests on this path`);
      continue;
    }
    found.set(name, found.get(name) + expected.size);
    const switchStarted = Date.now();
    const off = run(files(expected), projects, name, [prefix]);
    if (off.error) {
      bad++;
      console.log(`BAD  ${runPath} ${name.padEnd(9)} the run with it off cannot be trusted: ${off.error}`);
      continue;
    }
    let ran = 0;
    for (const key of expected) {
      const t = on.tests.get(key);
      if (t?.status === 'skipped' || t?.status === 'pending') {
        console.log(`skip ${runPath} ${name.padEnd(9)} ${title(key)}`);
        continue;
      }
      ran++;
      checked++;
      const verdict = offVerdict(off.tests.get(key));
      const ok = t?.status === 'passed' && verdict.ok;
      if (!ok) bad++;
      const kind = verdict.ok ?? verdict.bad;
      if (kind in offKinds) offKinds[kind]++;
      console.log(`${ok ? 'ok  ' : 'BAD '} ${runPath} ${name.padEnd(9)} ${title(key)}: on=${t?.status ?? 'missing'} off=${kind}${verdict.why ? ` (${verdict.why})` : ''}`);
    }
    if (ran === 0) {
      bad++;
      console.log(`BAD  ${runPath} ${name.padEnd(9)} ${expected.size} ${prefix}* test(s) here, none ran`);
    }
    console.log(`     ${runPath} ${name.padEnd(9)} off run ${((Date.now() - switchStarted) / 1000).toFixed(0)} s`);
  }
  console.log(`     ${runPath} path ${((Date.now() - pathStarted) / 1000).toFixed(0)} s`);
}
for (const [name, prefix] of switches) {
  if (found.get(name) > 0) continue;
  const inVm = list([VM_SUITE], projectArgs(['unit']), [prefix]);
  if (inVm.size > 0) {
    inVmOnly += inVm.size;
    console.log(`vm   ${name.padEnd(9)} ${inVm.size} ${prefix}* test(s) in ${VM_SUITE}: proved on and off in the VM's own passes`);
  } else {
    bad++;
    console.log(`BAD  ${name.padEnd(9)} no ${prefix}* test anywhere`);
  }
}
const seconds = ((Date.now() - started) / 1000).toFixed(0);
if (checked + inVmOnly === 0 && bad === 0) {
  bad++;
  console.log('BAD  no deny test was checked');
}
if (checked) console.log(`     off=gone ${offKinds.gone}, off=assert ${offKinds.assert} (every path checked)`);
console.log(
  bad
    ? `${bad} problem(s): a deny test that does not depend on its layer, or a run that proves nothing (${seconds} s)`
    : `every deny test fails with its layer off, with its allow side's result, and passes with it on, on each path (${checked} checks, ${seconds} s)`,
);
process.exit(bad ? 1 : 0);
