// The `payload` field of POST /api/v0/code-exec: its JSON read as Python's json reads it, then
// held to codejail-service's schema, with the 400 messages that service gives (edx-platform and
// its operators match on them). Which error is reported when several apply follows jsonschema's
// best_match: the shallowest first (a missing key before a key of the wrong type), then the
// schema's order: type, then properties in order, then required.
import { parsePythonJson, PythonJsonError } from './python_json.js';

export interface CodeExecPayload {
  code: string;
  globalsDict: Record<string, unknown>;
  pythonPath: string[];
  limitOverridesContext: string | null;
  slug: string | null;
  unsafely: boolean;
}

/** A request the API refuses with 400 and this message. */
export class BadRequest extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BadRequest';
  }
}

/** The only python_path entry and the only uploaded file's name the API accepts, as edx-platform sends. */
export const PYTHON_LIB_ZIP = 'python_lib.zip';

/** At most this many characters of a caller's value are copied into an error message. */
const REPR_MAX = 200;

/**
 * Python's repr() of a JSON value, as jsonschema writes the instance in its messages, cut at
 * REPR_MAX characters: the walk stops there, so a huge globals_dict costs no more than a small one.
 */
function pythonRepr(value: unknown): string {
  const out = { text: '' };
  writeRepr(value, out);
  return out.text.length > REPR_MAX ? `${out.text.slice(0, REPR_MAX)}...` : out.text;
}

function writeRepr(value: unknown, out: { text: string }): void {
  if (out.text.length > REPR_MAX) return;
  if (value === null) out.text += 'None';
  else if (value === true) out.text += 'True';
  else if (value === false) out.text += 'False';
  else if (typeof value === 'number') out.text += Number.isNaN(value) ? 'nan' : value === Infinity ? 'inf' : value === -Infinity ? '-inf' : String(value);
  else if (typeof value === 'bigint') out.text += value.toString();
  else if (typeof value === 'string') out.text += `'${value.slice(0, REPR_MAX + 1).replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
  else if (Array.isArray(value)) {
    out.text += '[';
    for (let i = 0; i < value.length && out.text.length <= REPR_MAX; i++) {
      if (i > 0) out.text += ', ';
      writeRepr(value[i], out);
    }
    out.text += ']';
  } else {
    out.text += '{';
    let first = true;
    for (const key in value as object) {
      if (out.text.length > REPR_MAX) break;
      if (!first) out.text += ', ';
      first = false;
      writeRepr(key, out);
      out.text += ': ';
      writeRepr((value as Record<string, unknown>)[key], out);
    }
    out.text += '}';
  }
}

type JsonType = 'string' | 'object' | 'array' | 'boolean' | 'null';

function isType(value: unknown, type: JsonType): boolean {
  switch (type) {
    case 'string':
      return typeof value === 'string';
    case 'boolean':
      return typeof value === 'boolean';
    case 'null':
      return value === null;
    case 'array':
      return Array.isArray(value);
    case 'object':
      return value !== null && typeof value === 'object' && !Array.isArray(value);
  }
}

function schemaError(path: string, reason: string): BadRequest {
  return new BadRequest(`Payload JSON did not match schema at path ${path}: ${reason}`);
}

/** jsonschema's message for `{"type": type}` not matching. */
function notOfType(value: unknown, type: JsonType): string {
  return `${pythonRepr(value)} is not of type '${type}'`;
}

/** `{"anyOf": [{"type": type}, {"type": "null"}]}`: best_match reports the branch of the same kind. */
function checkNullable(payload: Record<string, unknown>, key: string, type: 'string' | 'array'): string | undefined {
  const value = payload[key];
  if (value === undefined || value === null) return undefined;
  if (!isType(value, type)) return `${pythonRepr(value)} is not valid under any of the given schemas`;
  if (type === 'array') {
    const items = value as unknown[];
    const bad = items.findIndex((item) => typeof item !== 'string');
    if (bad !== -1) return `${pythonRepr(value)} is not valid under any of the given schemas`;
  }
  return undefined;
}

/**
 * The payload, from the field's text: json.loads's refusal as "Unable to parse payload JSON",
 * a shape codejail-service's schema refuses as "Payload JSON did not match schema".
 */
export function parsePayload(text: string): CodeExecPayload {
  let payload: unknown;
  try {
    payload = parsePythonJson(text);
  } catch (err) {
    if (err instanceof PythonJsonError) throw new BadRequest(`Unable to parse payload JSON: ${err.message}`);
    throw err;
  }
  if (!isType(payload, 'object')) throw schemaError('$', notOfType(payload, 'object'));
  const fields = payload as Record<string, unknown>;
  const own = (key: string) => Object.prototype.hasOwnProperty.call(fields, key);
  // Depth 0 (required) before depth 1 (properties), as best_match ranks them.
  for (const key of ['code', 'globals_dict']) {
    if (!own(key)) throw schemaError('$', `'${key}' is a required property`);
  }
  if (typeof fields.code !== 'string') throw schemaError('$.code', notOfType(fields.code, 'string'));
  if (!isType(fields.globals_dict, 'object')) throw schemaError('$.globals_dict', notOfType(fields.globals_dict, 'object'));
  for (const [key, type] of [
    ['python_path', 'array'],
    ['limit_overrides_context', 'string'],
    ['slug', 'string'],
  ] as const) {
    const reason = own(key) ? checkNullable(fields, key, type) : undefined;
    if (reason !== undefined) throw schemaError(`$.${key}`, reason);
  }
  if (own('unsafely') && typeof fields.unsafely !== 'boolean') throw schemaError('$.unsafely', notOfType(fields.unsafely, 'boolean'));

  return {
    code: fields.code,
    globalsDict: fields.globals_dict as Record<string, unknown>,
    pythonPath: own('python_path') && fields.python_path !== null ? (fields.python_path as string[]) : [],
    limitOverridesContext: own('limit_overrides_context') ? (fields.limit_overrides_context as string | null) : null,
    slug: own('slug') ? (fields.slug as string | null) : null,
    unsafely: fields.unsafely === true,
  };
}

/**
 * The checks codejail-service makes after the schema, in its order: python_path entries, then
 * file names, then unsafely. Each closes a hole of the original safe_exec a network caller could
 * use (reading or writing the server's files, running unconfined).
 */
export function checkRequest(payload: CodeExecPayload, fileNames: Iterable<string>): void {
  if (payload.pythonPath.some((entry) => entry !== PYTHON_LIB_ZIP)) {
    throw new BadRequest("Only allowed entry in 'python_path' is 'python_lib.zip'");
  }
  for (const name of fileNames) {
    if (name !== PYTHON_LIB_ZIP) throw new BadRequest("Only allowed name for uploaded file is 'python_lib.zip'");
  }
  if (payload.unsafely) throw new BadRequest('Refusing codejail execution with unsafely=true');
}
