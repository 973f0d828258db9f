// The e2e suites' common frame: one test daemon per suite, a fresh client per test.
import { afterAll, beforeAll, beforeEach } from 'vitest';
import { Client } from '../../src/client/index.js';
import { startTestDaemon, type TestDaemon, type TestDaemonOptions } from './daemon.js';

export interface DaemonSuite {
  readonly daemon: TestDaemon;
  /** This test's client; replaced before each test. */
  readonly client: Client;
  /**
   * Resolves once no slot is busy: a run's clean-up (the sweep's last rounds, its run directory)
   * finishes after its reply, so what a run left is gone only then.
   */
  idle(): Promise<void>;
}

/** Polls `status` until no slot is busy (at most 10 s). */
export async function waitIdle(client: Client): Promise<void> {
  const until = Date.now() + 10_000;
  while ((await client.status()).slots.busy > 0) {
    if (Date.now() > until) throw new Error('slots still busy 10 s after the last reply');
    await new Promise((r) => setTimeout(r, 5));
  }
}

/**
 * Registers the hooks that start a daemon before the suite and stop it after, and give each test
 * a new client (so limits set by one test never leak into the next), set up by `eachClient`.
 * `options` may be a function, called when the daemon starts: after the beforeAll hooks
 * registered earlier (vitest runs them in order, and afterAll hooks in reverse).
 */
export function daemonSuite(
  options: TestDaemonOptions | (() => TestDaemonOptions) = {},
  eachClient?: (client: Client) => void,
): DaemonSuite {
  let daemon: TestDaemon | undefined;
  let client: Client | undefined;
  beforeAll(async () => {
    daemon = await startTestDaemon(typeof options === 'function' ? options() : options);
  });
  afterAll(async () => {
    await client?.close();
    await daemon?.stop();
  });
  beforeEach(() => {
    void client?.close();
    client = new Client({ socketPath: daemon!.socketPath });
    eachClient?.(client);
  });
  return {
    get daemon() {
      return daemon!;
    },
    get client() {
      return client!;
    },
    idle: () => waitIdle(client!),
  };
}
