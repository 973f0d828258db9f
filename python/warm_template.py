"""A warm template interpreter: codejaild's fast path for commands of kind python.

codejaild starts one template per warm command (src/run/template.ts), as root, in the runs' mount
namespace and an empty network namespace of its own, with the command's interpreter flags and a
run's environment. It does not run this file from the install (which that namespace may not
show): a bootstrap (src/run/template_boot.ts) reads this file's text, the harness and the library
from its stdin, as the daemon read them at its start, and starts Template. The template imports
the safeExec harness and the configured preloads, with --seccomp (the seccomp layer is active)
installs on itself the runs' warm seccomp policy but setns (native/seccomp.cc), then serves forks
over its channel (fd 3, a SOCK_SEQPACKET socket to the daemon). It never runs
submitted code and holds nothing secret: every run is a fresh child forked from it, which applies
the run's plan to itself (libcodejail_warm.so: the same confinement core as a cold run) before any
of the run's code is read, and then runs either a script as ``__main__`` (jailCode) or the
safeExec harness, the way a cold interpreter started on that file would.

Messages, daemon to template: ``RUN1`` (a header, the flattened plan, then a JSON tail: mode,
argv, env), with the run's fds attached; ``HLD1``, the same for a run started ahead of its
request (a held run): its tail says only whether fd 3 is a result channel, and its child, once
confined and reported, waits on its stdin for a go record (``GO01``, the rest of the tail's
length, then that tail: cj_warm_await_go), which the daemon writes when the request comes, or for
the end of its stdin, when the daemon discards it; ``DRN1``: take no more runs, exit once the children are
gone; ``PNG1``: say ``PONG`` (the daemon's check that an idle template still answers). Template
to daemon, a 4-byte kind and JSON: ``REDY`` once; ``PONG``; ``WARN`` for a message it could not
use; and per run, in binary, ``EXIT`` once it reaped the child: the token, the wait status and
the struct rusage, as wait4() wrote them. Per run, from the child (cj_warm_start, in C), 16
bytes: ``OKAY`` with the token and its pid, its pidfd attached (it is confined, its code is about
to run), or ``FAIL`` with the token, the step that failed and errno.
"""

def _vm_size_kb():
    with open("/proc/self/status", "rb") as status:
        for line in status:
            if line.startswith(b"VmSize:"):
                return int(line.split()[1])
    return 0


# Before any import of this file's own: the address space a fresh interpreter has when it starts a
# script, which a cold run of the same command has too.
VM_START_KB = _vm_size_kb()

import array  # noqa: E402
import ctypes  # noqa: E402
import fcntl
import json  # noqa: E402
import mmap  # noqa: E402
import os  # noqa: E402
import select  # noqa: E402
import socket  # noqa: E402
import struct  # noqa: E402
import sys  # noqa: E402

# The interpreter's own module table (what the C API's PyImport_GetModule reads), kept apart from
# the sys.modules attribute, which a run may rebind or delete.
INTERPRETER_MODULES = sys.modules

CHANNEL_FD = 3
# The channel is moved up here, out of the way of the fds a run's child moves onto 0..3.
CHANNEL_FLOOR = 64
HEADER = struct.Struct("=4sIII")  # kind, token, plan length, tail length (native/warm_send.cc)
REPORT = struct.Struct("=4sIii")  # OKAY (pid) or FAIL (step, errno), as native/warm_apply.cc sends them
# EXIT: kind, token, then the wait status and the struct rusage wait4() wrote, as they are.
EXIT_HEAD = struct.Struct("=4sI")
WAIT_STATUS_BYTES = 4
# struct rusage on 64-bit Linux: two struct timeval, then 14 longs (ru_maxrss first).
RUSAGE_BYTES = 144
MAX_MESSAGE = 512 * 1024
MAX_FDS = 16
PY_FILE_INPUT = 257  # Py_file_input (CPython's Include/compile.h): a module's statements
# Where the harness's code claims to come from; tracebacks rename it "jailed_code" as cold runs do.
HARNESS_FILENAME = "<codejail-harness>"
# How often the template reaps children it did not fork: a run's clone(CLONE_PARENT) makes its
# child the template's, and one that gives no exit signal wakes nothing. Unreaped, such a zombie
# is a process of the slot's uid that no sweep can remove: the slot would be quarantined for good.
REAP_POLL_SECONDS = 0.1
# waitpid's __WALL: children of any exit signal (or none), not only SIGCHLD ones.
WAIT_ALL = 0x40000000


def parse_args(argv):
    options = {"preload": [], "seccomp": False}
    it = iter(argv)
    for arg in it:
        if arg in ("--lib", "--harness"):
            options[arg[2:]] = next(it)
        elif arg == "--preload":
            options["preload"] = [name for name in next(it).split(",") if name]
        elif arg == "--seccomp":
            options["seccomp"] = True
        else:
            raise SystemExit("warm_template: unknown argument %r" % arg)
    return options


class Template:
    def __init__(self, options):
        self.pid = os.getpid()
        channel_fd = fcntl.fcntl(CHANNEL_FD, fcntl.F_DUPFD_CLOEXEC, CHANNEL_FLOOR)
        # fd 3 stays taken, so the fds a run brings arrive at 4 and above, where moving them onto
        # 0..3 can never overwrite one not yet moved.
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, CHANNEL_FD)
        os.close(null)
        self.channel = socket.socket(fileno=channel_fd)
        self.lib = ctypes.CDLL(options["lib"])
        self.lib.cj_warm_start.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t,
            ctypes.c_int, ctypes.c_int, ctypes.c_uint32, ctypes.c_int,
        ]
        if self.lib.cj_warm_init() != 0:
            raise SystemExit("warm_template: cj_warm_init failed")
        self.harness = self._compile_harness(options["harness"])
        for name in options["preload"]:
            __import__(name)
        # What a run's tracebacks need, imported now rather than in every run. Not threading
        # (unless a preload imports it): its at-fork hook runs in every child before anything
        # else, and rebuilding its locks and thread table there wrote about 140 pages of the
        # template's heap, each a copy-on-write fault (a third of a warm child's).
        import atexit  # noqa: F401
        import traceback  # noqa: F401
        import types  # noqa: F401

        self.vm_ready_kb = _vm_size_kb()
        # Everything the template holds moves to the collector's permanent generation: a child's
        # collections then never walk (and so never copy-on-write) the template's objects.
        import gc

        gc.collect()
        gc.freeze()
        self.children = {}  # pidfd -> (pid, token)
        self.pidfds = {}  # pid -> pidfd, of the same children
        # A child's exit is collected into these and sent from `exit_report`, all three zeroed
        # once it is sent: the next runs' forks find nothing of an earlier run's exit (its
        # status, CPU time, peak memory) in the template's memory, as with the message buffer.
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.libc.wait4.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
        self.wait_status = (ctypes.c_char * WAIT_STATUS_BYTES)()
        self.rusage = (ctypes.c_char * RUSAGE_BYTES)()
        self.exit_report = (ctypes.c_char * (EXIT_HEAD.size + WAIT_STATUS_BYTES + RUSAGE_BYTES))()
        # Every message is read into this one buffer (see receive): a mapping of its own, whose
        # pages exist only once a message has written them and are dropped after it. Each fork
        # copies the page table entries of the template's present pages, and each child's exit
        # unmaps them again: a buffer kept present (zeroed) cost both for all its 128 pages.
        self.message_map = mmap.mmap(-1, MAX_MESSAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        self.raw = (ctypes.c_char * MAX_MESSAGE).from_buffer(self.message_map)
        self.buffer = memoryview(self.raw).cast("B")
        self.view = self.buffer
        self.ancillary_size = socket.CMSG_SPACE(MAX_FDS * array.array("i").itemsize)
        self.draining = False
        # An epoll instance, not a selectors.Selector: its registrations (the channel, the children's
        # pidfds) live in the kernel, so a child has nothing of them in its memory to empty.
        self.poller = select.epoll()
        self.poller.register(channel_fd, select.EPOLLIN)
        self.channel_fd = channel_fd
        # What start-up freed (the files read from stdin, compiling the harness) goes back to the
        # kernel, for the reason the message buffer's pages do.
        self.libc.malloc_trim(0)
        if options["seccomp"]:
            # Last: the template itself is held to the runs' policy but setns from here on, and
            # each child adds a one-rule filter instead of compiling the whole policy again.
            # Should it fail, the children install the whole policy themselves, as before.
            err = self.lib.cj_warm_filter_template()
            if err:
                write_stderr("codejail warm template: its own seccomp filter failed (errno %d); runs install the whole policy\n" % err)
            else:
                # Its filter answers execve and execveat with EACCES, as the harness's would.
                self.harness[0].programs_refused_by_template = True

    def _compile_harness(self, source):
        """The safeExec harness (its source, as the daemon read it), imported once; each run
        executes only its main block.

        The module and, on its own at its own line numbers, its main block are compiled under
        HARNESS_FILENAME, so that a traceback shows the frames a cold run shows ("jailed_code",
        line N, in <module>); the main block runs in the module's namespace (the child's copy),
        where the harness expects it.
        """
        import linecache
        import types

        text = source.decode("utf-8")
        module = types.ModuleType("codejail_safe_exec_harness")
        module.__file__ = HARNESS_FILENAME
        exec(compile(text, HARNESS_FILENAME, "exec", dont_inherit=True), module.__dict__)
        module.prepare_forbidding()
        lines = text.splitlines(True)
        start = next(i for i, line in enumerate(lines) if line.startswith('if __name__ == "__main__":'))
        main = compile("\n" * start + "".join(lines[start:]), HARNESS_FILENAME, "exec", dont_inherit=True)
        # Cached with no mtime, linecache never looks for a file of that name: the traceback's
        # source line ("exec(code, g_dict)") comes from here.
        linecache.cache[HARNESS_FILENAME] = (len(text), None, lines, HARNESS_FILENAME)
        return module, main

    def fail(self, token, errno_value):
        """A run the template could not even fork: FAIL, as a child reports it (step -1: the message)."""
        self.channel.send(REPORT.pack(b"FAIL", token, -1, errno_value))

    def send(self, kind, body, fds=()):
        data = kind + json.dumps(body, separators=(",", ":")).encode()
        if fds:
            socket.send_fds(self.channel, [data], list(fds))
        else:
            self.channel.send(data)

    def serve(self):
        self.send(b"REDY", {"pid": self.pid, "vmStartKb": VM_START_KB, "vmReadyKb": self.vm_ready_kb})
        while True:
            # A child's pidfd wakes the loop as it exits; reap() collects every child that has.
            for fd, _ in self.poller.poll(REAP_POLL_SECONDS):
                if fd == self.channel_fd:
                    if not self.receive():
                        return
            self.reap()
            if self.draining and not self.children:
                return

    def receive(self):
        """Handles one message; False when the daemon is gone.

        A run's message is read into one buffer that lives as long as the template, parsed only
        in the child, and dropped from the template right after the fork (its pages discarded:
        a later read finds zero pages): nothing of one run (its argv above all) stays in the
        template's memory, where the next runs' forks would find it.
        """
        try:
            size, ancillary, flags, _ = self.channel.recvmsg_into([self.buffer], self.ancillary_size)
        except BlockingIOError:
            return True
        fds = []
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.extend(array.array("i", data[: len(data) - len(data) % 4]))
        if size == 0 and not fds:
            return False
        try:
            head = bytes(self.buffer[:4])
            if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
                self.send(b"WARN", {"message": "a message was cut short"})
            elif head == b"DRN1":
                self.draining = True
            elif head == b"PNG1":
                self.send(b"PONG", {})
            elif head in (b"RUN1", b"HLD1") and not self.draining:
                self.fork(size, fds, held=head == b"HLD1")
            else:
                self.send(b"WARN", {"message": "unexpected message %r" % head})
        finally:
            # Gone, not zeroed: the next read of these pages finds fresh zero pages.
            self.message_map.madvise(mmap.MADV_DONTNEED)
            for fd in fds:
                os.close(fd)
        return True

    def fork(self, size, fds, held=False):
        kind, token, plan_len, tail_len = HEADER.unpack_from(self.buffer)
        if HEADER.size + plan_len + tail_len != size:
            self.fail(token, 22)
            return
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            try:
                self.child(token, plan_len, tail_len, fds, held)
            finally:
                os._exit(127)
        pidfd = os.pidfd_open(pid)
        self.children[pidfd] = (pid, token)
        self.pidfds[pid] = pidfd
        self.poller.register(pidfd, select.EPOLLIN)

    def reap(self):
        """Reaps every child that has exited: a run's is reported (EXIT), any other one (a run's
        clone(CLONE_PARENT) child) only counted. One wait for all, so that no exit status of a
        run's child is taken by a wait for some other child."""
        strays = 0
        while True:
            # libc's wait4 into buffers of the template's own, not os.wait4: no Python object is
            # made of a run's status and usage, so none is left behind once it is freed.
            pid = self.libc.wait4(-1, self.wait_status, os.WNOHANG | WAIT_ALL, self.rusage)
            if pid <= 0:
                break
            pidfd = self.pidfds.pop(pid, None)
            if pidfd is None:
                strays += 1
            else:
                _, token = self.children.pop(pidfd)
                self.poller.unregister(pidfd)
                os.close(pidfd)
                self.report_exit(token)
            ctypes.memset(self.wait_status, 0, WAIT_STATUS_BYTES)
            ctypes.memset(self.rusage, 0, RUSAGE_BYTES)
        if strays:
            self.send(b"WARN", {"message": "reaped %d process(es) a run made the template's child" % strays})

    def report_exit(self, token):
        report = self.exit_report
        EXIT_HEAD.pack_into(report, 0, b"EXIT", token)
        ctypes.memmove(ctypes.addressof(report) + EXIT_HEAD.size, self.wait_status, WAIT_STATUS_BYTES)
        ctypes.memmove(ctypes.addressof(report) + EXIT_HEAD.size + WAIT_STATUS_BYTES, self.rusage, RUSAGE_BYTES)
        try:
            self.channel.send(memoryview(report).cast("B"))
        finally:
            ctypes.memset(report, 0, len(report))

    # --- In the forked child --------------------------------------------------------------------

    def child(self, token, plan_len, tail_len, fds, held):
        # The run's own part, in this child's copy of the buffer only. A held run's says only
        # whether fd 3 is a result channel; the rest comes with its go record.
        try:
            tail = json.loads(bytes(self.view[HEADER.size + plan_len:HEADER.size + plan_len + tail_len]))
            tail["result"]
            if not held:
                tail["mode"], tail["script"], tail["argv"], tail["env"]
        except (ValueError, KeyError, TypeError):
            self.fail(token, 22)
            os._exit(127)
        plan = ctypes.addressof(self.raw) + HEADER.size
        # Packed before the call: every Python statement in the child copies template pages.
        packed = struct.pack("=%di" % len(fds), *fds)
        channel_fd = self.channel.detach()
        err = self.lib.cj_warm_start(plan, plan_len, packed, len(fds), self.pid, channel_fd, token, 1 if tail["result"] else 0)
        if err:
            os._exit(127)
        # The template's frames stay below the run's code: what they reach must say nothing of
        # other runs (the children in flight). The poller watching them keeps its registrations
        # in the kernel, in the epoll instance the seal closed; the object stays (freed, it would
        # close its fd's number, which by then may be the run's). Emptying a selectors.Selector
        # here instead cost about 45 copy-on-write faults per run.
        self.children.clear()
        self.pidfds.clear()
        reseed_preloads()
        if held:
            tail = self.await_go(plan_len)
        run_as_main(tail, self.harness)

    def await_go(self, plan_len):
        """A held run's go: the rest of its tail, read from its stdin into this child's copy of
        the message buffer (after the plan). Everything above ran ahead of the request; a run the
        daemon discards ends here, quietly, when its stdin ends."""
        at = HEADER.size + plan_len
        await_go = self.lib.cj_warm_await_go
        await_go.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        await_go.restype = ctypes.c_long
        length = await_go(ctypes.addressof(self.raw) + at, MAX_MESSAGE - at)
        if length == -32:  # -EPIPE: discarded
            os._exit(0)
        try:
            if length < 0:
                raise ValueError("no go record (errno %d)" % -length)
            tail = json.loads(bytes(self.view[at:at + length]))
            tail["mode"], tail["script"], tail["argv"], tail["env"]
            return tail
        except (ValueError, KeyError, TypeError) as exc:
            write_stderr("codejail warm template: a held run's go record is unusable: %s\n" % exc)
            os._exit(127)


def reseed_preloads():
    """Random state a preload seeded at import is the template's, the same in every fork.

    Python reseeds `random` in each fork (os.register_at_fork); numpy's global generator is
    reseeded here from the OS's entropy, as a cold interpreter's import of numpy seeds it.
    """
    numpy_random = sys.modules.get("numpy.random")
    if numpy_random is not None:
        numpy_random.seed()


def run_as_main(tail, harness):
    """Runs the run's program as a cold interpreter would run it as its script, then exits."""
    import builtins
    import types

    # The template started with a run's environment (HOME and TMPDIR aside): change only what
    # differs, since every write here copies pages of the template's heap.
    env = tail["env"]
    environ = os.environ
    for name in [name for name in environ if name not in env]:
        del environ[name]
    for name, value in env.items():
        if environ.get(name) != value:
            environ[name] = value
    cwd = os.getcwd()
    # The interpreter and its options, as a cold run's command line has them before the script.
    interpreter = sys.orig_argv[: len(sys.orig_argv) - len(sys.argv)]
    sys.argv = [tail["script"]] + list(tail["argv"])
    sys.orig_argv = interpreter + sys.argv
    sys.path[0] = cwd
    if tail["mode"] == "safe_exec":
        # The harness's own module (imported once by the template), as a cold run's __main__ is.
        module, code = harness
        module.__name__ = "__main__"
        main = module
    else:
        path = os.path.join(cwd, tail["script"])
        main = types.ModuleType("__main__")
        # The globals a cold interpreter's __main__ has for a script, in its order: a program
        # that lists globals(), or reads its source through __loader__ (inspect), sees the same.
        import importlib.machinery

        main.__annotations__ = {}
        main.__builtins__ = builtins
        main.__file__ = path
        main.__cached__ = None
        main.__loader__ = importlib.machinery.SourceFileLoader("__main__", path)
    namespace = main.__dict__
    sys.modules["__main__"] = main
    status = 0
    uncaught = None
    try:
        if tail["mode"] != "safe_exec":
            with open(path, "rb") as f:
                source = f.read()
            if b"\0" in source:
                if sys.version_info < (3, 12):
                    source = without_nul_tails(source)
                else:
                    raise_nul_syntax_error(path)
            code = compile(source, path, "exec", dont_inherit=True)
        exec(code, namespace)
    except SystemExit as exc:
        status = exit_status(exc)
    except BaseException as exc:  # noqa: BLE001 - every uncaught exception, as the interpreter
        uncaught = exc
    # Out of the except clauses: what the hook, atexit handlers or the final flush raise must not
    # carry the program's exception as its context, as it does not in a cold interpreter's C code.
    if uncaught is not None:
        status = report_uncaught(uncaught)
        if isinstance(uncaught, KeyboardInterrupt) and status is None:
            interrupted()
    finish(1 if status is None else status)


def without_nul_tails(source):
    """The source as CPython < 3.12 reads a script file: each line ends at a NUL byte, its newline
    dropped with the rest (compile() would refuse the NUL with a ValueError instead)."""
    lines = source.splitlines(keepends=True)
    return b"".join(line.split(b"\0", 1)[0] if b"\0" in line else line for line in lines)


def raise_nul_syntax_error(path):
    """Raises the SyntaxError CPython >= 3.12 raises for a script file holding a NUL byte, which
    compile() of its bytes does not give (ValueError or "source code string cannot contain null
    bytes", with no line): the file is parsed by CPython's own file reader, as a cold run's script
    is (PyRun_FileExFlags: its tokenizer stops at the NUL's line, or reports an earlier error,
    exactly as the interpreter does). A file holding a NUL never parses, so nothing of it runs; the
    namespace given is a throwaway one all the same."""
    libc = ctypes.CDLL(None, use_errno=True)
    fopen = libc.fopen
    fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    fopen.restype = ctypes.c_void_p
    run_file = ctypes.pythonapi.PyRun_FileExFlags
    run_file.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.py_object, ctypes.py_object, ctypes.c_int, ctypes.c_void_p]
    run_file.restype = ctypes.py_object
    name = os.fsencode(path)
    fp = fopen(name, b"rb")
    if not fp:
        errno_value = ctypes.get_errno()
        raise OSError(errno_value, os.strerror(errno_value), path)
    import builtins

    namespace = {"__builtins__": builtins}
    run_file(fp, name, PY_FILE_INPUT, namespace, namespace, 1, None)  # 1: fclose when done
    raise SyntaxError("source code cannot contain null bytes")  # not reached: it never parses


def exit_status(exc):
    """The status an interpreter exits with for an uncaught SystemExit (printing a non-int code)."""
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    try:
        sys.stderr.write(str(code) + "\n")
    except Exception:  # noqa: BLE001
        pass
    return 1


def without_template_frames(exc):
    """The exception's traceback without this file's frames, which a cold run does not have."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    exc.__traceback__ = tb
    return tb


def report_uncaught(exc):
    """sys.excepthook with the template's own frames taken off the traceback, failing as
    CPython's _PyErr_PrintEx does: a hook that raises SystemExit exits with it (its status is
    returned; None otherwise); one that raises anything else has both tracebacks printed; no hook
    at all prints the exception plainly."""
    tb = without_template_frames(exc)
    if not hasattr(sys, "excepthook"):
        write_stderr("sys.excepthook is missing\n")
        display(exc)
        return None
    hook_exc = None
    try:
        sys.excepthook(type(exc), exc, tb)
    except SystemExit as exit_exc:
        return exit_status(exit_exc)
    except BaseException as caught:  # noqa: BLE001 - whatever the hook raised, as CPython
        hook_exc = caught
    if hook_exc is not None:
        without_template_frames(hook_exc)
        write_stderr("Error in sys.excepthook:\n")
        display(hook_exc)
        write_stderr("\nOriginal exception was:\n")
        display(exc)
    return None


def display(exc):
    """PyErr_Display: the traceback, whatever sys.excepthook is now."""
    try:
        sys.__excepthook__(type(exc), exc, exc.__traceback__)
    except Exception:  # noqa: BLE001
        pass


def write_stderr(text):
    try:
        sys.stderr.write(text)
    except Exception:  # noqa: BLE001
        pass


def interrupted():
    """An uncaught KeyboardInterrupt ends the interpreter by SIGINT, as since Python 3.8: after
    the interpreter's shutdown (Py_RunMain finalizes first, then kills itself)."""
    import signal

    shutdown()
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGINT)
    os._exit(130)


def flush_stream(stream):
    """Flushes a standard stream that is there and open: False when that failed."""
    if stream is None:
        return True
    try:
        # As file_is_closed(): a stream without a readable `closed` counts as open.
        if stream.closed:
            return True
    except Exception:  # noqa: BLE001
        pass
    try:
        stream.flush()
        return True
    except Exception as exc:  # noqa: BLE001
        if stream is sys.stdout:
            # CPython's flush_std_files reports stdout's error as unraisable, with the traceback
            # of the flush only; stderr's is dropped. Before 3.13 the unraisable is the stream
            # ("Exception ignored in: <stdout>"), since then a message of its own.
            import traceback

            if sys.version_info >= (3, 13):
                heading = "Exception ignored on flushing sys.stdout:\n"
            else:
                heading = "Exception ignored in: %r\n" % (stream,)
            try:
                sys.stderr.write(heading)
                traceback.print_exception(type(exc), exc, without_template_frames(exc), file=sys.stderr)
                sys.stderr.flush()
            except Exception:  # noqa: BLE001
                pass
        return False


def shutdown():
    """Interpreter shutdown, as far as a run can tell: threads joined, atexit, streams flushed.
    False when a standard stream could not be flushed (the interpreter then exits 120)."""
    import atexit

    # As Py_FinalizeEx's wait_for_thread_shutdown: only when the run imported threading (no thread
    # of its own can run without it), looked up in the interpreter's own module table, which a run
    # that rebinds or deletes sys.modules does not change.
    try:
        threading = INTERPRETER_MODULES.get("threading")
        if threading is not None:
            threading._shutdown()
    except BaseException:  # noqa: BLE001
        pass
    atexit._run_exitfuncs()
    stdout_ok = flush_stream(sys.stdout)
    stderr_ok = flush_stream(sys.stderr)
    return stdout_ok and stderr_ok


def finish(status):
    """Exits as Py_Exit(status) does: after the shutdown, with 120 if a stream failed to flush."""
    os._exit(status if shutdown() else 120)


if __name__ == "__main__":
    # Started as a file (by hand): the library and the harness named on the command line. codejaild
    # instead hands both over with this file's text, through src/run/template_boot.ts.
    main_options = parse_args(sys.argv[1:])
    with open(main_options["harness"], "rb") as harness_file:
        main_options["harness"] = harness_file.read()
    Template(main_options).serve()
