// Reads a POST body, form-urlencoded or multipart, with busboy: fields by name (the last of a
// repeated name wins, as Django's QueryDict.get), files by their field name (last wins, as
// codejail-service's request.FILES). Everything a caller sends is bounded while it streams in,
// before it is kept: the whole body, one field, one file, the number of parts.
import type { IncomingMessage } from 'node:http';
import { isUtf8 } from 'node:buffer';
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

export interface ReadFormHooks {
  /**
   * Where the body's bytes are charged as they arrive (the service's bytes in flight): false
   * when they do not fit, and the body is refused with 503.
   */
  charge?: (bytes: number) => boolean;
  /** Called once the body is about to be read (after the checks of its headers): `100 Continue`. */
  accept?: () => void;
}

export interface Form {
  fields: Map<string, string>;
  files: Map<string, Buffer>;
}

/**
 * A body the server refuses: `status` is 413 (too large), 415 (not a form), 400 (malformed) or
 * 503 (no room for its bytes now). The rest of the body is then read and dropped (discardRest),
 * and the connection closed after the answer.
 */
export class FormError extends Error {
  constructor(
    readonly status: 400 | 413 | 415 | 503,
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
export function discardRest(req: IncomingMessage, limits: FormLimits): void {
  let discarded = 0;
  // An aborted request's error has nothing left to stop.
  req.on('error', () => {});
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
export function readForm(req: IncomingMessage, limits: FormLimits, hooks: ReadFormHooks = {}): Promise<Form> {
  const charge = hooks.charge ?? (() => true);
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

  hooks.accept?.();
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
      if (received > limits.maxBodyBytes) return fail(bodyTooLarge(limits));
      if (!charge(chunk.length)) fail(new FormError(503, 'Codejail service is at capacity; retry later'));
    };
    const malformed = (err: Error) => fail(new FormError(400, `Malformed form: ${err.message}`));

    parser.on('field', (name, value, info) => {
      if (info.valueTruncated) return fail(new FormError(413, `Field '${name}' is larger than ${limits.maxFieldBytes} bytes`));
      if (info.nameTruncated) return fail(new FormError(400, 'A field name is longer than 200 bytes'));
      form.fields.set(name, value);
    });
    parser.on('file', (name, stream, info) => {
      const chunks: Buffer[] = [];
      // A body that ends inside a file part errors the file's stream as well as the parser
      // ("Unexpected end of form"); unhandled, that error would end the process. Kept after
      // fail(): the stream may still error once the parser is dropped.
      stream.on('error', malformed);
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('limit', () => fail(new FormError(413, `File '${name}' is larger than ${limits.maxFileBytes} bytes`)));
      stream.on('end', () => {
        if (!settled && !(stream as unknown as { truncated?: boolean }).truncated) form.files.set(name, Buffer.concat(chunks));
      });
      void info;
    });
    parser.on('partsLimit', () => fail(new FormError(413, `More than ${limits.maxParts} fields and files`)));
    parser.on('error', malformed);
    parser.on('close', () => {
      if (settled) return;
      settled = true;
      req.off('data', count);
      resolve(form);
    });
    req.on('data', count);
    req.on('aborted', () => fail(new FormError(400, 'The request body ended early')));
    // pipe() forwards no error: an aborted or reset request's own error ends the read here.
    req.on('error', () => fail(new FormError(400, 'The request body ended early')));
    if (!URLENCODED.test(contentType)) {
      req.pipe(parser);
      return;
    }
    // An urlencoded body is held whole (it is one field or a few) so that it can be read as
    // Django reads it: its bytes as UTF-8, or if they are not UTF-8, as ISO-8859-1.
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => {
      if (!settled) chunks.push(chunk);
    });
    req.on('end', () => {
      if (settled) return;
      const body = Buffer.concat(chunks);
      chunks.length = 0;
      const read = asDjangoReadsIt(body, charge);
      if (read === undefined) return fail(new FormError(503, 'Codejail service is at capacity; retry later'));
      parser.end(read);
    });
  });
}

const URLENCODED = /^application\/x-www-form-urlencoded\s*(;|$)/i;

/**
 * An urlencoded body as Django's QueryDict reads it (codejail-service's framework): bytes that
 * are not UTF-8 make it decode the whole body as ISO-8859-1 (each byte one character), then
 * %-escapes as UTF-8 (a bad sequence: U+FFFD). busboy decodes as UTF-8 only, so each byte of
 * 0x80 and above is given to it as the %-escaped UTF-8 of that character (0xff as %C3%BF).
 * Undefined when `charge` refuses the copy's bytes.
 */
function asDjangoReadsIt(body: Buffer, charge: (bytes: number) => boolean): Buffer | undefined {
  if (isUtf8(body)) return body;
  let high = 0;
  for (const byte of body) if (byte >= 0x80) high++;
  // Up to 6 times the body: charged like the body (undefined when it does not fit).
  if (!charge(body.length + 5 * high)) return undefined;
  const out = Buffer.allocUnsafe(body.length + 5 * high);
  let at = 0;
  for (const byte of body) {
    if (byte < 0x80) {
      out[at++] = byte;
      continue;
    }
    at += out.write(`%${(0xc0 | (byte >> 6)).toString(16)}%${(0x80 | (byte & 0x3f)).toString(16)}`, at, 'latin1');
  }
  return out;
}

function bodyTooLarge(limits: FormLimits): FormError {
  return new FormError(413, `Request body larger than ${limits.maxBodyBytes} bytes`);
}
