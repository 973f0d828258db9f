// Reads a POST body, form-urlencoded or multipart, with busboy: fields by name (the last of a
// repeated name wins, as Django's QueryDict.get), files by their field name (last wins, as
// codejail-service's request.FILES). Everything a caller sends is bounded while it streams in,
// before it is kept: the whole body, one field, one file, the number of parts.
import type { IncomingMessage } from 'node:http';
import busboy from 'busboy';
import { readUrlencoded, UrlencodedFieldError, urlencodedExtraBytes } from './urlencoded.js';

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
  const urlencoded = URLENCODED.test(contentType);
  const charset = contentType.match(CHARSET)?.[1];
  if (urlencoded && charset !== undefined && !/^utf-?8$/i.test(charset)) {
    discardRest(req, limits);
    return Promise.reject(new FormError(415, `Unsupported charset '${charset.slice(0, 40)}' of an urlencoded body: send utf-8`));
  }
  let parser: busboy.Busboy | undefined;
  if (!urlencoded) {
    try {
      parser = busboy({
        headers: req.headers,
        limits: { fieldSize: limits.maxFieldBytes, fileSize: limits.maxFileBytes, parts: limits.maxParts, fieldNameSize: MAX_FIELD_NAME_BYTES },
      });
    } catch (err) {
      discardRest(req, limits);
      return Promise.reject(new FormError(400, `Malformed form: ${(err as Error).message}`));
    }
  }

  hooks.accept?.();
  return new Promise<Form>((resolve, reject) => {
    const form: Form = { fields: new Map(), files: new Map() };
    let settled = false;
    let received = 0;
    const fail = (err: FormError) => {
      if (settled) return;
      settled = true;
      req.off('data', count);
      if (parser) {
        req.unpipe(parser);
        parser.removeAllListeners();
        // Errors after this (a half-fed parser) have nowhere to go.
        parser.on('error', () => {});
      }
      discardRest(req, limits);
      reject(err);
    };
    const count = (chunk: Buffer) => {
      received += chunk.length;
      if (received > limits.maxBodyBytes) return fail(bodyTooLarge(limits));
      if (!charge(chunk.length)) fail(new FormError(503, 'Codejail service is at capacity; retry later'));
    };
    const done = () => {
      if (settled) return;
      settled = true;
      req.off('data', count);
      resolve(form);
    };
    const isSettled = () => settled;

    req.on('data', count);
    req.on('aborted', () => fail(new FormError(400, 'The request body ended early')));
    // pipe() forwards no error: an aborted or reset request's own error ends the read here.
    req.on('error', () => fail(new FormError(400, 'The request body ended early')));
    if (parser) readMultipart(req, parser, form, limits, { fail, done, isSettled });
    else readUrlencodedBody(req, form, limits, charge, { fail, done, isSettled });
  });
}

/** How a body's reader ends the read: refused, read (the form is whole), or whether it has ended. */
interface ReadEnds {
  fail: (err: FormError) => void;
  done: () => void;
  isSettled: () => boolean;
}

/** A multipart body through busboy, streamed: fields and files into `form`. */
function readMultipart(req: IncomingMessage, parser: busboy.Busboy, form: Form, limits: FormLimits, { fail, done, isSettled }: ReadEnds): void {
  const malformed = (err: Error) => fail(new FormError(400, `Malformed form: ${err.message}`));
  parser.on('field', (name, value, info) => {
    if (info.valueTruncated) return fail(new FormError(413, `Field '${name}' is larger than ${limits.maxFieldBytes} bytes`));
    if (info.nameTruncated) return fail(new FormError(400, `A field name is longer than ${MAX_FIELD_NAME_BYTES} bytes`));
    form.fields.set(name, value);
  });
  parser.on('file', (name, stream) => {
    const chunks: Buffer[] = [];
    // A body that ends inside a file part errors the file's stream as well as the parser
    // ("Unexpected end of form"); unhandled, that error would end the process. Kept after
    // fail(): the stream may still error once the parser is dropped.
    stream.on('error', malformed);
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.on('limit', () => fail(new FormError(413, `File '${name}' is larger than ${limits.maxFileBytes} bytes`)));
    stream.on('end', () => {
      if (!isSettled() && !(stream as unknown as { truncated?: boolean }).truncated) form.files.set(name, Buffer.concat(chunks));
    });
  });
  parser.on('partsLimit', () => fail(new FormError(413, `More than ${limits.maxParts} fields and files`)));
  parser.on('error', malformed);
  parser.on('close', done);
  req.pipe(parser);
}

/**
 * An urlencoded body, held whole (it is one field or a few) and read as Django reads it
 * (readUrlencoded), the last of a repeated name winning.
 */
function readUrlencodedBody(
  req: IncomingMessage,
  form: Form,
  limits: FormLimits,
  charge: (bytes: number) => boolean,
  { fail, done, isSettled }: ReadEnds,
): void {
  const chunks: Buffer[] = [];
  req.on('data', (chunk: Buffer) => {
    if (!isSettled()) chunks.push(chunk);
  });
  req.on('end', () => {
    if (isSettled()) return;
    const body = Buffer.concat(chunks);
    chunks.length = 0;
    if (!charge(urlencodedExtraBytes(body))) return fail(new FormError(503, 'Codejail service is at capacity; retry later'));
    try {
      for (const [name, value] of readUrlencoded(body, { maxFieldBytes: limits.maxFieldBytes, maxFieldNameBytes: MAX_FIELD_NAME_BYTES })) form.fields.set(name, value);
    } catch (err) {
      if (err instanceof UrlencodedFieldError) return fail(new FormError(err.status, err.message));
      throw err;
    }
    done();
  });
}

const URLENCODED = /^application\/x-www-form-urlencoded\s*(;|$)/i;
const CHARSET = /;\s*charset\s*=\s*"?([^";\s]*)/i;
/** Bytes of a field's name (edx-platform's are a few letters). */
const MAX_FIELD_NAME_BYTES = 200;

function bodyTooLarge(limits: FormLimits): FormError {
  return new FormError(413, `Request body larger than ${limits.maxBodyBytes} bytes`);
}
