// Frames as a peer we do not control may send them: length limits, and msgpack that is valid
// but outside the protocol (msgpackr's own extension types) refused before any work is done.
import { describe, expect, it } from 'vitest';
import { DEFAULT_MAX_FRAME_BYTES, encodeFrame, FrameDecoder, FrameError, RefusedFrame } from '../../src/protocol/frames.js';
import { jailCodeRequest, MAX_EXTRA_FILES, MAX_FILE_ENTRIES, relativeName, request as requestSchema, validateFirstIssue } from '../../src/protocol/schema.js';
import { REQUEST_SHAPE_LIMITS, scanShape } from '../../src/protocol/shape.js';

function frame(body: number[]): Buffer {
  const header = Buffer.alloc(4);
  header.writeUInt32BE(body.length, 0);
  return Buffer.concat([header, Buffer.from(body)]);
}

describe('frames', () => {
  it('round-trips maps, arrays, strings, numbers and bytes, split across chunks', () => {
    const message = { v: 1, id: 7, op: 'jail_code', argv: ['a', 'é'], code: Buffer.from([0, 255]) };
    const bytes = encodeFrame(message);
    const decoder = new FrameDecoder();
    expect(decoder.push(bytes.subarray(0, 3))).toEqual([]);
    const [decoded] = decoder.push(bytes.subarray(3)) as Array<Record<string, unknown>>;
    expect({ ...decoded, code: Buffer.from(decoded!.code as Uint8Array) }).toEqual(message);
  });

  it('support_frames_before_a_bad_one_come_with_its_error', () => {
    // Issue 16 item 8: two valid frames and an empty one in one chunk; the valid ones are not lost.
    const chunk = Buffer.concat([encodeFrame({ v: 1, id: 7, op: 'status' }), encodeFrame({ v: 1, id: 8, op: 'bogus' }), Buffer.alloc(4)]);
    let thrown: unknown;
    try {
      new FrameDecoder().push(chunk);
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(FrameError);
    expect((thrown as FrameError).message).toBe('empty frame');
    expect((thrown as FrameError).complete).toEqual([
      { v: 1, id: 7, op: 'status' },
      { v: 1, id: 8, op: 'bogus' },
    ]);
  });

  it('a frame holds no more memory than its bytes and 64 KiB, and stays whole after the frames encoded next', () => {
    // The header goes in room msgpackr reserves and a large frame is sent from the buffer it was
    // packed in: what a connection holds must still be what its frames measure (the buffered
    // bytes budgets count frame lengths), large strings (msgpackr reserves 3 bytes a character)
    // and 2-4x growth included.
    const output = { v: 1, id: 1, ok: true, result: { stdout: Buffer.alloc(3_000_000, 7), stderr: Buffer.alloc(0) } };
    const text = { v: 1, id: 2, ok: true, result: { message: 'x'.repeat(2_000_000) } };
    const small = { v: 1, id: 3, op: 'status' };
    // A message that leaves the packer a buffer of nearly 1 MiB, which it keeps for the next ones.
    encodeFrame({ v: 1, id: 0, op: 'status', pad: Buffer.alloc(200_000) });
    const frames = [small, output, text, small, output, small].map((message) => encodeFrame(message));
    for (const frame of frames) {
      // Node's 8 KiB pool, for a small frame.
      expect(frame.buffer.byteLength).toBeLessThanOrEqual(Math.max(8192, frame.length + 64 * 1024));
      expect(frame.readUInt32BE(0)).toBe(frame.length - 4);
    }
    const copies = frames.map((frame) => Buffer.from(frame));
    for (let i = 0; i < 200; i++) encodeFrame({ v: 1, id: i, op: 'status', pad: 'y'.repeat(i) });
    frames.forEach((frame, i) => expect(frame.equals(copies[i]!)).toBe(true));
    const decoded = new FrameDecoder().push(Buffer.concat(frames)) as Array<{ id: number; result?: { stdout?: Uint8Array } }>;
    expect(decoded.map((message) => message.id)).toEqual([3, 1, 2, 3, 1, 3]);
    expect(Buffer.from(decoded[4]!.result!.stdout!).equals(output.result.stdout)).toBe(true);
  });

  it('refuses a frame announced larger than the maximum before buffering it', () => {
    const header = Buffer.alloc(4);
    header.writeUInt32BE(1025, 0);
    expect(() => new FrameDecoder(1024).push(header)).toThrow(new FrameError('frame of 1025 bytes exceeds the maximum of 1024'));
  });

  it('a large frame decodes the same split anywhere, assembled (a trusted peer) or joined, with the frames around it', () => {
    const large = { v: 1, id: 2, ok: true, result: { stdout: Buffer.alloc(700 * 1024, 5), stderr: Buffer.from('e') } };
    const stream = Buffer.concat([encodeFrame({ v: 1, id: 1, op: 'status' }), encodeFrame(large), encodeFrame({ v: 1, id: 3, op: 'status' })]);
    for (const trusted of [false, true]) {
      for (const size of [1, 3, 5, 4096, 65536, 300_000, stream.length]) {
        const decoder = new FrameDecoder(DEFAULT_MAX_FRAME_BYTES, undefined, trusted);
        const decoded: Array<{ id: number; result?: { stdout: Uint8Array } }> = [];
        for (let at = 0; at < stream.length; at += size) decoded.push(...(decoder.push(stream.subarray(at, at + size)) as typeof decoded));
        expect(decoded.map((message) => message.id), `trusted ${trusted}, chunks of ${size}`).toEqual([1, 2, 3]);
        expect(Buffer.from(decoded[1]!.result!.stdout).equals(large.result.stdout)).toBe(true);
        expect(decoder.pendingBytes).toBe(0);
      }
    }
  });

  it('deny_a_peer_announcing_a_large_frame_makes_a_server_allocate_it: only a trusted peer gets its buffer ahead', () => {
    // A server's decoder holds what came, not what was announced: 16 connections each announcing
    // 64 MiB and sending nothing more would otherwise cost a GiB.
    const header = Buffer.alloc(8);
    header.writeUInt32BE(60 * 1024 * 1024, 0);
    const held = (decoder: FrameDecoder) => {
      const before = process.memoryUsage().arrayBuffers;
      decoder.push(Buffer.from(header));
      const grown = process.memoryUsage().arrayBuffers - before;
      expect(decoder.pendingBytes).toBe(8);
      return grown;
    };
    expect(held(new FrameDecoder(DEFAULT_MAX_FRAME_BYTES, REQUEST_SHAPE_LIMITS))).toBeLessThan(1024 * 1024);
    expect(held(new FrameDecoder())).toBeLessThan(1024 * 1024);
    expect(held(new FrameDecoder(DEFAULT_MAX_FRAME_BYTES, undefined, true))).toBeGreaterThanOrEqual(60 * 1024 * 1024);
  });

  it('deny_a_byte_after_a_large_frame_keeps_the_frame_buffer: what is left is held in its own bytes', () => {
    // pendingBytes is what the daemon counts as held for a connection: a view of the joined
    // buffer would hold the whole previous frame while it counted 10 bytes.
    const held = (decoder: FrameDecoder) => (decoder as unknown as { chunks: Buffer[] }).chunks.reduce((sum, chunk) => sum + chunk.buffer.byteLength, 0);
    const decoder = new FrameDecoder(DEFAULT_MAX_FRAME_BYTES, REQUEST_SHAPE_LIMITS);
    const first = encodeFrame({ v: 1, id: 1, op: 'status', pad: Buffer.alloc(1024 * 1024) });
    decoder.push(first.subarray(0, 100_000));
    const [decoded] = decoder.push(Buffer.concat([first.subarray(100_000), encodeFrame({ v: 1, id: 2, op: 'status' }).subarray(0, 10)]));
    expect((decoded as { id: number }).id).toBe(1);
    expect(decoder.pendingBytes).toBe(10);
    expect(held(decoder)).toBe(10);
    // One read of frames each no larger than all that follows it (so no single frame is the
    // larger part), then 40 bytes of the next: what is left holds about its own bytes too.
    const tail = encodeFrame({ v: 1, id: 99, op: 'status', pad: Buffer.alloc(100) }).subarray(0, 40);
    const frames: Buffer[] = [];
    for (let id = 1, after = tail.length; after < 32_000; id++) {
      const pad = Math.max(0, after - 40);
      const next = encodeFrame({ v: 1, id, op: 'status', pad: Buffer.alloc(pad) });
      frames.unshift(next);
      after += next.length;
    }
    const read = Buffer.alloc(64 * 1024);
    const stream = Buffer.concat([...frames, tail]);
    stream.copy(read);
    const chained = new FrameDecoder(DEFAULT_MAX_FRAME_BYTES, REQUEST_SHAPE_LIMITS);
    expect(chained.push(read.subarray(0, stream.length))).toHaveLength(frames.length);
    expect(chained.pendingBytes).toBe(40);
    expect(held(chained)).toBeLessThanOrEqual(80);
  });

  it('support_a_bad_assembled_frame_leaves_what_came_after_it_counted, as a joined one does', () => {
    const bad = Buffer.alloc(4 + 300_000, 0);
    bad.writeUInt32BE(300_000, 0);
    bad[4] = 0xc1; // never used in msgpack
    const after = encodeFrame({ v: 1, id: 2, op: 'status' });
    for (const trusted of [false, true]) {
      const decoder = new FrameDecoder(DEFAULT_MAX_FRAME_BYTES, undefined, trusted);
      decoder.push(bad.subarray(0, 1000));
      expect(() => decoder.push(Buffer.concat([bad.subarray(1000), after]))).toThrow(FrameError);
      expect(decoder.pendingBytes, `trusted ${trusted}`).toBe(after.length);
    }
  });

  it.each([
    ['BigInt (0x42)', [0xd7, 0x42, 0, 0, 0, 0, 0, 0, 0, 1], 66],
    ['Set (0x73)', [0xd4, 0x73, 0x90], 115],
    ['timestamp (-1)', [0xd6, 0xff, 0, 0, 0, 0], -1],
  ])('refuses msgpackr extension type %s', (_name, body, type) => {
    expect(() => new FrameDecoder().push(frame(body))).toThrow(`msgpack extension type ${type} is not used by this protocol`);
  });
});

// The shape scan (shape.ts) that runs before msgpackr: headers are held to the bytes that follow
// them, and requests to the caps the protocol implies. Item 4 of issue 12.
describe('frame shape', () => {
  const request = (fields: Record<string, unknown>) => encodeFrame({ v: 1, id: 41, op: 'jail_code', command: 'python', ...fields });

  it('deny_header_announcing_more_items_than_the_frame_holds', () => {
    // 12 bytes of body whose array header announces 33 million items: msgpackr would allocate
    // the array before finding the frame short.
    const body = [0xdd, 0x01, 0xf7, 0x8a, 0x40, 1, 2, 3, 4, 5, 6, 7];
    const started = performance.now();
    expect(() => new FrameDecoder().push(frame(body))).toThrow(
      new FrameError('frame is not valid msgpack: an array at offset 0 announces 33000000 items, more than the 7 bytes that follow can hold'),
    );
    expect(() => new FrameDecoder(1024, REQUEST_SHAPE_LIMITS).push(frame(body))).toThrow(/announces 33000000 items/);
    expect(performance.now() - started).toBeLessThan(1000);
  });

  it.each([
    ['a map', [0x81, 0xdf, 0x00, 0x10, 0, 0, 1, 2], /a map at offset 1 announces 1048576 entries/],
    // Each header fits the bytes after it, but together they announce more values than bytes.
    ['nested arrays', [0x92, 0x9f, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14], /an array at offset 1 announces 15 items, more than the 14 bytes/],
    ['a string', [0x92, 0xda, 0x00, 0x05, 0x61, 0x62, 0x63, 0x64, 0x65], /a value at offset 1 announces 5 bytes, but 4 at most can follow/],
    ['a bin', [0xc6, 0x7f, 0xff, 0xff, 0xff, 0], /announces 2147483647 bytes/],
    ['a truncated number', [0x91, 0xcb, 0, 0], /ends inside the value at offset 1/],
    ['trailing bytes', [0x90, 0x90], /1 bytes follow its message/],
    ['the unused type 0xc1', [0xc1], /byte 0xc1 at offset 0 is not a type/],
    ['an ext', [0xc7, 0x01, 0x05, 0x00], /msgpack extension type 5 is not used by this protocol/],
  ])('deny_malformed_msgpack: %s', (_name, body, message) => {
    expect(() => new FrameDecoder(1024, REQUEST_SHAPE_LIMITS).push(frame(body))).toThrow(message);
  });

  it('deny_request_with_more_elements_than_the_protocol_allows: refused undecoded, stream kept in step', () => {
    const decoder = new FrameDecoder(1024 * 1024, REQUEST_SHAPE_LIMITS);
    const tooMany = request({ argv: new Array(100_001).fill(1) });
    const next = encodeFrame({ v: 1, id: 42, op: 'status' });
    const out = decoder.push(Buffer.concat([tooMany, next]));
    expect(out).toEqual([
      new RefusedFrame('frame holds more than 100000 elements (array items and map entries), the most a request may have', 41),
      { v: 1, id: 42, op: 'status' },
    ]);
    expect(decoder.pendingBytes).toBe(0);
  });

  it('deny_request_nested_deeper_than_the_protocol: refused; a reply decoder allows 32 levels', () => {
    let deep: unknown = 1;
    for (let i = 0; i < 9; i++) deep = [deep];
    expect(new FrameDecoder(1024, REQUEST_SHAPE_LIMITS).push(encodeFrame({ id: 7, argv: deep }))).toEqual([
      new RefusedFrame('frame nests arrays and maps more than 8 deep, the most a request may', 7),
    ]);
    expect(new FrameDecoder(1024).push(encodeFrame({ id: 7, argv: deep }))).toHaveLength(1);
    // A million-deep nest would overflow msgpackr's recursion; the scan is iterative.
    const abyss = Buffer.alloc(1_000_001, 0x91);
    abyss[abyss.length - 1] = 0xc0;
    expect(() => new FrameDecoder(2 * 1024 * 1024).push(frame([...abyss]))).toThrow(/more than 32 deep/);
  });

  it('deny_request_map_with_more_entries_than_any_in_the_protocol (2 million keys)', () => {
    const keys = Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`k${i}`, i]));
    const [refused] = new FrameDecoder(1024 * 1024, REQUEST_SHAPE_LIMITS).push(encodeFrame({ id: 3, ...keys }));
    // The top-level map is the violation: the scan stops before reading its id.
    expect(refused).toEqual(new RefusedFrame("frame has a map of 21 entries at offset 0, more than the 16 a map of a request may have", undefined));
    const [nested] = new FrameDecoder(1024 * 1024, REQUEST_SHAPE_LIMITS).push(encodeFrame({ id: 3, limits: keys }));
    expect(nested).toEqual(new RefusedFrame("frame has a map of 20 entries at offset 12, more than the 16 a map of a request may have", 3));
    // Two million keys announced by a map32 header in a small frame: malformed, not allocated.
    expect(() => new FrameDecoder(1024, REQUEST_SHAPE_LIMITS).push(frame([0xdf, 0x00, 0x1e, 0x84, 0x80, 0xa1, 0x61, 1]))).toThrow(
      /a map at offset 0 announces 2000000 entries/,
    );
  });

  it('support_id_found_only_as_the_top_level_uint_before_the_violation', () => {
    const scan = (message: unknown) => scanShape(encodeFrame(message).subarray(4), { ...REQUEST_SHAPE_LIMITS, maxElements: 3 });
    expect(scan({ id: 70000, argv: [1, 2, 3] })?.id).toBe(70000);
    expect(scan({ argv: [1, 2, 3], id: 5 })?.id).toBeUndefined();
    expect(scan({ x: { id: 5 }, argv: [1, 2, 3] })?.id).toBeUndefined();
    expect(scan({ id: -5, argv: [1, 2, 3] })?.id).toBeUndefined();
    expect(scan({ id: 'a', argv: [1, 2, 3] })?.id).toBeUndefined();
  });

  it('support_largest_valid_request_passes_the_scan_and_the_schema', () => {
    // Built from the schema's own maxima, so that raising one without the caps fails here.
    const max = (schema: unknown) => ((schema as any)._def.innerType ?? schema)._def.maxLength.value as number;
    const shape = jailCodeRequest.shape;
    const bytes = Buffer.alloc(1);
    const largest = {
      v: 1,
      id: 0xffffffff,
      op: 'jail_code',
      command: 'python',
      code: bytes,
      files: Array.from({ length: MAX_FILE_ENTRIES }, (_, i) => ({ type: 'file', name: `f${i}`, data: bytes, executable: true })),
      extraFiles: Array.from({ length: MAX_EXTRA_FILES }, (_, i) => [`e${i}`, bytes]),
      argv: new Array(max(shape.argv)).fill('a'),
      stdin: bytes,
      limits: { CPU: 1, REALTIME: 1, VMEM: 0, FSIZE: 0, NPROC: 1, OUTPUT: 1 },
      slug: 's',
      resultChannel: true,
      warm: false,
      profile: true,
    };
    expect(Object.keys(largest)).toHaveLength(Object.keys(shape).length);
    const [decoded] = new FrameDecoder(DEFAULT_MAX_FRAME_BYTES, REQUEST_SHAPE_LIMITS).push(encodeFrame(largest));
    expect(decoded).not.toBeInstanceOf(RefusedFrame);
    expect(validateFirstIssue(requestSchema, decoded).success).toBe(true);
  });

  it('support_fuzzed_frames_are_refused_or_decoded_never_anything_else', () => {
    // Mutations of valid requests: every outcome is a FrameError, a RefusedFrame or a message.
    const seeds = [
      request({ argv: ['a', 'b'], files: [{ type: 'file', name: 'x', data: Buffer.from('hi') }], limits: { CPU: 1 } }),
      encodeFrame({ v: 1, id: 1, op: 'status' }),
    ];
    let state = 12345;
    const random = (n: number) => {
      state = (state * 1103515245 + 12345) & 0x7fffffff;
      return state % n;
    };
    const outcomes = { refused: 0, malformed: 0, decoded: 0 };
    for (let i = 0; i < 20_000; i++) {
      const bytes = Buffer.from(seeds[i % seeds.length]!);
      for (let m = 1 + random(4); m > 0; m--) bytes[4 + random(bytes.length - 4)] = random(256);
      try {
        const [out] = new FrameDecoder(1024, REQUEST_SHAPE_LIMITS).push(bytes);
        if (out instanceof RefusedFrame) outcomes.refused++;
        else outcomes.decoded++;
      } catch (err) {
        expect(err).toBeInstanceOf(FrameError);
        outcomes.malformed++;
      }
    }
    expect(outcomes.malformed).toBeGreaterThan(0);
    expect(outcomes.decoded).toBeGreaterThan(0);
  });
});

describe('request validation', () => {
  it('deny_flood_of_issues: stops at the first issue, in one bounded line', () => {
    const base = { v: 1, id: 1, op: 'jail_code', command: 'python' };
    const started = performance.now();
    // zod collects one issue per element without the stop: 1 second and more for these.
    expect(validateFirstIssue(requestSchema, { ...base, argv: new Array(1_000_000).fill(1) })).toEqual({
      success: false,
      message: 'argv: Array must contain at most 4096 element(s)',
    });
    expect(validateFirstIssue(requestSchema, { ...base, argv: new Array(4000).fill(1) })).toEqual({
      success: false,
      message: 'argv.0: Expected string, received number',
    });
    expect(performance.now() - started).toBeLessThan(1000);
    // Unknown keys are listed in one message: it is cut.
    const keys = Object.fromEntries(Array.from({ length: 100_000 }, (_, i) => [`key${i}`, 1]));
    const refused = validateFirstIssue(requestSchema, { ...base, ...keys });
    expect(refused.success).toBe(false);
    expect(!refused.success && refused.message.length).toBeLessThan(400);
    expect(!refused.success && refused.message).toMatch(/^\(request\): Unrecognized key\(s\) in object: 'key0', 'key1'.*\.\.\.$/);
  });

  it('support_refinement_issues_are_reported_too', () => {
    const result = validateFirstIssue(requestSchema, { v: 1, id: 1, op: 'jail_code', command: 'python', files: [{ type: 'dir', name: 'a/../b' }] });
    expect(result).toEqual({ success: false, message: "files.0.name: must not contain empty, '.' or '..' components" });
  });

  it('support_request_schema_has_no_plain_union (validateFirstIssue would end inside one)', () => {
    const seen = new Set<unknown>();
    const walk = (schema: any): void => {
      if (!schema || seen.has(schema)) return;
      seen.add(schema);
      const def = schema._def;
      expect(def.typeName).not.toBe('ZodUnion');
      for (const key of ['innerType', 'schema', 'type', 'left', 'right', 'valueType', 'keyType']) walk(def[key]);
      for (const option of def.options instanceof Map ? def.options.values() : (def.options ?? [])) walk(option);
      for (const item of def.items ?? []) walk(item);
      if (typeof def.shape === 'function') for (const field of Object.values(def.shape())) walk(field);
    };
    walk(requestSchema);
    expect(seen.size).toBeGreaterThan(20);
  });
});

describe('relativeName', () => {
  it.each([
    ['a/b/c.py', undefined],
    ['.hidden/..x', undefined],
    [Array(32).fill('d').join('/'), undefined],
    [Array(33).fill('d').join('/'), 'is nested too deep'],
    ['/etc/passwd', 'must be relative'],
    ['a\0b', 'must not contain NUL'],
    ['a//b', "must not contain empty, '.' or '..' components"],
    ['a/', "must not contain empty, '.' or '..' components"],
    ['./a', "must not contain empty, '.' or '..' components"],
    ['a/..', "must not contain empty, '.' or '..' components"],
  ])('%j -> %s', (name, problem) => {
    const parsed = relativeName.safeParse(name);
    expect(parsed.success ? undefined : parsed.error.issues[0]!.message).toBe(problem);
  });
});
