import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { DEFAULT_LIMITS } from '../../src/protocol/index.js';
import { defaultConfig, loadConfig, parseConfig } from '../../src/daemon/config.js';

describe('config', () => {
  it('has the documented defaults', () => {
    const c = defaultConfig();
    expect(c.socket).toEqual({ path: '/run/codejail/codejail.sock', group: 'codejail', mode: 0o660 });
    expect(c.slots).toEqual({ firstUid: 61000, count: 16 });
    expect(c.defaultLimits).toEqual(DEFAULT_LIMITS);
    expect(c.ceilings.VMEM).toBe(0);
    expect(c.layers).toEqual({ uid: 'required', rlimits: 'required', landlock: 'required', seccomp: 'required', netns: 'required', mntns: 'required', apparmor: 'auto', cgroups: 'auto', disk: 'required' });
    expect(c.commands.python).toMatchObject({ path: '/usr/bin/python3', args: ['-E', '-B'] });
  });

  it('overlays a partial file on the defaults, and takes octal modes as strings', () => {
    const c = parseConfig({ socket: { mode: '0600' }, defaultLimits: { CPU: 2 }, layers: { netns: 'auto' } });
    expect(c.socket.mode).toBe(0o600);
    expect(c.socket.group).toBe('codejail');
    expect(c.defaultLimits).toEqual({ ...DEFAULT_LIMITS, CPU: 2 });
    expect(c.layers.netns).toBe('auto');
  });

  it('names the bad key and the reason', () => {
    expect(() => parseConfig({ slots: { count: 'many' } })).toThrow(/slots\.count: Expected number/);
    expect(() => parseConfig({ layers: { seccomp: 'maybe' } })).toThrow(/layers\.seccomp/);
    expect(() => parseConfig({ unknownKey: 1 })).toThrow(/unknownKey/);
    expect(() => parseConfig({ slots: { firstUid: 0 } })).toThrow(/slots\.firstUid/);
    expect(() => parseConfig({ defaultLimits: { CPU: 100 } })).toThrow(/defaultLimits: .*CPU 100 exceeds the ceiling of 60/);
  });

  it('fails on an explicit file that is missing or invalid, naming it', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cj-config-'));
    try {
      expect(() => loadConfig(path.join(dir, 'missing.json'))).toThrow(/missing\.json: cannot be read \(ENOENT\)/);
      fs.writeFileSync(path.join(dir, 'bad.json'), '{');
      expect(() => loadConfig(path.join(dir, 'bad.json'))).toThrow(/bad\.json: is not valid JSON/);
      fs.writeFileSync(path.join(dir, 'ok.json'), JSON.stringify({ queueMax: 3 }));
      expect(loadConfig(path.join(dir, 'ok.json')).queueMax).toBe(3);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('config: connection caps', () => {
  it('has defaults, the byte caps derived from maxFrameBytes', () => {
    expect(defaultConfig().connections).toEqual({
      max: 1024,
      perUid: 64,
      idleTimeoutMs: 300_000,
      frameTimeoutMs: 30_000,
      maxBufferedBytes: 128 * 1024 * 1024,
      totalBufferedBytes: 256 * 1024 * 1024,
      perUidBufferedBytes: 128 * 1024 * 1024,
    });
    expect(parseConfig({ maxFrameBytes: 1024 * 1024 }).connections).toMatchObject({
      maxBufferedBytes: 2 * 1024 * 1024,
      totalBufferedBytes: 4 * 1024 * 1024,
      perUidBufferedBytes: 2 * 1024 * 1024,
    });
    // Half the total, but one frame at least.
    expect(parseConfig({ maxFrameBytes: 1024 * 1024, connections: { totalBufferedBytes: 1024 * 1024 + 4 } }).connections.perUidBufferedBytes).toBe(1024 * 1024 + 4);
    expect(parseConfig({ connections: { maxBufferedBytes: 512 * 1024 * 1024 } }).connections.totalBufferedBytes).toBe(512 * 1024 * 1024);
  });

  it('refuses byte caps that cannot hold one frame, and names the key', () => {
    expect(() => parseConfig({ maxFrameBytes: 1024 * 1024, connections: { maxBufferedBytes: 1024 * 1024 } })).toThrow(
      /connections\.maxBufferedBytes: must be at least maxFrameBytes \+ 4 \(1048580\)/,
    );
    expect(() => parseConfig({ connections: { maxBufferedBytes: 200 * 1024 * 1024, totalBufferedBytes: 100 * 1024 * 1024 } })).toThrow(
      /connections\.totalBufferedBytes: must be at least connections\.maxBufferedBytes/,
    );
    expect(() => parseConfig({ maxFrameBytes: 1024 * 1024, connections: { perUidBufferedBytes: 1024 * 1024 } })).toThrow(
      /connections\.perUidBufferedBytes: must be at least maxFrameBytes \+ 4 \(1048580\)/,
    );
    expect(() => parseConfig({ maxFrameBytes: 1024 * 1024, connections: { perUidBufferedBytes: 5 * 1024 * 1024 } })).toThrow(
      /connections\.perUidBufferedBytes: must be at most connections\.totalBufferedBytes \(4194304\)/,
    );
    expect(() => parseConfig({ connections: { max: 0 } })).toThrow(/connections\.max/);
    expect(() => parseConfig({ connections: { idle: 5 } })).toThrow(/idle/);
  });
});
