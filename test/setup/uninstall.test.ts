// `codejail setup --uninstall`: everything in a temporary prefix (etc/passwd and etc/group through
// useradd/userdel --prefix, the configuration, unit and AppArmor directories, the run base and the
// socket), never the host's, with a slot range no other test uses (60500-60501) and a stand-in
// apparmor_parser that only logs its arguments.
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadConfig, parseConfig } from '../../src/daemon/config.js';
import type { DaemonConfig } from '../../src/config/schema.js';
import { setupAccounts, setupHost } from '../../src/setup/host.js';
import { RECORD_FILE, SetupRecord } from '../../src/setup/record.js';
import { installOperatorFiles } from '../../src/setup/operator_files.js';
import { bashCompletion } from '../../src/cli/completion.js';
import { manPages } from '../../src/cli/man.js';
import { installHttpUnit, installSystemdUnits } from '../../src/setup/systemd_units.js';
import { uninstallHost, UninstallRefused, type UninstallOptions } from '../../src/setup/uninstall.js';
import { startTestDaemon } from '../helpers/daemon.js';

const operatorTexts = { manPages: manPages(), completion: bashCompletion() };

const isRoot = process.getuid?.() === 0;
const FIRST_UID = 60500;

let prefix: string;
let config: DaemonConfig;
let options: UninstallOptions;
const at = (...parts: string[]) => path.join(prefix, ...parts);
const lines = (file: string) =>
  readFileSync(at('etc', file), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => line.split(':').slice(0, 3).join(':'));
const parserCalls = () => (existsSync(at('parser.log')) ? readFileSync(at('parser.log'), 'utf8').trim().split('\n') : []);
/** Every file and directory under the prefix, relative, sorted (what the host would look like). */
const tree = (dir = prefix): string[] =>
  readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    const rel = path.relative(prefix, full);
    return entry.isDirectory() ? [`${rel}/`, ...tree(full)] : [rel];
  }).sort();

/** What `codejail setup --systemd --http` does, pointed at the prefix. */
async function setup(): Promise<string[]> {
  const record = SetupRecord.load(at('etc/codejail'));
  const apparmor = { etcDir: at('etc/apparmor.d'), securityDir: at('securityfs'), parser: at('parser') };
  const report = await setupHost(config, { prefix, configDir: at('etc/codejail'), record, apparmor });
  report.push(...(await installSystemdUnits(config, { unitDir: at('etc/systemd/system'), systemctl: false, record, installPaths: ['/opt/codejail'] })));
  report.push(...(await installHttpUnit(config, { unitDir: at('etc/systemd/system'), systemctl: false, prefix, record, installPaths: ['/opt/codejail'] })));
  report.push(...(await installOperatorFiles(operatorTexts, at('usr/local/share/man'), at('usr/share/bash-completion/completions'), record)));
  return report;
}

beforeEach(() => {
  prefix = mkdtempSync(path.join(tmpdir(), 'cj-uninstall-'));
  mkdirSync(at('etc/codejail'), { recursive: true });
  mkdirSync(at('securityfs'));
  // An operator's accounts, and a socket group made before setup ran: none of it setup's.
  writeFileSync(at('etc/passwd'), 'bob:x:1000:100::/home/bob:/bin/sh\n');
  writeFileSync(at('etc/group'), 'users:x:100:\ncodejail:x:990:\n');
  for (const file of ['shadow', 'gshadow']) writeFileSync(at('etc', file), '');
  writeFileSync(at('parser'), `#!/bin/sh\necho "$@" >> ${at('parser.log')}\n`);
  chmodSync(at('parser'), 0o755);
  const raw = {
    slots: { firstUid: FIRST_UID, count: 2 },
    runBase: at('var/lib/codejail'),
    socket: { path: at('run/codejail/codejail.sock'), group: 'codejail' },
    layers: { cgroups: 'off', netns: 'off', mntns: 'off', disk: 'off' },
  };
  writeFileSync(at('etc/codejail/config.json'), JSON.stringify(raw));
  config = parseConfig(raw);
  options = {
    prefix,
    configDir: at('etc/codejail'),
    configFile: at('etc/codejail/config.json'),
    unitDir: at('etc/systemd/system'),
    apparmorEtc: at('etc/apparmor.d'),
    securityDir: at('securityfs'),
    parser: at('parser'),
    systemctl: false,
  };
});

afterEach(() => {
  rmSync(prefix, { recursive: true, force: true });
});

describe.skipIf(!isRoot)('codejail setup --uninstall', () => {
  it('support_uninstall_exactly_what_setup_created: removed, the operator\'s accounts and config kept; a second uninstall is a no-op', async () => {
    const before = tree();
    await setup();
    expect(JSON.parse(readFileSync(at('etc/codejail', RECORD_FILE), 'utf8')).created.map((c: { name?: string; path?: string }) => c.name ?? path.relative(prefix, c.path!))).toEqual([
      'codejail-60500',
      'codejail-60500',
      'codejail-60501',
      'codejail-60501',
      'run/codejail',
      'var/lib/codejail',
      'etc/apparmor.d/tunables/codejail',
      'etc/apparmor.d/codejail-sandbox',
      'etc/apparmor.d/codejaild',
      'etc/systemd/system/codejaild.service',
      'etc/systemd/system/codejaild.socket',
      'codejail-http',
      'codejail-http',
      'etc/systemd/system/codejail-http.service',
      'usr/local/share/man/man1/codejail.1',
      'usr/local/share/man/man8/codejaild.8',
      'usr/local/share/man/man5/codejail-config.5',
      'usr/share/bash-completion/completions/codejail',
    ]);
    // A leftover run directory of a daemon that crashed goes with the run base.
    mkdirSync(at('var/lib/codejail/0123456789abcdef0123456789abcdef/tmp'), { recursive: true });
    // So does the claim on the run base that a killed daemon left beside it.
    writeFileSync(at('var/lib/codejail.codejaild.pid'), '{"pid":1,"start":"0"}\n');
    writeFileSync(at('parser.log'), '');

    const report = await uninstallHost(config, options);
    expect(report).toEqual([
      `removed unit ${at('etc/systemd/system/codejail-http.service')}`,
      `removed unit ${at('etc/systemd/system/codejaild.service')}`,
      `removed unit ${at('etc/systemd/system/codejaild.socket')}`,
      `removed AppArmor profile ${at('etc/apparmor.d/codejail-sandbox')} (unloaded)`,
      `removed AppArmor profile ${at('etc/apparmor.d/codejaild')} (unloaded)`,
      `removed AppArmor variables ${at('etc/apparmor.d/tunables/codejail')}`,
      `removed ${at('usr/local/share/man/man1/codejail.1')}`,
      `removed ${at('usr/local/share/man/man8/codejaild.8')}`,
      `removed ${at('usr/local/share/man/man5/codejail-config.5')}`,
      `removed ${at('usr/share/bash-completion/completions/codejail')}`,
      `removed the run base ${at('var/lib/codejail')}`,
      `removed ${at('var/lib/codejail.codejaild.pid')} (the run base's claim a killed daemon left)`,
      `removed the socket directory ${at('run/codejail')}`,
      'removed user codejail-60500 (uid 60500)',
      'removed user codejail-60501 (uid 60501)',
      expect.stringMatching(/^removed user codejail-http \(uid \d+\)$/),
      'removed group codejail-60500 (gid 60500)',
      'removed group codejail-60501 (gid 60501)',
      expect.stringMatching(/^removed group codejail-http \(gid \d+\)$/),
      `kept the configuration directory ${at('etc/codejail')} (--purge removes it)`,
    ]);
    expect(parserCalls()).toEqual([`-R ${at('etc/apparmor.d/codejail-sandbox')}`, `-R ${at('etc/apparmor.d/codejaild')}`]);
    expect(lines('passwd')).toEqual(['bob:x:1000']);
    expect(lines('group')).toEqual(['users:x:100', 'codejail:x:990']);
    // What is left is what was there before setup (empty directories setup's tools made aside).
    const emptyDirs = ['etc/apparmor.d/', 'etc/apparmor.d/tunables/', 'etc/systemd/', 'etc/systemd/system/', 'run/', 'var/', 'var/lib/', 'usr/', 'usr/local/', 'usr/local/share/', 'usr/local/share/man/', 'usr/local/share/man/man1/', 'usr/local/share/man/man5/', 'usr/local/share/man/man8/', 'usr/share/', 'usr/share/bash-completion/', 'usr/share/bash-completion/completions/'];
    expect(tree().filter((entry) => !emptyDirs.includes(entry) && !/^etc\/(passwd|group|shadow|gshadow)-$/.test(entry) && entry !== 'parser.log')).toEqual(before);

    const after = tree();
    expect(await uninstallHost(config, options)).toEqual([
      "nothing of codejail's setup left to remove",
      `kept the configuration directory ${at('etc/codejail')} (--purge removes it)`,
    ]);
    expect(tree()).toEqual(after);
  });

  it('support_uninstall_purge: --purge removes the configuration directory too', async () => {
    await setup();
    const report = await uninstallHost(config, { ...options, purge: true });
    expect(report.at(-1)).toBe(`removed the configuration directory ${at('etc/codejail')} (--purge)`);
    expect(existsSync(at('etc/codejail'))).toBe(false);
    expect(await uninstallHost(config, { ...options, purge: true })).toEqual(["nothing of codejail's setup left to remove"]);
  });

  it('allow_uninstall_unrecorded_install: an install from before the record loses its slot accounts, not what merely looks alike', async () => {
    // Setup without a record, then an operator's account on a name setup would use with another id.
    setupAccounts(config, { prefix });
    writeFileSync(at('etc/passwd'), readFileSync(at('etc/passwd'), 'utf8') + 'codejail-http:x:4242:100::/home/web:/bin/sh\n');
    const report = await uninstallHost(config, options);
    expect(report.filter((line) => line.includes('codejail-'))).toEqual([
      'removed user codejail-60500 (uid 60500)',
      'removed user codejail-60501 (uid 60501)',
      'kept user codejail-http: not as setup makes it (home and shell /home/web /bin/sh)',
      'removed group codejail-60500 (gid 60500)',
      'removed group codejail-60501 (gid 60501)',
    ]);
    // Not recorded, and not named by the slot scheme: the socket group stays.
    expect(lines('group')).toEqual(['users:x:100', 'codejail:x:990']);
    expect(lines('passwd')).toEqual(['bob:x:1000', 'codejail-http:x:4242']);
  });

  it('deny_uninstall_while_a_daemon_runs: refused naming its pid and socket; nothing removed', async () => {
    const daemon = await startTestDaemon();
    try {
      await setup();
      const tables = [lines('passwd'), lines('group')];
      const daemonConfigFile = path.join(path.dirname(daemon.socketPath), 'config.json');
      const daemonConfig = loadConfig(daemonConfigFile);
      const refusal = await uninstallHost(daemonConfig, { ...options, configFile: daemonConfigFile }).catch((err: unknown) => err);
      expect(refusal).toBeInstanceOf(UninstallRefused);
      expect((refusal as UninstallRefused).running).toEqual([
        `codejaild pid ${daemon.process.pid} runs with ${daemonConfigFile}`,
        expect.stringMatching(new RegExp(`^a daemon answers on ${daemon.socketPath} \\(codejail \\d`)),
      ]);
      expect((refusal as Error).message).toMatch(/^codejail setup --uninstall refused: a daemon runs \(codejaild pid \d+ runs with .*; stop it first/);
      expect([lines('passwd'), lines('group')]).toEqual(tables);
      expect(existsSync(at('etc/apparmor.d/codejail-sandbox'))).toBe(true);
    } finally {
      await daemon.stop();
    }
  });

  it('deny_uninstall_while_runs_live: a process running as a slot uid (a run of a daemon killed) refuses it too', async () => {
    await setup();
    const run: ChildProcess = spawn('/bin/sleep', ['30'], { uid: FIRST_UID + 1, gid: FIRST_UID + 1, stdio: 'ignore' });
    try {
      await new Promise((resolve) => run.once('spawn', resolve));
      await expect(uninstallHost(config, options)).rejects.toMatchObject({ running: [`pid ${run.pid} runs as slot uid ${FIRST_UID + 1}`] });
      expect(lines('passwd')).toContain(`codejail-${FIRST_UID + 1}:x:${FIRST_UID + 1}`);
    } finally {
      run.kill('SIGKILL');
      await new Promise((resolve) => run.once('exit', resolve));
    }
    expect((await uninstallHost(config, options)).filter((line) => line.startsWith('removed user'))).toHaveLength(3);
  });
});
