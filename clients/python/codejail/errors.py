"""The error a call through the daemon raises when it could not run at all."""


class CodejailError(Exception):
    """A request failed before producing a run's result, with a code saying how.

    `code` is one of the daemon's error codes (bad_request, unknown_command,
    limit_exceeds_ceiling, overloaded, setup_failed, shutting_down, cancelled, internal,
    forbidden, bad_frame, bad_version) or one the client detects itself: unavailable (the
    socket could not be reached), connection_lost (the connection dropped during the request),
    bad_reply (the daemon sent something that does not follow the protocol). The message says
    what exactly was wrong, as the TypeScript client's CodejailError does.
    """

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code

    def __reduce__(self):
        # Picklable (multiprocessing sends exceptions between processes).
        return (type(self), (self.code, str(self)))
