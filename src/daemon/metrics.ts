// Prometheus text exposition (format 0.0.4), written by hand: a few counters, one histogram and
// gauges read at scrape time do not justify a dependency. Served by the socket's 'metrics'
// request and, when configured, on a loopback HTTP port.
import http from 'node:http';
import type { Logger } from '../log.js';

/**
 * How a jail_code request ended. ok/exit/signal: the code ran and exited with 0, another
 * status, or a signal; timeout: REALTIME ran out; oom: its cgroup's memory.max was reached and
 * the kernel killed it (cgroups layer); setup_failed: the sandbox could not be built;
 * cancelled: the client, a cancel request or the daemon stopping ended it; rejected: refused
 * before it ran (overloaded, unknown command, limit over a ceiling, bad files); error: a bug.
 */
export const VERDICTS = ['ok', 'exit', 'signal', 'timeout', 'oom', 'setup_failed', 'cancelled', 'rejected', 'error'] as const;
export type Verdict = (typeof VERDICTS)[number];

/** Why a connection was refused at accept: too many open in all, or from its caller's uid. */
export const CONNECTION_REFUSALS = ['max', 'per_uid'] as const;
export type ConnectionRefusal = (typeof CONNECTION_REFUSALS)[number];

/**
 * Why the daemon closed a connection: idle too long, a frame left unfinished, a malformed frame,
 * more bytes held than a connection may (a frame in progress, unread replies and queued
 * requests), the largest of a caller uid holding more than one uid may, or the largest of the
 * uid holding the most when all connections together held more than the daemon's budget.
 */
export const CONNECTION_CLOSES = ['idle', 'frame_timeout', 'bad_frame', 'buffer_limit', 'buffer_uid_limit', 'buffer_budget'] as const;
export type ConnectionClose = (typeof CONNECTION_CLOSES)[number];

/** Requests refused before dispatch: over the frame's shape caps, or failing the schema. */
export const REQUEST_REFUSALS = ['frame_limit', 'bad_request'] as const;
export type RequestRefusal = (typeof REQUEST_REFUSALS)[number];

/** Seconds; a run's whole time in the daemon (queue, set-up, run, clean-up). */
const LATENCY_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

/** Values read when the metrics are rendered. */
export interface MetricsSnapshot {
  slotsTotal: number;
  slotsBusy: number;
  slotsQuarantined: number;
  queueDepth: number;
  queueMax: number;
  /** 1 when the last self-check passed, 0 when it failed. */
  selfCheckOk: boolean;
  setupFailures: number;
  draining: boolean;
  /** Clean-ups after replies (the sweep's last rounds, the leaf, the run directory). */
  cleanups: { count: number; totalMs: number };
  /** Full collections (and malloc_trim) the daemon did once idle after work. */
  idleCollections: number;
  /** Held runs (warm.holdAhead): made ahead, taken by a request that fit, held now. Optional: absent counts 0. */
  held?: { made: number; used: number; holding: number };
  /** Per warm command: runs forked from a template, runs that went cold, template restarts and replacements. */
  warm: Array<{ command: string; ready: boolean; warm: number; cold: number; restarts: number; replaced: number }>;
}

export class Metrics {
  private readonly runs = new Map<Verdict, number>(VERDICTS.map((v) => [v, 0]));
  private readonly bucketCounts = LATENCY_BUCKETS.map(() => 0);
  private latencyCount = 0;
  private latencySum = 0;
  private refusedConnections = 0;
  private readonly connectionRefusals = new Map<ConnectionRefusal, number>(CONNECTION_REFUSALS.map((r) => [r, 0]));
  private readonly connectionCloses = new Map<ConnectionClose, number>(CONNECTION_CLOSES.map((r) => [r, 0]));
  private readonly requestRefusals = new Map<RequestRefusal, number>(REQUEST_REFUSALS.map((r) => [r, 0]));
  /** The socket server's open connections and the bytes they hold, read at scrape time. */
  private connections: () => { open: number; bufferedBytes: number } = () => ({ open: 0, bufferedBytes: 0 });
  private reloads = { ok: 0, failed: 0 };
  readonly startedAt = Date.now();

  recordRun(verdict: Verdict, seconds: number): void {
    this.runs.set(verdict, (this.runs.get(verdict) ?? 0) + 1);
    // Rejected requests never ran: their latency would only dilute the histogram.
    if (verdict === 'rejected') return;
    this.latencyCount++;
    this.latencySum += seconds;
    LATENCY_BUCKETS.forEach((bound, i) => {
      if (seconds <= bound) this.bucketCounts[i]!++;
    });
  }

  recordRefusedConnection(): void {
    this.refusedConnections++;
  }

  recordConnectionRefusal(reason: ConnectionRefusal): void {
    this.connectionRefusals.set(reason, this.connectionRefusals.get(reason)! + 1);
  }

  recordConnectionClose(reason: ConnectionClose): void {
    this.connectionCloses.set(reason, this.connectionCloses.get(reason)! + 1);
  }

  recordRequestRefusal(reason: RequestRefusal): void {
    this.requestRefusals.set(reason, this.requestRefusals.get(reason)! + 1);
  }

  /** Gauges of the socket server, read when the metrics are rendered. */
  observeConnections(read: () => { open: number; bufferedBytes: number }): void {
    this.connections = read;
  }

  recordReload(ok: boolean): void {
    if (ok) this.reloads.ok++;
    else this.reloads.failed++;
  }

  render(snapshot: MetricsSnapshot): string {
    const out: string[] = [];
    const metric = (name: string, type: string, help: string, samples: Array<[labels: string, value: number]>) => {
      out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
      for (const [labels, value] of samples) out.push(`${name}${labels} ${formatValue(value)}`);
    };
    metric('codejail_up', 'gauge', 'Whether codejaild is serving (0 while it drains to stop).', [['', snapshot.draining ? 0 : 1]]);
    metric('codejail_uptime_seconds', 'gauge', 'Seconds since codejaild started.', [['', (Date.now() - this.startedAt) / 1000]]);
    metric('codejail_start_time_seconds', 'gauge', 'Unix time codejaild started at.', [['', this.startedAt / 1000]]);
    metric(
      'codejail_runs_total',
      'counter',
      'jail_code requests by how they ended.',
      VERDICTS.map((v) => [`{verdict="${v}"}`, this.runs.get(v) ?? 0]),
    );
    out.push(
      '# HELP codejail_run_duration_seconds Time a jail_code request spent in the daemon, queue included.',
      '# TYPE codejail_run_duration_seconds histogram',
    );
    LATENCY_BUCKETS.forEach((bound, i) => out.push(`codejail_run_duration_seconds_bucket{le="${bound}"} ${this.bucketCounts[i]}`));
    out.push(`codejail_run_duration_seconds_bucket{le="+Inf"} ${this.latencyCount}`);
    out.push(`codejail_run_duration_seconds_sum ${formatValue(this.latencySum)}`);
    out.push(`codejail_run_duration_seconds_count ${this.latencyCount}`);
    metric('codejail_queue_depth', 'gauge', 'Runs waiting for a free slot.', [['', snapshot.queueDepth]]);
    metric('codejail_queue_max', 'gauge', 'Most runs that may wait; more are refused as overloaded.', [['', snapshot.queueMax]]);
    metric('codejail_slots', 'gauge', 'Sandbox slots (concurrent runs).', [['', snapshot.slotsTotal]]);
    metric('codejail_slots_busy', 'gauge', 'Slots running (or cleaning up after) a run.', [['', snapshot.slotsBusy]]);
    metric('codejail_slots_quarantined', 'gauge', 'Slots whose processes survived a kill, kept out of the pool.', [
      ['', snapshot.slotsQuarantined],
    ]);
    metric('codejail_setup_failures_total', 'counter', 'Sandboxes that could not be built (a layer failed in the child).', [
      ['', snapshot.setupFailures],
    ]);
    metric('codejail_selfcheck_ok', 'gauge', 'Whether the last self-check passed.', [['', snapshot.selfCheckOk ? 1 : 0]]);
    metric('codejail_cleanup_seconds_total', 'counter', 'Time spent cleaning up after runs, after their replies (the slot is busy meanwhile).', [
      ['', snapshot.cleanups.totalMs / 1000],
    ]);
    metric('codejail_cleanups_total', 'counter', 'Clean-ups after runs.', [['', snapshot.cleanups.count]]);
    metric('codejail_idle_collections_total', 'counter', 'Full garbage collections and malloc_trim done once idle after work, to give memory back.', [
      ['', snapshot.idleCollections],
    ]);
    const held = snapshot.held ?? { made: 0, used: 0, holding: 0 };
    metric('codejail_held_runs_made_total', 'counter', 'Runs started ahead in idle slots (warm.holdAhead).', [['', held.made]]);
    metric('codejail_held_runs_used_total', 'counter', 'Held runs a request took; the rest were discarded.', [['', held.used]]);
    metric('codejail_held_runs', 'gauge', 'Slots holding a run started ahead now.', [['', held.holding]]);
    const label = (command: string) => `{command=${JSON.stringify(command)}}`;
    metric('codejail_warm_template_ready', 'gauge', 'Whether the command has a warm template ready.', snapshot.warm.map((w) => [label(w.command), w.ready ? 1 : 0]));
    metric('codejail_warm_runs_total', 'counter', 'Runs forked from a warm template.', snapshot.warm.map((w) => [label(w.command), w.warm]));
    metric('codejail_warm_fallback_runs_total', 'counter', 'Runs of a warm command that went cold (no template ready, or a VMEM too tight).', snapshot.warm.map((w) => [label(w.command), w.cold]));
    metric('codejail_warm_template_restarts_total', 'counter', 'Warm templates that died and were restarted.', snapshot.warm.map((w) => [label(w.command), w.restarts]));
    metric('codejail_warm_template_replacements_total', 'counter', 'Warm templates replaced (forks, age, SIGHUP).', snapshot.warm.map((w) => [label(w.command), w.replaced]));
    metric('codejail_refused_connections_total', 'counter', 'Connections refused because the caller is not allowed.', [
      ['', this.refusedConnections],
    ]);
    const connections = this.connections();
    metric('codejail_connections', 'gauge', 'Client connections open.', [['', connections.open]]);
    metric('codejail_buffered_bytes', 'gauge', 'Bytes connections hold in the daemon: frames in progress, unread replies and requests waiting in the run queue.', [
      ['', connections.bufferedBytes],
    ]);
    metric(
      'codejail_connections_refused_total',
      'counter',
      'Connections refused because too many were open, in all (max) or from the caller uid (per_uid).',
      CONNECTION_REFUSALS.map((r) => [`{reason="${r}"}`, this.connectionRefusals.get(r)!]),
    );
    metric(
      'codejail_connections_closed_total',
      'counter',
      "Connections the daemon closed: idle, frame unfinished in time, bad frame, over its byte cap, over its uid's byte cap, or evicted over the byte budget.",
      CONNECTION_CLOSES.map((r) => [`{reason="${r}"}`, this.connectionCloses.get(r)!]),
    );
    metric(
      'codejail_requests_refused_total',
      'counter',
      "Requests refused before dispatch: over a frame's shape caps, or not matching the schema.",
      REQUEST_REFUSALS.map((r) => [`{reason="${r}"}`, this.requestRefusals.get(r)!]),
    );
    metric('codejail_config_reloads_total', 'counter', 'SIGHUP reloads by outcome.', [
      ['{outcome="ok"}', this.reloads.ok],
      ['{outcome="failed"}', this.reloads.failed],
    ]);
    return out.join('\n') + '\n';
  }
}

function formatValue(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (value === Infinity) return '+Inf';
  if (value === -Infinity) return '-Inf';
  return String(Math.round(value * 1e6) / 1e6);
}

/**
 * GET /metrics on a loopback address. The config refuses other hosts; this checks again, since
 * the endpoint has no authentication. Resolves once listening.
 */
export async function serveMetricsHttp(options: { host: string; port: number; render: () => string; log: Logger }): Promise<http.Server> {
  const { host, port, render, log } = options;
  const server = http.createServer((req, res) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    if ((req.url ?? '/').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('only /metrics is served here\n');
      return;
    }
    let body: string;
    try {
      body = render();
    } catch (err) {
      log.error('rendering metrics failed', { error: err });
      res.writeHead(500).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' });
    res.end(req.method === 'HEAD' ? undefined : body);
  });
  // Scrapers keep connections alive; they must not hold a stopping daemon open.
  server.keepAliveTimeout = 5000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  if (address && typeof address === 'object' && !isLoopback(address.address)) {
    server.close();
    throw new Error(`metrics.host ${host} resolved to ${address.address}, which is not a loopback address`);
  }
  server.on('error', (err) => log.error('metrics HTTP server error', { error: err }));
  log.info('metrics served over HTTP', { url: `http://${host.includes(':') ? `[${host}]` : host}:${port}/metrics` });
  return server;
}

function isLoopback(address: string): boolean {
  return address === '::1' || address.startsWith('127.') || address.startsWith('::ffff:127.');
}

/** Closes an HTTP server and any idle or in-progress scrape connections. */
export function closeHttp(server: http.Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
