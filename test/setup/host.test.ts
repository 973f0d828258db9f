// `codejail setup`'s accounts, made in a temporary etc/ (groupadd and useradd --prefix), never the
// host's: several configurations on one host, existing installs, and ids that are someone else's.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/daemon/config.js';
import { detectLayers } from '../../src/layers/index.js';
import { silentLogger } from '../../src/log.js';
import { setupAccounts } from '../../src/setup/host.js';

const isRoot = process.getuid?.() === 0;
const config = (firstUid: number, count: number) =>
  parseConfig({ slots: { firstUid, count }, layers: { apparmor: 'off', cgroups: 'off', netns: 'off', mntns: 'off', disk: 'off' } });
const fakeAddon = { landlockAbi: () => 7, seccompSupported: () => true, createNamespace: () => 42, closeFd: () => {} } as never;

let prefix: string;
const etc = (file: string) => path.join(prefix, 'etc', file);
const accounts = (file: string) =>
  readFileSync(etc(file), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => line.split(':').slice(0, 3).join(':'));
/** The uid layer's probe at daemon start, against the temporary passwd. */
const probe = (firstUid: number, count: number) =>
  detectLayers(config(firstUid, count), { addon: fakeAddon, log: silentLogger, unsafe: false, isRoot: true, passwd: readFileSync(etc('passwd'), 'utf8') })
    .report.uid;

beforeEach(() => {
  prefix = mkdtempSync(path.join(tmpdir(), 'cj-setup-'));
  mkdirSync(path.join(prefix, 'etc'));
  for (const file of ['passwd', 'group', 'shadow', 'gshadow']) writeFileSync(etc(file), '');
});

afterEach(() => {
  rmSync(prefix, { recursive: true, force: true });
});

describe.skipIf(!isRoot)('setupAccounts', () => {
  it('support_setup_two_ranges: a second configuration with another slot range sets up beside the first', () => {
    expect(setupAccounts(config(61000, 2), { prefix })).toEqual([
      'created group codejail',
      'created group codejail-61000 (gid 61000)',
      'created user codejail-61000 (uid 61000)',
      'created group codejail-61001 (gid 61001)',
      'created user codejail-61001 (uid 61001)',
    ]);
    expect(setupAccounts(config(62000, 2), { prefix })).toEqual([
      expect.stringMatching(/^found group codejail \(gid \d+\)$/),
      'created group codejail-62000 (gid 62000)',
      'created user codejail-62000 (uid 62000)',
      'created group codejail-62001 (gid 62001)',
      'created user codejail-62001 (uid 62001)',
    ]);
    // Again, idempotently, for both.
    expect(setupAccounts(config(61000, 2), { prefix }).slice(1)).toEqual([
      'found group codejail-61000 (gid 61000)',
      'found user codejail-61000 (uid 61000)',
      'found group codejail-61001 (gid 61001)',
      'found user codejail-61001 (uid 61001)',
    ]);
    expect(setupAccounts(config(62000, 2), { prefix }).slice(1).every((line) => line.startsWith('found'))).toBe(true);
    expect(accounts('passwd')).toEqual(['codejail-61000:x:61000', 'codejail-61001:x:61001', 'codejail-62000:x:62000', 'codejail-62001:x:62001']);
    // And each daemon's uid probe accepts its own range.
    expect(probe(61000, 2)).toBe('active (2 slots from uid 61000)');
    expect(probe(62000, 2)).toBe('active (2 slots from uid 62000)');
  });

  it('allow_setup_legacy_names: an install whose slots are named codejail-s<i> keeps working and can grow', () => {
    writeFileSync(etc('group'), 'codejail:x:990:\ncodejail-s0:x:61000:\ncodejail-s1:x:61001:\n');
    writeFileSync(etc('passwd'), 'codejail-s0:x:61000:61000::/nonexistent:/usr/sbin/nologin\ncodejail-s1:x:61001:61001::/nonexistent:/usr/sbin/nologin\n');
    expect(probe(61000, 2)).toBe('active (2 slots from uid 61000)');
    expect(setupAccounts(config(61000, 3), { prefix })).toEqual([
      'found group codejail (gid 990)',
      'found group codejail-s0 (gid 61000, the name an earlier setup gave slot 0)',
      'found user codejail-s0 (uid 61000, the name an earlier setup gave slot 0)',
      'found group codejail-s1 (gid 61001, the name an earlier setup gave slot 1)',
      'found user codejail-s1 (uid 61001, the name an earlier setup gave slot 1)',
      'created group codejail-61002 (gid 61002)',
      'created user codejail-61002 (uid 61002)',
    ]);
    expect(probe(61000, 3)).toBe('active (3 slots from uid 61000)');
  });

  it("deny_setup_overlapping_range: a range over another configuration's slots is refused, naming them", () => {
    writeFileSync(etc('group'), 'codejail:x:990:\ncodejail-s0:x:61000:\ncodejail-s1:x:61001:\n');
    writeFileSync(etc('passwd'), 'codejail-s0:x:61000:61000::/nonexistent:/usr/sbin/nologin\ncodejail-s1:x:61001:61001::/nonexistent:/usr/sbin/nologin\n');
    // Slot 0 of this range is slot 1 of the installed one: codejail-s1 is not this slot's legacy name.
    expect(() => setupAccounts(config(61001, 2), { prefix })).toThrow(
      'gid 61001 already belongs to group codejail-s1 (a slot of another configuration: the slot ranges of daemons on one host must not overlap): change slots.firstUid',
    );
    expect(() => probe(61001, 2)).toThrow(/slot uid 61001 belongs to the account "codejail-s1", not "codejail-61001"/);
  });

  it("deny_setup_foreign_id: an id that belongs to someone else's account is refused before anything is created", () => {
    writeFileSync(etc('group'), 'users:x:100:\n');
    writeFileSync(etc('passwd'), 'bob:x:61001:100::/home/bob:/bin/sh\n');
    expect(() => setupAccounts(config(61000, 2), { prefix })).toThrow('uid 61001 already belongs to user bob: change slots.firstUid');
    expect(accounts('passwd')).toEqual(['bob:x:61001']);
    expect(accounts('group')).toEqual(['users:x:100']);
  });
});
