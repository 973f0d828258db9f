"""What this package adds to the original's behaviour: the daemon's socket, its limits, its errors,
threads and fork. Runs against the daemon the root conftest found (CODEJAIL_SOCKET)."""

import os
import threading

import pytest

from codejail import _wire, jail_code, safe_exec
from codejail.django_integration_utils import apply_django_settings
from codejail.errors import CodejailError

# The daemon's own default VMEM (src/protocol/schema.ts DEFAULT_LIMITS), which the test daemon
# keeps: the original's VMEM 0 must not replace it unless a caller sets it.
DAEMON_DEFAULT_VMEM = 1024 * 1024 * 1024


def test_limits_nobody_set_are_the_daemons():
    assert jail_code.requested_limits() == {}
    res = jail_code.jail_code("python", "print(1)")
    assert res.status == 0
    assert res.limits["VMEM"] == DAEMON_DEFAULT_VMEM
    # get_effective_limits still answers with the original's figures.
    assert jail_code.get_effective_limits()["VMEM"] == 0


def test_limits_a_caller_set_are_sent_even_at_the_originals_default():
    jail_code.set_limit("VMEM", 0)
    jail_code.set_limit("CPU", 1)
    jail_code.set_limit("PROXY", 1)
    jail_code.override_limit("REALTIME", 3, "slow")
    assert jail_code.requested_limits() == {"VMEM": 0, "CPU": 1}
    assert jail_code.requested_limits("slow") == {"VMEM": 0, "CPU": 1, "REALTIME": 3}
    res = jail_code.jail_code("python", "print(1)", limit_overrides_context="slow")
    assert (res.limits["VMEM"], res.limits["CPU"], res.limits["REALTIME"]) == (0, 1, 3)


def test_a_fresh_limits_dict_forgets_what_was_set():
    jail_code.set_limit("VMEM", 0)
    jail_code.LIMITS = jail_code.DEFAULT_LIMITS.copy()
    assert jail_code.requested_limits() == {}


def test_bad_limits_are_refused_where_they_are_set():
    with pytest.raises(ValueError, match="unknown limit 'VMEN'"):
        jail_code.set_limit("VMEN", 1)
    with pytest.raises(ValueError, match="limit NPROC must be an integer"):
        jail_code.set_limit("NPROC", 1.5)
    with pytest.raises(ValueError, match="limit CPU must be a finite number >= 0"):
        jail_code.override_limit("CPU", -1, "ctx")


def test_a_limit_over_the_daemons_ceiling_is_its_error():
    jail_code.set_limit("CPU", 10_000)
    with pytest.raises(CodejailError, match="CPU 10000 exceeds the ceiling") as caught:
        jail_code.jail_code("python", "print(1)")
    assert caught.value.code == "limit_exceeds_ceiling"
    # The connection is still in step: the next call works.
    jail_code.set_limit("CPU", 1)
    assert jail_code.jail_code("python", "print(2)").stdout == b"2\n"


def test_a_command_the_daemon_lacks():
    jail_code.configure("ruby", "/usr/bin/ruby")
    with pytest.raises(CodejailError, match='unknown command "ruby"; this daemon runs: ') as caught:
        jail_code.jail_code("ruby", "puts 1")
    assert caught.value.code == "unknown_command"


def test_not_configured_is_the_originals_error():
    with pytest.raises(Exception, match="jail_code needs to be configured for 'node'"):
        jail_code.jail_code("node", "1")
    jail_code.COMMANDS = {}
    with pytest.raises(RuntimeError, match="^safe_exec has not been configured for Python$"):
        safe_exec.safe_exec("a = 1", {})


def test_the_socket_comes_from_settings_then_the_environment_then_the_default(monkeypatch, tmp_path):
    environment_socket = os.environ.get("CODEJAIL_SOCKET")
    monkeypatch.delenv("CODEJAIL_SOCKET", raising=False)
    assert _wire.socket_path() == "/run/codejail/codejail.sock"
    monkeypatch.setenv("CODEJAIL_SOCKET", "/elsewhere.sock")
    assert _wire.socket_path() == "/elsewhere.sock"
    missing = str(tmp_path / "missing.sock")
    apply_django_settings({"socket": missing})
    assert _wire.socket_path() == missing
    with pytest.raises(CodejailError, match="cannot connect to the codejail daemon at .*missing.sock: ENOENT") as caught:
        jail_code.jail_code("python", "print(1)")
    assert caught.value.code == "unavailable"
    apply_django_settings({"socket": environment_socket})
    assert jail_code.jail_code("python", "print(1)").stdout == b"1\n"


def test_always_be_unsafe_needs_no_daemon(monkeypatch, tmp_path):
    _wire.set_socket_path(str(tmp_path / "missing.sock"))
    monkeypatch.setattr(safe_exec, "ALWAYS_BE_UNSAFE", True)
    globs = {}
    safe_exec.safe_exec("a = 6 * 7", globs)
    assert globs == {"a": 42}


def test_safe_exec_failure_message_is_the_originals():
    with pytest.raises(safe_exec.SafeExecException) as caught:
        safe_exec.safe_exec("x = 1\nraise ValueError('no soup')", {})
    message = str(caught.value)
    assert message.startswith("Couldn't execute jailed code: stdout: b'', stderr: b'Traceback (most recent call last):\\n")
    assert "File \"jailed_code\"" in message
    assert message.endswith("ValueError: no soup\\n' with status code: 1")


def test_safe_exec_globals_round_trip_as_json_would():
    globs = {"big": 10 ** 30, "whole": 2.0, "nan": float("nan"), "t": (1, b"x"), "d": {1: [2]}, "f": print}
    safe_exec.safe_exec("big += 1\nwhole *= 2\nout = [type(v).__name__ for v in (big, whole, t, d)]", globs)
    assert globs["big"] == 10 ** 30 + 1
    assert globs["whole"] == 4.0 and isinstance(globs["whole"], float)
    assert globs["nan"] != globs["nan"]
    assert globs["t"] == [1, "x"]
    assert globs["d"] == {"1": [2]}
    assert globs["out"] == ["int", "float", "list", "dict"]
    # As the original: update, so an entry that could not travel stays as it was.
    assert globs["f"] is print


def test_threads_each_use_their_own_connection():
    failures = []
    connections = set()

    def work(n):
        try:
            for i in range(4):
                globs = {"n": n, "i": i}
                safe_exec.safe_exec("out = n * 100 + i", globs)
                assert globs["out"] == n * 100 + i
            connections.add(id(_wire._local.connection))
        except Exception as err:  # pylint: disable=broad-except
            failures.append(err)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert len(connections) == 6


def test_a_forked_child_opens_its_own_connection():
    assert jail_code.jail_code("python", "print('parent')").stdout == b"parent\n"
    parents = _wire._local.connection
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            res = jail_code.jail_code("python", "print('child')")
            if res.stdout == b"child\n" and _wire._local.connection is not parents:
                code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    # The parent's connection is still its own, and in step.
    assert _wire._local.connection is parents
    assert jail_code.jail_code("python", "print('parent again')").stdout == b"parent again\n"
    assert _wire._local.connection is parents
