// Reproductions from the hostile review (issue 12, items 8 to 10), end to end through a real
// daemon with every layer this kernel offers: kernel objects the whole host shares, code run
// without an execute right, and runs signalling each other through the network namespace. Each
// deny_<layer>_* test fails with that layer off (CODEJAIL_SABOTAGE=<layer>, see scripts/sabotage.mjs).
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Client } from '../../src/client/index.js';
import { dedent } from '../helpers/cases.js';
import { expectDenied } from '../helpers/denial.js';
import { TEST_RUN_PATH } from '../helpers/daemon.js';
import { daemonSuite } from '../helpers/suite.js';

const isRoot = process.getuid?.() === 0;
const IO_SETUP = process.arch === 'arm64' ? 0 : 206;

describe.skipIf(!isRoot)('hostile: kernel objects, the exec boundary, runs side by side', () => {
  const suite = daemonSuite();
  const py = (options: Parameters<Client['jailCode']>[1]) => suite.client.jailCode('python', options);
  const out = async (options: Parameters<Client['jailCode']>[1]) => (await py(options)).stdout.toString();

  it('deny_seccomp_aio_contexts_take_from_the_host_wide_budget', async () => {
    // Review: io_setup took fs.aio-nr to fs.aio-max-nr for the whole run; root then got EAGAIN.
    // (Capped at half the default budget, so that the sabotaged run does not starve this host.)
    const stdout = await out({
      code: dedent(`
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        events, err = 0, 0
        while events < 32768:
            ctx = ctypes.c_ulong(0)
            if libc.syscall(${IO_SETUP}, 4096, ctypes.byref(ctx)) != 0:
                err = ctypes.get_errno()
                break
            events += 4096
        print("aio events", events, "errno", err)
        `),
    });
    // Without the filter contexts are made, or the host's budget answers (EAGAIN): the kernel's
    // answer, not the filter's.
    expectDenied(stdout, 'aio events 0 errno 1\n', /^aio events \d+ errno (0|11)\n$/);
  });

  it('deny_seccomp_inotify_names_files_in_a_directory_the_run_cannot_list', async () => {
    // A world-readable directory that Landlock does not let the sandbox list (nor the mount
    // namespace hide): a watch on it would name every file the host creates there.
    const dir = `/var/lib/codejail-test/cj-inotify-${process.pid}`;
    fs.mkdirSync(dir, { mode: 0o755, recursive: true });
    fs.chmodSync(dir, 0o755);
    try {
      const run = out({
        code: dedent(`
          import ctypes, os, select, struct
          libc = ctypes.CDLL(None, use_errno=True)
          try:
              os.listdir(${JSON.stringify(dir)})
              print("listed")
          except PermissionError:
              print("cannot list")
          fd = libc.inotify_init1(0)
          if fd < 0:
              print("inotify_init1", ctypes.get_errno())
          elif libc.inotify_add_watch(fd, ${JSON.stringify(dir)}.encode(), 0x100) < 0:
              print("inotify_add_watch", ctypes.get_errno())
          elif select.select([fd], [], [], 8)[0]:
              data = os.read(fd, 4096)
              length = struct.unpack_from("iIII", data)[3]
              print("saw", data[16:16 + length].rstrip(b"\\0").decode())
          else:
              print("nothing")
          `),
        limits: { REALTIME: 12 },
      });
      // Create files until the run ends: the sabotaged run reports one; the confined one has ended.
      let finished = false;
      void run.finally(() => (finished = true)).catch(() => undefined);
      for (let n = 0; !finished && n < 100; n++) {
        fs.writeFileSync(path.join(dir, `host-secret-${n}`), '');
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      // Without the filter the watch names a file the host made.
      expectDenied(await run, 'cannot list\ninotify_init1 1\n', /^cannot list\nsaw host-secret-\d+\n$/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it.skipIf(process.arch !== 'x64')('deny_seccomp_memfd_runs_an_elf_the_run_wrote', async () => {
    // Review: with FSIZE > 0, memfd_create + fexecve (execveat) ran code that is not a file
    // Landlock grants execute on. The ELF: write(1, msg, len); exit(0), for x86_64.
    const stdout = await out({
      code: dedent(`
        import os, struct
        msg = b"ran code the run wrote\\n"
        code = (b"\\xb8\\x01\\x00\\x00\\x00\\xbf\\x01\\x00\\x00\\x00\\x48\\x8d\\x35" + struct.pack("<i", 16)
                + b"\\xba" + struct.pack("<I", len(msg)) + b"\\x0f\\x05\\xb8\\x3c\\x00\\x00\\x00\\x31\\xff\\x0f\\x05" + msg)
        base, size = 0x400000, 120 + len(code)
        elf = (b"\\x7fELF\\x02\\x01\\x01" + bytes(9)
               + struct.pack("<HHIQQQIHHHHHH", 2, 62, 1, base + 120, 64, 0, 0, 64, 56, 1, 0, 0, 0)
               + struct.pack("<IIQQQQQQ", 1, 5, 0, base, base, size, size, 0x1000) + code)
        try:
            fd = os.memfd_create("payload")
            os.write(fd, elf)
            os.execve(fd, ["payload"], {})
        except OSError as e:
            print(type(e).__name__, e.errno)
        `),
      limits: { FSIZE: 100_000 },
    });
    expectDenied(stdout, 'PermissionError 13\n', 'ran code the run wrote\n');
  });

  it('deny_rlimit_per_uid_kernel_objects_are_bounded', async () => {
    // Message queue bytes, locked memory and queued signals count per uid (or per process) in the
    // kernel: each run gets none of the first two and a few of the last, whatever the daemon had.
    const stdout = await out({
      code: dedent(`
        import ctypes, mmap, resource, signal, threading
        libc = ctypes.CDLL(None, use_errno=True)
        print(*(resource.getrlimit(r) for r in (resource.RLIMIT_MSGQUEUE, resource.RLIMIT_MEMLOCK, resource.RLIMIT_SIGPENDING)))
        buf = mmap.mmap(-1, 4096)
        print("mlock", libc.mlock(ctypes.c_void_p(ctypes.addressof(ctypes.c_char.from_buffer(buf))), 4096), ctypes.get_errno())
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGRTMIN})
        queued = 0
        for _ in range(1000):
            try:
                signal.pthread_kill(threading.get_ident(), signal.SIGRTMIN)
                queued += 1
            except OSError:
                pass
        print("queued", queued)
        `),
    });
    // Without the layer the limits are the daemon's: the page is locked and every signal queued.
    expectDenied(stdout, '(0, 0) (0, 0) (128, 128)\nmlock -1 1\nqueued 128\n', /\nmlock 0 \d+\nqueued 1000\n$/);
  });

  it('deny_netns_abstract_socket_between_runs', async () => {
    // Review: abstract Unix socket names are per network namespace, and every run joined the same
    // one: a run holding a name made the same bind() in another slot fail (EADDRINUSE), a signal
    // between concurrent runs. Each run binds, holds the name a while, and says when; the test
    // checks the two holds overlapped, so both binds succeeding means separate namespaces.
    const name = `cj-hostile-${process.pid}`;
    const code = dedent(`
      import socket, time
      s = socket.socket(socket.AF_UNIX)
      try:
          s.bind("\\0${name}")
          start = time.time()
          time.sleep(2)
          print("held", start, time.time())
      except OSError as e:
          print("refused", e.errno)
      `);
    const [a, b] = await Promise.all([out({ code, limits: { REALTIME: 10 } }), out({ code, limits: { REALTIME: 10 } })]);
    // Sharing one namespace, the second bind finds the name taken (EADDRINUSE).
    const outcomes = [a, b].map((o) => (o.startsWith('held ') ? 'held' : o.trim())).sort();
    expectDenied(outcomes, ['held', 'held'], ['held', 'refused 98']);
    const [, aStart, aEnd] = a.trim().split(' ').map(Number);
    const [, bStart, bEnd] = b.trim().split(' ').map(Number);
    expect(aStart! < bEnd! && bStart! < aEnd!).toBe(true);
  });

  it('allow_abstract_sockets_within_a_run_and_ordinary_python', async () => {
    // The per-slot namespace and the seccomp list leave what student code does alone: threads, a
    // child interpreter (cold runs: a warm one cannot start programs), temp files, ctypes
    // callbacks, an abstract socket between two of its threads.
    const stdout = await out({
      code: dedent(`
        import ctypes, socket, subprocess, sys, tempfile, threading
        srv = socket.socket(socket.AF_UNIX); srv.bind("\\0cj-own"); srv.listen(1)
        threading.Thread(target=lambda: srv.accept()[0].sendall(b"mine"), daemon=True).start()
        c = socket.socket(socket.AF_UNIX); c.connect("\\0cj-own"); print(c.recv(4).decode())
        try: print(subprocess.run([sys.executable, "-c", "print(2)"], capture_output=True).stdout.decode().strip())
        except PermissionError: print("no exec")
        with tempfile.TemporaryFile() as f: f.write(b"abc"); f.seek(0); print(f.read().decode())
        CMP = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int))
        a = (ctypes.c_int * 3)(3, 1, 2); ctypes.CDLL(None).qsort(a, 3, 4, CMP(lambda x, y: x[0] - y[0])); print(list(a))
        `),
      limits: { FSIZE: 1000 },
    });
    // A warm run starts no program (seccomp and Landlock refuse execve): no child interpreter.
    expect(stdout).toBe(`mine\n${TEST_RUN_PATH !== 'cold' ? 'no exec' : '2'}\nabc\n[1, 2, 3]\n`);
  });
});
