// Test switches of a test daemon, loaded into it before its own code by `node --import` (the
// test daemon helper passes it; the VM suite's systemd drop-in sets NODE_OPTIONS): product code
// holds no switch. Each is off unless its variable is set in the daemon's environment.
//   CODEJAIL_TEST_BLOCK_LOOP_MS=<ms>   blocks the event loop that long right after the daemon
//                                      starts a run slugged 'test-block-loop', as a huge frame
//                                      being decoded would (test/hostile/reaping.test.ts).
//   CODEJAIL_TEST_BLOCK_ON_SIGUSR2=1   SIGUSR2 blocks the event loop for good, as a hung daemon
//                                      would, so that the VM suite can watch systemd's watchdog
//                                      kill and restart it (test/vm/guest-systemd.mjs).
// Lines are written the way the daemon logs (one JSON object on stderr), so tests read them.
import diagnostics from 'node:diagnostics_channel';
import fs from 'node:fs';

const log = (msg) => fs.writeSync(2, `${JSON.stringify({ time: new Date().toISOString(), level: 'warn', msg })}\n`);
/** Sleeps without spinning (a VM's CPUs are emulated and scarce); forever when ms is undefined. */
const block = (ms) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

const blockLoopMs = Number(process.env.CODEJAIL_TEST_BLOCK_LOOP_MS ?? 0);
delete process.env.CODEJAIL_TEST_BLOCK_LOOP_MS;
if (blockLoopMs > 0) {
  log(`TEST SWITCH: the event loop blocks ${blockLoopMs} ms after starting a run slugged test-block-loop`);
  // src/daemon/runner.ts publishes each run's start on this channel.
  diagnostics.subscribe('codejail:run-started', ({ slug }) => {
    if (slug === 'test-block-loop') block(blockLoopMs);
  });
}

const blockOnSigusr2 = process.env.CODEJAIL_TEST_BLOCK_ON_SIGUSR2 === '1';
delete process.env.CODEJAIL_TEST_BLOCK_ON_SIGUSR2;
if (blockOnSigusr2) {
  log('TEST SWITCH: CODEJAIL_TEST_BLOCK_ON_SIGUSR2 is set, SIGUSR2 will block the event loop');
  process.on('SIGUSR2', () => {
    log('TEST SWITCH: SIGUSR2 received, blocking the event loop');
    block(undefined);
  });
}
