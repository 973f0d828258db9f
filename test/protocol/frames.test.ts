// Frames as a peer we do not control may send them: length limits, and msgpack that is valid
// but outside the protocol (msgpackr's own extension types) refused before any work is done.
import { describe, expect, it } from 'vitest';
import { encodeFrame, FrameDecoder, FrameError } from '../../src/protocol/frames.js';

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

  it('refuses a frame announced larger than the maximum before buffering it', () => {
    const header = Buffer.alloc(4);
    header.writeUInt32BE(1025, 0);
    expect(() => new FrameDecoder(1024).push(header)).toThrow(new FrameError('frame of 1025 bytes exceeds the maximum of 1024'));
  });

  it.each([
    ['BigInt (0x42)', [0xd7, 0x42, 0, 0, 0, 0, 0, 0, 0, 1], 66],
    ['Set (0x73)', [0xd4, 0x73, 0x90], 115],
    ['timestamp (-1)', [0xd6, 0xff, 0, 0, 0, 0], -1],
  ])('refuses msgpackr extension type %s', (_name, body, type) => {
    expect(() => new FrameDecoder().push(frame(body))).toThrow(`msgpack extension type ${type} is not used by this protocol`);
  });
});
