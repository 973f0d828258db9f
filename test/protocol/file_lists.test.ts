// The files and extraFiles lists are checked by one function over each list (src/protocol/schema.ts,
// for speed: zod's arrays cost 2-9 us an entry, on each side of the socket). These pin that a bad
// list is refused with the message zod's own array of the entry schema gave, at the same path.
import { z } from 'zod';
import { describe, expect, it } from 'vitest';
import { fileEntry, MAX_EXTRA_FILES, MAX_FILE_ENTRIES, plainName, request, validateFirstIssue } from '../../src/protocol/schema.js';

const bytes = Buffer.from('x');
const asZodArrays = z.object({
  files: z.array(fileEntry).max(MAX_FILE_ENTRIES).default([]),
  extraFiles: z
    .array(z.tuple([plainName, z.custom<Uint8Array>((v) => v instanceof Uint8Array, { message: 'expected bytes' })]))
    .max(MAX_EXTRA_FILES)
    .default([]),
});

function viaRequest(fields: Record<string, unknown>): string | undefined {
  const checked = validateFirstIssue(request, { v: 1, id: 1, op: 'jail_code', command: 'python', ...fields });
  return checked.success ? undefined : checked.message;
}

function viaZodArrays(fields: Record<string, unknown>): string | undefined {
  const checked = asZodArrays.safeParse(fields);
  if (checked.success) return undefined;
  const issue = checked.error.issues[0]!;
  return `${issue.path.join('.')}: ${issue.message}`;
}

const good = { type: 'file', name: 'a/b.py', data: bytes };
const cases: Array<[string, Record<string, unknown>]> = [
  ['well-formed entries of each type', { files: [good, { type: 'file', name: 'x', data: bytes, executable: true }, { type: 'dir', name: 'd' }, { type: 'symlink', name: 's', target: '/etc' }], extraFiles: [['e', bytes]] }],
  ['executable given as undefined', { files: [{ ...good, executable: undefined }] }],
  ['files not a list', { files: 'x' }],
  ['files null', { files: null }],
  ['an entry not an object', { files: [good, 7] }],
  ['an entry a list', { files: [[1, 2]] }],
  ['an unknown type', { files: [{ type: 'fifo', name: 'p' }] }],
  ['no type', { files: [{ name: 'p', data: bytes }] }],
  ['an unknown key', { files: [{ ...good, mode: 0o777 }] }],
  ['a __proto__ key', { files: [JSON.parse('{"type":"dir","name":"d","__proto__":{"x":1}}')] }],
  ['a dir with data', { files: [{ type: 'dir', name: 'd', data: bytes }] }],
  ['data not bytes', { files: [{ ...good, data: 'text' }] }],
  ['executable not a boolean', { files: [{ ...good, executable: 1 }] }],
  ['an absolute name', { files: [{ ...good, name: '/etc/passwd' }] }],
  ['a ".." component', { files: [good, { ...good, name: 'a/../../x' }] }],
  ['an empty name', { files: [{ ...good, name: '' }] }],
  ['a name too long', { files: [{ ...good, name: 'n'.repeat(4097) }] }],
  ['a name not a string', { files: [{ ...good, name: 5 }] }],
  ['a symlink without a target', { files: [{ type: 'symlink', name: 's' }] }],
  ['a symlink with an empty target', { files: [{ type: 'symlink', name: 's', target: '' }] }],
  ['too many files', { files: Array(MAX_FILE_ENTRIES + 1).fill({ type: 'dir', name: 'd' }) }],
  ['extraFiles not a list', { extraFiles: {} }],
  ['an extra file with a "/"', { extraFiles: [['e', bytes], ['a/b', bytes]] }],
  ['an extra file of three', { extraFiles: [['a', bytes, 1]] }],
  ['an extra file of one', { extraFiles: [['a']] }],
  ['an extra file not bytes', { extraFiles: [['a', 'text']] }],
  ['an extra file named "."', { extraFiles: [['.', bytes]] }],
  ['an extra file named with a number', { extraFiles: [[1, bytes]] }],
  ['too many extra files', { extraFiles: Array(MAX_EXTRA_FILES + 1).fill(['a', bytes]) }],
];

describe('the files and extraFiles lists', () => {
  it.each(cases)('%s: refused (or not) as zod arrays of the entry schemas did', (_, fields) => {
    expect(viaRequest(fields)).toBe(viaZodArrays(fields));
  });
});
