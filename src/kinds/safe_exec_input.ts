// The safe_exec harness's stdin (python/safe_exec_harness.py reads it), as the daemon and the
// client's unsafe path both compose it:
//
//   <the code's length in bytes, decimal> "\n" <the code, UTF-8> {"globals": <tagged dict>, "python_path": [names]}
//
// The caller's code goes as UTF-8, unescaped, and its globals as the bytes it sent, unparsed:
// escaping the code into JSON made up to 6 bytes of each of its characters (a control character is
// \u00XX) and took the daemon's event loop about a second for 64 MiB of them. A lone surrogate
// in the code becomes U+FFFD (as msgpack already made it on its way to the daemon).

const GLOBALS_HEAD = new TextEncoder().encode('{"globals":');

/** The parts of the harness's stdin, to be written one after the other (the globals are not copied). */
export function harnessStdin(code: string, globals: Uint8Array, pythonPath: readonly string[]): Uint8Array[] {
  const codeBytes = Buffer.from(code, 'utf8');
  return [
    Buffer.from(`${codeBytes.length}\n`, 'latin1'),
    codeBytes,
    GLOBALS_HEAD,
    globals,
    // After the globals: JSON keeps the last of two equal keys, so a "python_path" smuggled into
    // the caller's globals text is overridden by this one.
    Buffer.from(`,"python_path":${JSON.stringify(pythonPath)}}`, 'utf8'),
  ];
}
