// The version of the machine's /usr/bin/python3, the daemon's default command (and, in the
// Debian 13 pass of scripts/trixie-suite.sh, the root's 3.13): what the sandbox's output depends
// on where CPython changed it. A behaviour that differs by version is pinned exactly, per version:
// `pinnedFor` names the versions a value has been seen on, and fails for any other with a message
// that says to run it there and pin it, rather than passing on a version no one has looked at.
import { execFileSync } from 'node:child_process';

export const SYSTEM_PYTHON = '/usr/bin/python3';

function systemPythonVersion(): { major: number; minor: number } {
  try {
    const out = execFileSync(SYSTEM_PYTHON, ['-E', '-c', 'import sys; print(*sys.version_info[:2])'], { encoding: 'utf8' });
    const [major, minor] = out.trim().split(' ').map(Number);
    return { major, minor };
  } catch {
    return { major: 0, minor: 0 };
  }
}

export const PYTHON_VERSION = systemPythonVersion();
/** "3.11", "3.13". */
export const PYTHON_VERSION_NAME = `${PYTHON_VERSION.major}.${PYTHON_VERSION.minor}`;

/** Whether /usr/bin/python3 is `major.minor` or later. */
export function pythonAtLeast(major: number, minor: number): boolean {
  return PYTHON_VERSION.major > major || (PYTHON_VERSION.major === major && PYTHON_VERSION.minor >= minor);
}

/** The value pinned for this machine's Python ("3.11": ..., "3.13": ...); throws for any other. */
export function pinnedFor<T>(what: string, values: Record<string, T>): T {
  if (!(PYTHON_VERSION_NAME in values)) {
    throw new Error(
      `${what}: pinned for Python ${Object.keys(values).join(' and ')} only, this is ${PYTHON_VERSION_NAME}: run it on ${PYTHON_VERSION_NAME} and pin what it gives`,
    );
  }
  return values[PYTHON_VERSION_NAME];
}

/**
 * The line under the harness's `exec(code, g_dict)` in a traceback: since 3.13 CPython marks a
 * call's callee and arguments (`~~~~^^^^...`) even where the call is the whole line; before, a
 * call had no such anchors and a whole-line expression got no marks at all.
 */
export const EXEC_CALL_MARKS = pythonAtLeast(3, 13) ? '    ~~~~^^^^^^^^^^^^^^\n' : '';
/** EXEC_CALL_MARKS as a regular expression's source. */
export const EXEC_CALL_MARKS_PATTERN = EXEC_CALL_MARKS.replace(/[.*+?^${}()|[\]\\]/g, '\\$&').replace(/\n/g, '\\n');
