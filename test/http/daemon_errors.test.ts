// How `codejail serve` answers the daemon's errors, with the daemon faked: a run whose warm
// template went away (template_lost) is a 503 to retry, not a 500.
import { afterEach, describe, expect, it } from 'vitest';
import { CodejailError } from '../../src/client/errors.js';
import { HttpService } from '../../src/http/server.js';

const quiet = { info: () => {}, warn: () => {}, error: () => {} };

describe('codejail serve: daemon errors', () => {
  let service: HttpService | undefined;
  afterEach(async () => {
    await service?.close(0);
    service = undefined;
  });

  it('template_lost is 503 with Retry-After (the run may be sent again)', async () => {
    const daemon = {
      safeExec: async () => {
        throw new CodejailError('template_lost', 'the warm template running this run went away');
      },
      check: async () => ({ ok: true, layers: {}, probes: [], durationMs: 0 }),
      status: async () => {
        throw new Error('not used');
      },
    };
    service = new HttpService(daemon as never, quiet as never);
    const { port } = await service.listen(0, '127.0.0.1');
    const form = new FormData();
    form.append('payload', JSON.stringify({ code: 'a = 1', globals_dict: {} }));
    const res = await fetch(`http://127.0.0.1:${port}/api/v0/code-exec`, { method: 'POST', body: form });
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toMatch(/^\d+$/);
    expect(await res.json()).toEqual({ error: 'Codejail service lost the run in flight; retry' });
  });
});
