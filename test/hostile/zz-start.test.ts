import { it } from 'vitest';
import fs from 'node:fs';
import { startTestDaemon } from '../helpers/daemon.js';
const cases: Array<[number, string]> = JSON.parse(process.env.H3_CASES!);
it('start', async () => {
  for (const [count, netns] of cases) {
    const t0 = performance.now();
    const d = await startTestDaemon({ config: { slots: { firstUid: 200000, count }, layers: { netns } } });
    const t1 = performance.now();
    const layers = d.logs.find((l) => l.msg === 'confinement layers') as { layers: Record<string, string> };
    const fds = fs.readdirSync(`/proc/${d.process.pid}/fd`).length;
    await d.stop();
    console.log(`${count} slots netns ${netns}: ready in ${(t1 - t0).toFixed(0)} ms; netns: ${layers.layers.netns}; daemon fds ${fds}; stop ${(performance.now() - t1).toFixed(0)} ms`);
  }
}, 600_000);
