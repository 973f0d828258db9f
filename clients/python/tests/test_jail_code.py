"""jail_code as edx-codejail's callers use it: code, files, argv, stdin, limits and overrides,
and what comes back (stdout and stderr bytes, status)."""

import logging
import os
import signal
import textwrap

import pytest

from codejail import jail_code


def run_python(code=None, **kwargs):
    return jail_code.jail_code("python", textwrap.dedent(code) if code else code, **kwargs)


def assert_clean_exit(res):
    assert (res.status, res.stderr) == (0, b""), res.stderr.decode("utf-8", "replace")


def test_output_and_status_of_a_clean_run():
    res = run_python("print('one', 2)")
    assert_clean_exit(res)
    assert res.stdout == b"one 2\n"


def test_argv_follows_the_code_file():
    res = run_python("import sys; print(sys.argv[0].rsplit('/', 1)[-1], sys.argv[1:])",
                     argv=["alpha", "--beta", "3"])
    assert_clean_exit(res)
    assert res.stdout == b"jailed_code ['alpha', '--beta', '3']\n"


def test_an_uncaught_exception_is_status_1_with_the_traceback_on_stderr():
    res = run_python("x = 1\nraise KeyError('missing')")
    assert res.status == 1
    assert res.stdout == b""
    stderr = res.stderr.decode("utf-8")
    assert stderr.startswith("Traceback (most recent call last):\n")
    assert 'jailed_code", line 2, in <module>' in stderr
    assert stderr.endswith("KeyError: 'missing'\n")


def test_stdin_as_text():
    res = run_python("import sys; print(sum(int(n) for n in sys.stdin.read().split()))", stdin="4\n5\n6\n")
    assert_clean_exit(res)
    assert res.stdout == b"15\n"


def test_stdin_as_binary_megabytes():
    data = bytes(range(256)) * 8192  # 2 MiB, every byte value
    res = run_python("import sys; d = sys.stdin.buffer.read(); print(len(d), sum(d))", stdin=data)
    assert_clean_exit(res)
    assert res.stdout == b"%d %d\n" % (len(data), sum(data))


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_binary_megabytes_of_output_come_back_whole(stream):
    res = run_python("""
        import sys
        sys.%s.buffer.write(bytes(range(256)) * 8192)
    """ % stream)
    assert res.status == 0
    assert getattr(res, stream) == bytes(range(256)) * 8192
    assert not res.truncated


def test_files_and_directories_are_copied_by_basename(tmp_path):
    (tmp_path / "greeting.txt").write_text("hi there\n")
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "sub" / "leaf.py").write_text("LEAF = 7\n")
    res = run_python("""
        import os
        for path, dirs, files in sorted(os.walk('.')):
            print(path, sorted(dirs), sorted(files))
        print(open('greeting.txt').read(), end='')
    """, files=[str(tmp_path / "greeting.txt"), str(pkg)])
    assert_clean_exit(res)
    assert res.stdout.decode().splitlines() == [
        ". ['pkg', 'tmp'] ['greeting.txt', 'jailed_code']",
        "./pkg ['sub'] []",
        "./pkg/sub [] ['leaf.py']",
        "./tmp [] []",
        "hi there",
    ]


def test_a_copied_file_runs_when_argv_names_it(tmp_path):
    (tmp_path / "main.py").write_text("import sys\nprint('main got', sys.argv)\n")
    res = run_python(files=[str(tmp_path / "main.py")], argv=["main.py", "x", "y"])
    assert_clean_exit(res)
    assert res.stdout == b"main got ['main.py', 'x', 'y']\n"


def test_extra_files_are_created_from_bytes():
    res = run_python(
        extra_files=[
            ("prog.py", b"import os\nprint(sorted(os.listdir('.')))\nprint(open('blob', 'rb').read())\n"),
            ("blob", b"\x00\xfe\xffend"),
        ],
        argv=["prog.py"],
    )
    assert_clean_exit(res)
    assert res.stdout == b"['blob', 'prog.py', 'tmp']\nb'\\x00\\xfe\\xffend'\n"


def test_a_symlink_to_a_file_not_sent_is_unreadable(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    sent = tmp_path / "sent"
    sent.mkdir()
    (sent / "data.txt").write_text("abc")
    os.symlink("data.txt", sent / "near.txt")
    os.symlink(outside / "secret.txt", sent / "far.txt")
    res = run_python("""
        print(open('sent/data.txt').read())
        print(open('sent/near.txt').read())
        print(open('sent/far.txt').read())
    """, files=[str(sent)])
    assert res.status != 0
    assert res.stdout == b"abc\nabc\n"
    assert b"Permission denied" in res.stderr


def test_the_code_cannot_write_outside_tmp():
    res = run_python("""
        print('before')
        open('/etc/codejail-test-file', 'w').write('x')
    """)
    assert res.status != 0
    assert res.stdout == b"before\n"
    assert b"ermission denied" in res.stderr or b"Read-only file system" in res.stderr


def test_a_slug_is_logged_with_the_run(caplog):
    with caplog.at_level(logging.INFO, logger="codejail"):
        run_python("print(1)", slug="course/problem-7")
    messages = [record.getMessage() for record in caplog.records]
    assert any(m.startswith("Preparing to execute jailed code 'course/problem-7' (overrides context = None")
               for m in messages), messages
    assert any(m.startswith("Executed jailed code course/problem-7 in ") and ", with PID " in m
               for m in messages), messages


def test_a_command_nobody_configured_raises():
    with pytest.raises(Exception, match=r"^jail_code needs to be configured for 'ruby'$"):
        jail_code.jail_code("ruby", "puts 1")


# -- limits ----------------------------------------------------------------------------------

ALLOCATE_100MB = "print(len(bytearray(100_000_000)))"


def test_vmem_below_the_allocation_is_a_memory_error():
    jail_code.set_limit("VMEM", 80_000_000)
    res = run_python(ALLOCATE_100MB)
    assert res.status == 1
    assert res.stdout == b""
    assert b"MemoryError" in res.stderr


def test_vmem_above_the_allocation_lets_it_run():
    jail_code.set_limit("VMEM", 200_000_000)
    res = run_python(ALLOCATE_100MB)
    assert_clean_exit(res)
    assert res.stdout == b"100000000\n"


def test_cpu_limit_ends_the_run_with_sigxcpu():
    jail_code.set_limit("CPU", 1)
    jail_code.set_limit("REALTIME", 10)
    res = run_python("while True: pass")
    assert (res.status, res.stdout, res.stderr) == (-signal.SIGXCPU, b"", b"")


def test_realtime_limit_kills_with_sigkill():
    jail_code.set_limit("REALTIME", 1)
    res = run_python("import time; time.sleep(3); print('late')")
    assert (res.status, res.stdout) == (-signal.SIGKILL, b"")
    assert res.timed_out


def test_fsize_limit_stops_a_large_file():
    jail_code.set_limit("FSIZE", 1000)
    res = run_python("""
        import tempfile
        with tempfile.TemporaryFile() as f:
            f.write(b'x' * 5000)
            f.flush()
    """)
    assert res.status != 0
    assert b"File too large" in res.stderr


def test_nproc_limit_stops_forking():
    jail_code.set_limit("NPROC", 1)
    res = run_python("""
        import os
        print('forking')
        os.fork()
    """)
    assert res.status != 0
    assert res.stdout == b"forking\n"
    assert b"BlockingIOError" in res.stderr


def test_an_override_context_applies_only_to_calls_naming_it():
    jail_code.set_limit("REALTIME", 1)
    jail_code.override_limit("REALTIME", 4, "course-v1:Slow+1+2")
    assert jail_code.get_effective_limits()["REALTIME"] == 1
    assert jail_code.get_effective_limits("course-v1:Slow+1+2")["REALTIME"] == 4
    assert jail_code.get_effective_limits("course-v1:Other+1+2") == jail_code.get_effective_limits()
    sleep = "import time; time.sleep(1.5); print('woke')"
    assert run_python(sleep).status == -signal.SIGKILL
    res = run_python(sleep, limit_overrides_context="course-v1:Slow+1+2")
    assert_clean_exit(res)
    assert res.stdout == b"woke\n"


def test_proxy_is_kept_in_limits_but_cannot_be_overridden(caplog):
    jail_code.set_limit("PROXY", 1)
    with caplog.at_level(logging.ERROR, logger="codejail"):
        jail_code.override_limit("PROXY", 0, "ctx")
    assert jail_code.get_effective_limits("ctx")["PROXY"] == 1
    assert "PROXY" in caplog.text
    assert run_python("print('ok')").stdout == b"ok\n"


def test_the_originals_limit_names_and_defaults():
    assert jail_code.DEFAULT_LIMITS == {
        "CPU": 1, "REALTIME": 1, "VMEM": 0, "FSIZE": 0, "NPROC": 15, "PROXY": None,
    }
    assert jail_code.get_effective_limits() == jail_code.LIMITS
