// Reads a POST body, form-urlencoded or multipart, with busboy: fields by name (the last of a
// repeated name wins, as Django's QueryDict.get), files by their field name (last wins, as
// codejail-service's request.FILES). Everything a caller sends is bounded while it streams in,
// before it is kept: the whole body, one field, one file, the number of parts.
import type { IncomingMessage } from 'node:http';
import busboy from 'busboy';

export interface FormLimits {
  /** Bytes of the whole body (a Content-Length above it is refused before reading). */
  maxBodyBytes: number;
  /** Bytes of one field's value (the payload). */
  maxFieldBytes: number;
  /** Bytes of one file. */
  maxFileBytes: number;
  /** Fields and files together. */
  maxParts: number;
}

export interface Form {
  fields: Map<string, string>;
  files: Map<string, Buffer>;
}

/**
 * A body the server refuses: `status` is 413 (too large), 415 (not a form) or 400 (malformed).
 * The rest of the body is then read and dropped (discardRest), so that a caller still sending
 * gets the answer instead of a reset connection.
 */
export class FormError extends Error {
  constructor(
    readonly status: 400 | 413 | 415,
    message: string,
  ) {
    super(message);
    this.name = 'FormError';
  }
}

/**
 * Reads what is left of the body and drops it: closing a socket with unread data resets the
 * connection, and the caller would see that rather than the answer. Up to twice maxBodyBytes
 * (a body just over the limit is read to its end); past that the connection is cut.
 * requestTimeout bounds how long it may take.
 */
function discardRest(req: IncomingMessage, limits: FormLimits): void {
  let discarded = 0;
  req.on('data', (chunk: Buffer) => {
    discarded += chunk.length;
    if (discarded > 2 * limits.maxBodyBytes) req.socket.destroy();
  });
  req.resume();
}

const FORM_TYPES = /^(application\/x-www-form-urlencoded|multipart\/form-data)\s*(;|$)/i;

/**
 * The form in `req`'s body. Rejects with FormError for a body over `limits`, not a form, or
 * malformed; the rest of the body is then discarded (discardRest).
 */
export function readForm(req: IncomingMessage, limits: FormLimits): Promise<Form> {
  const contentType = req.headers['content-type'] ?? '';
  if (!FORM_TYPES.test(contentType)) {
    discardRest(req, limits);
    return Promise.reject(
      new FormError(415, `Unsupported content type '${contentType.slice(0, 100)}': send application/x-www-form-urlencoded or multipart/form-data`),
    );
  }
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limits.maxBodyBytes) {
    discardRest(req, limits);
    return Promise.reject(bodyTooLarge(limits));
  }
  let parser: busboy.Busboy;
  try {
    parser = busboy({
      headers: req.headers,
      limits: { fieldSize: limits.maxFieldBytes, fileSize: limits.maxFileBytes, parts: limits.maxParts, fieldNameSize: 200 },
    });
  } catch (err) {
    discardRest(req, limits);
    return Promise.reject(new FormError(400, `Malformed form: ${(err as Error).message}`));
  }

  return new Promise<Form>((resolve, reject) => {
    const form: Form = { fields: new Map(), files: new Map() };
    let settled = false;
    let received = 0;
    const fail = (err: FormError) => {
      if (settled) return;
      settled = true;
      req.unpipe(parser);
      req.off('data', count);
      parser.removeAllListeners();
      // Errors after this (a half-fed parser) have nowhere to go.
      parser.on('error', () => {});
      discardRest(req, limits);
      reject(err);
    };
    const count = (chunk: Buffer) => {
      received += chunk.length;
      if (received > limits.maxBodyBytes) fail(bodyTooLarge(limits));
    };

    parser.on('field', (name, value, info) => {
      if (info.valueTruncated) return fail(new FormError(413, `Field '${name}' is larger than ${limits.maxFieldBytes} bytes`));
      if (info.nameTruncated) return fail(new FormError(400, 'A field name is longer than 200 bytes'));
      form.fields.set(name, value);
    });
    parser.on('file', (name, stream, info) => {
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('limit', () => fail(new FormError(413, `File '${name}' is larger than ${limits.maxFileBytes} bytes`)));
      stream.on('end', () => {
        if (!settled && !(stream as unknown as { truncated?: boolean }).truncated) form.files.set(name, Buffer.concat(chunks));
      });
      void info;
    });
    parser.on('partsLimit', () => fail(new FormError(413, `More than ${limits.maxParts} fields and files`)));
    parser.on('error', (err: Error) => fail(new FormError(400, `Malformed form: ${err.message}`)));
    parser.on('close', () => {
      if (settled) return;
      settled = true;
      req.off('data', count);
      resolve(form);
    });
    req.on('data', count);
    req.on('aborted', () => fail(new FormError(400, 'The request body ended early')));
    req.pipe(parser);
  });
}

function bodyTooLarge(limits: FormLimits): FormError {
  return new FormError(413, `Request body larger than ${limits.maxBodyBytes} bytes`);
}
