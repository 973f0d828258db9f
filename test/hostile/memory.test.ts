// Hostile review, item 6: with VMEM 0 and no cgroups layer, one run held 3.1 GB resident (three
// children of 1 GiB each). A run's memory is bounded by default on every host now, and the
// operator's defaultLimits are what a call gets when it does not choose (the client used to send
// its own built-in defaults with every call, so a configured VMEM never took effect).
import { describe, expect, it } from 'vitest';
import { TEST_RUN_PATH } from '../helpers/daemon.js';
import { daemonSuite } from '../helpers/suite.js';

const isRoot = process.getuid?.() === 0;

const THREE_CHILDREN = `
import os, sys
kids = []
for _ in range(3):
    pid = os.fork()
    if pid == 0:
        try:
            block = bytearray(1536 * 1024 * 1024)
            os._exit(0)
        except MemoryError:
            os._exit(3)
    kids.append(pid)
codes = [os.waitstatus_to_exitcode(os.waitpid(k, 0)[1]) for k in kids]
print(codes)
`;

describe.skipIf(!isRoot)('hostile: memory', () => {
  describe('with the built-in defaults', () => {
    const suite = daemonSuite();

    it('support_memory_bounded_by_default: three children cannot each take 1.5 GiB', async () => {
      const result = await suite.client.jailCode('python', { code: THREE_CHILDREN, limits: { REALTIME: 10, CPU: 10 } });
      expect(result.stdout.toString()).toBe('[3, 3, 3]\n');
      expect(result.limits.VMEM).toBe(1024 * 1024 * 1024);
    });
  });

  describe("with an operator's defaultLimits", () => {
    const suite = daemonSuite({ config: { defaultLimits: { VMEM: 768 * 1024 * 1024, FSIZE: 4096 } } });

    it('support_default_limits_apply_to_calls_that_do_not_set_them', async () => {
      const code = 'import resource\nprint(resource.getrlimit(resource.RLIMIT_AS)[0], resource.getrlimit(resource.RLIMIT_FSIZE)[0])';
      const result = await suite.client.jailCode('python', { code });
      // A warm run starts with the template's mappings, for which RLIMIT_AS gets as much more room
      // (src/run/template.ts withVmAllowance), so that MemoryError comes where it does cold.
      const ready = suite.daemon.logs.find((l) => l.msg === 'warm template ready');
      const allowance = TEST_RUN_PATH !== 'cold' ? Number(ready?.vmAllowanceKb) * 1024 : 0;
      expect(result.stdout.toString()).toBe(`${768 * 1024 * 1024 + allowance} 4096\n`);
      expect(result.limits).toMatchObject({ VMEM: 768 * 1024 * 1024, FSIZE: 4096 });
      const status = await suite.client.status();
      expect(status.memory).toMatch(/^each process at most 768 MiB of address space \(VMEM\)/);
    });

    it('a limit the caller sets still wins over the default', async () => {
      suite.client.setLimit('FSIZE', 8192);
      const code = 'import resource\nprint(resource.getrlimit(resource.RLIMIT_FSIZE)[0])';
      expect((await suite.client.jailCode('python', { code })).stdout.toString()).toBe('8192\n');
    });
  });
});
