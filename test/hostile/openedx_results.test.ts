// The hostile review of issue 10 §2: where codejail's results differed from the original
// CodeJail's (Open edX) in ways a caller can see. Each reproduction runs through a real daemon.
import { describe, expect, it } from 'vitest';
import { SafeExecError } from '../../src/client/index.js';
import { dedent } from '../helpers/cases.js';
import { daemonSuite } from '../helpers/suite.js';
import { EXEC_CALL_MARKS_PATTERN } from '../helpers/python_version.js';

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

  it('support_safe_exec_traceback_shows_the_original_frames', async () => {
    // Was: "<safe_exec code>" frames with source lines, and no harness frame.
    const err = await suite.client.safeExec('def f():\n    raise KeyError("k")\nf()', {}).then(
      () => expect.unreachable('safeExec succeeded'),
      (e: unknown) => e as SafeExecError,
    );
    expect(err).toBeInstanceOf(SafeExecError);
    expect(err.stderr.toString()).toMatch(
      new RegExp(
        `^Traceback \\(most recent call last\\):\\n  File "jailed_code", line \\d+, in <module>\\n    exec\\(code, g_dict\\)\\n${EXEC_CALL_MARKS_PATTERN}` +
          `  File "<string>", line 3, in <module>\\n  File "<string>", line 2, in f\\nKeyError: 'k'\\n$`,
      ),
    );
  });

  it('deny_safe_exec_starting_the_interpreter: subprocess.run(sys.executable) and subprocess.run("python3")', async () => {
    // Was: both ran a second interpreter, which Landlock must allow to execute (the run starts it).
    const globs = await suite.client.safeExec(
      dedent(`
        import subprocess, sys
        out = []
        for args in (sys.executable, 'python3', ['/bin/sh', '-c', 'true']):
            try:
                subprocess.run(args, env={'PATH': '/usr/local/bin:/usr/bin:/bin'})
                out.append('started')
            except OSError as e:
                out.append('%s: %s' % (type(e).__name__, e))
        del subprocess, sys, args
        `),
      {},
    );
    expect(globs.out).toEqual([
      expect.stringMatching(/^PermissionError: \[Errno 13\] Permission denied: '\/[^']*python3[.0-9]*'$/),
      "PermissionError: [Errno 13] Permission denied: 'python3'",
      "PermissionError: [Errno 13] Permission denied: '/bin/sh'",
    ]);
  });

  it("support_safe_exec_failure_message_is_the_original's: bytes reprs, status -9 on a timeout, nothing else", async () => {
    // Was: JSON-quoted output and "(the run timed out)" in the message.
    const failed = await suite.client
      .safeExec('import sys\nprint("discarded")\nsys.stderr.buffer.write(b"it\'s \\\\ \\x00\\xff\\n")\nsys.exit(4)', {})
      .catch((e: unknown) => e as SafeExecError);
    expect(failed).toBeInstanceOf(SafeExecError);
    expect(failed.message).toBe("Couldn't execute jailed code: stdout: b'', stderr: b\"it's \\\\ \\x00\\xff\\n\" with status code: 4");
    const timedOut = await suite.client
      .safeExec('import time\ntime.sleep(60)', {}, { limits: { REALTIME: 1 } })
      .catch((e: unknown) => e as SafeExecError);
    expect(timedOut.message).toBe("Couldn't execute jailed code: stdout: b'', stderr: b'' with status code: -9");
    expect(timedOut).toMatchObject({ status: -9, timedOut: true });
  });
});
