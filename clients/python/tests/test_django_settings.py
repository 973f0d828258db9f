"""settings.CODE_JAIL applied by the django integration (apply_django_settings and
ConfigureCodeJailMiddleware), as edx-platform configures codejail in-process."""

import os

import pytest
from django.conf import settings
from django.core.exceptions import MiddlewareNotUsed

from codejail import _wire, jail_code
from codejail.django_integration import ConfigureCodeJailMiddleware
from codejail.django_integration_utils import apply_django_settings

BASE = {"CPU": 1, "REALTIME": 1, "VMEM": 0, "FSIZE": 0, "NPROC": 15, "PROXY": None}


@pytest.fixture(autouse=True)
def unconfigured():
    jail_code.COMMANDS = {}


def test_an_empty_dict_configures_nothing():
    apply_django_settings({})
    assert not jail_code.is_configured("python")
    assert jail_code.get_effective_limits() == jail_code.LIMITS == BASE


def test_python_bin_and_user_configure_python():
    apply_django_settings({"python_bin": "/srv/sandbox/bin/python", "user": "sandbox"})
    assert jail_code.is_configured("python")
    assert jail_code.COMMANDS["python"] == {
        "cmdline_start": ["/srv/sandbox/bin/python", "-E", "-B"],
        "user": "sandbox",
    }


def test_limits_and_overrides_with_proxy_not_overridable():
    apply_django_settings({
        "limits": {"CPU": 3, "VMEM": 300_000_000, "PROXY": 1},
        "limit_overrides": {
            "course-v1:A+B+C": {"REALTIME": 9, "NPROC": 20},
            "course-v1:D+E+F": {"FSIZE": 4096, "PROXY": 0},
        },
    })
    base = dict(BASE, CPU=3, VMEM=300_000_000, PROXY=1)
    assert jail_code.get_effective_limits() == base
    assert jail_code.get_effective_limits("course-v1:X+Y+Z") == base
    assert jail_code.get_effective_limits("course-v1:A+B+C") == dict(base, REALTIME=9, NPROC=20)
    assert jail_code.get_effective_limits("course-v1:D+E+F") == dict(base, FSIZE=4096)


def test_the_middleware_applies_settings_code_jail_and_steps_aside():
    if not settings.configured:
        settings.configure()
    settings.CODE_JAIL = {
        "python_bin": "python",
        "user": "sandbox",
        "socket": os.environ.get("CODEJAIL_SOCKET", _wire.DEFAULT_SOCKET_PATH),
        "limits": {"CPU": 2, "REALTIME": 5},
        "limit_overrides": {"slow-course": {"REALTIME": 8}},
    }
    with pytest.raises(MiddlewareNotUsed):
        ConfigureCodeJailMiddleware(get_response=lambda request: None)
    assert jail_code.is_configured("python")
    res = jail_code.jail_code("python", "print('configured')", limit_overrides_context="slow-course")
    assert (res.status, res.stdout) == (0, b"configured\n")
    assert (res.limits["CPU"], res.limits["REALTIME"]) == (2, 8)
