"""settings.CODE_JAIL applied to codejail.jail_code; no Django import, so usable (and testable)
without Django."""

from . import _wire, jail_code


def apply_django_settings(code_jail_settings):
    """
    Configures jail_code from a settings.CODE_JAIL dict.

    The original's keys: 'python_bin' (with 'user') configures "python", which runs as the
    daemon's command "python"; 'limits' and 'limit_overrides' set limits. This package's own
    key: 'socket', the daemon's socket (else $CODEJAIL_SOCKET, else /run/codejail/codejail.sock).
    """
    python_bin = code_jail_settings.get('python_bin')
    if python_bin:
        user = code_jail_settings['user']
        jail_code.configure("python", python_bin, user=user)
    socket_path = code_jail_settings.get('socket')
    if socket_path:
        _wire.set_socket_path(socket_path)
    for name, value in code_jail_settings.get('limits', {}).items():
        jail_code.set_limit(name, value)
    for context, overrides in code_jail_settings.get('limit_overrides', {}).items():
        for name, value in overrides.items():
            jail_code.override_limit(name, value, context)
