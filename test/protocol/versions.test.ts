// Versions on the wire (src/protocol/versions.ts): frames of protocol version 1, recorded as
// bytes from the daemon that first shipped it (fixtures/protocol_v1/recorded.json: a jail_code,
// a safe_exec and a status request, the replies they got, and that daemon's answer to a
// version 2 request), replayed byte for byte against the current daemon; the recorded replies
// read by the current client's schemas; a newer version refused with bad_version naming both.
import { readFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { mkdtempSync, rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '../../src/client/index.js';
import { encodeFrame, FrameDecoder, jailCodeResult, reply, statusResult } from '../../src/protocol/index.js';
import { fixture } from '../helpers/cases.js';
import { startTestDaemon, type TestDaemon } from '../helpers/daemon.js';
import { isRoot } from '../helpers/sandbox.js';

type Exchange = { request: string; reply: string };
const recorded = JSON.parse(readFileSync(fixture('protocol_v1/recorded.json'), 'utf8')) as Record<'jail_code' | 'safe_exec' | 'status' | 'v2_status', Exchange>;
const bytes = (hex: string) => Buffer.from(hex, 'hex');
const decode = (frame: Buffer) => {
  const messages = new FrameDecoder().push(frame);
  expect(messages).toHaveLength(1);
  return messages[0] as Record<string, any>;
};

/** Writes `frame` as it is on a fresh connection and returns the one reply, decoded. */
async function exchange(socketPath: string, frame: Buffer): Promise<Record<string, any>> {
  const socket = net.connect(socketPath);
  const decoder = new FrameDecoder();
  try {
    return await new Promise((resolve, reject) => {
      socket.on('data', (chunk) => {
        const [first] = decoder.push(chunk);
        if (first !== undefined) resolve(first as Record<string, any>);
      });
      socket.on('error', reject);
      socket.on('close', () => reject(new Error('closed without a reply')));
      socket.write(frame);
    });
  } finally {
    socket.destroy();
  }
}

/** The run's own outcome, without what differs from run to run (ids, timings, layers). */
const outcome = (result: Record<string, any>) => ({
  stdout: Buffer.from(result.stdout).toString(),
  stderr: Buffer.from(result.stderr).toString(),
  status: result.status,
  truncated: result.truncated,
  timedOut: result.timedOut,
  result: result.result === undefined ? undefined : Buffer.from(result.result).toString(),
});

describe('recorded protocol 1 replies, read by the current client', () => {
  it.each(['jail_code', 'safe_exec'] as const)('%s: the reply parses as a run result', (name) => {
    const answer = reply.parse(decode(bytes(recorded[name].reply)));
    expect(answer).toMatchObject({ v: 1, ok: true });
    expect(jailCodeResult.safeParse((answer as { result: unknown }).result).success).toBe(true);
  });

  it("bad_version: that daemon's answer to a version 2 request parses, naming both versions", () => {
    expect(reply.parse(decode(bytes(recorded.v2_status.reply)))).toEqual({
      v: 1,
      id: 4,
      ok: false,
      error: { code: 'bad_version', message: 'protocol version 2 is not supported; this daemon speaks version 1' },
    });
  });

  it('status: the reply of a daemon from before `protocols` parses', () => {
    const answer = decode(bytes(recorded.status.reply));
    expect(answer.result.protocols).toBeUndefined();
    expect(statusResult.parse(answer.result)).toMatchObject({ protocol: 1 });
  });
});

describe.skipIf(!isRoot)('protocol 1 frames against the current daemon', () => {
  let daemon: TestDaemon;
  beforeAll(async () => {
    daemon = await startTestDaemon();
  });
  afterAll(async () => {
    await daemon?.stop();
  });

  it.each(['jail_code', 'safe_exec'] as const)('%s: served as protocol 1, with the run the recorded reply had', async (name) => {
    const then = decode(bytes(recorded[name].reply));
    const now = await exchange(daemon.socketPath, bytes(recorded[name].request));
    expect(now).toMatchObject({ v: 1, id: then.id, ok: true });
    expect(outcome(now.result)).toEqual(outcome(then.result));
    // Every field the version 1 reply had is still there (new ones may be added).
    expect(Object.keys(now.result)).toEqual(expect.arrayContaining(Object.keys(then.result)));
  });

  it('status: served as protocol 1, with the protocols this daemon serves', async () => {
    const then = decode(bytes(recorded.status.reply));
    const now = await exchange(daemon.socketPath, bytes(recorded.status.request));
    expect(now).toMatchObject({ v: 1, id: then.id, ok: true, result: { protocol: 1, protocols: [1] } });
    expect(Object.keys(now.result)).toEqual(expect.arrayContaining(Object.keys(then.result)));
  });

  it('a field this daemon does not know is refused by name, not ignored (why an additive request field needs no new version)', async () => {
    const v1 = decode(bytes(recorded.jail_code.request));
    const now = await exchange(daemon.socketPath, encodeFrame({ ...v1, id: 22, futureField: true }));
    expect(now).toMatchObject({ v: 1, id: 22, ok: false, error: { code: 'bad_request', message: expect.stringContaining("'futureField'") } });
  });

  it('a version 2 request gets bad_version naming its version and the ones served; the connection stays open', async () => {
    const socket = net.connect(daemon.socketPath);
    const decoder = new FrameDecoder();
    const replies: Array<Record<string, any>> = [];
    const next = () =>
      new Promise<Record<string, any>>((resolve) => {
        const poll = () => (replies.length ? resolve(replies.shift()!) : setTimeout(poll, 10));
        poll();
      });
    socket.on('data', (chunk) => replies.push(...(decoder.push(chunk) as Array<Record<string, any>>)));
    const v1 = decode(bytes(recorded.jail_code.request));
    socket.write(encodeFrame({ ...v1, v: 2, id: 21 }));
    expect(await next()).toEqual({
      v: 1,
      id: 21,
      ok: false,
      error: { code: 'bad_version', message: 'the request speaks protocol version 2; this daemon serves protocol version 1' },
    });
    socket.write(bytes(recorded.status.request));
    expect(await next()).toMatchObject({ id: 3, ok: true });
    socket.destroy();
  });
});

describe('a client against a daemon that does not serve its version', () => {
  let dir: string;
  let server: net.Server;
  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'cj-versions-'));
    // A daemon of a later day that no longer serves version 1: it answers every request so.
    server = net.createServer((socket) => {
      const decoder = new FrameDecoder();
      socket.on('data', (chunk) => {
        for (const request of decoder.push(chunk) as Array<{ id: number; v: number }>) {
          const message = `the request speaks protocol version ${request.v}; this daemon serves protocol versions 2, 3`;
          socket.write(encodeFrame({ v: 3, id: request.id, ok: false, error: { code: 'bad_version', message } }));
        }
      });
    });
    await new Promise<void>((resolve) => server.listen(path.join(dir, 'old.sock'), resolve));
  });
  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
    rmSync(dir, { recursive: true, force: true });
  });

  it('raises bad_version naming the version the client speaks and the ones the daemon serves', async () => {
    const client = new Client({ socketPath: path.join(dir, 'old.sock') });
    await expect(client.status()).rejects.toMatchObject({
      name: 'CodejailError',
      code: 'bad_version',
      message:
        'this client speaks codejail protocol version 1, which the daemon does not serve (upgrade the daemon, or use a client of its version): ' +
        'the request speaks protocol version 1; this daemon serves protocol versions 2, 3',
    });
    await client.close();
  });
});
