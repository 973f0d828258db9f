// The mixed workload through the client: each kind is a request and the one result it must have.
// Every limit is hit (CPU, REALTIME, VMEM, FSIZE, NPROC, OUTPUT, DISK where the disk layer is on),
// with files, stdin, exceptions and leftovers (a setsid'd sleeper outliving its run). A result
// that is not exactly the expected one throws Wrong; a CodejailError (a clear code) is sorted
// apart by `classify`; anything else, or no answer, is a lost request.
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client, CodejailError, SafeExecError, type JailCodeResult } from '../../src/client/index.js';
import { Hung } from './probes.js';
import type { Random } from './knobs.js';

export class Wrong extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'Wrong';
  }
}

function must(condition: unknown, what: string, result?: JailCodeResult): asserts condition {
  if (condition) return;
  const detail = result
    ? ` [status ${result.status} timedOut ${result.timedOut} truncated ${result.truncated} stdout ${JSON.stringify(result.stdout.toString().slice(0, 120))} stderr ${JSON.stringify(result.stderr.toString().slice(-200))}]`
    : '';
  throw new Wrong(what + detail);
}

/** The files runs read: made once per suite, their digests known. */
export interface Fixtures {
  dataDir: string;
  dataDigest: string;
  libDir: string;
  remove(): void;
}

export const sha256 = (b: Uint8Array | string) => crypto.createHash('sha256').update(b).digest('hex');

export function makeFixtures(rng: Random): Fixtures {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'cj-soak-'));
  const dataDir = path.join(root, 'data');
  fs.mkdirSync(path.join(dataDir, 'sub'), { recursive: true });
  const data = rng.bytes(50_000);
  fs.writeFileSync(path.join(dataDir, 'a.bin'), data);
  fs.writeFileSync(path.join(dataDir, 'sub', 'b.txt'), 'hello\n');
  const libDir = path.join(root, 'lib');
  fs.mkdirSync(libDir);
  fs.writeFileSync(path.join(libDir, 'mylib.py'), 'def f(k):\n    return k * 3 + 1\n');
  return { dataDir, dataDigest: sha256(data), libDir, remove: () => fs.rmSync(root, { recursive: true, force: true }) };
}

export interface Context {
  rng: Random;
  fixtures: Fixtures;
}

type Kind = (client: Client, ctx: Context) => Promise<void>;
const out = (r: JailCodeResult) => r.stdout.toString();

async function safeExecOk(client: Client, { rng }: Context, warm: boolean): Promise<void> {
  const a = rng.int(1e6);
  const g: Record<string, unknown> = { a, s: 'héllo', l: [1, 2, 3], d: { x: null, y: [true, 1.5] } };
  await client.safeExec('b = a*2\nl.append(len(s))\nimport math\nc = math.sqrt(16)\nd["z"] = "ok"\nf = lambda: 1', g, { warm });
  const d = g.d as { z?: string; y: unknown[] };
  must(g.b === 2 * a && JSON.stringify(g.l) === '[1,2,3,5]' && g.c === 4 && d.z === 'ok' && d.y[1] === 1.5 && !('f' in g), `safe_exec globals ${JSON.stringify(g).slice(0, 200)}`);
}

const squareCode = 'import sys\nx=int(sys.argv[1])\nprint(x*x)';

export const KINDS: Record<string, Kind> = {
  jc_warm_ok: async (c, { rng }) => {
    const x = rng.int(1e6);
    const r = await c.jailCode('python', { code: squareCode, argv: [String(x)] });
    must(r.status === 0 && out(r) === `${x * x}\n`, 'square, warm', r);
  },
  jc_cold_ok: async (c, { rng }) => {
    const x = rng.int(1e6);
    const r = await c.jailCode('python', { code: squareCode, argv: [String(x)], warm: false });
    must(r.status === 0 && out(r) === `${x * x}\n`, 'square, cold', r);
  },
  se_warm_ok: (c, ctx) => safeExecOk(c, ctx, true),
  se_cold_ok: (c, ctx) => safeExecOk(c, ctx, false),
  sleeper: async (c, { rng }) => {
    const r = await c.jailCode('python', { code: 'import time\ntime.sleep(0.3)\nprint("slept")', limits: { REALTIME: 5 }, warm: rng.chance(0.7) });
    must(r.status === 0 && out(r) === 'slept\n' && !r.timedOut, 'a 0.3 s sleeper', r);
  },
  exception: async (c, { rng }) => {
    const r = await c.jailCode('python', { code: 'print("before")\n1/0', warm: rng.chance(0.7) });
    must(r.status === 1 && out(r) === 'before\n' && r.stderr.toString().includes('ZeroDivisionError'), 'an exception', r);
  },
  se_exception: async (c, { rng }) => {
    const k = rng.int(1000);
    try {
      await c.safeExec(`raise ValueError("boom${k}")`, { a: 1 }, { warm: rng.chance(0.7) });
    } catch (e) {
      if (e instanceof SafeExecError) {
        must(e.status === 1 && e.stderr.toString().includes(`ValueError: boom${k}`) && e.message.startsWith("Couldn't execute jailed code"), `safe_exec exception: status ${e.status} ${e.message.slice(0, 200)}`);
        return;
      }
      throw e;
    }
    must(false, 'safe_exec raised no exception');
  },
  cpu: async (c, { rng }) => {
    const r = await c.jailCode('python', { code: 'while True: pass', limits: { CPU: 1, REALTIME: 10 }, warm: rng.chance(0.7) });
    must(r.status === -24 && !r.timedOut, 'CPU: SIGXCPU', r);
  },
  realtime: async (c, { rng }) => {
    // 1.5 s: long enough for a cold interpreter on a loaded 2-core host to reach its print.
    const r = await c.jailCode('python', { code: 'import time\nprint("s", flush=True)\nwhile True: time.sleep(0.05)', limits: { REALTIME: 1.5 }, warm: rng.chance(0.7) });
    must(r.status === -9 && r.timedOut && out(r) === 's\n', 'REALTIME: killed, timedOut, its output kept', r);
  },
  vmem: async (c, { rng }) => {
    const r = await c.jailCode('python', { code: 'x = bytearray(600*1024*1024)\nprint("no")', limits: { VMEM: 256 * 1024 * 1024 }, warm: rng.chance(0.7) });
    must(r.status === 1 && r.stderr.toString().includes('MemoryError') && out(r) === '', 'VMEM: MemoryError', r);
  },
  output: async (c, { rng }) => {
    const r = await c.jailCode('python', { code: 'import sys\nsys.stdout.write("x"*300000)\nsys.stdout.flush()\nprint("end", file=sys.stderr)', limits: { OUTPUT: 65536 }, warm: rng.chance(0.7) });
    must(r.truncated && r.stdout.length + r.stderr.length <= 65536 && r.stdout.length > 0 && /^x+$/.test(out(r)), 'OUTPUT: truncated', r);
  },
  nproc: async (c, { rng }) => {
    const code = 'import os,time\nn=0\nwhile n<100:\n  try:\n    pid=os.fork()\n  except OSError as e:\n    print("stop", n, e.errno); break\n  if pid==0:\n    time.sleep(30); os._exit(0)\n  n+=1\n';
    const r = await c.jailCode('python', { code, limits: { NPROC: 6, REALTIME: 5 }, warm: rng.chance(0.7) });
    const m = out(r).match(/^stop (\d+) 11\n$/);
    must(r.status === 0 && m && Number(m[1]) >= 1 && Number(m[1]) <= 5, 'NPROC: fork fails with EAGAIN', r);
  },
  forkbomb: async (c, { rng }) => {
    const r = await c.jailCode('python', { code: 'import os\nwhile True:\n  try:\n    os.fork()\n  except OSError:\n    pass\n', limits: { NPROC: 8, REALTIME: 0.5 }, warm: rng.chance(0.7) });
    must(r.status === -9 && r.timedOut, 'a fork bomb ends by REALTIME', r);
  },
  leftover: async (c, { rng }) => {
    const code = 'import os,time,threading\nif os.fork()==0:\n  os.setsid()\n  if os.fork()==0:\n    time.sleep(60)\n  os._exit(0)\nthreading.Thread(target=time.sleep, args=(0.01,)).start()\nprint("parent done")';
    const r = await c.jailCode('python', { code, warm: rng.chance(0.7) });
    must(r.status === 0 && out(r) === 'parent done\n', "a setsid'd sleeper left behind", r);
  },
  fsize: async (c, { rng }) => {
    const r = await c.jailCode('python', { code: 'try:\n  with open("tmp/f","wb") as f: f.write(b"x"*10000)\n  print("wrote")\nexcept OSError as e:\n  print("err", e.errno)', limits: { FSIZE: 1000 }, warm: rng.chance(0.7) });
    must(r.status === 0 && out(r) === 'err 27\n', 'FSIZE: EFBIG', r);
  },
  disk: async (c, { rng }) => {
    const code = 'try:\n  with open("tmp/f","wb") as f:\n    for i in range(32): f.write(b"x"*65536)\n  print("wrote")\nexcept OSError as e:\n  print("err", e.errno)';
    const r = await c.jailCode('python', { code, limits: { FSIZE: 100 * 1024 * 1024, DISK: 1024 * 1024 }, warm: rng.chance(0.7) });
    must(r.status === 0 && out(r) === 'err 28\n', 'DISK: ENOSPC', r);
  },
  files_in: async (c, { rng, fixtures }) => {
    const b = rng.bytes(10_000 + rng.int(90_000));
    const code = 'import hashlib\nprint(hashlib.sha256(open("in.bin","rb").read()).hexdigest())\nprint(hashlib.sha256(open("data/a.bin","rb").read()).hexdigest())\nprint(open("data/sub/b.txt").read().strip())';
    const r = await c.jailCode('python', { code, extraFiles: [['in.bin', b]], files: [fixtures.dataDir], warm: rng.chance(0.7) });
    must(r.status === 0 && out(r) === `${sha256(b)}\n${fixtures.dataDigest}\nhello\n`, 'files in', r);
  },
  files_out: async (c, { rng }) => {
    const n = 1000 + rng.int(60_000);
    const code = `import hashlib,os\nd=os.urandom(${n})\nopen("tmp/o","wb").write(d)\nprint(hashlib.sha256(open("tmp/o","rb").read()).hexdigest()==hashlib.sha256(d).hexdigest(), os.path.getsize("tmp/o"))`;
    const r = await c.jailCode('python', { code, limits: { FSIZE: 1 << 20 }, warm: rng.chance(0.7) });
    must(r.status === 0 && out(r) === `True ${n}\n`, 'a file written and read back', r);
  },
  stdin: async (c, { rng }) => {
    const b = rng.bytes(1 + rng.int(200_000));
    const r = await c.jailCode('python', { code: 'import sys,hashlib\nd=sys.stdin.buffer.read()\nprint(len(d), hashlib.sha256(d).hexdigest())', stdin: b, warm: rng.chance(0.7) });
    must(r.status === 0 && out(r) === `${b.length} ${sha256(b)}\n`, 'stdin', r);
  },
  se_lib: async (c, { rng, fixtures }) => {
    const k = rng.int(1e6);
    const g: Record<string, unknown> = { k };
    try {
      await c.safeExec('import mylib\nr = mylib.f(k)', g, { pythonPath: [fixtures.libDir], warm: rng.chance(0.7) });
    } catch (e) {
      if (e instanceof SafeExecError) must(false, `safe_exec with a library: ${e.message.slice(0, 300)}`);
      throw e;
    }
    must(g.r === k * 3 + 1, `safe_exec with a library: r=${String(g.r)}`);
  },
};

/** The mix: how often each kind comes up. DISK only where the disk layer is on. */
export function mixWeights(diskOn: boolean): Record<string, number> {
  return {
    jc_warm_ok: 20, jc_cold_ok: 7, se_warm_ok: 14, se_cold_ok: 5, sleeper: 4, exception: 5, se_exception: 5,
    cpu: 1.5, realtime: 3, vmem: 3, output: 3, nproc: 3, forkbomb: 1, leftover: 4, fsize: 3, ...(diskOn ? { disk: 3 } : {}),
    files_in: 6, files_out: 4, stdin: 6, se_lib: 3,
  };
}

export type Outcome = 'correct' | 'clear_error' | 'wrong' | 'lost';

/** Codes that say a request was refused or cut off: a clear answer. 'internal' is a daemon bug. */
const CLEAR_CODES = new Set(['overloaded', 'shutting_down', 'cancelled', 'connection_lost', 'unavailable', 'closed', 'setup_failed', 'template_lost']);

export function classify(err: unknown): { outcome: Outcome; code: string } {
  if (err instanceof Wrong) return { outcome: 'wrong', code: 'wrong' };
  if (err instanceof Hung) return { outcome: 'lost', code: 'hung' };
  if (err instanceof CodejailError) return { outcome: CLEAR_CODES.has(err.code) ? 'clear_error' : 'wrong', code: err.code };
  if (err instanceof SafeExecError) return { outcome: 'wrong', code: `safe_exec_status_${err.status}` };
  return { outcome: 'lost', code: err instanceof Error ? err.name : 'unknown' };
}
