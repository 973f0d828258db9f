// The safe_exec request and the run options (warm, profile) in the schema, and usage.stages in
// the result: what the daemon accepts and what a client may be sent.
import { describe, expect, it } from 'vitest';
import { DEFAULT_MAX_FRAME_BYTES, encodeFrame, FrameDecoder, RefusedFrame } from '../../src/protocol/frames.js';
import { jailCodeResult, MAX_EXTRA_FILES, MAX_FILE_ENTRIES, request as requestSchema, safeExecRequest, validateFirstIssue } from '../../src/protocol/schema.js';
import { REQUEST_SHAPE_LIMITS } from '../../src/protocol/shape.js';

const globals = Buffer.from('["d"]');
const safeExec = (fields: Record<string, unknown> = {}) => ({ v: 1, id: 1, op: 'safe_exec', code: 'a = 17', globals, ...fields });

describe('safe_exec request', () => {
  it('support_safe_exec_defaults: python, no python path, no files, the default limits', () => {
    const parsed = validateFirstIssue(requestSchema, safeExec());
    expect(parsed.success).toBe(true);
    expect(parsed.success && parsed.data).toMatchObject({
      op: 'safe_exec',
      command: 'python',
      code: 'a = 17',
      pythonPath: [],
      files: [],
      extraFiles: [],
      limits: {},
    });
  });

  it('support_safe_exec_takes_every_field', () => {
    const full = safeExec({
      command: 'python-numpy',
      pythonPath: ['pylib', 'bundle.zip'],
      files: [{ type: 'dir', name: 'pylib' }],
      extraFiles: [['bundle.zip', Buffer.from('PK')]],
      limits: { CPU: 2, VMEM: 0 },
      slug: 'grader-1',
      warm: false,
      profile: true,
    });
    expect(validateFirstIssue(requestSchema, full)).toEqual({ success: true, data: full });
  });

  it.each([
    [{ pythonPath: ['a/b'] }, 'pythonPath.0: must be a plain name, without "/"'],
    [{ pythonPath: ['..'] }, "pythonPath.0: must not contain empty, '.' or '..' components"],
    [{ pythonPath: [''] }, 'pythonPath.0: String must contain at least 1 character(s)'],
    [{ pythonPath: ['/usr/lib/python3'] }, 'pythonPath.0: must be relative'],
    [{ pythonPath: new Array(4097).fill('a') }, 'pythonPath: Array must contain at most 4096 element(s)'],
    [{ globals: '["d"]' }, 'globals: expected bytes'],
    [{ globals: undefined }, 'globals: expected bytes'],
    [{ code: Buffer.from('a = 1') }, 'code: Expected string, received object'],
    [{ code: undefined }, 'code: Required'],
    [{ command: '' }, 'command: String must contain at least 1 character(s)'],
    [{ warm: 'yes' }, 'warm: Expected boolean, received string'],
    [{ profile: 1 }, 'profile: Expected boolean, received number'],
    [{ argv: ['x'] }, "(request): Unrecognized key(s) in object: 'argv'"],
    [{ stdin: Buffer.from('x') }, "(request): Unrecognized key(s) in object: 'stdin'"],
    [{ resultChannel: true }, "(request): Unrecognized key(s) in object: 'resultChannel'"],
  ])('deny_bad_safe_exec_fields %j', (fields, message) => {
    expect(validateFirstIssue(requestSchema, safeExec(fields))).toEqual({ success: false, message });
  });

  it('support_largest_valid_safe_exec_passes_the_scan_and_the_schema', () => {
    // Built from the schema's own maxima, so that raising one without the caps fails here.
    const max = (schema: unknown) => ((schema as any)._def.innerType ?? schema)._def.maxLength.value as number;
    const shape = safeExecRequest.shape;
    const bytes = Buffer.alloc(1);
    const largest = {
      v: 1,
      id: 0xffffffff,
      op: 'safe_exec',
      command: 'python',
      code: 'a = 17',
      globals,
      pythonPath: Array.from({ length: max(shape.pythonPath) }, (_, i) => `p${i}`),
      files: Array.from({ length: MAX_FILE_ENTRIES }, (_, i) => ({ type: 'file', name: `f${i}`, data: bytes, executable: true })),
      extraFiles: Array.from({ length: MAX_EXTRA_FILES }, (_, i) => [`e${i}`, bytes]),
      limits: { CPU: 1, REALTIME: 1, VMEM: 0, FSIZE: 0, NPROC: 1, OUTPUT: 1 },
      slug: 's',
      warm: true,
      profile: true,
    };
    expect(Object.keys(largest)).toHaveLength(Object.keys(shape).length);
    const [decoded] = new FrameDecoder(DEFAULT_MAX_FRAME_BYTES, REQUEST_SHAPE_LIMITS).push(encodeFrame(largest));
    expect(decoded).not.toBeInstanceOf(RefusedFrame);
    expect(validateFirstIssue(requestSchema, decoded).success).toBe(true);
  });

  it('support_jail_code_takes_warm_and_profile', () => {
    const request = { v: 1, id: 1, op: 'jail_code', command: 'python', warm: false, profile: true };
    const parsed = validateFirstIssue(requestSchema, request);
    expect(parsed.success && parsed.data).toMatchObject({ warm: false, profile: true });
  });
});

describe('usage.stages', () => {
  const result = (usage: Record<string, unknown>) => ({
    runId: 'r',
    stdout: Buffer.alloc(0),
    stderr: Buffer.alloc(0),
    status: 0,
    truncated: false,
    timedOut: false,
    usage: { wallMs: 1, userMs: 0, systemMs: 0, ...usage },
    confinement: ['uid'],
    limits: {},
  });

  it('support_stages_absent_some_or_all', () => {
    expect(jailCodeResult.parse(result({})).usage.stages).toBeUndefined();
    expect(jailCodeResult.parse(result({ stages: { runMs: 0.4 } })).usage.stages).toEqual({ runMs: 0.4 });
    const all = { queueMs: 0, prepareMs: 0.2, startMs: 0.5, runMs: 0.1, resultMs: 0.05, cleanupMs: 0.3 };
    expect(jailCodeResult.parse(result({ stages: all })).usage.stages).toEqual(all);
  });

  it('deny_a_stage_that_is_not_a_number', () => {
    expect(jailCodeResult.safeParse(result({ stages: { runMs: '1' } })).success).toBe(false);
  });
});
