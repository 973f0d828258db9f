// Fuzz of the daemon's socket: batches of frames written in one write (pipelined), of random
// shapes and lengths, truncated, mutated, or valid frames followed by garbage. What must hold:
// every complete, well-formed frame written before a bad one gets one reply (matched by id);
// a connection is answered or closed, never left hanging; the daemon keeps serving.
import net from 'node:net';
import { Packr, unpack } from 'msgpackr';
import { FrameDecoder } from '../../src/protocol/index.js';
import type { Random } from './knobs.js';

const packr = new Packr({ useRecords: false, variableMapSize: true });
const header = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
};
const frame = (body: Uint8Array) => Buffer.concat([header(body.length), body]);
const pack = (v: unknown) => Buffer.from(packr.pack(v));

/** One frame to write: `answered` true if a reply with `id` is owed; `breaks` if the stream may end at it. */
interface Frame {
  bytes: Buffer;
  id?: number;
  answered: boolean;
  breaks: boolean;
}

const KEYS = ['v', 'id', 'op', 'command', 'code', 'files', 'extraFiles', 'argv', 'stdin', 'limits', 'slug', 'warm', 'profile', 'resultChannel', 'globals', 'pythonPath', 'target', 'type', 'name', 'data', 'CPU', 'zz'];
const OPS = ['jail_code', 'safe_exec', 'status', 'cancel', 'metrics', 'bogus', '', 'JAIL_CODE'];

function randomValue(rng: Random, depth = 0): unknown {
  switch (rng.int(depth > 4 ? 8 : 12)) {
    case 0: return null;
    case 1: return rng.chance(0.5);
    case 2: return rng.int(2 ** 32) - 2 ** 31;
    case 3: return rng.next() * 1e6;
    case 4: return rng.bytes(rng.int(20)).toString('latin1');
    case 5: return rng.bytes(rng.int(30));
    case 6: return rng.pick(OPS);
    case 7: return -1;
    case 8: case 9: return Array.from({ length: rng.int(5) }, () => randomValue(rng, depth + 1));
    default: {
      const o: Record<string, unknown> = {};
      for (let i = rng.int(6); i > 0; i--) o[rng.pick(KEYS)] = randomValue(rng, depth + 1);
      return o;
    }
  }
}

/** Frames whose request is well-formed msgpack with v 1 and an id: each is owed one reply. */
function answered(rng: Random, id: number): Frame {
  let m: Record<string, unknown>;
  switch (rng.int(6)) {
    case 0: m = { v: 1, id, op: 'status' }; break;
    case 1: m = { v: 1, id, op: rng.pick(OPS.filter((o) => o !== 'status')), x: randomValue(rng) }; break;
    case 2: {
      // A run request that must be refused without running: an unknown command, bad fields.
      m = { v: 1, id, op: rng.pick(['jail_code', 'safe_exec']), command: rng.pick(['nopython', 5, '', 'x'.repeat(65), null]), code: rng.pick(['pass', 5, null, Buffer.from('pass')]), argv: rng.pick([[], ['a'], [1], 'x', [null]]), limits: rng.pick([{}, { CPU: -1 }, { CPU: 1e9 }, { NOPE: 1 }, { VMEM: 1.5 }, [], { CPU: 'x' }]) };
      break;
    }
    case 3: {
      const o = randomValue(rng, 1);
      m = { ...(o && typeof o === 'object' && !Array.isArray(o) && !Buffer.isBuffer(o) ? (o as Record<string, unknown>) : { x: o }), v: 1, id, op: rng.pick(OPS) };
      if (m.op === 'jail_code' || m.op === 'safe_exec') m.command = 'nopython';
      break;
    }
    case 4: {
      let v: unknown = 1;
      for (let i = rng.pick([6, 7, 8, 30]); i > 0; i--) v = [v];
      m = { v: 1, id, op: 'status', x: v };
      break;
    }
    default: {
      // Up to the 16 entries a request map may have: past them the shape scan stops at the map's
      // header, before its id, and the refusal answers the connection (id 0): see breaking().
      m = { v: 1, id, op: 'status' };
      for (let i = rng.pick([0, 5, 12, 13]); i > 0; i--) m[`k${i}`] = i;
    }
  }
  return { bytes: frame(pack(m)), id, answered: true, breaks: false };
}

/**
 * `valid` with 1 to 3 bytes changed. A change may leave a well-formed request: one whose id
 * became another (an owed frame's, which the daemon then rightly answers twice) is drawn again.
 */
function mutated(rng: Random, valid: Buffer, id: number): Buffer {
  for (;;) {
    const b = Buffer.from(valid);
    for (let i = 1 + rng.int(3); i > 0; i--) b[rng.int(b.length)] = rng.int(256);
    let decoded: unknown;
    try {
      decoded = unpack(b);
    } catch {
      return b;
    }
    const otherId = decoded !== null && typeof decoded === 'object' && 'id' in decoded && (decoded as { id: unknown }).id !== id;
    if (!otherId) return b;
  }
}

/** Frames the daemon may answer with bad_frame and a close: the stream may end at them. */
function breaking(rng: Random, id: number): Frame {
  const valid = pack({ v: 1, id, op: 'status', slug: 'abcdefgh' });
  const bytes = (() => {
    switch (rng.int(11)) {
      case 0: return frame(rng.bytes(1 + rng.int(200)));
      case 1: return frame(mutated(rng, valid, id));
      case 2: return frame(Buffer.concat([Buffer.alloc(rng.pick([9, 100, 10000, 100000]), 0x91), Buffer.from([0xc0])]));
      case 3: { const h = Buffer.alloc(5); h[0] = 0xdd; h.writeUInt32BE(rng.int(1 << 20), 1); return frame(Buffer.concat([h, rng.bytes(rng.int(10))])); }
      case 4: return frame(Buffer.from([0x83, 0xa1, 0x76, 0x01, 0xa2, 0x69, 0x64, 0x05, 0xa2, 0x6f, 0x70, 0xc7, 4, rng.pick([0x42, 0x65, 0xff, 0x01]), 1, 2, 3, 4]));
      case 5: return Buffer.concat([header(valid.length - 1 - rng.int(5)), valid]); // a length short of its body
      case 6: return header(0);
      case 7: return Buffer.concat([header(rng.pick([64 * 1024 * 1024 + 1, 2 ** 32 - 1, 2 ** 31])), rng.bytes(rng.int(100))]);
      case 8: return rng.bytes(1 + rng.int(64)); // garbage after the valid frames
      case 9: { const m: Record<string, unknown> = { v: 1, id, op: 'status' }; for (let i = rng.pick([14, 100, 5000]); i > 0; i--) m[`k${i}`] = i; return frame(pack(m)); }
      default: { const f = frame(pack({ v: 1, id, op: 'jail_code', command: 'nopython', code: rng.bytes(200) })); return f.subarray(0, rng.int(f.length)); } // truncated
    }
  })();
  return { bytes, answered: false, breaks: true };
}

export interface FrameFuzzFigures {
  connections: number;
  frames: number;
  /** Replies owed to well-formed frames written before any bad one. */
  owed: number;
  answered: number;
  /** Owed replies that never came although the daemon closed the connection (issue 16 item 8). */
  unansweredBeforeBadFrame: number;
  /** Connections left open with replies owed, past the timeout. */
  hung: number;
  /** Replies to an id answered already: one frame, one reply. */
  duplicated: number;
  example?: string;
  /** The first duplicated or undecodable reply. */
  duplicateExample?: string;
}

/** One connection: a batch of owed frames, maybe ended by a breaking one, in ONE write. */
function oneConnection(socketPath: string, rng: Random, firstId: number, figures: FrameFuzzFigures): Promise<void> {
  const batch: Frame[] = [];
  for (let i = 1 + rng.int(30); i > 0; i--) batch.push(answered(rng, firstId + batch.length));
  const endsBroken = rng.chance(0.5);
  if (endsBroken) batch.push(breaking(rng, firstId + batch.length));
  const owedIds = batch.filter((f) => f.answered).map((f) => f.id!);
  figures.connections++;
  figures.frames += batch.length;
  figures.owed += owedIds.length;
  return new Promise((resolve) => {
    const socket = net.connect(socketPath);
    const decoder = new FrameDecoder(256 * 1024 * 1024);
    const got: number[] = [];
    let finished = false;
    const finish = (how: 'closed' | 'hung' | 'done') => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      socket.destroy();
      const missing = owedIds.filter((id) => !got.includes(id)).length;
      figures.answered += owedIds.length - missing;
      if (missing && how === 'hung') figures.hung++;
      if (missing && how === 'closed') {
        figures.unansweredBeforeBadFrame += missing;
        figures.example ??= `${owedIds.length} well-formed frames then a breaking one (${batch.at(-1)!.bytes.subarray(0, 12).toString('hex')}...) in one write: ${got.length} replies, then the close`;
      }
      resolve();
    };
    const timer = setTimeout(() => finish('hung'), 15_000);
    socket.on('connect', () => socket.write(Buffer.concat(batch.map((f) => f.bytes))));
    socket.on('data', (chunk) => {
      let replies: unknown[];
      try {
        replies = decoder.push(chunk);
      } catch (err) {
        figures.duplicated++;
        figures.duplicateExample ??= `an undecodable reply: ${(err as Error).message}`;
        return finish('closed');
      }
      for (const reply of replies) {
        const id = (reply as { id?: number }).id;
        if (typeof id === 'number' && owedIds.includes(id)) {
          if (got.includes(id)) {
            figures.duplicated++;
            figures.duplicateExample ??= `a second reply to id ${id}: ${JSON.stringify(reply).slice(0, 200)}; the batch's last frame ${batch.at(-1)!.bytes.subarray(0, 40).toString('hex')}`;
          } else got.push(id);
        }
      }
      if (got.length === owedIds.length && !endsBroken) finish('done');
    });
    socket.on('error', () => finish('closed'));
    socket.on('close', () => finish('closed'));
    // A breaking frame that is only incomplete (truncated, a lying length) leaves the daemon
    // waiting for the rest, rightly: once every owed reply is in, the caller hangs up.
    const check = setInterval(() => {
      if (finished) return clearInterval(check);
      if (got.length === owedIds.length) {
        clearInterval(check);
        setTimeout(() => finish('done'), 200);
      }
    }, 50);
  });
}

/** `connections` connections, `concurrency` at a time. */
export async function fuzzFrames(socketPath: string, rng: Random, connections: number, concurrency = 8): Promise<FrameFuzzFigures> {
  const figures: FrameFuzzFigures = { connections: 0, frames: 0, owed: 0, answered: 0, unansweredBeforeBadFrame: 0, hung: 0, duplicated: 0 };
  let next = 0;
  let id = 1;
  await Promise.all(
    Array.from({ length: concurrency }, async (_, w) => {
      const mine = rng.fork(`frames-${w}`);
      while (next < connections) {
        next++;
        await oneConnection(socketPath, mine, id, figures);
        id += 100;
      }
    }),
  );
  return figures;
}
