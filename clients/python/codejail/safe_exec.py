"""Safe execution of untrusted Python code, in the codejail daemon.

edx-codejail 4.1.1's safe_exec module. safe_exec sends one safe_exec request: the daemon runs
its own harness (python/safe_exec_harness.py) with its "python" command, which executes the
code with the globals and reports the JSON-safe globals on a channel of their own (not stdout).
not_safe_exec runs in this process, without the daemon, as the original's does.
"""

import logging
import os.path
import shutil
import sys

from codejail import _tagged, _wire, jail_code
from codejail.util import change_directory, temp_directory

try:
    import simplejson as json
except ImportError:
    import json


log = logging.getLogger("codejail")


# Debugging switches, consulted on every call (so a test or a shell may flip them at any time).

# True: the code and the globals of each safe_exec call go to the debug log.
LOG_ALL_CODE = False

# True: safe_exec hands every call to not_safe_exec, which runs it inside this process with
# this process's rights. Only for debugging on a developer's machine: with it on, whoever can
# submit code owns the host.
ALWAYS_BE_UNSAFE = False


class SafeExecException(Exception):
    """
    The submitted code ran and did not succeed. The message carries the run's stdout, stderr
    and status, where the code's own traceback is.
    """


# pylint: disable=too-many-positional-arguments
def safe_exec(
        code,
        globals_dict,
        files=None,
        python_path=None,
        limit_overrides_context=None,
        slug=None,
        extra_files=None,
):
    """
    Runs `code` (a str of Python) in the daemon's sandbox with the JSON-safe part of
    `globals_dict` as its globals, then updates `globals_dict` with the JSON-safe globals the
    code left behind.

    `files` is a list of file paths, either files or directories, copied into the run
    directory. `python_path` is a list of directory or zip file paths whose names are added to
    `sys.path`; each is copied as if listed in `files`, unless `extra_files` provides that
    name. `limit_overrides_context` selects limits set with `override_limit`. `slug` is a
    description for log messages. `extra_files` is a list of (filename, bytes) pairs created in
    the run directory.

    Returns None. If the code raises (or the run fails otherwise), raises `SafeExecException`
    whose message holds the sandbox's stdout and stderr, so the traceback. A request the daemon
    cannot run at all raises codejail.errors.CodejailError.
    """
    if ALWAYS_BE_UNSAFE:
        not_safe_exec(
            code,
            globals_dict,
            files=files,
            python_path=python_path,
            limit_overrides_context=limit_overrides_context,
            slug=slug,
            extra_files=extra_files,
        )
        return

    if not jail_code.is_configured('python'):
        raise RuntimeError("safe_exec has not been configured for Python")

    files = list(files or ())
    extra_files = extra_files or ()
    python_path = python_path or ()

    extra_names = {name for name, contents in extra_files}
    given_files = {os.path.abspath(os.fspath(path)) for path in files}
    python_path_names = []
    for pydir in python_path:
        pybase = os.path.basename(os.fspath(pydir))
        python_path_names.append(pybase)
        if pybase not in extra_names and os.path.abspath(os.fspath(pydir)) not in given_files:
            files.append(pydir)

    fields = jail_code.run_fields(
        'python', files, extra_files, limit_overrides_context, slug, has_code_file=True,
    )
    fields['code'] = code
    fields['globals'] = _tagged.encode_globals(json_safe(globals_dict))
    fields['pythonPath'] = python_path_names

    if LOG_ALL_CODE:        # pragma: no cover
        log.debug("Exec: %s", code)
        log.debug("Globals: %s", fields['globals'])

    res = jail_code.result_from_reply(_wire.request('safe_exec', fields), 'safe_exec')
    jail_code._log_run(slug, res)  # pylint: disable=protected-access

    if LOG_ALL_CODE:        # pragma: no cover
        log.debug("Status: %s", res.status)
        log.debug("Stdout: %s", res.stdout)
        log.debug("Stderr: %s", res.stderr)

    details = "stdout: {res.stdout!r}, stderr: {res.stderr!r} with status code: {res.status}".format(res=res)
    if res.status != 0:
        raise SafeExecException("Couldn't execute jailed code: " + details)
    if not isinstance(res.result, bytes) or not res.result:
        # The run succeeded but its globals cannot be had: the original would fail parsing its
        # stdout; here the message says why, then the run's output as for a failed run.
        raise SafeExecException("Couldn't execute jailed code: it ended without reporting its globals: " + details)
    try:
        result = _tagged.decode_result(res.result)
    except _tagged.ResultTooLarge as err:
        raise SafeExecException(
            "Couldn't execute jailed code: its globals are over a bound of the result (%s): %s" % (err, details)
        ) from err
    except ValueError as err:
        raise SafeExecException(
            "Couldn't execute jailed code: its globals could not be decoded (%s): %s" % (err, details)
        ) from err
    globals_dict.update(result)


def json_safe(d):
    """
    The part of dict `d` that survives a trip through JSON, as the sandbox's globals must.

    bytes become str when they are UTF-8 (an entry holding bytes that are not is dropped),
    tuples become lists and keys become strings, as JSON makes them. Entries of any other type
    than None, bool, int, float, str, bytes, list, tuple and dict are dropped, as are
    `__builtins__` and any entry JSON cannot carry both ways (a lone surrogate, say).
    """
    carried = {}
    for key, value in d.items():
        if key == "__builtins__" or not isinstance(value, _JSON_ABLE):
            continue
        try:
            # Through text and back, key included: json.dumps accepts some strings (lone
            # surrogates) that json.loads of its own output rejects, or only some json libraries do.
            carried_key = json.loads(json.dumps(_text_for_bytes(key)))
            carried_value = json.loads(json.dumps(_text_for_bytes(value)))
        except Exception:  # pylint: disable=broad-except
            continue
        carried[carried_key] = carried_value
    return json.loads(json.dumps(carried))


_JSON_ABLE = (type(None), bool, int, float, str, bytes, list, tuple, dict)


def _text_for_bytes(value):
    """`value` with every bytes inside it decoded as UTF-8 (UnicodeDecodeError if one is not)."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, dict):
        return {_text_for_bytes(k): _text_for_bytes(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_text_for_bytes(item) for item in value]
    return value


# pylint: disable=too-many-positional-arguments
def not_safe_exec(
        code,
        globals_dict,
        files=None,
        python_path=None,
        limit_overrides_context=None,  # pylint: disable=unused-argument
        slug=None,
        extra_files=None,
):
    """
    safe_exec's signature and globals handling with no sandbox at all: `exec` in this process,
    in a temporary working directory holding `files` and `extra_files`, with `python_path`
    appended to sys.path for the duration. For debugging only. No limits apply, so
    `limit_overrides_context` is unused; the working directory and sys.path are process-wide,
    so two threads must not call it at once.
    """
    # Loud on purpose: seeing this in a production log means the sandbox is off.
    log.warning("DANGER: Executing code with `not_safe_exec` for %s", slug)

    run_globals = json_safe(globals_dict)
    saved_sys_path = list(sys.path)
    with temp_directory() as workdir, change_directory(workdir):
        for path in files or ():
            shutil.copyfile(path, os.path.join(workdir, os.path.basename(path)))
        for name, contents in extra_files or ():
            with open(os.path.join(workdir, name), "wb") as out:
                out.write(contents)
        sys.path.extend(python_path or ())
        try:
            exec(code, run_globals)  # pylint: disable=exec-used
        except Exception as err:  # pylint: disable=broad-except
            # Class and message only: there is no sandbox output to quote.
            raise SafeExecException("%s: %s" % (type(err).__name__, err)) from None
        finally:
            sys.path[:] = saved_sys_path

    globals_dict.update(json_safe(run_globals))
