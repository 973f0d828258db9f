// An error the daemon reports to the client as {code, message}. Anything else that escapes a
// request handler is logged in full and reported as 'internal' without details.
import type { ErrorCode } from '../protocol/index.js';

export class DaemonError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'DaemonError';
  }
}

export function isDaemonError(err: unknown): err is DaemonError {
  return err instanceof DaemonError;
}
