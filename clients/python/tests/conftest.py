"""Shared by this package's tests: each starts from jail_code's initial module state with
"python" configured, and leaves the state it found."""

import sys

import pytest

from codejail import _wire, jail_code


@pytest.fixture(autouse=True)
def clean_jail_code_state():
    saved = (jail_code.COMMANDS, jail_code.LIMITS, jail_code.LIMIT_OVERRIDES, _wire._configured_socket_path)
    jail_code.COMMANDS = {}
    jail_code.LIMITS = jail_code.DEFAULT_LIMITS.copy()
    jail_code.LIMIT_OVERRIDES = {}
    jail_code.configure("python", sys.executable)
    yield
    jail_code.COMMANDS, jail_code.LIMITS, jail_code.LIMIT_OVERRIDES, _wire._configured_socket_path = saved
    _wire.close()
