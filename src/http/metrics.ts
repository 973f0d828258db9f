// The HTTP service's own Prometheus metrics (text format 0.0.4), served on GET /metrics: requests
// by route and status, the code-exec outcomes as codejail-service names them (executed.success,
// invalid.files...), requests refused for want of room, and how many run now. The daemon's own
// metrics stay the daemon's (`codejail metrics`).

/** Seconds; a code-exec request's whole time in this service (body, run, answer). */
const LATENCY_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

export class HttpMetrics {
  /** `route status` -> count. */
  private readonly requests = new Map<string, number>();
  /** codejail-service's codejail.exec.status values -> count. */
  private readonly outcomes = new Map<string, number>();
  private readonly bucketCounts = LATENCY_BUCKETS.map(() => 0);
  private latencyCount = 0;
  private latencySum = 0;
  inFlight = 0;
  maxInFlight = 0;
  bodiesReading = 0;
  bytesInFlight = 0;

  request(route: string, status: number): void {
    const key = `${route} ${status}`;
    this.requests.set(key, (this.requests.get(key) ?? 0) + 1);
  }

  outcome(status: string): void {
    this.outcomes.set(status, (this.outcomes.get(status) ?? 0) + 1);
  }

  latency(seconds: number): void {
    this.latencyCount++;
    this.latencySum += seconds;
    LATENCY_BUCKETS.forEach((bound, i) => {
      if (seconds <= bound) this.bucketCounts[i]!++;
    });
  }

  render(): string {
    const lines = [
      '# HELP codejail_http_requests_total HTTP requests answered, by route and status.',
      '# TYPE codejail_http_requests_total counter',
      ...[...this.requests].map(([key, n]) => {
        const [route, status] = key.split(' ');
        return `codejail_http_requests_total{route="${route}",status="${status}"} ${n}`;
      }),
      '# HELP codejail_http_code_exec_total code-exec requests by outcome (codejail-service codejail.exec.status).',
      '# TYPE codejail_http_code_exec_total counter',
      ...[...this.outcomes].map(([status, n]) => `codejail_http_code_exec_total{status="${status}"} ${n}`),
      '# HELP codejail_http_code_exec_seconds Time of a code-exec request in this service.',
      '# TYPE codejail_http_code_exec_seconds histogram',
      ...LATENCY_BUCKETS.map((bound, i) => `codejail_http_code_exec_seconds_bucket{le="${bound}"} ${this.bucketCounts[i]}`),
      `codejail_http_code_exec_seconds_bucket{le="+Inf"} ${this.latencyCount}`,
      `codejail_http_code_exec_seconds_sum ${this.latencySum}`,
      `codejail_http_code_exec_seconds_count ${this.latencyCount}`,
      '# HELP codejail_http_code_exec_in_flight code-exec requests running now.',
      '# TYPE codejail_http_code_exec_in_flight gauge',
      `codejail_http_code_exec_in_flight ${this.inFlight}`,
      '# HELP codejail_http_code_exec_max_in_flight code-exec requests allowed at once (the daemon\'s slots and queue).',
      '# TYPE codejail_http_code_exec_max_in_flight gauge',
      `codejail_http_code_exec_max_in_flight ${this.maxInFlight}`,
      '# HELP codejail_http_code_exec_bodies_reading code-exec requests still sending their body.',
      '# TYPE codejail_http_code_exec_bodies_reading gauge',
      `codejail_http_code_exec_bodies_reading ${this.bodiesReading}`,
      '# HELP codejail_http_bytes_in_flight Bytes charged to requests in this service (bodies, parsed payloads).',
      '# TYPE codejail_http_bytes_in_flight gauge',
      `codejail_http_bytes_in_flight ${this.bytesInFlight}`,
    ];
    return lines.join('\n') + '\n';
  }
}
