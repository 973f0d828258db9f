// The network, closed by three layers, each shown alone: seccomp refuses socket(AF_INET) (EACCES),
// Landlock (ABI >= 4) refuses a TCP connect() (EACCES), and the slot's empty network namespace has
// no route even to 127.0.0.1 (ENETUNREACH). Every probe aims at a target that answers: a TCP
// listener and a DNS responder in this test process, on 127.0.0.1 in the host's namespace, which
// a run reaches once all three are off (the allow twins at the end). deny_network_* run with every
// layer on; their sabotage switch turns the three off together (src/layers/netns.ts).
import dgram from 'node:dgram';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Client } from '../../src/client/index.js';
import { dedent } from '../helpers/cases.js';
import { expectDenied } from '../helpers/denial.js';
import { daemonSuite, type DaemonSuite } from '../helpers/suite.js';

const isRoot = process.getuid?.() === 0;
const BANNER = 'HOST-LISTENER';
/** The address the DNS responder gives for every name. */
const ANSWER = '127.0.0.1';
const NAME = 'codejail-test.example';

let tcpPort = 0;
let dnsPort = 0;
let tcp: net.Server;
let dns: dgram.Socket;

/** A DNS responder that answers every A query with ANSWER. */
function dnsReply(query: Buffer): Buffer {
  const header = Buffer.alloc(12);
  query.copy(header, 0, 0, 2); // the query's id
  header.writeUInt16BE(0x8180, 2); // a response, recursion available, no error
  header.writeUInt16BE(1, 4); // one question
  header.writeUInt16BE(1, 6); // one answer
  const answer = Buffer.from([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, ...ANSWER.split('.').map(Number)]);
  return Buffer.concat([header, query.subarray(12), answer]);
}

beforeAll(async () => {
  if (!isRoot) return;
  tcp = net.createServer((s) => s.end(`${BANNER}\n`));
  await new Promise<void>((resolve) => tcp.listen(0, '127.0.0.1', resolve));
  tcpPort = (tcp.address() as net.AddressInfo).port;
  dns = dgram.createSocket('udp4');
  dns.on('message', (query, from) => dns.send(dnsReply(query), from.port, from.address));
  await new Promise<void>((resolve) => dns.bind(0, '127.0.0.1', resolve));
  dnsPort = dns.address().port;
});

afterAll(async () => {
  if (!isRoot) return;
  await new Promise<void>((resolve) => tcp.close(() => resolve()));
  dns.close();
});

/** Connects to the listener by address: prints the step refused and its errno name, or the banner. */
const byIp = () =>
  dedent(`
    import errno, socket
    step = 'socket'
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(5)
        step = 'connect'
        s.connect(('127.0.0.1', ${tcpPort}))
        print('connected', s.recv(64).decode().strip())
    except OSError as e:
        print(step, errno.errorcode.get(e.errno, e.errno))
    `);

/** Asks the responder for NAME (a plain DNS query over UDP), then connects to the answer. */
const byName = () =>
  dedent(`
    import errno, socket, struct
    def lookup(name):
        question = b''.join(bytes([len(p)]) + p.encode() for p in name.split('.')) + b'\\0' + struct.pack('>HH', 1, 1)
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(5)
        s.sendto(struct.pack('>6H', 0x1234, 0x0100, 1, 0, 0, 0) + question, ('127.0.0.1', ${dnsPort}))
        return socket.inet_ntoa(s.recv(512)[-4:])
    step = 'resolve'
    try:
        address = lookup(${JSON.stringify(NAME)})
        step = 'connect'
        c = socket.create_connection((address, ${tcpPort}), timeout=5)
        print('connected', address, c.recv(64).decode().strip())
    except OSError as e:
        print(step, errno.errorcode.get(e.errno, e.errno))
    `);

const CONNECTED = `connected ${BANNER}\n`;
const CONNECTED_BY_NAME = `connected ${ANSWER} ${BANNER}\n`;

async function run(suite: DaemonSuite, code: string): Promise<string> {
  const r = await (suite.client as Client).jailCode('python', { code, limits: { REALTIME: 30 } });
  expect(r.stderr.toString()).toBe('');
  return r.stdout.toString();
}

describe.skipIf(!isRoot)('every layer on', () => {
  const suite = daemonSuite();

  it('deny_network_by_ip: a listener on the host loopback is out of reach', async () => {
    expectDenied(await run(suite, byIp()), 'socket EACCES\n', CONNECTED);
  });

  it('deny_network_by_name: a resolver that would answer is out of reach', async () => {
    expectDenied(await run(suite, byName()), 'resolve EACCES\n', CONNECTED_BY_NAME);
  });

  it('deny_seccomp_network_socket_af_inet: socket() is refused with EACCES before anything else', async () => {
    // Without seccomp the socket is made and Landlock refuses the connect: another step.
    expectDenied(await run(suite, byIp()), 'socket EACCES\n', /^connect /);
  });
});

describe.skipIf(!isRoot)('Landlock alone (seccomp and netns off)', () => {
  const suite = daemonSuite({ config: { layers: { seccomp: 'off', netns: 'off' } } });

  it('deny_landlock_network_tcp_connect: connect() to the listener is refused with EACCES', async () => {
    expectDenied(await run(suite, byIp()), 'connect EACCES\n', CONNECTED);
  });

  it('the DNS query (UDP, which Landlock does not mediate) is answered, and the connect refused', async () => {
    expect(await run(suite, byName())).toBe('connect EACCES\n');
  });
});

describe.skipIf(!isRoot)('the network namespace alone (seccomp and Landlock off)', () => {
  const suite = daemonSuite({ config: { layers: { seccomp: 'off', landlock: 'off' } } });

  it('deny_netns_network_by_ip: the host loopback is unreachable (ENETUNREACH)', async () => {
    expectDenied(await run(suite, byIp()), 'connect ENETUNREACH\n', CONNECTED);
  });

  it('deny_netns_network_by_name: the resolver is unreachable (ENETUNREACH)', async () => {
    expectDenied(await run(suite, byName()), 'resolve ENETUNREACH\n', CONNECTED_BY_NAME);
  });
});

describe.skipIf(!isRoot)('seccomp, Landlock and netns off (the allow twins)', () => {
  const suite = daemonSuite({ config: { layers: { seccomp: 'off', landlock: 'off', netns: 'off' } } });

  it('allow_network_by_ip: the same probe reaches the listener', async () => {
    expect(await run(suite, byIp())).toBe(CONNECTED);
  });

  it('allow_network_by_name: the resolver answers, and the answer is reached', async () => {
    expect(await run(suite, byName())).toBe(CONNECTED_BY_NAME);
  });
});
