// The layer list is the one place a layer is registered: everything else that names layers (the
// config schema, the sabotage table, the test daemon's switches, the self-check) must follow it,
// so that a layer cannot be half-added.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { defaultConfig, parseConfig } from '../../src/daemon/config.js';
import { DETECTION_ORDER, LAYER_NAMES, LAYERS, SABOTAGE } from '../../src/layers/index.js';
import { DAEMON_LAYERS } from '../helpers/daemon.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
/** The suites scripts/sabotage.mjs runs (npm test, npm run sabotage), and the VM suite's own passes. */
const SABOTAGE_SUITES = ['test/native', 'test/e2e', 'test/hostile', 'test/vm'];

function testSources(dirs: string[]): string {
  const texts: string[] = [];
  const walk = (dir: string) => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.name.endsWith('.test.ts')) texts.push(fs.readFileSync(full, 'utf8'));
    }
  };
  for (const dir of dirs) walk(path.join(root, dir));
  return texts.join('\n');
}

describe('layer registry', () => {
  it('support_registry_config: the config has one layers key per layer, defaulting to its defaultMode, and no other', () => {
    const modes = defaultConfig().layers;
    expect(Object.keys(modes)).toEqual(LAYER_NAMES);
    for (const layer of LAYERS) expect(modes[layer.name]).toBe(layer.defaultMode);
    expect(() => parseConfig({ layers: { nosuchlayer: 'off' } })).toThrow(/layers: Unrecognized key\(s\) in object: 'nosuchlayer'/);
    expect(() => parseConfig({ layers: { landlock: 'sometimes' } })).toThrow(/layers\.landlock/);
  });

  it('support_registry_modules: each layer is a module named after it in src/layers/', () => {
    for (const name of LAYER_NAMES) expect(fs.existsSync(path.join(root, 'src/layers', `${name}.ts`)), name).toBe(true);
    expect(new Set(LAYER_NAMES).size).toBe(LAYER_NAMES.length);
  });

  it('support_registry_order: every layer named in `after` exists and is detected before the one naming it', () => {
    const position = (name: string) => DETECTION_ORDER.findIndex((layer) => layer.name === name);
    for (const layer of LAYERS) {
      for (const name of layer.after ?? []) {
        expect(LAYER_NAMES, `${layer.name} after ${name}`).toContain(name);
        expect(position(name), `${name} before ${layer.name}`).toBeLessThan(position(layer.name));
      }
    }
    // uid first (its warning heads the journal); the run base shared before the mount namespace
    // copies it; the layers that keep fds last.
    expect(DETECTION_ORDER[0]!.name).toBe('uid');
    expect(position('disk')).toBeLessThan(position('mntns'));
    expect(position('mntns')).toBeLessThan(position('netns'));
  });

  it('support_registry_sabotage: every sabotage switch has deny tests in the sabotaged suites, and the test daemon honours each layer switch', () => {
    const sources = testSources(SABOTAGE_SUITES);
    for (const [name, prefix] of Object.entries(SABOTAGE)) {
      expect(prefix, name).toMatch(/^deny_[a-z]+$/);
      expect(new RegExp(`\\bit\\(\\s*['"\`]${prefix}`).test(sources), `no ${prefix}* test in ${SABOTAGE_SUITES.join(' ')}`).toBe(true);
    }
    expect([...DAEMON_LAYERS]).toEqual(LAYER_NAMES);
    // A switch is a layer's name, an extra part a layer declares (uid: 'kill', the uid sweep), or
    // several layers off at once (netns: 'landlock,netns,seccomp', the network's three walls).
    const layerSwitches = Object.keys(SABOTAGE).filter((name) => (LAYER_NAMES as readonly string[]).includes(name));
    expect(layerSwitches.length).toBeGreaterThan(0);
    for (const name of Object.keys(SABOTAGE)) {
      const owners = LAYERS.filter((layer) => layer.sabotage && name in layer.sabotage);
      expect(owners.length, name).toBe(1);
    }
  });

  it('support_registry_sabotage_script: scripts/sabotage.mjs reads its table from the compiled registry, and dist/ is current', async () => {
    const script = fs.readFileSync(path.join(root, 'scripts/sabotage.mjs'), 'utf8');
    expect(script).toContain("import('../dist/layers/index.js')");
    expect(script).not.toMatch(/deny_[a-z]+'/);
    const compiled = (await import(path.join(root, 'dist/layers/index.js'))) as { SABOTAGE: unknown; LAYER_NAMES: unknown };
    expect(compiled.SABOTAGE).toEqual(SABOTAGE);
    expect(compiled.LAYER_NAMES).toEqual(LAYER_NAMES);
  });

  it('support_registry_probes: each self-check probe has a distinct name and is enforced by at least one layer', () => {
    const distinct = new Set(LAYERS.flatMap((layer) => layer.probes ?? []));
    expect(new Set([...distinct].map((probe) => probe.name)).size).toBe(distinct.size);
    const probes = new Map<string, string[]>();
    for (const layer of LAYERS) for (const probe of layer.probes ?? []) probes.set(probe.name, [...(probes.get(probe.name) ?? []), layer.name]);
    expect(probes.size).toBe(4);
    expect(probes.get('reading /etc/passwd is denied')).toEqual(['landlock', 'apparmor']);
    expect(probes.get('creating an AF_INET socket is denied')).toEqual(['seccomp', 'apparmor']);
    expect(probes.get('executing /usr/bin/true with os.execv is denied')).toEqual(['landlock', 'apparmor']);
    expect(probes.get('executing /usr/bin/true with subprocess is denied')).toEqual(['landlock', 'apparmor']);
  });
});
