// A second configured command beside python: bash, a plain binary with only its builtins. Each
// command gets its own Landlock policy computed at daemon start, so bash runs its builtins but
// can neither read the host nor execute anything but itself, and python's policy is unchanged.
// Security tests are named deny_<layer>_* for scripts/sabotage.mjs.
import { describe, expect, it } from 'vitest';
import type { Client } from '../../src/client/index.js';
import { expectDenied } from '../helpers/denial.js';
import { daemonSuite } from '../helpers/suite.js';

const BASH = '/bin/bash';
/** No grant may equal or contain these: each would expose the host to every sandbox. */
const NEVER_GRANTED = ['/', '/etc', '/tmp', '/home', '/proc', '/usr/bin', '/usr', '/bin'];

describe.skipIf(process.getuid?.() !== 0)('a second command: bash', () => {
  const suite = daemonSuite(
    {
      config: {
        commands: {
          python: { path: '/usr/bin/python3', kind: 'python', args: ['-E', '-B'] },
          // --norc/--noprofile say explicitly what a non-interactive bash does anyway.
          bash: { path: BASH, kind: 'binary', args: ['--norc', '--noprofile'] },
        },
      },
    },
    // Room for a loaded test machine; the runs themselves take milliseconds.
    (client) => client.setLimit('REALTIME', 10),
  );
  const bash = (code: string, options: Omit<Parameters<Client['jailCode']>[1] & object, 'code'> = {}) =>
    suite.client.jailCode('bash', { code, ...options });

  it('the daemon offers both commands, and neither policy grants a host-wide directory', async () => {
    expect(await suite.client.isConfigured('bash')).toBe(true);
    expect(await suite.client.isConfigured('python')).toBe(true);
    const ready = suite.daemon.logs.filter((l) => l.msg === 'command ready');
    expect(ready.map((l) => l.command).sort()).toEqual(['bash', 'python']);
    for (const line of ready) {
      const grants = [...(line.execute as string[]), ...(line.read as string[])];
      for (const grant of grants) expect(NEVER_GRANTED, `${line.command as string} grants ${grant}`).not.toContain(grant);
    }
    const bashReady = ready.find((l) => l.command === 'bash')!;
    // bash may execute itself and the ELF loader, nothing else.
    expect((bashReady.execute as string[]).some((p) => p.endsWith('/bash'))).toBe(true);
    expect((bashReady.execute as string[]).every((p) => p.endsWith('/bash') || p.includes('ld-linux'))).toBe(true);
  });

  it('allow_bash_echo_hi', async () => {
    const r = await bash('echo hi');
    expect(r.stdout.toString()).toBe('hi\n');
    expect(r.stderr.toString()).toBe('');
    expect(r.status).toBe(0);
    expect(r.confinement).toEqual(expect.arrayContaining(['uid', 'rlimits', 'landlock', 'seccomp', 'netns']));
  });

  it('allow_bash_argv_stdin_and_the_run_directory', async () => {
    const r = await bash('read -r line; printf "%s|" "$@" "$line"; echo; printf x > "$TMPDIR/f"; echo "${PWD##*/}" "$(< "$TMPDIR/f")"', {
      argv: ['a b', '-c'],
      stdin: 'from stdin\n',
      limits: { FSIZE: 1000 },
    });
    expect(r.status).toBe(0);
    const [first, second] = r.stdout.toString().split('\n');
    expect(first).toBe('a b|-c|from stdin|');
    expect(second).toMatch(/^[0-9a-f]{32} x$/);
  });

  it('allow_bash_limits_apply: CPU 1 stops a busy loop with -SIGXCPU', async () => {
    const r = await bash('while :; do :; done', { limits: { CPU: 1, REALTIME: 20 } });
    expect(r.status).toBe(-24);
  });

  it('deny_landlock_bash_reads_etc_passwd', async () => {
    const r = await bash('read -r line < /etc/passwd && echo "Gotcha: $line"');
    expectDenied(r.stdout.toString(), '', /^Gotcha: root:/);
    expect(r.stderr.toString()).toContain('Permission denied');
    expect(r.status).not.toBe(0);
  });

  it('deny_landlock_bash_lists_the_host', async () => {
    const r = await bash('for p in /etc/* /home/* /tmp/* /usr/bin/*; do [ -e "$p" ] && echo "$p"; done; echo done');
    // Without Landlock the host's names are listed.
    expectDenied(r.stdout.toString(), 'done\n', /(^|\n)\/etc\/passwd\n/);
  });

  it('deny_landlock_bash_execs_usr_bin_id', async () => {
    const r = await bash('/usr/bin/id; echo "status $?"');
    expectDenied(r.stdout.toString(), 'status 126\n', /^uid=\d+ gid=\d+ groups=\d+\nstatus 0\n$/);
    expect(r.stderr.toString()).toContain('Permission denied');
  });

  it('deny_landlock_bash_execs_python', async () => {
    const r = await bash('/usr/bin/python3 -c "print(1)"; echo "status $?"');
    expectDenied(r.stdout.toString(), 'status 126\n', '1\nstatus 0\n');
  });

  it('deny_landlock_bash_sources_a_host_file', async () => {
    const r = await bash('. /etc/profile && echo sourced');
    expectDenied(r.stdout.toString(), '', 'sourced\n');
    expect(r.stderr.toString()).toContain('Permission denied');
  });

  it('python is unaffected: it runs, and may not execute bash', async () => {
    const ok = await suite.client.jailCode('python', { code: "print('Hello, world!')" });
    expect(ok.stdout.toString()).toBe('Hello, world!\n');
    expect(ok.status).toBe(0);
  });

  it('deny_landlock_python_execs_bash', async () => {
    // Cold: Landlock's execute rule is the only guard of a cold run's execve; a warm run's is
    // refused by seccomp as well (test/e2e/warm.test.ts deny_seccomp_warm_execve), so warm this
    // test would pass without Landlock and prove nothing about it.
    const r = await suite.client.jailCode('python', {
      code: "import os\ntry:\n    os.execv('/bin/bash', ['bash', '-c', 'echo escaped'])\nexcept PermissionError:\n    print('DENIED')\n",
      warm: false,
    });
    expectDenied(r.stdout.toString(), 'DENIED\n', 'escaped\n');
  });

  it('an unknown command is refused naming the configured ones', async () => {
    await expect(suite.client.jailCode('ruby', { code: 'puts 1' })).rejects.toMatchObject({
      code: 'unknown_command',
      message: expect.stringMatching(/python.*bash|bash.*python/),
    });
  });
});
