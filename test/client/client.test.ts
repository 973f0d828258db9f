// The client against a fake daemon: a Unix-socket server speaking the frame protocol.
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Client, CodejailError } from '../../src/client/index.js';
import { FrameDecoder, PROTOCOL_VERSION, encodeFrame } from '../../src/protocol/index.js';

interface FakeRequest {
  v: number;
  id: number;
  op: string;
  [field: string]: unknown;
}

/** Called for each request with the connection it came on; replies however the test wants. */
type Handler = (request: FakeRequest, connection: net.Socket) => void;

let dir: string;
let socketPath: string;
let server: net.Server;
let connections: net.Socket[];
let handler: Handler;

function okResult(stdout: string | Uint8Array) {
  return {
    runId: 'r1',
    stdout: typeof stdout === 'string' ? Buffer.from(stdout) : stdout,
    stderr: Buffer.alloc(0),
    status: 0,
    truncated: false,
    timedOut: false,
    usage: { wallMs: 1, userMs: 1, systemMs: 0, maxRssKb: 1000 },
    confinement: ['uid', 'seccomp'],
    limits: {},
  };
}

function send(connection: net.Socket, id: number, result: unknown): void {
  connection.write(encodeFrame({ v: PROTOCOL_VERSION, id, ok: true, result }));
}

beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'codejail-client-'));
  socketPath = path.join(dir, 'fake.sock');
  connections = [];
  handler = (request, connection) => send(connection, request.id, okResult(Buffer.from(request.code as Uint8Array)));
  server = net.createServer((connection) => {
    connections.push(connection);
    const decoder = new FrameDecoder();
    connection.on('data', (chunk) => {
      for (const message of decoder.push(chunk)) handler(message as FakeRequest, connection);
    });
    connection.on('error', () => {});
  });
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
});

afterEach(async () => {
  for (const connection of connections) connection.destroy();
  await new Promise((resolve) => server.close(resolve));
  await rm(dir, { recursive: true, force: true });
});

describe('Client', () => {
  it('multiplexes concurrent requests on one connection and matches replies by id', async () => {
    const held: Array<[FakeRequest, net.Socket]> = [];
    handler = (request, connection) => {
      held.push([request, connection]);
      // Answer only once all three arrived, in reverse order.
      if (held.length === 3) {
        for (const [r, c] of held.reverse()) send(c, r.id, okResult(`out of ${Buffer.from(r.code as Uint8Array).toString()}`));
      }
    };
    const client = new Client({ socketPath });
    const results = await Promise.all(['a', 'b', 'c'].map((code) => client.jailCode('python', { code })));

    expect(results.map((r) => r.stdout.toString())).toEqual(['out of a', 'out of b', 'out of c']);
    expect(results[0]!.stdout).toBeInstanceOf(Buffer);
    expect(results[0]!.stderr).toBeInstanceOf(Buffer);
    expect(connections).toHaveLength(1);
    const ids = held.map(([r]) => r.id);
    expect(new Set(ids).size).toBe(3);
    for (const [request] of held) {
      expect(request).toMatchObject({ v: PROTOCOL_VERSION, op: 'jail_code', command: 'python', argv: [], files: [], extraFiles: [] });
      // Nothing was set, so nothing is asked: the daemon's configured defaults apply.
      expect(request.limits).toEqual({});
    }
    await client.close();
  });

  it('never uses request id 0, which the daemon uses to answer the connection: such an error fails every request', async () => {
    const ids: number[] = [];
    handler = (request, connection) => {
      ids.push(request.id);
      if (ids.length === 2) connection.write(encodeFrame({ v: PROTOCOL_VERSION, id: 0, ok: false, error: { code: 'bad_frame', message: 'cut off' } }));
    };
    const client = new Client({ socketPath });
    const outcomes = await Promise.allSettled([client.jailCode('python', { code: 'a' }), client.jailCode('python', { code: 'b' })]);
    expect(ids).not.toContain(0);
    expect(outcomes.map((o) => (o.status === 'rejected' ? (o.reason as { code: string }).code : 'fulfilled'))).toEqual(['bad_frame', 'bad_frame']);
    await client.close();
  });

  it('delivers a reply that came in the same chunk before a bad frame, then fails the rest', async () => {
    const held: Array<[FakeRequest, net.Socket]> = [];
    handler = (request, connection) => {
      held.push([request, connection]);
      if (held.length < 2) return;
      const [first] = held[0]!;
      const reply = encodeFrame({ v: PROTOCOL_VERSION, id: first.id, ok: true, result: okResult('first') });
      connection.write(Buffer.concat([reply, Buffer.alloc(4)]));
    };
    const client = new Client({ socketPath });
    const outcomes = await Promise.allSettled([client.jailCode('python', { code: 'a' }), client.jailCode('python', { code: 'b' })]);
    expect(outcomes[0]).toMatchObject({ status: 'fulfilled' });
    expect((outcomes[0] as PromiseFulfilledResult<{ stdout: Buffer }>).value.stdout.toString()).toBe('first');
    expect(outcomes[1]).toMatchObject({ status: 'rejected', reason: { code: 'bad_reply' } });
    await client.close();
  });

  it('sends the effective limits of the call', async () => {
    let seen: FakeRequest | undefined;
    handler = (request, connection) => {
      seen = request;
      send(connection, request.id, okResult(''));
    };
    const client = new Client({ socketPath });
    client.setLimit('CPU', 2);
    client.overrideLimit('REALTIME', 5, 'ctx');
    await client.jailCode('python', { code: 'x', limitOverridesContext: 'ctx', limits: { VMEM: 1000 } });
    expect(seen!.limits).toMatchObject({ CPU: 2, REALTIME: 5, VMEM: 1000 });
    await client.close();
  });

  it('turns an error reply into a CodejailError with its code and message', async () => {
    handler = (request, connection) =>
      connection.write(
        encodeFrame({ v: PROTOCOL_VERSION, id: request.id, ok: false, error: { code: 'overloaded', message: 'queue is full (64)' } }),
      );
    const client = new Client({ socketPath });
    const error = await client.jailCode('python', { code: 'x' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CodejailError);
    expect(error).toMatchObject({ code: 'overloaded', message: 'queue is full (64)' });
    await client.close();
  });

  it('rejects pending requests when the daemon closes the connection, then reconnects', async () => {
    let received = 0;
    handler = (_request, connection) => {
      received += 1;
      if (received === 2) connection.destroy();
    };
    const client = new Client({ socketPath });
    const pending = [client.jailCode('python', { code: 'a' }), client.jailCode('python', { code: 'b' })];
    for (const outcome of await Promise.allSettled(pending)) {
      expect(outcome.status).toBe('rejected');
      const reason = (outcome as PromiseRejectedResult).reason as CodejailError;
      expect(reason).toBeInstanceOf(CodejailError);
      expect(reason.code).toBe('connection_lost');
      expect(reason.message).toMatch(/closed the connection/);
    }

    handler = (request, connection) => send(connection, request.id, okResult('again'));
    expect((await client.jailCode('python', { code: 'c' })).stdout.toString()).toBe('again');
    expect(connections).toHaveLength(2);
    await client.close();
  });

  it('fails every pending request on a reply it cannot trust', async () => {
    handler = (request, connection) => send(connection, request.id + 1000, okResult(''));
    const client = new Client({ socketPath });
    await expect(client.jailCode('python', { code: 'x' })).rejects.toMatchObject({ code: 'bad_reply', message: /not pending/ });

    handler = (request, connection) => send(connection, request.id, { stdout: 'not bytes' });
    await expect(client.jailCode('python', { code: 'x' })).rejects.toMatchObject({ code: 'bad_reply', message: /malformed jail_code result/ });
    await client.close();
  });

  it('rejects in-flight requests with code "closed" when the client is closed', async () => {
    handler = () => {};
    const client = new Client({ socketPath });
    const rejected = expect(client.jailCode('python', { code: 'x' })).rejects.toMatchObject({ code: 'closed' });
    await new Promise((resolve) => setTimeout(resolve, 20));
    await client.close();
    await rejected;
  });

  it('refuses a request larger than a frame without sending it', async () => {
    const client = new Client({ socketPath, maxFrameBytes: 1024 });
    await expect(client.jailCode('python', { code: 'x'.repeat(2000) })).rejects.toMatchObject({
      code: 'bad_request',
      message: /frame maximum/,
    });
    expect((await client.jailCode('python', { code: 'small' })).stdout.toString()).toBe('small');
    await client.close();
  });

  it('returns the validated status', async () => {
    const status = {
      version: '0.1.0',
      protocol: PROTOCOL_VERSION,
      unsafe: false,
      layers: { seccomp: 'on' },
      slots: { total: 4, busy: 1 },
      queue: { depth: 0, max: 64 },
      uptimeMs: 5,
      commands: ['python'],
    };
    handler = (request, connection) => send(connection, request.id, status);
    const client = new Client({ socketPath });
    expect(await client.status()).toEqual(status);
    await client.close();
  });

  it('says the daemon is unavailable when nothing listens on the socket', async () => {
    const client = new Client({ socketPath: path.join(dir, 'nobody.sock') });
    await expect(client.jailCode('python', { code: 'x' })).rejects.toMatchObject({
      code: 'unavailable',
      message: /cannot connect to the codejail daemon at .*nobody\.sock: ENOENT/,
    });
  });
});
