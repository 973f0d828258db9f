// The fork floor of `codejail bench`: what a preloaded CPython costs to fork a child that runs
// the code and reports back, with no confinement and no daemon. A Python process started like
// the daemon's warm template (its interpreter, flags, environment and preloads, read from the
// template's /proc entry) loops over fork(): the child runs exec("a = 17", g), writes json.dumps
// of its globals to a pipe and _exits; the parent reads to EOF and reaps. Measured in the same
// run as the rows compared with it, since the machine's speed varies from one moment to the next.
import { spawn } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { TEMPLATE_NAME } from '../kinds/python.js';

/** How to start a process like the template: argv up to the script, environment, preloads. */
export interface FloorInterpreter {
  /** The interpreter and its flags, as the template was started with. */
  interpreter: string[];
  env: Record<string, string>;
  preload: string[];
  /** Where this came from, for the bench's header line. */
  source: string;
}

/** The pids of a process's children, from every one of its threads' children lists. */
export function childPids(pid: number): number[] {
  const pids: number[] = [];
  try {
    for (const task of readdirSync(`/proc/${pid}/task`)) {
      const text = readFileSync(`/proc/${pid}/task/${task}/children`, 'latin1').trim();
      if (text) pids.push(...text.split(/\s+/).map(Number));
    }
  } catch {
    // The process is gone, or its entries are not ours to read.
  }
  return pids;
}

/**
 * The template's command line split back into its parts (src/kinds/python.ts's
 * templateArgv: interpreter, flags, `-c BOOT warm_template.py --preload LIST`), or undefined
 * when `argv` is not a template's.
 */
export function parseTemplateArgv(argv: readonly string[]): { interpreter: string[]; preload: string[] } | undefined {
  const boot = argv.indexOf('-c');
  if (boot < 1 || argv[boot + 2] !== TEMPLATE_NAME || argv[boot + 3] !== '--preload') return undefined;
  return { interpreter: argv.slice(0, boot), preload: (argv[boot + 4] ?? '').split(',').filter(Boolean) };
}

/** The daemon's warm templates among its children: pid and what they were started as. */
export function findTemplates(daemonPid: number): Array<{ pid: number; interpreter: string[]; preload: string[] }> {
  const found = [];
  for (const pid of childPids(daemonPid)) {
    try {
      const argv = readFileSync(`/proc/${pid}/cmdline`, 'latin1').split('\0').slice(0, -1);
      const parsed = parseTemplateArgv(argv);
      if (parsed) found.push({ pid, ...parsed });
    } catch {
      // Exited since the children list was read: a kill helper, most likely.
    }
  }
  return found;
}

/**
 * What the floor runs as: the first warm template's interpreter, flags, environment (readable
 * by root only: empty otherwise, as a run's is by default) and preloads; `fallback -E -B` without
 * preloads when the daemon has no template this process can see.
 */
export function floorInterpreter(daemonPid: number | undefined, fallback: string): FloorInterpreter {
  const template = daemonPid === undefined ? undefined : findTemplates(daemonPid)[0];
  if (!template) return { interpreter: [fallback, '-E', '-B'], env: {}, preload: [], source: `${fallback} -E -B (no warm template found)` };
  let env: Record<string, string> = {};
  try {
    const entries = readFileSync(`/proc/${template.pid}/environ`, 'latin1').split('\0').filter(Boolean);
    env = Object.fromEntries(entries.map((entry) => [entry.slice(0, entry.indexOf('=')), entry.slice(entry.indexOf('=') + 1)]));
  } catch {
    // Not root: the environment a run gets by default (none).
  }
  const preloads = template.preload.length ? `, preloads ${template.preload.join(',')}` : '';
  return { ...template, env, source: `the template's ${template.interpreter.join(' ')}${preloads}` };
}

/**
 * Python: fork a child that runs `child(w)` with the write end of a pipe and exits, read the
 * pipe to EOF (64 KiB reads), reap the child; returns (bytes, wait status). The fork floor and
 * the work rows' output baseline both measure this one routine.
 */
export const FORK_AND_READ_PY = `def fork_and_read(child):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            child(w)
        finally:
            os._exit(0)
    os.close(w)
    chunks = []
    while True:
        chunk = os.read(r, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    return b"".join(chunks), status
`;

/**
 * The loop. argv: runs, warm-up runs, preloads. It imports the preloads and freezes its objects
 * as the template does (gc.freeze: a child's collections never copy the parent's pages), runs
 * the warm-up, says "ready" and waits for a line on stdin, so that parallel processes start
 * together; then prints one JSON line: each run's latency (ms), the loop's start and end on
 * CLOCK_MONOTONIC (the same clock in every process) and its CPU time, its own and its reaped
 * children's (ms).
 */
export const FLOOR_SCRIPT = `import gc, json, os, sys, time
runs, warmup = int(sys.argv[1]), int(sys.argv[2])
for name in sys.argv[3].split(","):
    if name:
        __import__(name)
gc.collect()
gc.freeze()
${FORK_AND_READ_PY}def child(w):
    g = {}
    exec("a = 17", g)
    del g["__builtins__"]
    os.write(w, json.dumps(g).encode())
def once():
    data, status = fork_and_read(child)
    if status != 0 or json.loads(data) != {"a": 17}:
        raise SystemExit("fork floor: the child failed (status %d)" % status)
for _ in range(warmup):
    once()
sys.stdout.write("ready\\n")
sys.stdout.flush()
sys.stdin.readline()
latencies = []
before = os.times()
start = time.monotonic()
for _ in range(runs):
    begin = time.monotonic()
    once()
    latencies.append((time.monotonic() - begin) * 1000)
end = time.monotonic()
after = os.times()
print(json.dumps({"latencies": latencies, "start": start, "end": end,
    "selfMs": (after.user + after.system - before.user - before.system) * 1000,
    "childrenMs": (after.children_user + after.children_system - before.children_user - before.children_system) * 1000}))
`;

/** One floor process's report. */
interface FloorReport {
  latencies: number[];
  start: number;
  end: number;
  selfMs: number;
  childrenMs: number;
}

/** All the floor processes' runs together. */
export interface FloorResult {
  latencies: number[];
  elapsedMs: number;
  /** CPU of the looping parents (fork, read, reap) and of their forked children, in ms. */
  parentCpuMs: number;
  childCpuMs: number;
}

/** Starts one floor process and resolves, once it is ready, with a function that starts its loop. */
function startFloorProcess(floor: FloorInterpreter, runs: number, warmup: number): Promise<{ go: () => Promise<FloorReport> }> {
  const [command, ...flags] = floor.interpreter;
  const child = spawn(command!, [...flags, '-c', FLOOR_SCRIPT, String(runs), String(warmup), floor.preload.join(',')], {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: floor.env,
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk: string) => (stderr += chunk.slice(0, 2000)));
  const exited = new Promise<FloorReport>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => {
      const last = stdout.trim().split('\n').pop() ?? '';
      if (code === 0 && last.startsWith('{')) resolve(JSON.parse(last) as FloorReport);
      else reject(new Error(`the fork floor (${floor.interpreter.join(' ')}) failed: status ${code}, stderr ${JSON.stringify(stderr)}`));
    });
  });
  exited.catch(() => {});
  return new Promise((resolve, reject) => {
    child.stdout.on('data', (chunk: string) => {
      const wasReady = stdout.startsWith('ready\n');
      stdout += chunk;
      if (!wasReady && stdout.startsWith('ready\n')) resolve({ go: () => (child.stdin.end('go\n'), exited) });
    });
    exited.catch(reject);
  });
}

/** `runs` runs of the floor shared by `processes` processes looping in parallel. */
export async function runFloor(floor: FloorInterpreter, runs: number, processes: number): Promise<FloorResult> {
  const share = Math.ceil(runs / processes);
  const started = await Promise.all(Array.from({ length: processes }, () => startFloorProcess(floor, share, Math.min(20, share))));
  const reports = await Promise.all(started.map((process) => process.go()));
  return {
    latencies: reports.flatMap((report) => report.latencies),
    elapsedMs: (Math.max(...reports.map((r) => r.end)) - Math.min(...reports.map((r) => r.start))) * 1000,
    parentCpuMs: reports.reduce((sum, r) => sum + r.selfMs, 0),
    childCpuMs: reports.reduce((sum, r) => sum + r.childrenMs, 0),
  };
}
