"""The jailed side of codejail's safeExec: plain Python 3, standard library only.

Run as the jailed code (``python3 -E -B jailed_code``) with the run directory as cwd. It reads
one JSON document from stdin::

    {"code": str, "globals": <tagged dict>, "python_path": [plain names in cwd]}

runs ``exec(code, g)`` with ``g`` decoded from the tagged globals, keeps the JSON-safe part of
``g`` (the original CodeJail's ``json_safe``) and writes it, tagged, to the result channel: file
descriptor 3, a pipe that is not stdout, so whatever the code prints cannot corrupt the result.

Tagged values (JSON): strings and finite numbers are themselves; null, true, false; a list is
``["l", item, ...]``; a dict ``["d", key1, value1, key2, value2, ...]``; an int outside
+-(2**53 - 1) is ``["i", "digits"]`` (at most MAX_INT_DIGITS digits: a longer one is dropped); a
float that JSON cannot carry (nan, +-inf, or one whose JSON text would read back as an int) is
``["f", "nan" | "inf" | "-inf" | "<repr>"]``; bytes are ``["b", "<base64>"]`` (inputs only:
json_safe decodes bytes in outputs).

Exit status: 0 with the result written; 1 when the code raised (the traceback goes to stderr
and nothing is written to the result channel); 2 when fd 3 is not open.
"""

import binascii
import os
import sys

RESULT_FD = 3
CODE_FILENAME = "<safe_exec code>"
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
            v = round_trip(decode_object(v))
            k = round_trip(decode_object(k))
        except Exception:  # pylint: disable=broad-except
            continue
        jd[k] = v
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
        if value != value or value in (float("inf"), float("-inf")):
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


# --- The run --------------------------------------------------------------------------------------


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _show_code_in_tracebacks(code):
    """Lets tracebacks print the code's own lines, under a name that is clearly the code's.

    Done only when the code has raised, not before it runs: linecache imports tokenize and re,
    which would cost every run more start-up time than everything else in this harness. (So a
    traceback the code prints itself shows the line numbers of its own lines, not their text,
    as the original CodeJail's "<string>" tracebacks do.)
    """
    import linecache

    linecache.cache[CODE_FILENAME] = (len(code), None, code.splitlines(True), CODE_FILENAME)


def main():
    try:
        os.fstat(RESULT_FD)
    except OSError:
        sys.stderr.write(
            "safe_exec harness: the result channel (fd %d) is not open; "
            "run it through safeExec, which provides it\n" % RESULT_FD
        )
        return 2

    request = _json_loads(sys.stdin.buffer.read().decode("utf-8"))
    code = request["code"]
    g = _decode_input(request["globals"])
    if not isinstance(g, dict):
        raise ValueError("globals must be a tagged dict")
    cwd = os.getcwd()
    for name in request.get("python_path", []):
        sys.path.append(os.path.join(cwd, name))

    # Only this process may write the result: keep it on a private close-on-exec fd (os.dup's
    # new fd is non-inheritable), free fd 3, and close the private fd in forked children.
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

    try:
        exec(compile(code, CODE_FILENAME, "exec"), g)  # pylint: disable=exec-used
    except SystemExit:
        raise
    except BaseException:  # pylint: disable=broad-except
        etype, value, tb = sys.exc_info()
        # Leave this harness's frame out of the traceback: it starts at the code (and is empty
        # for a SyntaxError, which names the code's line itself).
        tb = tb.tb_next
        value = value.with_traceback(tb)
        _show_code_in_tracebacks(code)
        if sys.excepthook is sys.__excepthook__:
            # The traceback module reads source lines through linecache, so the code's lines
            # show (the built-in hook of older Pythons reads them from files only).
            import traceback

            traceback.print_exception(etype, value, tb)
        else:
            sys.excepthook(etype, value, tb)
        sys.stderr.flush()
        return 1

    if channel["fd"] is None or os.getpid() != channel["pid"]:
        # A forked child returning from the code: only the original process reports.
        return 0
    _write_all(channel["fd"], encode_globals(json_safe(g)).encode("utf-8"))
    os.close(channel["fd"])
    channel["fd"] = None
    return 0


if __name__ == "__main__":
    sys.exit(main())
