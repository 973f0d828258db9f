// What `npm pack` ships: everything a host needs to build and run codejail, and nothing that
// points at a file it does not ship (source maps naming src/, which is not in the tarball).
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

describe('the npm tarball', () => {
  // --ignore-scripts: listing must not rebuild dist/ under the other test files' feet.
  const listing = JSON.parse(execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: root, encoding: 'utf8' })) as Array<{
    files: Array<{ path: string }>;
  }>;
  const files = listing[0]!.files.map((f) => f.path);

  it('ships the bins, the addon sources, the profiles, the units, the harness, the warm template and the LICENSE', () => {
    for (const needed of ['dist/daemon/main.js', 'dist/cli/main.js', 'binding.gyp', 'native/confine.cc', 'apparmor/codejail-sandbox', 'systemd/codejaild.service', 'python/safe_exec_harness.py', 'python/warm_template.py', 'native/warm_apply.cc', 'LICENSE', 'README.md']) {
      expect(files).toContain(needed);
    }
  });

  it('ships no source map, and no JavaScript that names one', () => {
    expect(files.filter((f) => f.endsWith('.map'))).toEqual([]);
    const naming = files.filter((f) => f.endsWith('.js') && fs.readFileSync(path.join(root, f), 'utf8').includes('sourceMappingURL'));
    expect(naming).toEqual([]);
  });

  it('says which Node it supports: the majors `npm test` runs on, from the floor the toolchain needs (node-gyp 12: 20.17, 22.9)', () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { engines: { node: string }; license: string; scripts: { test: string } };
    expect(pkg.engines.node).toBe('^20.17.0 || ^22.9.0 || ^24.0.0');
    const script = fs.readFileSync(path.join(root, 'scripts/test-node-versions.sh'), 'utf8');
    expect(script).toContain('CODEJAIL_EXTRA_NODE_MAJORS-22 24');
    expect(pkg.scripts.test).toMatch(/&& scripts\/test-node-versions\.sh( &&|$)/);
    expect(pkg.license).toBe('AGPL-3.0-only');
    expect(fs.readFileSync(path.join(root, 'LICENSE'), 'utf8')).toMatch(/^GNU AFFERO GENERAL PUBLIC LICENSE\nVersion 3/);
  });
});
