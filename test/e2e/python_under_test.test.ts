// Which Python and C library the sandbox really runs. scripts/trixie-suite.sh runs the daemon
// suites inside a Debian 13 root and sets CODEJAIL_EXPECT_PYTHON and CODEJAIL_EXPECT_GLIBC (the
// root's /usr/bin/python3 and C library: "3.13", "2.41"): this pins that such a pass really is on
// that interpreter and C library, on the path the project runs (warm or cold: profile's
// usage.stages.warm says which ran), and not on the host's. Without the variables it pins that
// the sandbox runs this machine's /usr/bin/python3, the default command.
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { TEST_RUN_PATH } from '../helpers/daemon.js';
import { daemonSuite } from '../helpers/suite.js';

const isRoot = process.getuid?.() === 0;
const SYSTEM_PYTHON = '/usr/bin/python3';
const PROBE = 'import sys, platform\nprint("%d.%d" % sys.version_info[:2], sys.executable, platform.libc_ver()[1])';

describe.skipIf(!isRoot)('the Python under test', () => {
  const suite = daemonSuite();

  it(`a sandboxed run on the ${TEST_RUN_PATH} path reports the machine's ${SYSTEM_PYTHON}, and the version and glibc the pass was started for`, async () => {
    const outside = spawnSync(SYSTEM_PYTHON, ['-E', '-c', PROBE], { encoding: 'utf8' });
    expect(outside.status).toBe(0);
    const r = await suite.client.jailCode('python', { code: PROBE, profile: true });
    expect(r.usage.stages?.warm).toBe(TEST_RUN_PATH !== 'cold');
    expect(r.stderr.toString()).toBe('');
    // The same interpreter, version and glibc as the machine's own python3 outside the sandbox.
    expect(r.stdout.toString()).toBe(outside.stdout);
    const [version, executable, glibc] = r.stdout.toString().trim().split(' ');
    expect(executable).toBe(SYSTEM_PYTHON);
    console.log(`sandboxed python (${TEST_RUN_PATH}): ${r.stdout.toString().trim()}`);
    if (process.env.CODEJAIL_EXPECT_PYTHON !== undefined) expect(version).toBe(process.env.CODEJAIL_EXPECT_PYTHON);
    if (process.env.CODEJAIL_EXPECT_GLIBC !== undefined) expect(glibc).toBe(process.env.CODEJAIL_EXPECT_GLIBC);
  });
});
