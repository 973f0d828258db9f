// How a warm template starts without opening anything of the install: its interpreter runs a
// short bootstrap (`-c`) that reads python/warm_template.py, the safeExec harness and
// codejail_warm.so from its stdin, where the daemon writes the copies it read at its start
// (install_files.ts). The template runs inside the runs' mount namespace, where an install
// beneath /root, /home or /tmp is not there; and a template replaced after an upgrade of the
// files on disk runs what the rest of the daemon was started with.
import net from 'node:net';
import type { CommandProfile } from './commands.js';
import type { InstallFiles } from './install_files.js';

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
    return template
_boot().serve()
`;

/** The template's argv: the command's interpreter and flags, the bootstrap, then the template's own. */
export function templateArgv(profile: CommandProfile): string[] {
  return [profile.path, ...profile.args, '-c', TEMPLATE_BOOT, TEMPLATE_NAME, '--preload', profile.preload.join(',')];
}

/**
 * Writes the files to the template's stdin (`stdinFd`, the pipe's write end, which this closes
 * once written): a line of their three sizes, then the template, the harness and the library.
 * A template that dies first is reported by its channel closing, not here.
 */
export function sendTemplateFiles(stdinFd: number, files: InstallFiles): void {
  const stream = new net.Socket({ fd: stdinFd, readable: false, writable: true });
  stream.on('error', () => {});
  const sizes = Buffer.from(`${files.warmTemplate.length} ${files.harness.length} ${files.warmLibrary.length}\n`, 'latin1');
  stream.end(Buffer.concat([sizes, files.warmTemplate, files.harness, files.warmLibrary]));
}
