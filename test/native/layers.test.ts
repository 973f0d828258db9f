// One deny test per layer, each paired with an allow test that runs the same probe in a way the
// layer permits. The deny probes are chosen so that only the layer under test can stop them
// (every other layer is off in that test), so turning that one layer off makes the deny test
// fail: CODEJAIL_SABOTAGE=<layer> npx vitest run test/native, or npm run sabotage.
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { native } from '../../src/native.js';
import { expectDenied } from '../helpers/denial.js';
import { PYTHON, TEST_UID, isRoot, makeRunDir, processesOf, runPython } from '../helpers/sandbox.js';

const landlockAbi = isRoot ? native().landlockAbi() : 0;

describe.skipIf(!isRoot)('uid layer', () => {
  let secretDir: string;
  beforeAll(() => {
    secretDir = makeRunDir();
    fs.writeFileSync(path.join(secretDir, 'secret'), 'root only', { mode: 0o600 });
    fs.writeFileSync(path.join(secretDir, 'public'), 'everyone', { mode: 0o644 });
  });
  afterAll(() => fs.rmSync(secretDir, { recursive: true, force: true }));

  it('deny_uid_root_only_file_unreadable', async () => {
    const r = await runPython(`try: print(open(${JSON.stringify(secretDir + '/secret')}).read())\nexcept OSError as e: print(type(e).__name__)`, { uid: true });
    expectDenied(r.stdout, 'PermissionError\n', 'root only\n');
  });

  it('allow_uid_world_readable_file_and_runs_as_slot_uid', async () => {
    const r = await runPython(
      `import os; print(os.getuid(), os.getgid(), os.getgroups(), open(${JSON.stringify(secretDir + '/public')}).read())`,
      { uid: true },
    );
    expect(r.stdout).toBe(`${TEST_UID} ${TEST_UID} [${TEST_UID}] everyone\n`);
  });
});

describe.skipIf(!isRoot)('rlimits layer', () => {
  it('deny_rlimit_cpu_kills_busy_loop_with_sigxcpu', async () => {
    const r = await runPython('while True: pass', { rlimits: { cpu: [1, 2] } });
    // Without the limit the loop runs until runPython's own 15 s bound kills it (SIGKILL).
    expectDenied(r.status, -24, -9);
  });

  it('allow_rlimit_cpu_lets_short_work_finish', async () => {
    const r = await runPython('print(sum(range(10**6)))', { rlimits: { cpu: [1, 2] } });
    expect(r.stdout).toBe('499999500000\n');
  });

  it('deny_rlimit_as_makes_big_allocation_fail', async () => {
    const mb = 1024 * 1024;
    const r = await runPython('try: bytearray(100 * 1024 * 1024); print("allocated")\nexcept MemoryError: print("MemoryError")', { rlimits: { as: [80 * mb, 80 * mb] } });
    expectDenied(r.stdout, 'MemoryError\n', 'allocated\n');
  });

  it('allow_rlimit_as_with_room', async () => {
    const mb = 1024 * 1024;
    const r = await runPython('bytearray(100 * 1024 * 1024); print("ok")', { rlimits: { as: [300 * mb, 300 * mb] } });
    expect(r.stdout).toBe('ok\n');
  });

  it('deny_rlimit_fsize_stops_large_write', async () => {
    const r = await runPython(
      'try:\n  with open("big", "w") as f: f.write("x" * 5000)\n  print("wrote 5000")\nexcept OSError as e: print(e)',
      { rlimits: { fsize: [1000, 1000] } },
    );
    expectDenied(r.stdout, '[Errno 27] File too large\n', 'wrote 5000\n');
  });

  it('allow_rlimit_fsize_small_write', async () => {
    const r = await runPython('with open("small", "w") as f: f.write("x" * 500)\nprint(len(open("small").read()))', {
      rlimits: { fsize: [1000, 1000] },
    });
    expect(r.stdout).toBe('500\n');
  });

  it('deny_rlimit_nproc_stops_fork', async () => {
    const r = await runPython('import os\ntry:\n  if os.fork() == 0: os._exit(0)\n  print("forked")\nexcept OSError as e: print(type(e).__name__)', { uid: true, rlimits: { nproc: [1, 1] } });
    expectDenied(r.stdout, 'BlockingIOError\n', 'forked\n');
  });

  // Per-uid kernel objects the other layers leave countable: POSIX message queue bytes, locked
  // (unswappable) memory, queued real-time signals. Slot uids are per run, so these bound one run.
  const perUidObjects =
    'import ctypes, mmap, os, signal, threading\nlibc = ctypes.CDLL(None, use_errno=True)\n' +
    'name = b"/cj-native-%d" % os.getpid()\n' +
    'q = libc.mq_open(name, 0o100 | 2, 0o600, None); print("mq_open", q, ctypes.get_errno())\n' +
    'if q >= 0: libc.mq_unlink(name)  # with the layer sabotaged: leave nothing on the host\n' +
    'buf = mmap.mmap(-1, 4096); addr = ctypes.addressof(ctypes.c_char.from_buffer(buf))\n' +
    'print("mlock", libc.mlock(ctypes.c_void_p(addr), 4096), ctypes.get_errno())\n' +
    'signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGRTMIN})\nqueued = 0\n' +
    'for _ in range(200):\n' +
    '    try: signal.pthread_kill(threading.get_ident(), signal.SIGRTMIN); queued += 1\n' +
    '    except OSError as e: last = e.errno\n' +
    'print("queued", queued)';

  const mib = 1024 * 1024;
  const stackProbe =
    'import resource\nprint(resource.getrlimit(resource.RLIMIT_STACK))\n' +
    'try: resource.setrlimit(resource.RLIMIT_STACK, (resource.RLIM_INFINITY, resource.RLIM_INFINITY)); print("raised")\n' +
    'except ValueError: print("refused")';

  it('deny_rlimit_stack_hard_limit_cannot_be_raised', async () => {
    // Issue 16 item 12: the hard limit was the daemon's, unlimited; a run could lift its own.
    const r = await runPython(stackProbe, { uid: true, rlimits: { stack: [8 * mib, 8 * mib] } });
    // Without the layer the hard limit is the test process's own (unlimited here), and is lifted.
    expectDenied(r.stdout, `(${8 * mib}, ${8 * mib})\nrefused\n`, /\nraised\n$/);
  });

  it('allow_rlimit_stack_deep_recursion_and_a_big_thread_stack', async () => {
    // Python-level recursion does not grow the C stack in 3.11, and a thread's stack is sized
    // by threading.stack_size (bounded by VMEM), not by RLIMIT_STACK.
    const r = await runPython(
      'import sys, threading\nsys.setrecursionlimit(100000)\nf = lambda n: 0 if n == 0 else 1 + f(n - 1)\nprint(f(20000))\n' +
        'threading.stack_size(64 * 1024 * 1024)\nt = threading.Thread(target=lambda: print(f(50000))); t.start(); t.join()',
      { uid: true, rlimits: { stack: [8 * mib, 8 * mib] } },
    );
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('20000\n50000\n');
  });

  it('deny_rlimit_msgqueue_memlock_sigpending_bound_per_uid_kernel_objects', async () => {
    const r = await runPython(perUidObjects, { uid: true, rlimits: { msgqueue: [0, 0], memlock: [0, 0], sigpending: [16, 16] } });
    expectDenied(r.stdout, 'mq_open -1 24\nmlock -1 1\nqueued 16\n', /^mq_open \d+ 0\nmlock 0 0\nqueued 200\n$/);
  });

  it('allow_rlimit_per_uid_objects_within_inherited_limits', async () => {
    const r = await runPython(perUidObjects, { uid: true });
    expect(r.stdout).toMatch(/^mq_open \d+ 0\nmlock 0 0\nqueued 200\n$/);
  });

  it('allow_rlimit_nproc_permits_fork_within_limit', async () => {
    const r = await runPython('import os\npid = os.fork()\nif pid == 0: os._exit(0)\nos.waitpid(pid, 0); print("forked")', {
      uid: true,
      rlimits: { nproc: [5, 5] },
    });
    expect(r.stdout).toBe('forked\n');
  });
});

describe.skipIf(!isRoot || landlockAbi < 1)('landlock layer', () => {
  // Run as root with no other layer: only Landlock can stop root from reading /etc/passwd.
  it('deny_landlock_read_outside_policy', async () => {
    const r = await runPython('try: print("read", len(open("/etc/passwd").read()) > 0)\nexcept OSError as e: print(e)', { landlock: true });
    expectDenied(r.stdout, "[Errno 13] Permission denied: '/etc/passwd'\n", 'read True\n');
  });

  it('deny_landlock_list_root_tmp_proc', async () => {
    const r = await runPython(
      'import os\nfor d in ["/", "/tmp", "/proc", "/home", "/etc", "/var", ".."]:\n  try: os.listdir(d); print("listed", d)\n  except PermissionError: print("denied", d)',
      { landlock: true },
    );
    const places = ['/', '/tmp', '/proc', '/home', '/etc', '/var', '..'];
    expectDenied(r.stdout, places.map((d) => `denied ${d}\n`).join(''), /^listed \/\n/);
  });

  it('deny_landlock_exec_other_binary', async () => {
    const r = await runPython('import os\ntry: os.execv("/usr/bin/true", ["true"])\nexcept OSError as e: print(type(e).__name__)', { landlock: true });
    // /usr/bin/true, exec'd, prints nothing and exits 0.
    expectDenied({ stdout: r.stdout, status: r.status }, { stdout: 'PermissionError\n', status: 0 }, { stdout: '', status: 0 });
  });

  it('allow_landlock_run_dir_read_write', async () => {
    const r = await runPython(
      'import os\nopen("f", "w").write("hi")\nos.mkdir("d")\nprint(open("f").read(), os.listdir("."))',
      { landlock: true },
    );
    expect(r.stdout).toBe("hi ['f', 'd']\n");
  });

  it.skipIf(landlockAbi < 4)('deny_landlock_tcp_connect', async () => {
    const server = net.createServer((s) => s.end());
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as net.AddressInfo).port;
    try {
      const probe = `import socket\ns = socket.socket()\ntry:\n  s.connect(("127.0.0.1", ${port})); print("connected")\nexcept OSError as e: print("refused", e.errno)`;
      const denied = await runPython(probe, { landlock: true });
      expectDenied(denied.stdout, 'refused 13\n', 'connected\n');
      const allowed = await runPython(probe, {});
      expect(allowed.stdout).toBe('connected\n');
    } finally {
      server.close();
    }
  });
});

describe.skipIf(!isRoot)('seccomp layer', () => {
  it('deny_seccomp_inet_socket_is_permission_error', async () => {
    const r = await runPython('import socket\ntry: socket.socket(socket.AF_INET, socket.SOCK_STREAM); print("made")\nexcept OSError as e: print(type(e).__name__, e.errno)', { seccomp: true });
    expectDenied(r.stdout, 'PermissionError 13\n', 'made\n');
  });

  it('deny_seccomp_unshare_and_ptrace', async () => {
    const r = await runPython(
      'import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\nprint(libc.unshare(0x40000000), ctypes.get_errno())\nprint(libc.ptrace(0, 0, 0, 0), ctypes.get_errno())',
      { seccomp: true },
    );
    // Without the filter, root in the run makes its own user namespace and asks to be traced.
    expectDenied(r.stdout, '-1 1\n-1 1\n', '0 0\n0 0\n');
  });

  it('deny_seccomp_sysv_ipc_and_message_queues', async () => {
    // IPC_PRIVATE | IPC_CREAT objects would outlive the run; the next run of the slot could read them.
    const r = await runPython(
      'import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n' +
        'calls = [(lambda: libc.shmget(0, 4096, 0o1600), lambda i: libc.shmctl(i, 0, None)),\n' +
        '         (lambda: libc.msgget(0, 0o1600), lambda i: libc.msgctl(i, 0, None)),\n' +
        '         (lambda: libc.semget(0, 1, 0o1600), lambda i: libc.semctl(i, 0, 0)),\n' +
        '         (lambda: libc.mq_open(b"/cj-probe", 0o100 | 2, 0o600, None), lambda i: libc.mq_unlink(b"/cj-probe"))]\n' +
        'for make, remove in calls:\n' +
        '    ctypes.set_errno(0); made = make(); print(made, ctypes.get_errno())\n' +
        '    if made >= 0: remove(made)  # with the layer sabotaged: leave nothing on the host',
      { seccomp: true },
    );
    // Without the filter each object is made (an id or a descriptor, errno 0), then removed.
    expectDenied(r.stdout, '-1 1\n-1 1\n-1 1\n-1 1\n', /^(\d+ 0\n){4}$/);
  });

  // Syscall numbers for calls glibc has no wrapper for (the new ones are the same on both arches).
  const NR =
    process.arch === 'arm64'
      ? { io_setup: 0, mbind: 235, set_mempolicy: 237, migrate_pages: 238, move_pages: 239 }
      : { io_setup: 206, mbind: 237, set_mempolicy: 238, migrate_pages: 256, move_pages: 279 };
  const errnoOf = (calls: Array<[string, string]>) =>
    'import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n' +
    calls.map(([name, call]) => `ctypes.set_errno(0); r = ${call}; print(${JSON.stringify(name)}, r, ctypes.get_errno())`).join('\n');

  it('deny_seccomp_host_wide_aio_and_inotify', async () => {
    // io_setup takes from the host-wide fs.aio-nr (root then gets EAGAIN); an inotify watch
    // reports names created in a directory Landlock does not let the sandbox list.
    const r = await runPython(
      errnoOf([
        ['io_setup', `libc.syscall(${NR.io_setup}, 1, ctypes.byref(ctypes.c_ulong(0)))`],
        ['inotify_init1', 'libc.inotify_init1(0)'],
        ['inotify_add_watch', 'libc.inotify_add_watch(-1, b"/etc", 0x100)'],
        ['fanotify_mark', 'libc.fanotify_mark(-1, 1, 2, -100, b"/etc")'],
      ]),
      { seccomp: true },
    );
    // Without the filter the calls reach the kernel: an aio context (or EAGAIN when the host's
    // fs.aio-max-nr is spent), an inotify descriptor, and EBADF for the watches on fd -1.
    expectDenied(
      r.stdout,
      'io_setup -1 1\ninotify_init1 -1 1\ninotify_add_watch -1 1\nfanotify_mark -1 1\n',
      /^io_setup (0 0|-1 11)\ninotify_init1 \d+ 0\ninotify_add_watch -1 9\nfanotify_mark -1 9\n$/,
    );
  });

  it('deny_seccomp_numa_policy_other_processes_and_mount_table', async () => {
    // Memory placement (mbind, set_mempolicy) can pin a run's memory to one node of the host;
    // migrate_pages, move_pages and process_madvise/process_mrelease act on other processes;
    // memfd_secret takes unswappable memory out of the direct map; statmount/listmount read the
    // mount table that /proc (unreadable under Landlock) keeps hidden. Bogus arguments: without
    // the filter each call fails with EINVAL, EFAULT, ESRCH or EBADF, never EPERM.
    const r = await runPython(
      errnoOf([
        ['mbind', `libc.syscall(${NR.mbind}, 0, 4096, 99, 0, 0, 0)`],
        ['set_mempolicy', `libc.syscall(${NR.set_mempolicy}, 99, 0, 0)`],
        ['migrate_pages', `libc.syscall(${NR.migrate_pages}, 0x7ffffff0, 64, 0, 0)`],
        ['move_pages', `libc.syscall(${NR.move_pages}, 0x7ffffff0, 1, 0, 0, 0, 0)`],
        ['set_mempolicy_home_node', 'libc.syscall(450, 0, 4096, 99, 1)'],
        ['process_madvise', 'libc.syscall(440, -1, 0, 0, 0, 0)'],
        ['process_mrelease', 'libc.syscall(448, -1, 0)'],
        ['memfd_secret', 'libc.syscall(447, 0xdead)'],
        ['statmount', 'libc.syscall(457, 0, 0, 0, 0)'],
        ['listmount', 'libc.syscall(458, 0, 0, 0, 0)'],
      ]),
      { seccomp: true },
    );
    const names = ['mbind', 'set_mempolicy', 'migrate_pages', 'move_pages', 'set_mempolicy_home_node', 'process_madvise', 'process_mrelease'];
    // memfd_secret is refused like memfd_create (EACCES), below.
    const denied = [...names.map((n) => `${n} -1 1`), 'memfd_secret -1 13', 'statmount -1 1', 'listmount -1 1', ''].join('\n');
    // Without the filter the kernel answers the bogus arguments itself: EINVAL, ESRCH, EBADF or
    // EFAULT (or ENOSYS from a kernel older than the call), never EPERM or EACCES.
    const reachedTheKernel = new RegExp(`^${[...names, 'memfd_secret', 'statmount', 'listmount'].map((n) => `${n} -1 (22|3|9|14|38)\\n`).join('')}$`);
    expectDenied(r.stdout, denied, reachedTheKernel);
  });

  it('deny_seccomp_memfd_create_and_execveat', async () => {
    // Landlock has no say over a memfd (an internal mount) and execveat of one runs whatever was
    // written into it: refused, with EACCES so Python raises PermissionError.
    const r = await runPython(
      'import os, sys\n' +
        'try: os.memfd_create("x"); print("memfd made", flush=True)\nexcept OSError as e: print("memfd_create", e.errno)\n' +
        'fd = os.open(sys.executable, os.O_RDONLY)\n' +
        'try: os.execve(fd, [sys.executable, "-c", "print(\'fexecve ran\')"], {})\nexcept OSError as e: print("execveat", e.errno)',
      { seccomp: true },
    );
    // Without the filter the memfd is made and the descriptor exec'd runs Python's -c.
    expectDenied(r.stdout, 'memfd_create 13\nexecveat 13\n', 'memfd made\nfexecve ran\n');
  });

  // clone(2)'s number, and sync(2)'s (glibc's sync() wrapper hides its result).
  const CLONE = process.arch === 'arm64' ? 220 : 56;
  const SYNC = process.arch === 'arm64' ? 81 : 162;
  const cloneProbe = (flags: string) =>
    'import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n' +
    `pid = libc.syscall(${CLONE}, ${flags}, 0, 0, 0, 0)\n` +
    'if pid == 0: os._exit(5)\n' +
    'if pid < 0: print("clone", pid, ctypes.get_errno())\n' +
    'else:\n' +
    '  try: print("clone: child exited", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))\n' +
    '  except ChildProcessError: print("clone: a sibling, not a child")';

  it('deny_seccomp_clone_parent', async () => {
    // Issue 16 item 3: CLONE_PARENT makes the child a sibling of the run, the child of the run's
    // parent (a warm template, which never reaps it): a zombie of the slot's uid for good.
    const r = await runPython(cloneProbe('0x8000 | 17'), { uid: true, seccomp: true });
    // Without the filter the clone is made, and the run cannot wait for it: not its child.
    expectDenied(r.stdout, 'clone -1 1\n', 'clone: a sibling, not a child\n');
  });

  it('allow_seccomp_fork_and_plain_clone', async () => {
    const r = await runPython(
      cloneProbe('17') + '\npid = os.fork()\nif pid == 0: os._exit(6)\nprint("fork: child exited", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))',
      { uid: true, seccomp: true },
    );
    expect(r.stdout).toBe('clone: child exited 5\nfork: child exited 6\n');
  });

  it('deny_seccomp_host_wide_sync_sysinfo_and_dnotify', async () => {
    // Issue 16 item 12: sync/syncfs make the whole host write back (and wait); sysinfo reads the
    // host's uptime, free memory and process count; F_NOTIFY watches a directory as inotify does.
    const r = await runPython(
      errnoOf([
        ['sync', `libc.syscall(${SYNC})`],
        ['syncfs', 'libc.syncfs(os.open(".", os.O_RDONLY))'],
        ['sysinfo', 'libc.sysinfo(ctypes.create_string_buffer(256))'],
        ['F_NOTIFY', 'libc.fcntl(os.open(".", os.O_RDONLY), 1026, 4)'],
      ]).replace('import ctypes', 'import ctypes, os'),
      { uid: true, seccomp: true },
    );
    expectDenied(r.stdout, 'sync -1 1\nsyncfs -1 1\nsysinfo -1 1\nF_NOTIFY -1 1\n', 'sync 0 0\nsyncfs 0 0\nsysinfo 0 0\nF_NOTIFY 0 0\n');
  });

  it('allow_seccomp_os_sync_sysconf_large_qsort_fsync_and_fcntl', async () => {
    // What reaches the calls above from Python goes on: os.sync() (glibc ignores sync's result),
    // sysconf and glibc's qsort (which reads sysinfo to size its buffer), fsync of an own file,
    // every other fcntl.
    const r = await runPython(
      [
        'import ctypes, fcntl, os, random',
        'os.sync(); print("os.sync")',
        'print("phys pages", type(os.sysconf("SC_PHYS_PAGES")).__name__, "cpus", os.cpu_count() > 0)',
        'values = [random.randrange(10**6) for _ in range(5000)]; a = (ctypes.c_int * 5000)(*values)',
        'ctypes.CDLL(None).qsort(a, 5000, 4, ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int))(lambda x, y: (x[0] > y[0]) - (x[0] < y[0])))',
        'print("qsort", list(a) == sorted(values))',
        'with open("f", "wb") as f: f.write(b"x"); f.flush(); os.fsync(f.fileno()); print("fsync", fcntl.fcntl(f.fileno(), fcntl.F_GETFD))',
      ].join('\n'),
      { uid: true, seccomp: true },
    );
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('os.sync\nphys pages int cpus True\nqsort True\nfsync 1\n');
  });

  it('allow_seccomp_stdlib_tempfile_multiprocessing_ctypes_callbacks_and_signals', async () => {
    // What CPython's stdlib does with processes and files goes through execve, fork/clone, pipes,
    // mkstemp and anonymous PROT_EXEC memory (ctypes callbacks): none of it is refused.
    const r = await runPython(
      [
        'import ctypes, multiprocessing, os, signal, subprocess, sys, tempfile, threading, time',
        'with tempfile.TemporaryDirectory() as d, tempfile.NamedTemporaryFile(dir=d) as f: f.write(b"x"); f.flush(); print("tempfile", os.path.getsize(f.name))',
        'p = multiprocessing.get_context("fork").Process(target=os._exit, args=(7,)); p.start(); p.join(); print("multiprocessing", p.exitcode)',
        'pid = os.posix_spawn(sys.executable, [sys.executable, "-c", "pass"], {}); print("posix_spawn", os.waitpid(pid, 0)[1])',
        'print("subprocess", subprocess.run([sys.executable, "-c", "print(3)"], capture_output=True).stdout)',
        'CMP = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int))',
        'a = (ctypes.c_int * 3)(3, 1, 2); ctypes.CDLL(None).qsort(a, 3, 4, CMP(lambda x, y: x[0] - y[0])); print("ctypes", list(a))',
        'signal.signal(signal.SIGUSR1, lambda *_: print("signal")); os.kill(os.getpid(), signal.SIGUSR1)',
        't = threading.Timer(0.01, print, args=("timer",)); t.start(); t.join()',
      ].join('\n'),
      { seccomp: true },
    );
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe("tempfile 1\nmultiprocessing 7\nposix_spawn 0\nsubprocess b'3\\n'\nctypes [1, 2, 3]\nsignal\ntimer\n");
  });

  it('allow_seccomp_unix_sockets_threads_and_subprocess', async () => {
    const r = await runPython(
      'import socket, threading, subprocess, sys\na, b = socket.socketpair(); a.send(b"x"); print(b.recv(1))\nt = threading.Thread(target=print, args=("thread",)); t.start(); t.join()\nprint(subprocess.run([sys.executable, "-c", "print(2)"], capture_output=True).stdout)',
      { seccomp: true },
    );
    expect(r.stdout).toBe("b'x'\nthread\nb'2\\n'\n");
  });
});

describe.skipIf(!isRoot)('mount namespace layer', () => {
  // A host service's Unix socket, root-owned but world-connectable, as /run/dbus's is. Landlock
  // (ABI <= 7) does not mediate connect() on pathname sockets: only the namespace hides it.
  const socketPath = `/run/cj-native-host-${process.pid}.sock`;
  let server: net.Server;
  beforeAll(async () => {
    server = net.createServer((s) => s.end('HOST-SERVICE\n'));
    await new Promise<void>((resolve) => server.listen(socketPath, resolve));
    fs.chmodSync(socketPath, 0o666);
  });
  afterAll(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const probe = (target: string) =>
    `import socket\ns = socket.socket(socket.AF_UNIX)\ntry:\n  s.connect(${JSON.stringify(target)}); print(s.recv(64).decode().strip())\nexcept OSError as e: print(type(e).__name__)`;

  it('deny_mntns_host_unix_socket_unreachable', async () => {
    const r = await runPython(probe(socketPath), { mntns: true, landlock: true, seccomp: true });
    expectDenied(r.stdout, 'FileNotFoundError\n', 'HOST-SERVICE\n');
  });

  it('allow_mntns_unix_socket_in_the_run_dir_and_hidden_dirs_are_empty', async () => {
    const dir = makeRunDir();
    const code =
      'import os, socket, threading\n' +
      'srv = socket.socket(socket.AF_UNIX); srv.bind("own.sock"); srv.listen(1)\n' +
      'threading.Thread(target=lambda: srv.accept()[0].sendall(b"mine"), daemon=True).start()\n' +
      'c = socket.socket(socket.AF_UNIX); c.connect("own.sock"); print(c.recv(4).decode())\n' +
      'print(os.listdir("/run"), os.listdir("/home"))';
    const r = await runPython(code, { mntns: true }, dir);
    expect(r.stdout).toBe('mine\n[] []\n');
    // The host still has its socket: the namespace changed only the sandbox's view.
    expect(fs.existsSync(socketPath)).toBe(true);
  });
});

describe.skipIf(!isRoot)('mount namespace layer: hidden directories hold nothing', () => {
  // Only the namespace stands between these probes and the host's /var/tmp (mode 1777): with the
  // layer sabotaged they land there, and are removed afterwards.
  const file = `/var/tmp/cj-native-hidden-${process.pid}`;
  const sock = `/var/tmp/cj-native-hidden-${process.pid}.sock`;
  afterAll(() => {
    fs.rmSync(file, { force: true });
    fs.rmSync(sock, { force: true });
  });
  const create =
    'import socket\n' +
    `try:\n  open(${JSON.stringify(file)}, "w"); print("created")\nexcept OSError as e: print(type(e).__name__, e.errno)\n` +
    `try:\n  socket.socket(socket.AF_UNIX).bind(${JSON.stringify(sock)}); print("bound")\nexcept OSError as e: print(type(e).__name__, e.errno)`;

  it('deny_mntns_slot_uid_creating_in_a_hidden_dir_is_permission_denied', async () => {
    // EACCES, as the original CodeJail's AppArmor answers anywhere outside the run (a read-only
    // mount would answer EROFS, "Read-only file system", which no other path gives).
    const r = await runPython(create, { uid: true, mntns: true });
    expectDenied(r.stdout, 'PermissionError 13\nPermissionError 13\n', 'created\nbound\n');
  });

  it('deny_mntns_root_in_the_sandbox_cannot_store_anything_in_a_hidden_dir', async () => {
    // Root (uid layer off) passes the permission check; the tmpfs has no inode to give (ENOSPC),
    // so the one namespace every run shares carries nothing from run to run.
    const r = await runPython(create, { mntns: true });
    // Without the namespace the file is made on the host (its socket may be there already).
    expectDenied(r.stdout, 'OSError 28\nOSError 28\n', /^created\n/);
  });
});

describe.skipIf(!isRoot)('network namespace layer', () => {
  it('deny_netns_host_loopback_unreachable', async () => {
    const server = net.createServer((s) => s.end());
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as net.AddressInfo).port;
    const probe = `import socket\ns = socket.socket()\ntry:\n  s.connect(("127.0.0.1", ${port})); print("connected")\nexcept OSError as e: print("unreachable", e.errno)\nprint(socket.if_nameindex())`;
    try {
      const denied = await runPython(probe, { netns: true });
      expectDenied(denied.stdout, /^unreachable \d+\n\[\(1, 'lo'\)\]\n$/, /^connected\n/);
      const allowed = await runPython(probe, {});
      expect(allowed.stdout).toMatch(/^connected\n/);
    } finally {
      server.close();
    }
  });
});

describe.skipIf(!isRoot)('kill layer (uid sweep)', () => {
  const leaveDaemon =
    'import os, time\nif os.fork() == 0:\n  os.setsid()\n  if os.fork() == 0:\n    os.closerange(0, 3)\n    time.sleep(60)\n  os._exit(0)\nprint("parent done")';
  afterAll(() => native().killUid(TEST_UID));

  it('deny_kill_uid_sweeps_setsid_double_forked_sleeper', async () => {
    const r = await runPython(leaveDaemon, { uid: true });
    expect(r.stdout).toBe('parent done\n');
    // Without the sweep the double-forked sleeper is still there: one process of the uid.
    expectDenied(processesOf(TEST_UID).length, 0, 1);
  });

  it('allow_kill_uid_leaves_other_uids_alone', async () => {
    const bystander = native().spawn({ file: '/usr/bin/sleep', argv: ['sleep', '30'], env: [], cwd: '/', uid: TEST_UID - 1, gid: TEST_UID - 1 });
    native().killUid(TEST_UID);
    expect(processesOf(TEST_UID - 1)).toContain(bystander.pid);
    native().killUid(TEST_UID - 1);
    await new Promise((resolve) => native().watchExit(bystander.pidfd, bystander.pid, resolve));
    for (const fd of [bystander.pidfd, bystander.stdin, bystander.stdout, bystander.stderr]) native().closeFd(fd);
  });
});

describe.skipIf(!isRoot)('set-up errors', () => {
  it('support_failed_step_is_reported_with_errno', () => {
    expect(() =>
      native().spawn({ file: '/nonexistent/python', argv: ['x'], env: [], cwd: '/' }),
    ).toThrow(expect.objectContaining({ step: 'execve', code: 'ENOENT' }));
    expect(() => native().spawn({ file: PYTHON, argv: ['x'], env: [], cwd: '/nonexistent-dir' })).toThrow(
      expect.objectContaining({ step: 'chdir', errno: 2 }),
    );
  });
});

