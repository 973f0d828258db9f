// The addon's spawn contract beyond confinement: which fds a child gets. fd 3 is the result
// channel only when the plan asks for it; otherwise every fd above stderr is closed, so nothing
// of the daemon's (its socket, other runs' pipes) reaches a sandbox.
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { native, type NativeExit, type NativePlan } from '../../src/native.js';
import { PYTHON, isRoot, makeRunDir } from '../helpers/sandbox.js';

function readAll(fd: number): Promise<Buffer> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const socket = new net.Socket({ fd, readable: true, writable: false });
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('close', () => resolve(Buffer.concat(chunks)));
  });
}

async function spawnPython(code: string, extra: Partial<NativePlan> = {}) {
  const dir = makeRunDir();
  const child = native().spawn({ file: PYTHON, argv: [PYTHON, '-E', '-B', '-c', code], env: [], cwd: dir, ...extra });
  native().closeFd(child.stdin);
  const outputs = Promise.all([readAll(child.stdout), readAll(child.stderr), child.result === undefined ? undefined : readAll(child.result)]);
  const exit = await new Promise<NativeExit>((resolve) => native().watchExit(child.pidfd, child.pid, resolve));
  native().closeFd(child.pidfd);
  const [stdout, stderr, result] = await outputs;
  return { child, exit, stdout: stdout.toString(), stderr: stderr.toString(), result };
}

// spawn needs no root without uid/namespace layers, but the suite shares the root helpers.
describe.skipIf(!isRoot)('spawn fds', () => {
  it('support_result_channel_is_fd_3_apart_from_stdout', async () => {
    const r = await spawnPython("import os\nprint('printed')\nos.write(3, b'the result')\nos.close(3)", { resultChannel: true });
    expect(r.exit.code).toBe(0);
    expect(r.stdout).toBe('printed\n');
    expect(r.result?.toString()).toBe('the result');
  });

  it('support_without_result_channel_fd_3_and_above_are_closed', async () => {
    const r = await spawnPython("import os\nprint(sorted(int(n) for n in os.listdir('/proc/self/fd')))");
    expect(r.child.result).toBeUndefined();
    // 0-2 and the fd listdir itself has open: nothing of the parent's.
    expect(JSON.parse(r.stdout)).toEqual([0, 1, 2, 3]);
  });
});
