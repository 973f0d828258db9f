#!/usr/bin/env node
// How long a client takes from the last chunk of a large reply to its decoded message, with the
// chunks joined once the frame is whole (as a server's decoder does) and assembled as they come
// (as the client's does): in-process, 64 KiB chunks as a socket gives them. Run after a build:
//   node scripts/frames-bench.mjs [MB] [rounds]
import { encodeFrame, FrameDecoder } from '../dist/protocol/frames.js';

const size = Number(process.argv[2] ?? 8) * 1024 * 1024;
const rounds = Number(process.argv[3] ?? 40);
const frame = encodeFrame({ v: 1, id: 1, ok: true, result: { stdout: Buffer.alloc(size, 7), stderr: Buffer.alloc(0) } });
const chunks = [];
for (let at = 0; at < frame.length; at += 65536) chunks.push(Buffer.from(frame.subarray(at, at + 65536)));
const median = (values) => values.sort((a, b) => a - b)[values.length >> 1].toFixed(3);

// Twice each, alternating: the first rounds of a process touch fresh pages.
for (const assembled of [false, true, false, true]) {
  const last = [];
  const whole = [];
  for (let r = 0; r < rounds; r++) {
    const decoder = new FrameDecoder(64 * 1024 * 1024, undefined, assembled);
    const start = performance.now();
    for (let i = 0; i < chunks.length - 1; i++) decoder.push(chunks[i]);
    const lastChunk = performance.now();
    if (decoder.push(chunks[chunks.length - 1]).length !== 1) throw new Error('the frame did not decode');
    const done = performance.now();
    last.push(done - lastChunk);
    whole.push(done - start);
  }
  console.log(`${assembled ? 'assembled' : 'joined   '}  last chunk to message p50 ${median(last)} ms   every push p50 ${median(whole)} ms`);
}
