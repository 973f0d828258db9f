// The safe_exec harness's stdin (src/kinds/safe_exec_input.ts) for tests: made from a request,
// and read back into one.

export interface HarnessRequest {
  code: string;
  globals: unknown;
  python_path: string[];
}

/** The stdin the harness reads for `request` (its globals as JSON, as the client encodes them). */
export function harnessRequest(request: HarnessRequest): Buffer {
  const code = Buffer.from(request.code);
  return Buffer.concat([Buffer.from(`${code.length}\n`), code, Buffer.from(JSON.stringify({ globals: request.globals, python_path: request.python_path }))]);
}

/** What a harness's stdin holds: its code, and its JSON document's globals and python_path. */
export function parseHarnessRequest(stdin: Uint8Array | readonly Uint8Array[]): HarnessRequest {
  const bytes = stdin instanceof Uint8Array ? Buffer.from(stdin) : Buffer.concat(stdin);
  const newline = bytes.indexOf(0x0a);
  const end = newline + 1 + Number(bytes.subarray(0, newline).toString());
  // As the harness reads it: the code is the one before the document (a "code" key there is not read).
  const document = JSON.parse(bytes.subarray(end).toString()) as Omit<HarnessRequest, 'code'>;
  return { code: bytes.subarray(newline + 1, end).toString(), globals: document.globals, python_path: document.python_path };
}
