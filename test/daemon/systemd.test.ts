// The systemd runtime's units, without systemd: what the addon's socketInfo says of each kind of
// fd, the check of a passed socket built on it, and the reading of LISTEN_FDS. (The daemon under
// activation and sd_notify is activation.test.ts.)
import dgram from 'node:dgram';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/log.js';
import { ActivationError, describeListeningUnixSocket, listenFdFromEnv } from '../../src/daemon/systemd.js';
import { native } from '../../src/native.js';

const AF_UNIX = 1;
const AF_INET = 2;
const SOCK_STREAM = 1;
const SOCK_DGRAM = 2;

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function fdOf(handleOwner: unknown): number {
  return (handleOwner as { _handle: { fd: number } })._handle.fd;
}

async function unixServer(name = 'listening.sock'): Promise<{ server: net.Server; socketPath: string }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cj-systemd-'));
  cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
  const socketPath = path.join(dir, name);
  const server = net.createServer((socket) => socket.destroy());
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  cleanups.push(() => new Promise((resolve) => server.close(resolve)));
  return { server, socketPath };
}

async function tcpServer(): Promise<net.Server> {
  const server = net.createServer((socket) => socket.destroy());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(() => new Promise((resolve) => server.close(resolve)));
  return server;
}

async function connectedUnixSocket(): Promise<net.Socket> {
  const { socketPath } = await unixServer('peer.sock');
  const client = net.connect(socketPath);
  await new Promise<void>((resolve, reject) => client.once('connect', resolve).once('error', reject));
  cleanups.push(() => client.destroy());
  return client;
}

function openFile(): number {
  const fd = fs.openSync('/dev/null', 'r');
  cleanups.push(() => fs.closeSync(fd));
  return fd;
}

/** An fd number that is not open: one just closed. */
function closedFd(): number {
  const fd = fs.openSync('/dev/null', 'r');
  fs.closeSync(fd);
  return fd;
}

describe('native socketInfo', () => {
  it('support_socket_info_of_a_listening_unix_stream_socket', async () => {
    const { server, socketPath } = await unixServer();
    expect(native().socketInfo(fdOf(server))).toEqual({ domain: AF_UNIX, type: SOCK_STREAM, listening: true, path: socketPath });
  });

  it('support_socket_info_names_an_abstract_socket_as_proc_net_unix_does', async () => {
    const name = `codejail-test-${process.pid}-${Date.now()}`;
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(`\0${name}`, resolve));
    cleanups.push(() => new Promise((resolve) => server.close(resolve)));
    // libuv binds the whole sun_path: the name's trailing NULs are part of it.
    expect(native().socketInfo(fdOf(server))).toMatchObject({ domain: AF_UNIX, listening: true, path: expect.stringMatching(new RegExp(`^@${name}@*$`)) });
  });

  it('support_socket_info_of_a_connected_unbound_unix_socket', async () => {
    const client = await connectedUnixSocket();
    expect(native().socketInfo(fdOf(client))).toEqual({ domain: AF_UNIX, type: SOCK_STREAM, listening: false });
  });

  it('support_socket_info_of_tcp_and_udp_sockets', async () => {
    const tcp = await tcpServer();
    expect(native().socketInfo(fdOf(tcp))).toEqual({ domain: AF_INET, type: SOCK_STREAM, listening: true });
    const udp = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => udp.bind(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise<void>((resolve) => udp.close(() => resolve())));
    expect(native().socketInfo(fdOf(udp))).toEqual({ domain: AF_INET, type: SOCK_DGRAM, listening: false });
  });

  it('support_socket_info_errors_name_enotsock_and_ebadf', () => {
    expect(() => native().socketInfo(openFile())).toThrow(expect.objectContaining({ code: 'ENOTSOCK', step: 'SO_DOMAIN' }));
    expect(() => native().socketInfo(closedFd())).toThrow(expect.objectContaining({ code: 'EBADF' }));
    expect(() => native().socketInfo('3' as unknown as number)).toThrow(TypeError);
  });
});

describe('the check of a socket systemd passed', () => {
  const needs = 'codejaild needs a listening Unix stream socket: check ListenStream= in codejaild.socket';

  it('allow_a_listening_unix_stream_socket_and_name_its_path', async () => {
    const { server, socketPath } = await unixServer();
    expect(describeListeningUnixSocket(fdOf(server))).toBe(socketPath);
  });

  it('deny_a_passed_tcp_socket', async () => {
    const fd = fdOf(await tcpServer());
    expect(() => describeListeningUnixSocket(fd)).toThrow(`fd ${fd} passed by systemd (LISTEN_FDS) is not a Unix socket; ${needs}`);
  });

  it('deny_a_passed_unix_socket_that_is_not_listening', async () => {
    const fd = fdOf(await connectedUnixSocket());
    expect(() => describeListeningUnixSocket(fd)).toThrow(`fd ${fd} passed by systemd (LISTEN_FDS) is not listening; ${needs}`);
  });

  it('deny_a_passed_fd_that_is_not_a_socket_or_not_open', () => {
    const file = openFile();
    expect(() => describeListeningUnixSocket(file)).toThrow(`fd ${file} passed by systemd (LISTEN_FDS) is not a socket (/dev/null); ${needs}`);
    const closed = closedFd();
    expect(() => describeListeningUnixSocket(closed)).toThrow(`fd ${closed} passed by systemd (LISTEN_FDS) is not open (EBADF); ${needs}`);
  });
});

describe('LISTEN_FDS', () => {
  const saved = { ...process.env };
  afterEach(() => {
    for (const key of ['LISTEN_FDS', 'LISTEN_PID', 'LISTEN_FDNAMES']) {
      if (saved[key] === undefined) delete process.env[key];
      else process.env[key] = saved[key];
    }
  });

  it('support_one_socket_for_this_process_is_fd_3_and_the_variables_are_removed', () => {
    Object.assign(process.env, { LISTEN_FDS: '1', LISTEN_PID: String(process.pid), LISTEN_FDNAMES: 'codejaild.socket' });
    expect(listenFdFromEnv(silentLogger)).toBe(3);
    expect([process.env.LISTEN_FDS, process.env.LISTEN_PID, process.env.LISTEN_FDNAMES]).toEqual([undefined, undefined, undefined]);
  });

  it('support_no_socket_when_unset_or_meant_for_another_process', () => {
    delete process.env.LISTEN_FDS;
    expect(listenFdFromEnv(silentLogger)).toBeUndefined();
    Object.assign(process.env, { LISTEN_FDS: '1', LISTEN_PID: '1' });
    expect(listenFdFromEnv(silentLogger)).toBeUndefined();
  });

  it('deny_more_than_one_socket_or_a_count_that_is_not_one', () => {
    Object.assign(process.env, { LISTEN_FDS: '2', LISTEN_PID: String(process.pid) });
    expect(() => listenFdFromEnv(silentLogger)).toThrow(ActivationError);
    Object.assign(process.env, { LISTEN_FDS: 'x', LISTEN_PID: String(process.pid) });
    expect(() => listenFdFromEnv(silentLogger)).toThrow('LISTEN_FDS="x" is not a positive count of sockets');
  });
});
