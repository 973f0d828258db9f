"""Run code in a jail: the codejail daemon's, reached over its Unix socket.

edx-codejail 4.1.1's jail_code module, names and signatures unchanged. What differs: the
daemon owns the interpreters and the sandbox users, so `configure` names one of the daemon's
commands (its bin_path and user are recorded, not used), and only the limits a caller set are
sent, so the daemon's own defaults apply to the rest.
"""

import logging
import math
import os
import os.path
import sys

from . import _wire, subproc
from ._files import collect_files, encode_extra_files
from .errors import CodejailError

log = logging.getLogger("codejail")

# The file a request's code is written to in the run directory (src/protocol/constants.ts).
CODE_FILE = 'jailed_code'

# COMMANDS is a map from an abstract command name to what configure() was told. The command
# runs as the daemon's command of the same name: the daemon's config decides the interpreter,
# its arguments and the sandbox uid; 'cmdline_start' and 'user' are kept for code that reads
# them, as the original shaped them.
COMMANDS = {}


def configure(command, bin_path, user=None):
    """
    Makes `command` usable by jail_code.

    `command` names a command of the codejail daemon, such as "python". `bin_path` and `user`
    are recorded in COMMANDS as the original records them, and otherwise not used: the daemon
    runs its own interpreter for `command`, as one of its own sandbox uids. A command the
    daemon does not have fails each call with CodejailError('unknown_command').
    """
    cmd_argv = [bin_path]
    if command == "python":
        cmd_argv.extend(['-E', '-B'])
    COMMANDS[command] = {
        'cmdline_start': cmd_argv,
        'user': user,
    }
    log.debug(
        "codejail: %r runs as the codejail daemon's command of that name (bin_path %r and user %r are not used)",
        command, bin_path, user,
    )


def is_configured(command):
    """
    Whether `configure` has named `command`: true once `configure` named it. Whether the daemon has that command shows on the first
    call (CodejailError 'unknown_command' if not).
    """
    return command in COMMANDS


# The original configures "python" at import when it runs inside a virtualenv that has a sandbox
# beside it: CODEJAIL_TEST_VENV with CODEJAIL_TEST_USER, or a directory "<prefix>-sandbox". The
# same conditions configure it here (the run still uses the daemon's "python").
def _configure_from_the_environment():
    if getattr(sys, 'base_prefix', sys.prefix) == sys.prefix and not hasattr(sys, 'real_prefix'):
        return
    venv, user = os.getenv('CODEJAIL_TEST_VENV'), os.getenv('CODEJAIL_TEST_USER')
    if venv and user:
        configure("python", os.path.join(venv, "bin", "python"), user)
    elif os.path.isdir(sys.prefix + "-sandbox"):
        configure("python", os.path.join(sys.prefix + "-sandbox", "bin", "python"), "sandbox")


_configure_from_the_environment()


# The original's defaults, as the original exposes them. They are NOT what a run gets: a limit
# nobody set is not sent, and the daemon applies its own default (its VMEM is 1 GiB, where the
# original's 0 left a run unbounded).
DEFAULT_LIMITS = {
    # CPU seconds.
    "CPU": 1,
    # Real time, seconds.
    "REALTIME": 1,
    # Address space of each process, bytes; 0 is no limit.
    "VMEM": 0,
    # Size of files creatable, bytes.
    "FSIZE": 0,
    # Processes and threads of the run.
    "NPROC": 15,
    # The original's proxy process: accepted and ignored (the daemon is the long-lived process).
    "PROXY": None,
}

# The daemon's limits (src/protocol/schema.ts LIMIT_NAMES): the original's, plus OUTPUT (bytes
# of stdout and stderr kept) and DISK (bytes the run directory may hold).
DAEMON_LIMIT_NAMES = ('CPU', 'REALTIME', 'VMEM', 'FSIZE', 'NPROC', 'OUTPUT', 'DISK')
_INTEGER_LIMITS = frozenset(('VMEM', 'FSIZE', 'NPROC', 'OUTPUT', 'DISK'))
_IGNORED_LIMITS = frozenset(('PROXY',))

# The process-wide limits, as set_limit leaves them.
LIMITS = DEFAULT_LIMITS.copy()

# Per context (a string such as a course id): the limits override_limit set for it, by name.
LIMIT_OVERRIDES = {}

# The names set_limit() was called with, sent even when the value equals the original's
# default, and the LIMITS dict they were set in: code that replaces LIMITS with a fresh dict (as
# the original's tests reset it) starts again from nothing set.
_set_by_caller = (None, frozenset())


def _names_set_by_caller():
    limits, names = _set_by_caller
    return names if limits is LIMITS else frozenset()


def _check_limit(limit_name, value):
    """Raises ValueError for a limit the daemon does not know or a value it would refuse."""
    if limit_name in _IGNORED_LIMITS:
        return
    if limit_name not in DAEMON_LIMIT_NAMES:
        raise ValueError(
            "unknown limit %r; limits are %s (and PROXY, accepted and ignored)"
            % (limit_name, ", ".join(DAEMON_LIMIT_NAMES))
        )
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError("limit %s must be a finite number >= 0, not %r" % (limit_name, value))
    if limit_name in _INTEGER_LIMITS and value != int(value):
        raise ValueError("limit %s must be an integer, not %r" % (limit_name, value))


def set_limit(limit_name, value):
    """
    Sets the process-wide value of one limit for every later jail_code and safe_exec call.

    `limit_name` is one of "CPU" (CPU seconds), "REALTIME" (seconds of real time), "VMEM"
    (bytes of address space per process, 0 for none), "FSIZE" (bytes per file written),
    "NPROC" (processes and threads), the daemon's "OUTPUT" (bytes of stdout and stderr kept)
    and "DISK" (bytes the run directory may hold), or "PROXY" (accepted and ignored). A name or
    value the daemon would refuse raises ValueError here.

    Only limits set here (or in an override context) are sent; the daemon's defaults apply to the others, and the
    daemon's ceilings bound them all.
    """
    global _set_by_caller  # pylint: disable=global-statement
    _check_limit(limit_name, value)
    LIMITS[limit_name] = value
    _set_by_caller = (LIMITS, _names_set_by_caller() | {limit_name})


def get_effective_limits(overrides_context=None):
    """
    LIMITS with the overrides of `overrides_context` laid over them (LIMITS alone when the
    context is None or has none).

    These are the original's figures; a limit nobody set runs with the daemon's default.
    """
    overrides = LIMIT_OVERRIDES.get(overrides_context, {}) if overrides_context else {}
    return {**LIMITS, **overrides}


def override_limit(limit_name, value, limit_overrides_context):
    """
    Sets `limit_name` to `value` for the calls that pass `limit_overrides_context` only.

    See `set_limit` for the meaning of `limit_name` and `value`. PROXY may not be overridden:
    as in the original, such an override is logged and ignored.
    """
    if limit_name == 'PROXY' and LIMITS['PROXY'] != value:
        log.error(
            "PROXY cannot be overridden per context: the override to %s for %r is ignored, "
            "the process-wide value %s applies.",
            value, limit_overrides_context, LIMITS['PROXY'],
        )
        return
    _check_limit(limit_name, value)
    LIMIT_OVERRIDES.setdefault(limit_overrides_context, {})[limit_name] = value


def requested_limits(overrides_context=None):
    """
    The limits a call with this context sends the daemon: those set with set_limit (or changed
    in LIMITS from the original's defaults) and those of the context's overrides. PROXY and the
    limits nobody set are left out, so the daemon's defaults apply to them.
    """
    overrides = LIMIT_OVERRIDES.get(overrides_context, {}) if overrides_context else {}
    set_names = _names_set_by_caller()
    chosen = {}
    for name, value in LIMITS.items():
        if name in set_names or name not in DEFAULT_LIMITS or DEFAULT_LIMITS[name] != value:
            chosen[name] = value
    chosen.update(overrides)
    sent = {}
    for name, value in chosen.items():
        if name in _IGNORED_LIMITS:
            continue
        _check_limit(name, value)
        sent[name] = int(value) if name in _INTEGER_LIMITS else value
    return sent


class JailResult:
    """
    What one run gave back.

    `stdout`, `stderr` (bytes) and `status` (the exit code, or minus the signal number) as the
    original's; beside them what the daemon reports: `truncated` (output past OUTPUT was
    dropped), `timed_out` (REALTIME ran out), `oom_killed`, `confinement` (the layers applied),
    `usage`, `limits` (those applied) and `run_id`.
    """
    def __init__(self):
        self.stdout = self.stderr = self.status = None
        self.truncated = self.timed_out = self.oom_killed = False
        self.confinement = self.usage = self.limits = self.run_id = None


# pylint: disable=too-many-positional-arguments
def jail_code(command, code=None, files=None, extra_files=None, argv=None,
              stdin=None, limit_overrides_context=None, slug=None):
    """
    Run code in a jailed subprocess: one run of the codejail daemon.

    `command` is an abstract command ("python", ...) that must have been configured using
    `configure`, and that the daemon has.

    `code` is a string containing the code to run, written to `jailed_code` in the run
    directory. If no code is supplied, the code to run must be in one of the `files` copied,
    and must be named in the `argv` list.

    `files` is a list of file paths (files, directories, symlinks): this process reads them and
    the daemon recreates them in the run directory by basename. Symlinks stay symlinks, so one
    pointing outside the run directory is unreadable in the sandbox.

    `extra_files` is a list of (filename, bytes) pairs created in the run directory. No
    subdirectories are supported in the filename.

    `argv` is the command-line arguments to supply. `stdin` is a string (or bytes), the data
    to provide as the stdin for the process.

    `limit_overrides_context` is an optional string to use as a key against the configured
    limit overrides contexts. `slug` is an arbitrary string used in log messages (the daemon's
    too, first 256 characters).

    Return a JailResult with .stdout and .stderr (bytes) and .status (an int, 0 for success,
    minus the signal number when a signal ended the run: -9 for REALTIME, -24 for CPU). A
    request the daemon cannot run raises CodejailError.
    """
    if not is_configured(command):
        # pylint: disable=broad-exception-raised
        raise Exception("jail_code needs to be configured for %r" % command)

    argv = [_argv_item(arg) for arg in (argv or [])]
    fields = run_fields(command, files, extra_files, limit_overrides_context, slug, has_code_file=bool(code))
    if code:
        # Written to `jailed_code`, which the daemon puts before argv, as the original does.
        fields['code'] = code.encode('utf-8') if isinstance(code, str) else bytes(code)
    fields['argv'] = argv
    if stdin:
        fields['stdin'] = stdin.encode('utf-8') if isinstance(stdin, str) else bytes(stdin)

    reply = _wire.request('jail_code', fields)
    result = result_from_reply(reply, 'jail_code')
    _log_run(slug, result)
    return result


def run_fields(command, files, extra_files, limit_overrides_context, slug, has_code_file):
    """The fields jail_code and safe_exec requests share, checked as the daemon will check them."""
    limits = requested_limits(limit_overrides_context)
    if slug:
        log.info(
            "Preparing to execute jailed code %r "
            "(overrides context = %r, resource limits = %r).",
            slug,
            limit_overrides_context,
            get_effective_limits(limit_overrides_context),
        )
    file_entries = collect_files(files or ())
    extra = encode_extra_files(extra_files)

    # The top of the run directory is one flat namespace: a second entry of the same name would
    # silently replace the first, so that is refused.
    top_names = {CODE_FILE} if has_code_file else set()
    new_names = [entry['name'] for entry in file_entries if '/' not in entry['name']]
    new_names += [name for name, _ in extra]
    for name in new_names:
        if name in top_names:
            raise CodejailError(
                'bad_request',
                "'%s' would be written twice in the run directory (files, extra_files and %s must not share names)"
                % (name, CODE_FILE),
            )
        top_names.add(name)

    fields = {'command': command, 'files': file_entries, 'extraFiles': extra, 'limits': limits}
    if slug:
        fields['slug'] = str(slug)[:256]
    return fields


def result_from_reply(reply, op):
    """A run's reply (jail_code's or safe_exec's) as a JailResult; CodejailError if malformed."""
    if not isinstance(reply, dict):
        raise CodejailError('bad_reply', 'the codejail daemon sent a malformed %s result' % op)
    result = JailResult()
    for key in ('stdout', 'stderr'):
        if not isinstance(reply.get(key), bytes):
            raise CodejailError('bad_reply', 'the codejail daemon sent a malformed %s result: %s: expected bytes' % (op, key))
    if not isinstance(reply.get('status'), int) or isinstance(reply.get('status'), bool):
        raise CodejailError('bad_reply', 'the codejail daemon sent a malformed %s result: status: expected an int' % op)
    result.stdout = reply['stdout']
    result.stderr = reply['stderr']
    result.status = reply['status']
    result.truncated = reply.get('truncated') is True
    result.timed_out = reply.get('timedOut') is True
    result.oom_killed = reply.get('oomKilled') is True
    result.confinement = reply.get('confinement')
    result.usage = reply.get('usage')
    result.limits = reply.get('limits')
    result.run_id = reply.get('runId')
    # The safe_exec result channel's bytes (globals), kept for safe_exec only.
    result.result = reply.get('result')
    return result


def _argv_item(arg):
    if isinstance(arg, os.PathLike):
        arg = os.fspath(arg)
    if isinstance(arg, bytes):
        arg = os.fsdecode(arg)
    if not isinstance(arg, str):
        raise CodejailError('bad_request', 'argv items must be strings, not %r' % (arg,))
    return arg


def _log_run(slug, result):
    # Through codejail.subproc's logger, where the original logs a run's process. The run
    # happened in the daemon: the message names its run, and there is no local process id.
    if slug:
        subproc.log.info(
            "Executed jailed code %s in %s, with PID %s",
            slug, "codejail daemon run %s" % result.run_id, "unknown (the daemon's process)",
        )
    if result.timed_out:
        subproc.log.warning(
            "Jailed code %s ran too long: the codejail daemon killed run %s at its REALTIME limit",
            slug, result.run_id,
        )
