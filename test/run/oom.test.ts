import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { DAEMON_OOM_SCORE_ADJ, lowerOwnOomScore } from '../../src/run/oom.js';

describe('lowerOwnOomScore', () => {
  it('writes the daemon value, or says why it could not and carries on', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cj-oom-'));
    try {
      const warnings: unknown[] = [];
      const log = { warn: (...args: unknown[]) => warnings.push(args) };
      const file = path.join(dir, 'oom_score_adj');
      expect(lowerOwnOomScore(log, DAEMON_OOM_SCORE_ADJ, file)).toBe(true);
      expect(fs.readFileSync(file, 'utf8')).toBe('-900\n');
      expect(warnings).toEqual([]);
      // As where the bounding set lacks CAP_SYS_RESOURCE: the write fails (here: no such file).
      expect(lowerOwnOomScore(log, DAEMON_OOM_SCORE_ADJ, path.join(dir, 'missing', 'oom_score_adj'))).toBe(false);
      expect(JSON.stringify(warnings)).toContain("cannot lower the daemon's oom_score_adj");
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
