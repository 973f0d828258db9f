// Names both sides of the socket agree on, beyond the message shapes.

/** Where codejaild listens unless its config says otherwise, and where a client looks first. */
export const DEFAULT_SOCKET_PATH = '/run/codejail/codejail.sock';

/**
 * The file a request's code is written to in the run directory; tracebacks name it, as the
 * original CodeJail's do. No file of the request may take its name.
 */
export const CODE_FILE = 'jailed_code';

/** The run's writable scratch directory (HOME and TMPDIR), reserved: no request file goes there. */
export const TMP_DIR = 'tmp';
