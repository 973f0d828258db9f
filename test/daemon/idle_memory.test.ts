// When the daemon gives memory back (a full collection and malloc_trim, counted by
// codejail_idle_collections_total): once idle after work that left its own memory well
// above its idle level, and not for work that leaves nothing behind. A caller's small runs a
// few seconds apart made the daemon collect every 5 s (review: any caller could make it stall for
// tens of ms at will), and a connection holding a reply its caller never reads counted as work
// for good, so the daemon never collected again; health checks a second apart are not work.
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '../../src/client/index.js';
import { encodeFrame, PROTOCOL_VERSION } from '../../src/protocol/index.js';
import { startTestDaemon, type TestDaemon } from '../helpers/daemon.js';

const MiB = 1024 * 1024;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe.skipIf(process.getuid?.() !== 0)('the daemon gives memory back once idle', () => {
  let daemon: TestDaemon;
  let client: Client;
  beforeAll(async () => {
    daemon = await startTestDaemon({ extraArgs: ['--log-level', 'debug'] });
    client = new Client({ socketPath: daemon.socketPath });
  }, 60_000);
  afterAll(async () => {
    await client?.close();
    await daemon?.stop();
  }, 60_000);

  /** The daemon's collections and looks so far, for a failure's message (it logs them at debug). */
  const collectionLog = () =>
    JSON.stringify(
      daemon.logs
        .filter((l) => l.msg === 'idle: gave memory back' || l.msg === 'idle: nothing to give back')
        .map(({ time, msg, own, ownBefore, ownAfter, idleLevel, nextGapMs }) => ({ time, msg, own, ownBefore, ownAfter, idleLevel, nextGapMs })),
    );
  /** Looks that found the daemon idle and nothing to give back. */
  const looks = () => daemon.logs.filter((l) => l.msg === 'idle: nothing to give back').length;
  const collections = async () => {
    const line = (await client.metrics()).split('\n').find((l) => l.startsWith('codejail_idle_collections_total '));
    return Number(line?.split(' ')[1]);
  };
  /**
   * The count once it has gone past `than`, or the count after `ms`. Asked every 3 s, so that the
   * asking leaves the daemon idle in between.
   */
  const collectionsAfter = async (than: number, ms: number, orUntil: () => boolean = () => false) => {
    const deadline = performance.now() + ms;
    let count = than;
    while (count <= than && !orUntil() && performance.now() < deadline) count = (await sleep(3000), await collections());
    return count;
  };
  /** Large requests at once: tens of MiB of frames decoded, and their garbage. */
  const burst = () => Promise.all(Array.from({ length: 6 }, () => client.jailCode('python', { code: 'import sys; sys.stdin.buffer.read()', stdin: Buffer.alloc(4 * MiB, 0x61) })));

  it('deny_small_runs_with_idle_moments_between_them_make_the_daemon_collect', async () => {
    // Past the first idle moment's collection (the idle level's) and the gap after any other.
    await client.jailCode('python', { code: 'pass' });
    await collectionsAfter(0, 15_000);
    await sleep(6000);
    const before = await collections();
    // Each is followed by an idle moment long enough for a look (and 5 s, a collection's least gap, pass in two).
    for (let i = 0; i < 5; i++) {
      await client.jailCode('python', { code: 'pass' });
      await sleep(3500);
    }
    expect(await collections(), collectionLog()).toBe(before);
  }, 90_000);

  it('allow_the_daemon_collects_once_idle_after_a_burst_that_left_memory_behind', async () => {
    // The first idle moment after work (a run) collects, to measure the idle level.
    await client.jailCode('python', { code: 'pass' });
    const first = await collectionsAfter(0, 15_000);
    expect(first).toBeGreaterThanOrEqual(1);
    for (const result of await burst()) expect(result.status).toBe(0);
    expect(await collectionsAfter(first, 15_000), collectionLog()).toBeGreaterThan(first);
  }, 60_000);

  it('allow_health_checks_a_second_apart_do_not_keep_the_daemon_from_collecting', async () => {
    // What is asserted is that the daemon finds itself idle between the checks (a look): whether
    // the burst left enough behind to collect depends on when V8 collected during it (under load,
    // a look once found nothing to give back and the count stayed put).
    await sleep(6000);
    for (const result of await burst()) expect(result.status).toBe(0);
    // After the burst: its work holds off any look until a tick finds it done.
    const before = await collections();
    const looksBefore = looks();
    // A health check every second all along.
    let checking = true;
    const checks = (async () => {
      while (checking) {
        await client.status();
        await sleep(1000);
      }
    })();
    let count: number;
    try {
      count = await collectionsAfter(before, 15_000, () => looks() > looksBefore);
    } finally {
      checking = false;
      await checks;
    }
    expect(count > before || looks() > looksBefore, collectionLog()).toBe(true);
  }, 60_000);

  it('allow_a_connection_holding_a_reply_its_caller_never_reads_does_not_keep_the_daemon_from_collecting', async () => {
    const stalled = net.connect(daemon.socketPath);
    await new Promise<void>((resolve, reject) => stalled.once('connect', resolve).once('error', reject));
    stalled.on('error', () => {});
    stalled.pause();
    // A reply of 1 MiB, more than the kernel takes for a socket nobody reads: it stays buffered
    // in the daemon (the connection's idle timeout is the default 300 s).
    stalled.write(encodeFrame({ v: PROTOCOL_VERSION, id: 1, op: 'jail_code', command: 'python', code: Buffer.from("import sys; sys.stdout.write('x' * (1 << 20))") }));
    // Past that run's own look (and the least gap after a collection it made).
    await sleep(8000);
    const before = await collections();
    for (const result of await burst()) expect(result.status).toBe(0);
    expect(await collectionsAfter(before, 15_000), collectionLog()).toBeGreaterThan(before);
    stalled.destroy();
  }, 60_000);
});
