// The hostile review of issue 10 §2: where codejail's results differed from the original
// CodeJail's (Open edX) in ways a caller can see. Each reproduction runs through a real daemon.
import { describe, expect, it } from 'vitest';
import { SafeExecError } from '../../src/client/index.js';
import { dedent } from '../helpers/cases.js';
import { daemonSuite } from '../helpers/suite.js';

const isRoot = process.getuid?.() === 0;

describe.skipIf(!isRoot)('the original CodeJail results, hostile reproductions', () => {
  const suite = daemonSuite({}, (client) => {
    client.setLimit('REALTIME', 10);
    client.setLimit('CPU', 5);
  });

  /** What `code` printed: each probe prints one line per attempt. */
  const probe = async (code: string): Promise<string> => {
    const r = await suite.client.jailCode('python', { code: dedent(code) });
    expect(r.stderr.toString()).toBe('');
    return r.stdout.toString();
  };

  it('support_write_outside_the_run_is_permission_denied_as_under_the_original_apparmor', async () => {
    // Was: OSError: [Errno 30] Read-only file system, from the hidden directories' read-only tmpfs.
    const out = await probe(`
      import os
      for p in ['/tmp/x', '/var/tmp/x', '/dev/shm/x', '/run/x', '/home/x', '/root/x', '/etc/x', '/x',
                os.path.join(os.path.dirname(os.getcwd()), 'x')]:
          try:
              open(p, 'w')
              print('written', p)
          except OSError as e:
              print('%s: %s' % (type(e).__name__, e))
      try:
          os.mkdir('/tmp/d')
      except OSError as e:
          print('%s: %s' % (type(e).__name__, e))
      `);
    const lines = out.trimEnd().split('\n');
    expect(lines).toHaveLength(10);
    for (const line of lines) expect(line).toMatch(/^PermissionError: \[Errno 13\] Permission denied: '\/[^']*'$/);
    expect(lines[0]).toBe("PermissionError: [Errno 13] Permission denied: '/tmp/x'");
  });

  it('support_bind_a_unix_socket_outside_the_run_is_permission_denied', async () => {
    const out = await probe(`
      import socket
      for p in ['/tmp/s', '/run/s', '/x.sock']:
          s = socket.socket(socket.AF_UNIX)
          try:
              s.bind(p)
              print('bound', p)
          except OSError as e:
              print('%s: %s' % (type(e).__name__, e))
      `);
    expect(out).toBe('PermissionError: [Errno 13] Permission denied\n'.repeat(3));
  });

  it('support_safe_exec_write_to_tmp_fails_with_the_original_permission_error', async () => {
    const err = await suite.client.safeExec("open('/tmp/x', 'w')", {}).then(
      () => expect.unreachable('safeExec succeeded'),
      (e: unknown) => e as SafeExecError,
    );
    expect(err).toBeInstanceOf(SafeExecError);
    expect(err.stderr.toString()).toMatch(/\nPermissionError: \[Errno 13\] Permission denied: '\/tmp\/x'\n$/);
    expect(err.message).toMatch(/PermissionError: \[Errno 13\] Permission denied: \\'\/tmp\/x\\'\\n' with status code: 1$/);
  });
});
