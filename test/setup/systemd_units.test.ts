// The units `codejail setup --systemd` renders, for installs in the places a clone or an
// `npm i -g` (node from nvm included) ends up: ProtectHome= and PrivateTmp= must not hide what the
// service runs.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/daemon/config.js';
import { installOwnershipProblem, installPaths, installSystemdUnits, withInstallPaths } from '../../src/setup/systemd_units.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const shipped = (name: string) => fs.readFileSync(path.join(root, 'systemd', name), 'utf8');
const key = (unit: string, name: string) => unit.split('\n').filter((line) => line.startsWith(`${name}=`));

describe('withInstallPaths', () => {
  for (const name of ['codejaild.service', 'codejail-http.service']) {
    it(`${name}: an install beneath /opt or /usr/local keeps the shipped unit as it is`, () => {
      expect(withInstallPaths(shipped(name), name, ['/opt/codejail', '/usr/local/bin/node'])).toBe(shipped(name));
    });

    it(`${name}: an install and a node (nvm) beneath /root are bound read-only, home directories an empty tmpfs`, () => {
      const unit = withInstallPaths(shipped(name), name, ['/root/codejail', '/root/.nvm/versions/node/v22.12.0/bin/node']);
      expect(key(unit, 'ProtectHome')).toEqual(['ProtectHome=tmpfs']);
      expect(key(unit, 'BindReadOnlyPaths')).toEqual(['BindReadOnlyPaths=/root/codejail /root/.nvm/versions/node/v22.12.0/bin/node']);
      expect(key(unit, 'PrivateTmp')).toEqual(['PrivateTmp=yes']);
      // Beside ProtectHome=, in [Service].
      const lines = unit.split('\n');
      expect(lines[lines.indexOf('ProtectHome=tmpfs') + 1]).toMatch(/^BindReadOnlyPaths=/);
    });

    it(`${name}: only what lies beneath a home directory is bound`, () => {
      const unit = withInstallPaths(shipped(name), name, ['/home/ana/src/codejail', '/usr/bin/node']);
      expect(key(unit, 'BindReadOnlyPaths')).toEqual(['BindReadOnlyPaths=/home/ana/src/codejail']);
    });

    it(`${name}: an install beneath /tmp or /var/tmp is refused, naming the path and why`, () => {
      for (const where of ['/tmp/codejail', '/var/tmp/x/codejail']) {
        expect(() => withInstallPaths(shipped(name), name, [where, '/usr/bin/node'])).toThrow(
          `${name} cannot run ${where}: it is beneath ${where.startsWith('/tmp') ? '/tmp' : '/var/tmp'}, which PrivateTmp=yes replaces with the service's own`,
        );
      }
    });
  }

  it('escapes a systemd specifier and refuses what the path list cannot carry', () => {
    expect(key(withInstallPaths(shipped('codejaild.service'), 'codejaild.service', ['/home/a/50%/codejail']), 'BindReadOnlyPaths')).toEqual([
      'BindReadOnlyPaths=/home/a/50%%/codejail',
    ]);
    expect(() => withInstallPaths(shipped('codejaild.service'), 'codejaild.service', ['/home/a/my code'])).toThrow(/white space, a colon/);
  });
});

describe('installSystemdUnits', () => {
  it('writes the bound paths into codejaild.service and says so', async () => {
    const unitDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cj-units-'));
    try {
      const report = await installSystemdUnits(parseConfig({}), {
        unitDir,
        systemctl: false,
        installPaths: ['/root/codejail', '/root/.nvm/versions/node/v24.1.0/bin/node'],
      });
      expect(report).toContain(
        'codejaild.service: ProtectHome=tmpfs and BindReadOnlyPaths=/root/codejail /root/.nvm/versions/node/v24.1.0/bin/node (what it runs is beneath a home directory)',
      );
      const unit = fs.readFileSync(path.join(unitDir, 'codejaild.service'), 'utf8');
      expect(key(unit, 'BindReadOnlyPaths')).toEqual(['BindReadOnlyPaths=/root/codejail /root/.nvm/versions/node/v24.1.0/bin/node']);
    } finally {
      fs.rmSync(unitDir, { recursive: true, force: true });
    }
  });

  it('refuses an install beneath /tmp before writing anything', async () => {
    const unitDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cj-units-'));
    try {
      await expect(installSystemdUnits(parseConfig({}), { unitDir, systemctl: false, installPaths: ['/tmp/codejail', '/usr/bin/node'] })).rejects.toThrow(
        /codejaild\.service cannot run \/tmp\/codejail/,
      );
      expect(fs.readdirSync(unitDir)).toEqual([]);
    } finally {
      fs.rmSync(unitDir, { recursive: true, force: true });
    }
  });

  it('installPaths: this package and the node running it, resolved', () => {
    expect(installPaths()).toEqual([...new Set([fs.realpathSync(root), fs.realpathSync(process.execPath)])]);
  });
});

// Hostile review: a root unit that runs an install another user owns hands that user root at the
// next start (the read-only binding only keeps the service from writing it).
describe.skipIf(process.getuid?.() !== 0)('installOwnershipProblem', () => {
  const make = () => {
    const top = fs.mkdtempSync(path.join('/var/lib', 'cj-owner-'));
    fs.chmodSync(top, 0o755);
    const install = path.join(top, 'codejail');
    fs.mkdirSync(path.join(install, 'dist'), { recursive: true, mode: 0o755 });
    fs.writeFileSync(path.join(install, 'dist', 'main.js'), '', { mode: 0o644 });
    return { top, install };
  };

  it('allow_root_owned_install_not_writable_by_others', () => {
    const { top, install } = make();
    try {
      expect(installOwnershipProblem([install])).toBeUndefined();
    } finally {
      fs.rmSync(top, { recursive: true, force: true });
    }
  });

  it('deny_install_with_a_file_another_user_owns', () => {
    const { top, install } = make();
    try {
      fs.chownSync(path.join(install, 'dist', 'main.js'), 1000, 1000);
      expect(installOwnershipProblem([install])).toBe(`${install}/dist/main.js is owned by uid 1000, not root`);
    } finally {
      fs.rmSync(top, { recursive: true, force: true });
    }
  });

  it('deny_install_beneath_a_directory_others_may_write', () => {
    const { top, install } = make();
    try {
      fs.chmodSync(top, 0o775);
      expect(installOwnershipProblem([install])).toBe(`${top} may be written by its group (mode 775)`);
      fs.chmodSync(top, 0o755);
      fs.chmodSync(path.join(install, 'dist'), 0o757);
      expect(installOwnershipProblem([install])).toBe(`${install}/dist may be written by anyone (mode 757)`);
    } finally {
      fs.rmSync(top, { recursive: true, force: true });
    }
  });
});
