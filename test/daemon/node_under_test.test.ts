// scripts/test-node-versions.sh runs the daemon, client, e2e and http suites again on each extra
// supported Node major: this pins that such a pass really is on that Node, the test daemons
// included (they are spawned from process.execPath), and that the one N-API build loads there.
import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { Client } from '../../src/client/index.js';
import { native } from '../../src/native.js';
import { startTestDaemon } from '../helpers/daemon.js';

const isRoot = process.getuid?.() === 0;
const expectedMajor = process.env.CODEJAIL_EXPECT_NODE_MAJOR;

describe('the node under test', () => {
  it.runIf(expectedMajor !== undefined)('is the major the pass was started for', () => {
    expect(process.versions.node.split('.')[0]).toBe(expectedMajor);
  });

  it('loads the native addon', () => {
    expect(typeof native().stepName).toBe('function');
  });

  it.runIf(isRoot)('runs the test daemon, which runs python', async () => {
    const daemon = await startTestDaemon();
    try {
      expect(fs.realpathSync(`/proc/${daemon.process.pid}/exe`)).toBe(fs.realpathSync(process.execPath));
      const client = new Client({ socketPath: daemon.socketPath });
      const result = await client.jailCode('python', { code: 'print(6 * 7)' });
      expect(result.stdout.toString()).toBe('42\n');
      expect(result.status).toBe(0);
      await client.close();
    } finally {
      await daemon.stop();
    }
  });
});
