// Reproductions from issue 16 (items 3 and 12), end to end through a real daemon with every
// layer this kernel offers, warm and cold: a process nothing reaps, calls that reach the whole
// host (writeback, its memory and process count, directory watches) and the stack's hard limit.
// Each deny_<layer>_* test fails with that layer off (CODEJAIL_SABOTAGE=<layer>, see
// scripts/sabotage.mjs).
import { describe, expect, it } from 'vitest';
import type { Client } from '../../src/client/index.js';
import { dedent } from '../helpers/cases.js';
import { daemonSuite } from '../helpers/suite.js';

const isRoot = process.getuid?.() === 0;
const CLONE = process.arch === 'arm64' ? 220 : 56;
const SYNC = process.arch === 'arm64' ? 81 : 162;

describe.skipIf(!isRoot)('hostile: what reaches the whole host', () => {
  const suite = daemonSuite();
  const out = async (options: Parameters<Client['jailCode']>[1]) => (await suite.client.jailCode('python', options)).stdout.toString();

  it('deny_seccomp_clone_parent_would_leave_a_zombie_nothing_reaps', async () => {
    // Issue 16 item 3: the child of clone(CLONE_PARENT) is a child of the run's parent, on the
    // warm path the template, which never reaped it: the slot's sweep saw a process of its uid
    // for good and quarantined the slot; 8 such requests took every slot.
    const stdout = await out({
      code: dedent(`
        import ctypes, os
        libc = ctypes.CDLL(None, use_errno=True)
        pid = libc.syscall(${CLONE}, 0x8000 | 17, 0, 0, 0, 0)
        if pid == 0:
            os._exit(0)
        print("clone", pid, ctypes.get_errno() if pid < 0 else "")
        `),
    });
    expect(stdout).toBe('clone -1 1\n');
  });

  it('deny_seccomp_sync_sysinfo_and_dnotify_reach_no_further_than_the_run', async () => {
    // Issue 16 item 12: sync and syncfs write back (and wait for) the host's dirty data; sysinfo
    // reads its uptime, free memory and process count; F_NOTIFY watches a directory.
    const stdout = await out({
      code: dedent(`
        import ctypes, os
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(".", os.O_RDONLY)
        for name, call in [("sync", lambda: libc.syscall(${SYNC})), ("syncfs", lambda: libc.syncfs(fd)),
                           ("sysinfo", lambda: libc.sysinfo(ctypes.create_string_buffer(256))),
                           ("F_NOTIFY", lambda: libc.fcntl(fd, 1026, 4))]:
            ctypes.set_errno(0)
            print(name, call(), ctypes.get_errno())
        `),
    });
    expect(stdout).toBe('sync -1 1\nsyncfs -1 1\nsysinfo -1 1\nF_NOTIFY -1 1\n');
  });

  it('deny_rlimit_stack_hard_limit_cannot_be_lifted', async () => {
    // Issue 16 item 12: the hard limit was the daemon's, unlimited.
    const stdout = await out({
      code: dedent(`
        import resource
        print(resource.getrlimit(resource.RLIMIT_STACK))
        try:
            resource.setrlimit(resource.RLIMIT_STACK, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
            print("lifted")
        except ValueError:
            print("refused")
        `),
    });
    expect(stdout).toBe('(8388608, 8388608)\nrefused\n');
  });

  it('allow_fork_clone_os_sync_sysconf_and_deep_recursion', async () => {
    const stdout = await out({
      code: dedent(`
        import ctypes, os, sys
        libc = ctypes.CDLL(None, use_errno=True)
        pid = libc.syscall(${CLONE}, 17, 0, 0, 0, 0)
        if pid == 0:
            os._exit(5)
        print("clone", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
        pid = os.fork()
        if pid == 0:
            os._exit(6)
        print("fork", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
        os.sync()
        print("sysconf", type(os.sysconf("SC_PHYS_PAGES")).__name__)
        sys.setrecursionlimit(100000)
        f = lambda n: 0 if n == 0 else 1 + f(n - 1)
        print("recursion", f(20000))
        `),
    });
    expect(stdout).toBe('clone 5\nfork 6\nsysconf int\nrecursion 20000\n');
  });

});
