// `codejail setup --systemd --http`'s part: the codejail-http user (made in a temporary etc/,
// useradd --prefix, never the host's) and codejail-http.service written for this installation.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/daemon/config.js';
import { installHttpUnit } from '../../src/setup/systemd_units.js';

const isRoot = process.getuid?.() === 0;
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

describe.skipIf(!isRoot)('codejail-http.service', () => {
  it('support_http_setup_installs_an_unprivileged_unit_in_the_socket_group', async () => {
    const prefix = fs.mkdtempSync(path.join(os.tmpdir(), 'cj-http-setup-'));
    const unitDir = path.join(prefix, 'units');
    try {
      fs.mkdirSync(path.join(prefix, 'etc'));
      for (const file of ['passwd', 'shadow', 'gshadow']) fs.writeFileSync(path.join(prefix, 'etc', file), '');
      fs.writeFileSync(path.join(prefix, 'etc', 'group'), 'cjtest:x:990:\n');
      const config = parseConfig({ socket: { path: '/run/cj-test/s.sock', group: 'cjtest', mode: '0660' } });
      // Wherever this checkout lies (beneath /tmp it would be refused: test/setup/systemd_units.test.ts).
      const installPaths = ['/opt/codejail'];
      const report = await installHttpUnit(config, { unitDir, prefix, systemctl: false, installPaths });
      expect(report[0]).toBe('created user codejail-http (in group cjtest)');
      expect(report[1]).toMatch(/^installed .*codejail-http\.service$/);
      expect(fs.readFileSync(path.join(prefix, 'etc', 'group'), 'utf8')).toMatch(/^cjtest:x:990:codejail-http$/m);
      const unit = fs.readFileSync(path.join(unitDir, 'codejail-http.service'), 'utf8');
      expect(unit).toContain(`\nExecStart=${process.execPath} ${path.join(root, 'dist/cli/main.js')} serve --socket /run/cj-test/s.sock\n`);
      expect(unit).toMatch(/^User=codejail-http$/m);
      expect(unit).toMatch(/^SupplementaryGroups=cjtest$/m);
      expect(unit).toMatch(/^NoNewPrivileges=yes$/m);
      expect(unit).toMatch(/^CapabilityBoundingSet=$/m);
      const again = await installHttpUnit(config, { unitDir, prefix, systemctl: false, installPaths });
      expect(again.slice(0, 2)).toEqual(['found user codejail-http', `unchanged ${path.join(unitDir, 'codejail-http.service')}`]);
    } finally {
      fs.rmSync(prefix, { recursive: true, force: true });
    }
  });

});
