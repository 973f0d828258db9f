"""safe_exec (through the daemon) and not_safe_exec (in this process) as edx-platform calls
them: the globals go in and come back through JSON, files and python_path, the errors raised."""

import io
import os
import textwrap
import zipfile
from unittest import mock

import pytest

from codejail import jail_code, safe_exec
from codejail.safe_exec import SafeExecException, json_safe


@pytest.fixture(params=["safe_exec", "not_safe_exec"])
def exec_fn(request):
    return getattr(safe_exec, request.param)


def test_assignments_come_back_in_the_globals(exec_fn):
    globs = {"base": 5}
    exec_fn("double = base * 2\nprint('printing does not disturb the globals')", globs)
    assert globs == {"base": 5, "double": 10}


def test_functions_defined_in_the_code_can_call_each_other(exec_fn):
    globs = {}
    exec_fn(textwrap.dedent("""\
        def inner(n):
            return n + 1
        def outer():
            return inner(41)
        answer = outer()
    """), globs)
    assert globs["answer"] == 42


def test_globals_pass_through_the_json_straw(exec_fn):
    globs = {}
    exec_fn(textwrap.dedent("""\
        nested = {7: b'seven', 'k': (1, b'x', [b'y'])}
        undecodable = b'\\xfe'
        a_set = {1, 2}
    """), globs)
    assert globs["nested"] == {"7": "seven", "k": [1, "x", ["y"]]}
    assert "undecodable" not in globs
    assert "a_set" not in globs
    assert "inner" not in globs


def test_files_are_in_the_working_directory(exec_fn, tmp_path):
    (tmp_path / "notes.txt").write_text("line one\n")
    globs = {}
    exec_fn("text = open('notes.txt').read().upper()", globs, files=[str(tmp_path / "notes.txt")])
    assert globs["text"] == "LINE ONE\n"


def test_a_python_path_directory_is_importable(exec_fn, tmp_path):
    lib = tmp_path / "mylib"
    lib.mkdir()
    (lib / "helpers_for_codejail_test.py").write_text("VALUE = 99\n")
    globs = {}
    exec_fn("import helpers_for_codejail_test as h; v = h.VALUE", globs, python_path=[str(lib)])
    assert globs["v"] == 99


def test_extra_files_text_and_binary(exec_fn):
    globs = {}
    exec_fn(textwrap.dedent("""\
        with open('readme.txt') as f:
            words = f.read().split()
        with open('raw.bin', 'rb') as f:
            hexed = f.read().hex()
    """), globs, extra_files=[("readme.txt", b"two words\n"), ("raw.bin", b"\x00\x10\xff")])
    assert globs["words"] == ["two", "words"]
    assert globs["hexed"] == "0010ff"


def test_a_zip_in_extra_files_on_python_path(exec_fn):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("zipmod_a.py", "def triple(n):\n    return 3 * n\n")
        zf.writestr("zipmod_b.py", "def wrap(s):\n    return '[' + s + ']'\n")
    globs = {}
    exec_fn("import zipmod_a, zipmod_b\nt = zipmod_a.triple(5)\nw = zipmod_b.wrap('z')", globs,
            python_path=["lib.zip"], extra_files=[("lib.zip", buf.getvalue())])
    assert (globs["t"], globs["w"]) == (15, "[z]")


def test_safe_exec_failure_carries_output_status_and_traceback():
    with pytest.raises(SafeExecException) as raised:
        # What the code prints is not kept (as in the original's harness): stdout is empty.
        safe_exec.safe_exec("print('partial')\nraise ValueError(\"can't divide soup\")", {})
    message = str(raised.value)
    assert message.startswith("Couldn't execute jailed code: stdout: b'', stderr: b'Traceback")
    assert "ValueError: can\\'t divide soup" in message or 'ValueError: can\'t divide soup' in message
    assert message.endswith(" with status code: 1")


def test_not_safe_exec_failure_is_the_exception_class_and_message():
    with pytest.raises(SafeExecException) as raised:
        safe_exec.not_safe_exec("raise ValueError('bad input')", {})
    assert str(raised.value) == "ValueError: bad input"


def test_not_configured_for_python_is_a_runtime_error():
    with mock.patch("codejail.jail_code.is_configured", return_value=False) as is_configured:
        with pytest.raises(RuntimeError, match=r"^safe_exec has not been configured for Python$"):
            safe_exec.safe_exec("x = 1", {})
    is_configured.assert_called_once_with("python")


def test_not_configured_after_a_reset_too():
    jail_code.COMMANDS = {}
    with pytest.raises(RuntimeError, match="safe_exec has not been configured for Python"):
        safe_exec.safe_exec("x = 1", {})


def test_always_be_unsafe_is_read_at_call_time_and_skips_the_daemon(monkeypatch):
    monkeypatch.setattr(safe_exec, "ALWAYS_BE_UNSAFE", True)
    with mock.patch("codejail.safe_exec.not_safe_exec") as unsafe, \
            mock.patch("codejail.jail_code.is_configured") as is_configured:
        safe_exec.safe_exec("y = 2", {"k": 1}, slug="dbg")
    is_configured.assert_not_called()
    unsafe.assert_called_once_with(
        "y = 2", {"k": 1},
        files=None, python_path=None, limit_overrides_context=None, slug="dbg", extra_files=None,
    )


def test_always_be_unsafe_runs_in_this_process(monkeypatch):
    monkeypatch.setattr(safe_exec, "ALWAYS_BE_UNSAFE", True)
    jail_code.COMMANDS = {}  # not even configured: the daemon is not asked
    globs = {}
    safe_exec.safe_exec("import os; pid = os.getpid()", globs)
    assert globs["pid"] == os.getpid()


# -- json_safe --------------------------------------------------------------------------------

def test_json_safe_decodes_bytes_and_stringifies_keys():
    assert json_safe({1: b"one", "t": (b"a", 2), "d": {2: [b"b"]}}) == {"1": "one", "t": ["a", 2], "d": {"2": ["b"]}}


def test_json_safe_drops_entries_that_are_not_json():
    cleaned = json_safe({
        b"\xffkey": "v1", "val": b"\xff", "fn": len, "obj": object(), "__builtins__": {},
        "kept": None, "f": 1.5,
    })
    assert cleaned == {"kept": None, "f": 1.5}


@pytest.mark.parametrize("char", [chr(0xFF), chr(0x200), chr(0xFFFF), "\U0001F600"])
def test_json_safe_keeps_non_surrogate_unicode(char):
    assert json_safe({"v": char}) == {"v": char}
    assert json_safe({char: "k"}) == {char: "k"}


def test_json_safe_survives_every_lone_surrogate():
    for code in range(0xD800, 0xE000):
        json_safe({"v": chr(code)})
        json_safe({chr(code): "k"})
