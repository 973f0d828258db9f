// Offline check of the shipped AppArmor policy: render it as `codejail setup` would (from this
// host's interpreter discovery and from a config with unusual names), then compile every
// profile with `apparmor_parser -Q -K` (parse and compile, load nothing, write no cache). This
// runs on hosts without AppArmor in the kernel: the parser is given the feature set of each kernel
// the VM suite boots (Debian 12's 6.1 and Debian 13's 6.12, captured with `aa-features-abi -x`
// inside that VM; test/vm/apparmor.test.ts checks they are still what the kernels report) so
// that rules depend on what a real kernel supports, not on the parser's built-in guess.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import {
  apparmorVariables,
  AppArmorSetupError,
  checkProfileSyntax,
  installAppArmor,
  renderAppArmor,
  writeRendered,
} from '../../src/setup/apparmor.js';
import { parseConfig } from '../../src/daemon/config.js';
import { discoverCommands } from '../../src/run/commands.js';
import { silentLogger } from '../../src/log.js';
import type { CommandProfile } from '../../src/run/commands.js';
import { featureDirectories, findParser } from './parser.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
/** The kernels of test/vm/kernels.ts, by the feature file captured in each. */
const KERNEL_FEATURES = [
  { kernel: "Debian 12's 6.1", file: path.join(HERE, 'features-debian12-6.1') },
  { kernel: "Debian 13's 6.12", file: path.join(HERE, 'features-debian13-6.12') },
];
const FEATURES = KERNEL_FEATURES[0]!.file;
const parser = findParser();
const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cj-apparmor-'));
  dirs.push(dir);
  return dir;
}

const fakeCommand: CommandProfile = {
  name: 'py',
  kind: 'python',
  warm: false,
  preload: [],
  path: '/opt/py/bin/python3',
  executable: '/opt/py/bin/python3.12',
  args: [],
  env: {},
  execute: ['/opt/py/bin/python3.12', '/lib64/ld-linux-x86-64.so.2'],
  read: ['/opt/py/lib/python3.12', '/opt/py/lib/python3.12/site-packages', '/usr/lib/x86_64-linux-gnu', '/etc/ld.so.cache'],
};

describe('AppArmor rendering', () => {
  it('fills every variable from the config and the discovered commands', () => {
    const config = parseConfig({ runBase: '/srv/cj/runs/', socket: { path: '/run/cj/cj.sock' } });
    const vars = apparmorVariables(config, [fakeCommand]);
    expect(vars.CODEJAIL_RUNBASE).toEqual(['/srv/cj/runs']);
    expect(vars.CODEJAIL_EXEC).toEqual(['/lib64/ld-linux-x86-64.so.2', '/opt/py/bin/python3.12']);
    expect(vars.CODEJAIL_PYTHON_PREFIX).toEqual(['/opt/py/lib/python3.12', '/opt/py/lib/python3.12/site-packages']);
    expect(vars.CODEJAIL_READ).toEqual(['/etc/ld.so.cache', '/usr/lib/x86_64-linux-gnu']);
    expect(vars.CODEJAIL_SOCKET_DIR).toEqual(['/run/cj']);
    const files = renderAppArmor(vars, 'my-sandbox');
    const tunables = files.find((f) => f.name === 'tunables/codejail')!.contents;
    expect(tunables).toContain('@{CODEJAIL_RUNBASE}=/srv/cj/runs\n');
    const sandbox = files.find((f) => f.name === 'my-sandbox')!.contents;
    expect(sandbox).toMatch(/^profile my-sandbox flags=\(enforce\) \{$/m);
    expect(files.find((f) => f.name === 'codejaild')!.contents).toContain('change_profile unsafe @{CODEJAIL_EXEC} -> my-sandbox,');
  });

  it('refuses a path that would change the policy instead of escaping it', () => {
    const config = parseConfig({ runBase: '/srv/my runs' });
    expect(() => apparmorVariables(config, [])).toThrow(AppArmorSetupError);
    expect(() => apparmorVariables(config, [])).toThrow(/runBase: the path "\/srv\/my runs"/);
    const globbing = { ...fakeCommand, read: ['/opt/py/lib/*'] };
    expect(() => apparmorVariables(parseConfig({}), [globbing])).toThrow(/commands\.py \(read\)/);
  });

  it('installs under apparmor.d, loads every profile, and changes nothing on a second run', async () => {
    const etc = tempDir();
    const calls = path.join(etc, 'parser-calls');
    // A stand-in parser that records its arguments (the real one would load into the kernel).
    const parser = path.join(etc, 'fake-parser');
    fs.writeFileSync(parser, `#!/bin/sh\necho "$@" >> ${calls}\n`, { mode: 0o755 });
    const config = parseConfig({ apparmorProfile: 'acme-sandbox' });
    const options = { etcDir: path.join(etc, 'apparmor.d'), securityDir: etc, parser };
    const first = await installAppArmor(config, [fakeCommand], options);
    expect(first).toEqual([
      `installed AppArmor variables ${etc}/apparmor.d/tunables/codejail`,
      `installed AppArmor profile ${etc}/apparmor.d/acme-sandbox`,
      `installed AppArmor profile ${etc}/apparmor.d/codejaild`,
      'loaded AppArmor profile acme-sandbox (apparmor_parser -r)',
      'loaded AppArmor profile codejaild (apparmor_parser -r)',
    ]);
    expect(fs.readFileSync(calls, 'utf8')).toBe(`-r ${etc}/apparmor.d/acme-sandbox\n-r ${etc}/apparmor.d/codejaild\n`);
    const second = await installAppArmor(config, [fakeCommand], options);
    expect(second.slice(0, 3).every((line) => line.startsWith('found '))).toBe(true);
    expect(fs.readdirSync(path.join(etc, 'apparmor.d')).sort()).toEqual(['acme-sandbox', 'codejaild', 'tunables']);
  });

  it('names the parser\'s complaint when loading fails', async () => {
    const etc = tempDir();
    const parser = path.join(etc, 'failing-parser');
    fs.writeFileSync(parser, '#!/bin/sh\necho "AppArmor parser error at line 3: bad rule" >&2\nexit 1\n', { mode: 0o755 });
    await expect(installAppArmor(parseConfig({}), [fakeCommand], { etcDir: path.join(etc, 'd'), securityDir: etc, parser })).rejects.toThrow(
      /failing-parser -r .*codejail-sandbox failed: AppArmor parser error at line 3: bad rule/,
    );
  });

  it('does nothing but say so when the kernel has no AppArmor', async () => {
    const etc = tempDir();
    const report = await installAppArmor(parseConfig({ layers: { apparmor: 'required' } }), [fakeCommand], {
      etcDir: etc,
      securityDir: path.join(etc, 'no-such-securityfs'),
    });
    expect(report).toHaveLength(1);
    expect(report[0]).toMatch(/not enabled in this kernel.*codejaild will refuse to start/);
    expect(fs.readdirSync(etc)).toEqual([]);
  });
});

describe('the kernels\' AppArmor feature sets', () => {
  // What 6.12 (AppArmor 4's kernel side) can mediate that 6.1 cannot. None of it applies to the
  // shipped profiles: they pin abi 3.0 (the parser compiles them to 3.0's features, and the kernel
  // enforces only what a policy declares), so they confine the same on both kernels; a profile
  // moving to abi 4.0 would take on userns creation (namespaces/mask userns_create), io_uring and
  // the other additions below, and must then be proven on 6.12 for each.
  it('6.12 adds userns, io_uring and move_mount mediation, and removes nothing of 6.1', () => {
    const [old, current] = KERNEL_FEATURES.map(({ file }) => featureDirectories(fs.readFileSync(file, 'utf8')));
    // The topmost directories of `a` that `b` lacks (a new directory's own contents are not repeated).
    const onlyIn = (a: Set<string>, b: Set<string>) =>
      [...a].filter((d) => !b.has(d) && (!d.includes('/') || b.has(d.slice(0, d.lastIndexOf('/'))))).sort();
    expect(onlyIn(current!, old!)).toEqual([
      'domain/disconnected.path',
      'io_uring',
      'mount/move_mount',
      'namespaces/mask',
      'policy/permstable32',
      'policy/permstable32_version',
      'policy/unconfined_restrictions',
    ]);
    expect(onlyIn(old!, current!)).toEqual([]);
    expect(fs.readFileSync(KERNEL_FEATURES[1]!.file, 'utf8')).toMatch(/namespaces \{mask \{userns_create\s*\}/);
  });

  it('the shipped profiles pin abi 3.0', () => {
    for (const name of ['codejail-sandbox', 'codejaild']) {
      expect(fs.readFileSync(path.join(HERE, '../../apparmor', name), 'utf8')).toMatch(/^abi <abi\/3\.0>,$/m);
    }
  });
});

describe.skipIf(!parser)('AppArmor profile syntax (apparmor_parser -Q -K)', () => {
  // Two renderings: this host's real interpreter discovery with the default config, and the
  // made-up command with a renamed sandbox profile and unusual paths.
  const cases: Array<[string, () => { files: ReturnType<typeof renderAppArmor> }]> = [
    [
      'this host, default config',
      () => {
        const config = parseConfig({});
        const commands = discoverCommands(config, silentLogger);
        return { files: renderAppArmor(apparmorVariables(config, commands.values()), config.apparmorProfile) };
      },
    ],
    [
      'renamed profile, custom paths',
      () => {
        const config = parseConfig({ runBase: '/srv/cj-runs', apparmorProfile: 'acme.sandbox-2' });
        return { files: renderAppArmor(apparmorVariables(config, [fakeCommand]), config.apparmorProfile) };
      },
    ],
  ];

  for (const [label, render] of cases) {
    for (const { kernel, file: features } of KERNEL_FEATURES) {
      it(`compiles every profile for ${kernel}: ${label}`, async () => {
        const dir = tempDir();
        const { files } = render();
        await writeRendered(dir, files);
        const profiles = files.filter((f) => f.profile);
        expect(profiles.map((f) => f.name)).toContain('codejaild');
        for (const file of profiles) {
          // -M: the kernel's features as the policy's too; --kernel-features: the profile's own
          // abi (abi/3.0) compiled for that kernel, as loading it there does.
          expect(() => checkProfileSyntax(dir, file.name, parser, ['-M', features]), `${file.name} -M`).not.toThrow();
          expect(() => checkProfileSyntax(dir, file.name, parser, ['--kernel-features', features]), `${file.name} --kernel-features`).not.toThrow();
        }
      });
    }
  }

  it('reports a broken profile with the parser\'s own message', async () => {
    const dir = tempDir();
    await writeRendered(dir, [{ name: 'broken', contents: 'profile broken {\n  /etc/foo rrw_bogus,\n}\n', profile: true }]);
    expect(() => checkProfileSyntax(dir, 'broken', parser, ['-M', FEATURES])).toThrow(/broken.*line 2/s);
  });
});

if (!parser) {
  // Visible in the test output, not only as a skipped describe.
  console.warn('test/apparmor: apparmor_parser is not installed, the syntax check is SKIPPED (Debian: apt-get install apparmor)');
}
