// Metrics (Prometheus text over the socket and a loopback HTTP port), the check request, and the
// CLI commands around them: metrics, check, check-config, setup --systemd's unit files.
import { execFile, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '../../src/client/index.js';
import { parseConfig } from '../../src/daemon/config.js';
import { Metrics } from '../../src/daemon/metrics.js';
import { installSystemdUnits } from '../../src/setup/systemd_units.js';
import { DAEMON_MAIN, startTestDaemon, type TestDaemon } from '../helpers/daemon.js';
import { waitIdle } from '../helpers/suite.js';

const isRoot = process.getuid?.() === 0;
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const CLI = path.join(root, 'dist/cli/main.js');

function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr });
    });
  });
}

/** A port nothing listens on right now. */
async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

function get(url: string): Promise<{ status: number; type?: string; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, (res) => {
        let body = '';
        res.on('data', (c) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, type: res.headers['content-type'], body }));
      })
      .on('error', reject);
  });
}

/** The value of one sample line, e.g. sample(text, 'codejail_runs_total{verdict="ok"}'). */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

/** Each series has exactly the value given. */
function expectSamples(text: string, expected: Record<string, number>): void {
  for (const [series, value] of Object.entries(expected)) expect(sample(text, series), series).toBe(value);
}

describe('Metrics.render', () => {
  it('counts runs by verdict and fills the latency histogram cumulatively', () => {
    const metrics = new Metrics();
    metrics.recordRun('ok', 0.02);
    metrics.recordRun('exit', 0.3);
    metrics.recordRun('rejected', 0);
    const text = metrics.render({
      slotsTotal: 4,
      slotsBusy: 1,
      slotsQuarantined: 0,
      queueDepth: 2,
      queueMax: 8,
      selfCheckOk: true,
      setupFailures: 0,
      draining: false,
      cleanups: { count: 3, totalMs: 1500 },
      idleCollections: 2,
      warm: [{ command: 'python', ready: true, warm: 5, cold: 1, restarts: 0, replaced: 2 }],
    });
    expectSamples(text, {
      'codejail_runs_total{verdict="ok"}': 1,
      'codejail_runs_total{verdict="rejected"}': 1,
      'codejail_run_duration_seconds_bucket{le="0.025"}': 1,
      'codejail_run_duration_seconds_bucket{le="0.5"}': 2,
      'codejail_run_duration_seconds_bucket{le="+Inf"}': 2,
      codejail_run_duration_seconds_count: 2,
      codejail_queue_depth: 2,
      codejail_cleanups_total: 3,
      codejail_cleanup_seconds_total: 1.5,
      codejail_idle_collections_total: 2,
      'codejail_warm_runs_total{command="python"}': 5,
      'codejail_warm_fallback_runs_total{command="python"}': 1,
      'codejail_warm_template_ready{command="python"}': 1,
    });
    expect(text).toContain('# TYPE codejail_runs_total counter');
    expect(text.endsWith('\n')).toBe(true);
  });

  it('refuses a metrics host that is not loopback, naming the key', () => {
    expect(() => parseConfig({ metrics: { port: 9100, host: '0.0.0.0' } })).toThrow(/metrics\.host: must be a loopback address/);
    expect(parseConfig({ metrics: { port: 9100 } }).metrics).toEqual({ port: 9100, host: '127.0.0.1' });
  });
});

describe.skipIf(!isRoot)('metrics and check from a running daemon', () => {
  let daemon: TestDaemon;
  let client: Client;
  let port: number;

  beforeAll(async () => {
    port = await freePort();
    daemon = await startTestDaemon({ config: { metrics: { port } } });
    client = new Client({ socketPath: daemon.socketPath });
  });
  afterAll(async () => {
    await client?.close();
    expect(await daemon?.stop()).toBe(0);
  });

  it('serves the expected series over the socket and counts runs by verdict', async () => {
    expect((await client.jailCode('python', { code: 'print(1)' })).status).toBe(0);
    expect((await client.jailCode('python', { code: 'raise SystemExit(3)' })).status).toBe(3);
    await expect(client.jailCode('python', { code: 'print(1)', limits: { CPU: 1e6 } })).rejects.toMatchObject({ code: 'limit_exceeds_ceiling' });
    // A run's clean-up finishes after its reply; the slot is busy until then.
    await waitIdle(client);
    const text = await client.metrics();
    expect(sample(text, 'codejail_uptime_seconds')).toBeGreaterThan(0);
    expectSamples(text, {
      codejail_up: 1,
      'codejail_runs_total{verdict="ok"}': 1,
      'codejail_runs_total{verdict="exit"}': 1,
      'codejail_runs_total{verdict="rejected"}': 1,
      codejail_run_duration_seconds_count: 2,
      codejail_queue_depth: 0,
      codejail_slots: 4,
      codejail_slots_busy: 0,
      codejail_setup_failures_total: 0,
      codejail_selfcheck_ok: 1,
    });
  });

  it('serves the same text on the loopback HTTP port, and nothing else there', async () => {
    const response = await get(`http://127.0.0.1:${port}/metrics`);
    expect(response.status).toBe(200);
    expect(response.type).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(sample(response.body, 'codejail_slots')).toBe(4);
    expect((await get(`http://127.0.0.1:${port}/`)).status).toBe(404);
  });

  it('runs the self-check on request and reports each probe', async () => {
    const result = await client.check();
    expect(result.ok).toBe(true);
    expect(result.probes[0]).toMatchObject({ name: 'print(1) runs', outcome: 'passed' });
    expect(result.probes.length).toBeGreaterThanOrEqual(5);
    // A warm command's probes run on both paths, each named.
    expect(result.probes).toContainEqual({ name: 'print(1) runs, warm', outcome: 'passed' });
    expect(result.probes).toContainEqual({ name: 'creating an AF_INET socket is denied, warm', outcome: 'passed' });
    expect(Object.keys(result.layers)).toEqual(expect.arrayContaining(['uid', 'landlock', 'seccomp']));
  });

  it('codejail metrics and codejail check print them', async () => {
    const metrics = await cli(['metrics', '--socket', daemon.socketPath]);
    expect(metrics.code).toBe(0);
    expect(metrics.stdout).toMatch(/^codejail_slots 4$/m);
    const check = await cli(['check', '--socket', daemon.socketPath]);
    expect(check.code).toBe(0);
    expect(check.stdout).toMatch(/^self-check passed in \d+ ms$/m);
    expect(check.stdout).toMatch(/^landlock +active/m);
    expect(check.stdout).toMatch(/^reading \/etc\/passwd is denied +passed/m);
  });

  it('codejail status --json and check --json print the replies as JSON; --version names the package version', async () => {
    const status = await cli(['status', '--json', '--socket', daemon.socketPath]);
    expect(status.code).toBe(0);
    expect(JSON.parse(status.stdout)).toMatchObject({ protocol: 1, slots: { total: 4 }, memory: expect.any(String) });
    const check = await cli(['check', '--json', '--socket', daemon.socketPath]);
    expect(check.code).toBe(0);
    expect(JSON.parse(check.stdout)).toMatchObject({ ok: true, probes: expect.any(Array) });
    const version = JSON.parse(fs.readFileSync(new URL('../../package.json', import.meta.url), 'utf8')).version as string;
    expect((await cli(['--version'])).stdout).toBe(`codejail ${version}\n`);
    const daemonVersion = spawnSync(process.execPath, [DAEMON_MAIN, '--version'], { encoding: 'utf8' });
    expect(daemonVersion.stdout).toBe(`codejaild ${version}\n`);
  });
});

describe('codejail check-config', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cj-check-config-'));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
  const write = (name: string, text: string) => {
    const file = path.join(dir, name);
    fs.writeFileSync(file, text);
    return file;
  };

  it('prints OK for a valid file', async () => {
    const result = await cli(['check-config', '--config', write('good.json', JSON.stringify({ queueMax: 5, allow: { uids: [1000] } }))]);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^OK: .*good\.json/);
  });

  it('prints each problem with its key and exits 1', async () => {
    const file = write('bad.json', JSON.stringify({ queueMax: -1, metrics: { host: '10.0.0.1' }, nope: true }));
    const result = await cli(['check-config', '--config', file]);
    expect(result.code).toBe(1);
    expect(result.stdout).toMatch(/3 problems/);
    expect(result.stdout).toMatch(/^ {2}queueMax: /m);
    expect(result.stdout).toMatch(/^ {2}metrics\.host: must be a loopback address/m);
    expect(result.stdout).toMatch(/nope/);
  });

  it('says when the file is not JSON or cannot be read', async () => {
    const notJson = await cli(['check-config', '--config', write('broken.json', '{')]);
    expect(notJson.code).toBe(1);
    expect(notJson.stdout).toMatch(/is not valid JSON/);
    const missing = await cli(['check-config', '--config', path.join(dir, 'missing.json')]);
    expect(missing.code).toBe(1);
    expect(missing.stdout).toMatch(/cannot be read \(ENOENT\)/);
  });
});

describe('codejail setup --systemd units', () => {
  it('installs both units with ExecStart at this installation and the configured socket', async () => {
    const unitDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cj-units-'));
    try {
      const config = parseConfig({ socket: { path: '/run/cj-test/s.sock', group: 'cjtest', mode: '0600' } });
      // Wherever this checkout lies (beneath /tmp it would be refused: test/setup/systemd_units.test.ts).
      const installPaths = ['/opt/codejail'];
      const report = await installSystemdUnits(config, { unitDir, configFile: '/etc/cj-test.json', systemctl: false, installPaths });
      expect(report[0]).toMatch(/^installed .*codejaild\.service$/);
      expect(report.at(-1)).toMatch(/systemd is not the running init/);
      const service = fs.readFileSync(path.join(unitDir, 'codejaild.service'), 'utf8');
      expect(service).toContain(`\nExecStart=${process.execPath} ${path.join(root, 'dist/daemon/main.js')} --config /etc/cj-test.json\n`);
      expect(service).toMatch(/^Type=notify$/m);
      expect(service).toMatch(/^NotifyAccess=main$/m);
      expect(service).toMatch(/^WatchdogSec=/m);
      expect(service).toMatch(/^Delegate=yes$/m);
      expect(service).toMatch(/^CapabilityBoundingSet=.*CAP_SETUID/m);
      expect(service).not.toMatch(/^NoNewPrivileges=/m);
      const socket = fs.readFileSync(path.join(unitDir, 'codejaild.socket'), 'utf8');
      expect(socket).toMatch(/^ListenStream=\/run\/cj-test\/s\.sock$/m);
      expect(socket).toMatch(/^SocketGroup=cjtest$/m);
      expect(socket).toMatch(/^SocketMode=0600$/m);
      const again = await installSystemdUnits(config, { unitDir, configFile: '/etc/cj-test.json', systemctl: false, installPaths });
      expect(again[0]).toMatch(/^unchanged /);
    } finally {
      fs.rmSync(unitDir, { recursive: true, force: true });
    }
  });
});
