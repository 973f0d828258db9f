// A request failed, with one of the protocol's error codes and a message that says what was
// wrong: the daemon replies with it as {code, message}. Anything else that escapes a request
// handler is logged in full and reported as 'internal' without details.
import type { ErrorCode } from './index.js';

export class RequestError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'RequestError';
  }
}

export function isRequestError(err: unknown): err is RequestError {
  return err instanceof RequestError;
}
