"""Runs the tests against a codejail daemon: the one at $CODEJAIL_SOCKET (test/e2e/python_package.test.ts
starts one and sets it), else at the default socket path.

"python" is configured as edx-platform's settings.CODE_JAIL['python_bin'] would configure it:
the run uses the daemon's command "python" whatever path is named.
"""

import sys

import pytest

from codejail import _wire, jail_code
from codejail.errors import CodejailError


def pytest_configure(config):  # pylint: disable=unused-argument
    try:
        status = _wire.request('status', {})
    except CodejailError as err:
        raise pytest.UsageError(
            "these tests need a running codejail daemon (set CODEJAIL_SOCKET to its socket): %s" % err
        ) from err
    finally:
        # Not kept open into the tests: each opens its own.
        _wire.close()
    missing = {'python', 'python3'} - set(status.get('commands', []))
    if missing:
        raise pytest.UsageError(
            "the codejail daemon at %s lacks the commands %s (the grader tests configure python and python3)"
            % (_wire.socket_path(), ", ".join(sorted(missing)))
        )
    jail_code.configure("python", sys.executable)
