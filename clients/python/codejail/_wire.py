"""The daemon's socket: length-prefixed msgpack frames, one request at a time per connection.

Frames are a 4-byte big-endian body length, then a msgpack body (src/protocol/frames.ts). A
request is ``{v, id, op, ...fields}``; its reply ``{v, id, ok: true, result}`` or
``{v, id, ok: false, error: {code, message}}`` (src/protocol/schema.ts).

Connections are per thread and per process: each thread keeps its own connection, tagged with
the pid that opened it. A connection is never used by two threads, and one inherited across
fork() (gunicorn pre-forks workers after importing the application) is dropped in the child,
never written to: its requests and replies would interleave with the parent's.
"""

import errno
import os
import select
import socket
import struct
import threading

import msgpack

from .errors import CodejailError

PROTOCOL_VERSION = 1
DEFAULT_SOCKET_PATH = '/run/codejail/codejail.sock'
DEFAULT_MAX_FRAME_BYTES = 64 * 1024 * 1024
_HEADER = struct.Struct('>I')
_MAX_REQUEST_ID = 0xFFFFFFFF

# A connect() refused with EAGAIN (the daemon's listen backlog is full) is tried again after
# waits doubling from the first to the largest, for as long as the budget lasts (as the
# TypeScript client does, src/client/connection.ts).
_CONNECT_RETRY_FIRST_S = 0.002
_CONNECT_RETRY_MAX_S = 0.1
_CONNECT_RETRY_BUDGET_S = 10.0

# Set by set_socket_path() (settings.CODE_JAIL['socket'] through apply_django_settings).
_configured_socket_path = None
_local = threading.local()


def set_socket_path(path):
    """Use the daemon socket at `path` from now on (None: $CODEJAIL_SOCKET or the default)."""
    global _configured_socket_path  # pylint: disable=global-statement
    if path is not None and (not isinstance(path, (str, os.PathLike)) or not os.fspath(path)):
        raise ValueError('the codejail socket must be a non-empty path, not %r' % (path,))
    _configured_socket_path = os.fspath(path) if path is not None else None


def socket_path():
    """The socket a call uses: set_socket_path()'s, else $CODEJAIL_SOCKET, else the default."""
    return _configured_socket_path or os.environ.get('CODEJAIL_SOCKET') or DEFAULT_SOCKET_PATH


def request(op, fields):
    """Sends one request and returns the daemon's `result`; raises CodejailError otherwise."""
    path = socket_path()
    connection = getattr(_local, 'connection', None)
    if connection is not None and not connection.reusable(path):
        connection.close()
        connection = None
    if connection is None:
        connection = _Connection(path)
        _local.connection = connection
    try:
        return connection.request(op, fields)
    except BaseException:
        # Whatever went wrong (the daemon's error excepted: the stream is then still in step),
        # the stream may be out of step: the next call opens a new connection. Closing it also
        # makes the daemon kill a run still in flight (an interrupted caller).
        if not connection.in_step:
            connection.close()
            if getattr(_local, 'connection', None) is connection:
                _local.connection = None
        raise


def close():
    """Closes this thread's connection (the next call opens another)."""
    connection = getattr(_local, 'connection', None)
    _local.connection = None
    if connection is not None:
        connection.close()


class _Connection:
    """One connection to the daemon, used by the thread and process that opened it."""

    def __init__(self, path):
        self.path = path
        self.pid = os.getpid()
        self.next_id = 1
        # False while a request is unanswered or after anything broke the frame stream.
        self.in_step = True
        self.sock = _connect(path)

    def reusable(self, path):
        """Whether the next request may go on this connection.

        Not in a forked child (the parent owns the stream), not for another socket path, and not
        once the daemon closed it (an idle connection is closed after its idleTimeoutMs) or sent
        something unasked: with no request in flight, anything readable means it is done.
        """
        if self.pid != os.getpid() or self.path != path or self.sock is None or not self.in_step:
            return False
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        return not poller.poll(0)

    def close(self):
        sock, self.sock = self.sock, None
        if sock is not None:
            sock.close()

    def request(self, op, fields):
        request_id = self.next_id
        self.next_id = 1 if request_id == _MAX_REQUEST_ID else request_id + 1
        message = dict(fields)
        message.update(v=PROTOCOL_VERSION, id=request_id, op=op)
        body = msgpack.packb(message, use_bin_type=True)
        if len(body) > DEFAULT_MAX_FRAME_BYTES:
            # The daemon would cut the whole connection off for it.
            raise CodejailError(
                'bad_request',
                'the %s request is %d bytes, more than the %d-byte frame maximum; send less data'
                % (op, len(body), DEFAULT_MAX_FRAME_BYTES),
            )
        self.in_step = False
        try:
            self.sock.sendall(_HEADER.pack(len(body)) + body)
        except OSError as err:
            raise self._lost(err) from err
        reply = self._read_reply()
        if not isinstance(reply, dict) or not isinstance(reply.get('id'), int) or not isinstance(reply.get('ok'), bool):
            raise CodejailError('bad_reply', 'the codejail daemon sent a malformed reply: %s' % _describe(reply))
        if reply['id'] != request_id:
            error = reply.get('error')
            if not reply['ok'] and isinstance(error, dict) and reply['id'] == 0:
                # An error that answers no request answers the connection (a refused caller:
                # forbidden, or a bad frame).
                raise _daemon_error(error)
            raise CodejailError(
                'bad_reply', 'the codejail daemon replied to request %d, which is not pending' % reply['id']
            )
        if not reply['ok']:
            error = reply.get('error')
            if not isinstance(error, dict):
                raise CodejailError('bad_reply', 'the codejail daemon sent a malformed error reply')
            self.in_step = True
            raise _daemon_error(error)
        if reply.get('v') != PROTOCOL_VERSION:
            raise CodejailError(
                'bad_version',
                'the codejail daemon speaks protocol %r; this client speaks %d' % (reply.get('v'), PROTOCOL_VERSION),
            )
        self.in_step = True
        return reply.get('result')

    def _read_reply(self):
        header = self._read_exactly(_HEADER.size)
        (length,) = _HEADER.unpack(header)
        if length > DEFAULT_MAX_FRAME_BYTES:
            raise CodejailError(
                'bad_reply',
                'the codejail daemon sent a bad frame: frame of %d bytes exceeds the maximum of %d'
                % (length, DEFAULT_MAX_FRAME_BYTES),
            )
        if length == 0:
            raise CodejailError('bad_reply', 'the codejail daemon sent a bad frame: empty frame')
        body = self._read_exactly(length)
        try:
            return msgpack.unpackb(body, raw=False, use_list=True)
        except Exception as err:  # pylint: disable=broad-except
            raise CodejailError(
                'bad_reply', 'the codejail daemon sent a bad frame: frame is not valid msgpack: %s' % err
            ) from err

    def _read_exactly(self, size):
        buffer = bytearray(size)
        view = memoryview(buffer)
        filled = 0
        while filled < size:
            try:
                received = self.sock.recv_into(view[filled:])
            except OSError as err:
                raise self._lost(err) from err
            if received == 0:
                raise CodejailError('connection_lost', 'the codejail daemon at %s closed the connection' % self.path)
            filled += received
        return bytes(buffer)

    def _lost(self, err):
        reason = errno.errorcode.get(err.errno, str(err)) if err.errno else str(err)
        return CodejailError(
            'connection_lost', 'connection to the codejail daemon at %s failed: %s' % (self.path, reason)
        )


def _connect(path):
    import random  # pylint: disable=import-outside-toplevel
    import time  # pylint: disable=import-outside-toplevel

    started = time.monotonic()
    attempts = 0
    while True:
        attempts += 1
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            sock.connect(path)
            return sock
        except OSError as err:
            sock.close()
            reason = errno.errorcode.get(err.errno, str(err)) if err.errno else str(err)
            if err.errno == errno.EAGAIN:
                cap = min(_CONNECT_RETRY_MAX_S, _CONNECT_RETRY_FIRST_S * 2 ** min(attempts - 1, 16))
                wait = cap / 2 + random.random() * (cap / 2)
                if time.monotonic() + wait - started <= _CONNECT_RETRY_BUDGET_S:
                    time.sleep(wait)
                    continue
                detail = (
                    '; its listen backlog stayed full through %d attempts over %d ms: the daemon is '
                    'overloaded, or its socket is flooded with connections'
                    % (attempts, round((time.monotonic() - started) * 1000))
                )
            else:
                detail = ' (is codejaild running, and may this user use its socket?)'
            raise CodejailError(
                'unavailable', 'cannot connect to the codejail daemon at %s: %s%s' % (path, reason, detail)
            ) from err


def _daemon_error(error):
    code = error.get('code')
    message = error.get('message')
    if not isinstance(code, str) or not isinstance(message, str):
        return CodejailError('bad_reply', 'the codejail daemon sent a malformed error reply')
    return CodejailError(code, message)


def _describe(value):
    if isinstance(value, dict):
        return 'a map with keys %s' % ', '.join(sorted(repr(k) for k in value)[:10])
    return 'a %s' % type(value).__name__
