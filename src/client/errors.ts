import type { ErrorCode } from '../protocol/index.js';

/**
 * Failures the client detects itself, beside the daemon's ERROR_CODES:
 * - unavailable: the daemon's socket could not be reached;
 * - connection_lost: the connection dropped while the request was in flight;
 * - closed: the caller closed the client while the request was in flight;
 * - bad_reply: the daemon sent something that does not follow the protocol.
 */
export type ClientErrorCode = 'unavailable' | 'connection_lost' | 'closed' | 'bad_reply';

/**
 * The one error type the client raises. Requests the client rejects before sending carry
 * 'bad_request', the same code the daemon would answer with.
 */
export class CodejailError extends Error {
  constructor(
    readonly code: ErrorCode | ClientErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'CodejailError';
  }
}
