// Hostile review, item 2: a caller without supplementary groups whose pid equals an allowed gid
// was authorized, because "Groups:\t \n" was read up to the next line ("NStgid:\t<pid>"). The
// attacker forks until its pid is the codejail gid; here the daemon is told to allow the gid
// that equals the waiting client's pid instead, which is the same situation.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { startTestDaemon } from '../helpers/daemon.js';

const isRoot = process.getuid?.() === 0;
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const CLIENT = path.join(root, 'dist/client/index.js');
const STRANGER = 64_903;

describe.skipIf(!isRoot)('hostile: authorization', () => {
  it('deny_auth_pid_equal_to_an_allowed_gid_is_not_a_group', async () => {
    // The client starts first, as a stranger with no supplementary groups (libuv's setgid drops
    // them), and waits for the socket path on stdin.
    const script = `
      let socketPath = '';
      for await (const chunk of process.stdin) { socketPath += chunk; if (socketPath.includes('\\n')) break; }
      const { Client } = await import(${JSON.stringify(CLIENT)});
      const client = new Client({ socketPath: socketPath.trim() });
      try { await client.status(); console.log(JSON.stringify({ ok: true })); }
      catch (err) { console.log(JSON.stringify({ ok: false, code: err.code })); }
      finally { await client.close(); }`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
      uid: STRANGER,
      gid: STRANGER,
      cwd: '/',
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk));
    const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
    expect(fs.readFileSync(`/proc/${child.pid}/status`, 'utf8')).toMatch(/^Groups:\s*$/m);
    const daemon = await startTestDaemon({
      config: { socket: { group: 'root', mode: '0666' }, allow: { uids: [], groups: [child.pid!] } },
    });
    try {
      fs.chmodSync(path.dirname(daemon.socketPath), 0o755);
      child.stdin.end(`${daemon.socketPath}\n`);
      await exited;
      expect(JSON.parse(out.trim())).toEqual({ ok: false, code: 'forbidden' });
    } finally {
      child.kill();
      expect(await daemon.stop()).toBe(0);
    }
  });
});
