// Kind python: discovery asks the interpreter for sys.path, the modules it loaded and the files
// it mapped; runs fork from python/warm_template.py, started through a bootstrap (`-c`) that
// reads the template, the harness and codejail_warm.so from its stdin; safe_exec runs
// python/safe_exec_harness.py; the self-check's probes are Python.
import { execFileSync } from 'node:child_process';
import { ConfigError } from '../config_error.js';
import { defineKind, type InterpreterCommand } from './kind.js';

// Besides sys.path and the modules loaded at start, the files mapped into the process (shared
// libraries, locale data): an interpreter built into /opt or a venv's own libpython lives outside
// the system library directory, and only the loader knows what it pulled in.
const PYTHON_DISCOVERY = `
import json, os, sys
mods = sorted({os.path.realpath(m.__file__) for m in list(sys.modules.values())
               if isinstance(getattr(m, '__file__', None), str)})
mapped = set()
try:
    with open('/proc/self/maps') as maps:
        for line in maps:
            fields = line.rstrip('\\n').split(None, 5)
            if len(fields) == 6 and fields[5].startswith('/'):
                mapped.add(fields[5])
except OSError:
    pass
print(json.dumps({'prefix': sys.prefix, 'base_prefix': sys.base_prefix, 'path': sys.path,
                  'executable': os.path.realpath(sys.executable), 'modules': mods,
                  'mapped': sorted(mapped)}))
`;

interface PythonFacts {
  prefix: string;
  base_prefix: string;
  path: string[];
  executable: string;
  modules: string[];
  /** Files mapped into the interpreter at start ("(deleted)" ones fail to resolve and are skipped). */
  mapped: string[];
}

/** The template's name on its command line (ps, /proc/<pid>/cmdline) and its sys.argv[0]. */
export const TEMPLATE_NAME = 'warm_template.py';
/** The file name the template's code is compiled under: what its frames and tracebacks show. */
export const TEMPLATE_FILENAME = '<codejail-warm-template>';

/**
 * The bootstrap. The library goes to a memfd and is loaded from /proc/self/fd (the namespace has
 * /proc), which the template closes once it is loaded. The template's module runs under another
 * name than __main__, so that its main block does not; the bootstrap starts it instead, from this
 * module level, so that a run's code sits as many frames deep as under a script. The command
 * line becomes a script's (`python3 [flags] warm_template.py --preload ...`), which a run's
 * sys.orig_argv is built from, and sys.path[0] (the cwd, "/", for -c) names nothing, as the
 * script's directory would be nothing the namespace shows.
 */
export const TEMPLATE_BOOT = `import os, sys
def _boot():
    chunks = []
    while True:
        chunk = os.read(0, 1 << 16)
        if not chunk:
            break
        chunks.append(chunk)
    head, _, data = b"".join(chunks).partition(b"\\n")
    del chunks
    sizes = [int(n) for n in head.split()]
    if len(sizes) != 3 or sum(sizes) != len(data):
        raise SystemExit("warm template: its files arrived incomplete (%d bytes)" % len(data))
    source, harness, library = data[:sizes[0]], data[sizes[0]:sizes[0] + sizes[1]], data[sizes[0] + sizes[1]:]
    del data
    lib_fd = os.memfd_create("codejail_warm.so")
    written = 0
    while written < len(library):
        written += os.write(lib_fd, library[written:])
    del library
    code = compile(source, ${JSON.stringify(TEMPLATE_FILENAME)}, "exec", dont_inherit=True)
    del source
    interpreter = sys.orig_argv[:len(sys.orig_argv) - len(sys.argv) - 1]
    sys.argv = sys.argv[1:]
    sys.orig_argv = interpreter + sys.argv
    if sys.path[:1] == [""]:
        sys.path[0] = "/nonexistent"
    module = {"__name__": "codejail_warm_template", "__file__": ${JSON.stringify(TEMPLATE_FILENAME)}, "__builtins__": __builtins__}
    exec(code, module)
    options = module["parse_args"](sys.argv[1:])
    options["lib"] = "/proc/self/fd/%d" % lib_fd
    options["harness"] = harness
    template = module["Template"](options)
    os.close(lib_fd)
    # Python 3.13 keeps the source of -c for tracebacks (linecache._interactive_cache) under
    # "<string>", which is also the name exec() gives a string's code: a warm run's traceback
    # through exec'd code (safeExec's) would show this bootstrap's lines where a cold run shows none.
    interactive = getattr(sys.modules.get("linecache"), "_interactive_cache", {})
    for key in [key for key in interactive if key[0] == "<string>"]:
        del interactive[key]
    return template
_boot().serve()
`;


export const python = defineKind({
  name: 'python',
  discover(command, where) {
    const facts = askPython(command, where);
    return {
      read: [...facts.path.filter((p) => p.startsWith('/')), ...facts.modules, ...facts.mapped],
      // A virtualenv (prefix != base_prefix) is a directory dedicated to the sandbox: its
      // interpreter reads pyvenv.cfg there, and packages may keep data beside site-packages
      // (share/, lib64 -> lib), so the whole prefix is granted read-only. The base prefix (/usr)
      // never is: only its stdlib and package directories come in, through sys.path.
      ...(facts.prefix !== facts.base_prefix ? { dedicated: { path: facts.prefix, what: 'virtualenv' } } : {}),
    };
  },
  template: {
    script: 'python/warm_template.py',
    argv: (command) => [command.path, ...command.args, '-c', TEMPLATE_BOOT, TEMPLATE_NAME, '--preload', (command.preload ?? []).join(',')],
  },
  harness: 'python/safe_exec_harness.py',
  selfCheck: true,
});

function askPython(command: InterpreterCommand, where: string): PythonFacts {
  let output: string;
  try {
    output = execFileSync(command.path, [...command.args, '-c', PYTHON_DISCOVERY], {
      cwd: '/',
      env: { PATH: '/usr/bin:/bin', LANG: 'C.UTF-8', ...command.env },
      encoding: 'utf8',
      timeout: 30_000,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  } catch (err) {
    const stderr = String((err as { stderr?: unknown }).stderr ?? '').trim();
    throw new ConfigError(`${where}: running ${command.path} to discover its paths failed: ${(err as Error).message}${stderr ? `: ${stderr}` : ''}`);
  }
  try {
    const facts = JSON.parse(output) as PythonFacts;
    if (
      !Array.isArray(facts.path) ||
      !Array.isArray(facts.modules) ||
      !Array.isArray(facts.mapped) ||
      typeof facts.prefix !== 'string' ||
      typeof facts.base_prefix !== 'string'
    ) {
      throw new Error('unexpected shape');
    }
    return facts;
  } catch (err) {
    throw new ConfigError(`${where}: ${command.path} printed something other than the expected JSON (${(err as Error).message}): ${output.slice(0, 200)}`);
  }
}
