"""The jailed side of codejail's safeExec: plain Python 3, standard library only.

Run as the jailed code (``python3 -E -B jailed_code``) with the run directory as cwd. It reads
its request from stdin: the code's length in bytes (decimal) and a newline, the code (UTF-8),
then one JSON document::

    {"globals": <tagged dict>, "python_path": [plain names in cwd]}

The code is not in the JSON: the daemon passes the caller's code on as UTF-8, unescaped, and the
globals as the bytes the caller sent (src/kinds/safe_exec_input.ts).

runs ``exec(code, g_dict)`` with ``g_dict`` decoded from the tagged globals, keeps the JSON-safe
part of ``g_dict`` (the original CodeJail's ``json_safe``) and writes it, tagged, to the result
channel: file descriptor 3, a pipe that is not stdout, so whatever the code writes to fd 1 cannot
corrupt the result. As in the original, sys.stdout discards what the code prints, and a traceback
shows this harness's frame as ``File "jailed_code", line N, in <module>`` with its line
``exec(code, g_dict)``, then the code's frames as ``File "<string>"``.

Tagged values (JSON): strings and finite numbers are themselves; null, true, false; a list is
``["l", item, ...]``; a dict ``["d", key1, value1, key2, value2, ...]``; an int outside
+-(2**53 - 1) is ``["i", "digits"]`` (at most MAX_INT_DIGITS digits: a longer one is dropped); a
float that JSON cannot carry (nan, +-inf, or one whose JSON text would read back as an int) is
``["f", "nan" | "inf" | "-inf" | "<repr>"]``; bytes are ``["b", "<base64>"]`` (inputs only:
json_safe decodes bytes in outputs).

Before the code runs, a seccomp filter makes every execve fail (forbid_starting_programs): no
program can be started from the run, not even the interpreter, as under the original's AppArmor.

Exit status: 0 with the result written; 1 when the code raised (the traceback goes to stderr
and nothing is written to the result channel); 2 when fd 3 is not open, the request on stdin is
malformed (a line on stderr says why) or starting programs cannot be forbidden.
"""

import binascii
import os
import sys

RESULT_FD = 3
# What tracebacks call this harness: the name of the file the run directory holds, as the
# original's jailed code is named (Python >= 3.9 would print the absolute path of the script).
HARNESS_NAME = "jailed_code"
MAX_SAFE_INTEGER = 2 ** 53 - 1
# The client refuses a result with an int of more digits (its ResultBounds.maxIntDigits, Python's
# default int_max_str_digits): such an int is dropped here, like anything else json_safe cannot
# carry, even when the code lifted the interpreter's own limit (or the interpreter has none).
MAX_INT_DIGITS = 4300
_TOO_MANY_DIGITS = 10 ** MAX_INT_DIGITS


# --- JSON without importing json -----------------------------------------------------------------
#
# The json package imports re, and importing re costs more start-up time than the rest of this
# harness together (about 8 ms of a safeExec('a = 17') run). json's C accelerators in _json are
# what json.dumps and json.loads use anyway, so they are called directly here, with the same
# settings; where they are missing (an interpreter built without them) json itself is used.

_WHITESPACE = " \t\n\r"
_CONSTANTS = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}


def _not_serializable(obj):
    raise TypeError("Object of type %s is not JSON serializable" % type(obj).__name__)


class _ScannerContext:
    """The attributes _json.make_scanner reads from a json.JSONDecoder, with its defaults."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = _CONSTANTS.__getitem__


def _make_codec():
    try:
        import _json

        scan = _json.make_scanner(_ScannerContext())
        make_encoder = _json.make_encoder
        encode_string = _json.encode_basestring
    except (ImportError, AttributeError):
        import json

        def dumps(value, allow_nan):
            return json.dumps(value, ensure_ascii=False, allow_nan=allow_nan, separators=(",", ":"))

        return dumps, json.loads

    def dumps(value, allow_nan):
        # A fresh encoder per call, as json.dumps makes: its markers dict (cycle detection) may
        # keep entries after an encoding that raised.
        encoder = make_encoder({}, _not_serializable, encode_string, None, ":", ",", False, False, allow_nan)
        return "".join(encoder(value, 0))

    def loads(text):
        start = len(text) - len(text.lstrip(_WHITESPACE))
        try:
            value, end = scan(text, start)
        except StopIteration as err:
            raise ValueError("invalid JSON: expecting a value at offset %d" % err.value) from None
        except SystemError:
            # _json raises a syntax error as json.decoder.JSONDecodeError, which it looks up in
            # sys.modules only (CPython <= 3.11): with json not imported, it fails without an
            # exception. Only a caller's malformed request comes here: json itself then says
            # what is wrong, and importing it costs nothing to a run that goes on.
            import json

            json.loads(text)
            raise
        if text[end:].strip(_WHITESPACE):
            raise ValueError("invalid JSON: extra data at offset %d" % end)
        return value

    return dumps, loads


_json_dumps, _json_loads = _make_codec()


# --- The original's json_safe -------------------------------------------------------------------


def json_safe(d):
    """Return only the JSON-safe part of d (a dict), as the original CodeJail's json_safe.

    The round trip goes through UTF-8 bytes, the way the result really travels, so strings with
    unpaired surrogates (which UTF-8 cannot carry) drop their entry like undecodable bytes do.
    """
    # bytes are ok if they are valid UTF-8: decode_object decodes them, or raises and the entry
    # is dropped. bool passes as int.
    ok_types = (type(None), int, float, bytes, str, list, tuple, dict)

    def decode_object(obj):
        if isinstance(obj, bytes):
            return obj.decode("utf-8")
        if isinstance(obj, (list, tuple)):
            return [decode_object(i) for i in obj]
        if isinstance(obj, dict):
            new_dict = {}
            for k, v in obj.items():
                new_dict[decode_object(k)] = decode_object(v)
            return new_dict
        return obj

    def round_trip(obj):
        # Encoding to UTF-8 is what drops an unpaired surrogate (UnicodeEncodeError).
        text = _json_dumps(obj, True)
        text.encode("utf-8")
        return _json_loads(text)

    def round_trip_value(obj):
        # A str comes back from the round trip as itself, or the round trip raises where encoding
        # it to UTF-8 raises: that check alone spares dumping and loading a string of megabytes.
        # An ASCII str (str.isascii() reads a flag) cannot hold a surrogate.
        if type(obj) is str:
            if not obj.isascii():
                obj.encode("utf-8")
            return obj
        return round_trip(decode_object(obj))

    # __warningregistry__ is the interpreter's own bookkeeping: any warning raised by the code's
    # frame (even an ignored ResourceWarning for an unclosed file) puts it in the globals.
    bad_keys = ("__builtins__", "__warningregistry__")
    jd = {}
    for k, v in list(d.items()):
        if not isinstance(v, ok_types):
            continue
        if k in bad_keys:
            continue
        try:
            v = round_trip_value(v)
            k = round_trip_value(k)
        except Exception:  # pylint: disable=broad-except
            continue
        jd[k] = v
    # Each value and key has been round-tripped already, and a second trip gives them back
    # unchanged; what the trip of the whole dict still does is turn keys that are not str into
    # JSON's key strings (1 and "1" then become one entry). With only str keys there is none.
    if all(type(k) is str for k in jd):
        return jd
    return round_trip(jd)


# --- Tagged encoding ------------------------------------------------------------------------------


def _float_text(value):
    if value != value:
        return "nan"
    if value == float("inf"):
        return "inf"
    if value == float("-inf"):
        return "-inf"
    return repr(value)


def encode(value):
    """A JSON-safe value (after json_safe) as a tagged JSON value."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            return int(value)
        # A comparison, not len(str(value)): str() of a huge int costs quadratic time.
        if abs(value) >= _TOO_MANY_DIGITS:
            raise ValueError("an int of more than %d digits" % MAX_INT_DIGITS)
        return ["i", str(int(value))]
    if isinstance(value, float):
        # A whole-number float as a plain JSON number (2.0) reads back as an int on the client's
        # side: tagged, it stays a float for the callers that keep the difference.
        if value != value or value in (float("inf"), float("-inf")) or value.is_integer():
            return ["f", _float_text(value)]
        return float(value)
    if isinstance(value, (list, tuple)):
        return ["l"] + [encode(item) for item in value]
    if isinstance(value, dict):
        out = ["d"]
        for k, v in value.items():
            out.append(encode(k))
            out.append(encode(v))
        return out
    if isinstance(value, bytes):
        return ["b", binascii.b2a_base64(value, newline=False).decode("ascii")]
    raise TypeError("cannot encode a %s" % type(value).__name__)


def encode_globals(jd):
    """The tagged dict of json_safe's result, as JSON text.

    Entry by entry, so that one too deeply nested for the encoder (RecursionError) is dropped
    like any other entry json_safe cannot carry, instead of failing the whole run.
    """
    parts = ['"d"']
    for k, v in jd.items():
        try:
            pair = "%s,%s" % (_dumps(encode(k)), _dumps(encode(v)))
        except (RecursionError, ValueError, TypeError):
            continue
        parts.append(pair)
    return "[" + ",".join(parts) + "]"


def _dumps(value):
    return _json_dumps(value, False)


def _hashable(value):
    """Dict keys must be hashable: a list key (from a tagged list) becomes a tuple."""
    if isinstance(value, list):
        return tuple(_hashable(item) for item in value)
    return value


def decode(value):
    """A tagged JSON value as the Python value it stands for."""
    if value is None or isinstance(value, (bool, str, int, float)):
        return value
    if isinstance(value, list) and value and isinstance(value[0], str):
        tag = value[0]
        if tag == "l":
            return [decode(item) for item in value[1:]]
        if tag == "d":
            if len(value) % 2 != 1:
                raise ValueError("a tagged dict needs key, value pairs")
            out = {}
            for i in range(1, len(value), 2):
                out[_hashable(decode(value[i]))] = decode(value[i + 1])
            return out
        if tag == "i" and len(value) == 2 and isinstance(value[1], str):
            return int(value[1])
        if tag == "f" and len(value) == 2 and isinstance(value[1], str):
            return float(value[1])
        if tag == "b" and len(value) == 2 and isinstance(value[1], str):
            return binascii.a2b_base64(value[1].encode("ascii"))
    raise ValueError("not a tagged value: %r" % (value,))


def _decode_input(tagged):
    # Big ints may have more digits than int() accepts by default (3.11+); lift the limit while
    # decoding only, so the code runs under the interpreter's usual setting.
    getter = getattr(sys, "get_int_max_str_digits", None)
    if getter is None:
        return decode(tagged)
    saved = getter()
    sys.set_int_max_str_digits(0)
    try:
        return decode(tagged)
    finally:
        sys.set_int_max_str_digits(saved)


# --- No program may be started -------------------------------------------------------------------
#
# The sandbox must let the interpreter itself be executed, so Landlock grants it execute and a
# run could start it again (subprocess.run([sys.executable, ...])). Before the code runs, this
# harness closes that for good: a seccomp filter on top of the daemon's, inherited by every fork
# and impossible to remove, answers execve and execveat with EACCES (PermissionError, as the
# original's AppArmor profile answers). It is kernel-enforced, so native code the run loads (a
# ctypes call, an extension module) cannot start a program either.

# machine: (AUDIT_ARCH_* of <linux/audit.h>, execve, execveat)
_EXEC_SYSCALLS = {
    "x86_64": (0xC000003E, 59, 322),
    "aarch64": (0xC00000B7, 221, 281),
}
_X32_SYSCALL_BIT = 0x40000000
_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2
_SECCOMP_RET_KILL_PROCESS = 0x80000000
_SECCOMP_RET_ERRNO = 0x00050000
_SECCOMP_RET_ALLOW = 0x7FFF0000
_EACCES = 13
_BPF_LD_W_ABS = 0x20
_BPF_JEQ_K = 0x15
_BPF_JGE_K = 0x35
_BPF_RET_K = 0x06


def _exec_filter(machine):
    """The filter's instructions as (code, jt, jf, k): execve and execveat of this ABI get EACCES."""
    arch, execve, execveat = _EXEC_SYSCALLS[machine]
    program = [
        (_BPF_LD_W_ABS, 0, 0, 4),  # seccomp_data.arch
        (_BPF_JEQ_K, 1, 0, arch),
        # Another ABI (i386 through int 0x80) numbers its calls otherwise: nothing it may do.
        (_BPF_RET_K, 0, 0, _SECCOMP_RET_KILL_PROCESS),
        (_BPF_LD_W_ABS, 0, 0, 0),  # seccomp_data.nr
    ]
    if machine == "x86_64":
        # x32 calls share the architecture with the x32 bit set: their execve too.
        program += [(_BPF_JGE_K, 0, 1, _X32_SYSCALL_BIT), (_BPF_RET_K, 0, 0, _SECCOMP_RET_KILL_PROCESS)]
    program += [
        (_BPF_JEQ_K, 2, 0, execve),
        (_BPF_JEQ_K, 1, 0, execveat),
        (_BPF_RET_K, 0, 0, _SECCOMP_RET_ALLOW),
        (_BPF_RET_K, 0, 0, _SECCOMP_RET_ERRNO | _EACCES),
    ]
    return program


_installer = None


def prepare_forbidding():
    """Builds what forbid_starting_programs installs, once (a warm template does it before forking)."""
    global _installer
    if _installer is not None:
        return _installer
    import struct

    machine = os.uname().machine
    if machine not in _EXEC_SYSCALLS:
        raise OSError("no seccomp filter for the machine %r" % machine)
    try:
        import ctypes
    except ImportError as err:
        raise OSError("ctypes is not available (%s)" % err) from None

    class SockFprog(ctypes.Structure):  # struct sock_fprog
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    program = _exec_filter(machine)
    code = ctypes.create_string_buffer(b"".join(struct.pack("=HBBI", *insn) for insn in program))
    fprog = SockFprog(len(program), ctypes.cast(code, ctypes.c_void_p))
    libc = ctypes.CDLL(None, use_errno=True)
    prctl = libc.prctl
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    fprog_address = ctypes.addressof(fprog)

    def call(option, arg2, arg3, name):
        if prctl(option, arg2, arg3, 0, 0) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, "prctl(%s): %s" % (name, os.strerror(errno)))

    def install():
        # The daemon has set no_new_privs already (the unsafe client has not): the kernel
        # installs a filter for an unprivileged process only under it.
        call(_PR_SET_NO_NEW_PRIVS, 1, None, "PR_SET_NO_NEW_PRIVS")
        call(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, fprog_address, "PR_SET_SECCOMP")

    # The buffers must live as long as the installer.
    install.keep = (code, fprog)
    _installer = install
    return install


# Set by a warm template (python/warm_template.py) once its own seccomp filter is installed: that
# filter already answers execve and execveat with EACCES, in the template and in every fork of it,
# and cannot be removed, so a run forked from it has nothing to add.
programs_refused_by_template = False


def forbid_starting_programs():
    """Installs the filter on this process, or raises OSError saying why it could not."""
    if programs_refused_by_template:
        return
    prepare_forbidding()()


# --- The run --------------------------------------------------------------------------------------


class DevNull:
    """sys.stdout while the code runs: what it prints is discarded, as the original's is.

    The result travels on its own channel, so printing could not corrupt it; stdout is discarded
    because the original's safe_exec discards it, and callers rely on that (stderr is kept).
    """

    def write(self, *args, **kwargs):
        pass

    def flush(self, *args, **kwargs):
        pass


def _open_channel():
    """The result channel, on a private fd only this process may write, or None if fd 3 is not open.

    The private fd is os.dup's (non-inheritable, so close-on-exec); fd 3 is closed so the code
    cannot find it there, and forked children close the private fd too.
    """
    try:
        os.fstat(RESULT_FD)
    except OSError:
        return None
    channel = {"fd": os.dup(RESULT_FD), "pid": os.getpid()}
    os.close(RESULT_FD)

    def _close_in_child():
        fd = channel["fd"]
        channel["fd"] = None
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass

    os.register_at_fork(after_in_child=_close_in_child)
    return channel


# At most this many digits of the code's length before its newline (a length of up to 10**20 bytes).
_MAX_LENGTH_DIGITS = 20


def _read_request():
    """The code and its globals, read from stdin; python_path entries are added to sys.path."""
    data = sys.stdin.buffer.read()
    newline = data.find(b"\n", 0, _MAX_LENGTH_DIGITS + 1)
    if newline < 1 or not data[:newline].isdigit():
        raise ValueError("the request does not start with the code's length in bytes and a newline")
    start = newline + 1
    end = start + int(data[:newline])
    if end > len(data):
        raise ValueError("the request ends inside its code")
    with memoryview(data) as view:
        code = str(view[start:end], "utf-8")
        text = str(view[end:], "utf-8")
    # The bytes go before the document is parsed: globals near the run's memory limit must not
    # need room for a third copy of themselves.
    del data
    request = _json_loads(text)
    del text
    if not isinstance(request, dict):
        raise ValueError("the request after the code is not a JSON object")
    g_dict = _decode_input(request["globals"])
    if not isinstance(g_dict, dict):
        raise ValueError("globals must be a tagged dict")
    cwd = os.getcwd()
    for name in request.get("python_path", []):
        sys.path.append(os.path.join(cwd, name))
    return code, g_dict


def _name_harness_frames(report, harness_file):
    """Names this harness's frames HARNESS_NAME in a TracebackException and those it chains."""
    seen = set()
    pending = [report]
    while pending:
        te = pending.pop()
        if te is None or id(te) in seen:
            continue
        seen.add(id(te))
        for frame in te.stack:
            if frame.filename == harness_file:
                frame.filename = HARNESS_NAME
        pending.extend([te.__cause__, te.__context__] + list(getattr(te, "exceptions", None) or ()))


def print_traceback(exc):
    """Prints exc's traceback to stderr as the interpreter would, this harness named HARNESS_NAME.

    Through the code's own sys.excepthook if it set one, as the interpreter would call it.
    """
    if sys.excepthook is not sys.__excepthook__:
        sys.excepthook(type(exc), exc, exc.__traceback__)
        return
    # Imported only now: traceback imports linecache, tokenize and re, which would cost every
    # run more start-up time than everything else in this harness.
    import traceback

    # Source lines are read (lookup_lines) before the frames are renamed, from the real file.
    report = traceback.TracebackException(type(exc), exc, exc.__traceback__)
    _name_harness_frames(report, __file__)
    sys.stderr.write("".join(report.format()))
    sys.stderr.flush()


def report_globals(g_dict, channel):
    """Writes the JSON-safe globals to the result channel, from the original process only."""
    if channel["fd"] is None or os.getpid() != channel["pid"]:
        # A forked child returning from the code: only the original process reports.
        return
    _write_all(channel["fd"], encode_globals(json_safe(g_dict)).encode("utf-8"))
    os.close(channel["fd"])
    channel["fd"] = None


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


if __name__ == "__main__":
    channel = _open_channel()
    if channel is None:
        sys.stderr.write(
            "safe_exec harness: the result channel (fd %d) is not open; "
            "run it through safeExec, which provides it\n" % RESULT_FD
        )
        sys.exit(2)
    try:
        code, g_dict = _read_request()
    except Exception as err:  # pylint: disable=broad-except
        # The request is the caller's (its globals travel untouched through the daemon): what is
        # wrong with it is said in one line, not as a traceback of this harness.
        sys.stderr.write("safe_exec harness: bad request: %s: %s\n" % (type(err).__name__, err))
        sys.exit(2)
    try:
        forbid_starting_programs()
    except OSError as err:
        # Fail closed: the code must not run where it could start programs.
        sys.stderr.write("safe_exec harness: cannot forbid starting programs: %s\n" % err)
        sys.exit(2)
    sys.stdout = DevNull()

    # As the original's jailed code: exec at module level with the code as a string, so a
    # traceback shows the same frames, this line (in <module>) then "<string>" for the code.
    try:
        exec(code, g_dict)
    except SystemExit:
        raise
    except BaseException as exc:  # pylint: disable=broad-except
        print_traceback(exc)
        sys.exit(1)
    report_globals(g_dict, channel)
