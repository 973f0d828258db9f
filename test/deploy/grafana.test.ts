// deploy/grafana/codejail.json: every query (panels and variables) names at least one metric, and
// every metric it names is one codejaild or `codejail serve` exports: read from their sources, and
// (as root) scraped from a live daemon and a live serve that have answered a run.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '../../src/client/index.js';
import { startTestServe, type TestServe } from '../helpers/serve.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const isRoot = process.getuid?.() === 0;
const dashboard = JSON.parse(fs.readFileSync(path.join(root, 'deploy/grafana/codejail.json'), 'utf8')) as {
  panels: Array<{ title: string; type: string; targets?: Array<{ expr: string }> }>;
  templating: { list: Array<{ name: string; query?: string | { query: string } }> };
};

/** Every PromQL expression in the dashboard, with where it is. */
function queries(): Array<{ where: string; expr: string }> {
  const found: Array<{ where: string; expr: string }> = [];
  for (const panel of dashboard.panels) for (const target of panel.targets ?? []) found.push({ where: `panel "${panel.title}"`, expr: target.expr });
  for (const variable of dashboard.templating.list) {
    const query = typeof variable.query === 'string' ? variable.query : variable.query?.query;
    if (variable.name !== 'datasource' && query) found.push({ where: `variable $${variable.name}`, expr: query });
  }
  return found;
}

/** The metric names a query reads: a histogram's series (_bucket, _sum, _count) are its family's. */
const metricNames = (expr: string) => [...new Set(expr.match(/\bcodejail_\w+/g) ?? [])];
const SERIES_SUFFIX = /_(bucket|sum|count)$/;

/** Metric families named in Prometheus text (# TYPE lines). */
const families = (text: string) => new Set([...text.matchAll(/^# TYPE (\w+) /gm)].map((m) => m[1]!));

/** The families the daemon's and serve's renderers name in their sources. */
function familiesInSource(): Set<string> {
  const names = new Set<string>();
  for (const file of ['src/daemon/metrics.ts', 'src/http/metrics.ts']) {
    const source = fs.readFileSync(path.join(root, file), 'utf8');
    for (const m of source.matchAll(/metric\(\s*'(codejail_\w+)'/g)) names.add(m[1]!);
    for (const m of source.matchAll(/# TYPE (codejail_\w+) /g)) names.add(m[1]!);
  }
  return names;
}

function unknownNames(exported: Set<string>): string[] {
  const unknown: string[] = [];
  for (const { where, expr } of queries()) {
    for (const name of metricNames(expr)) {
      if (!exported.has(name) && !(SERIES_SUFFIX.test(name) && exported.has(name.replace(SERIES_SUFFIX, '')))) unknown.push(`${where}: ${name}`);
    }
  }
  return unknown;
}

describe('the Grafana dashboard', () => {
  it('has panels, and every query names a codejail metric', () => {
    expect(queries().length).toBeGreaterThan(20);
    for (const { where, expr } of queries()) expect(metricNames(expr), `${where}: ${expr}`).not.toEqual([]);
  });

  it('names only metrics that the daemon and serve render (their sources)', () => {
    const exported = familiesInSource();
    expect(exported.size).toBeGreaterThan(25);
    expect(unknownNames(exported)).toEqual([]);
  });

  describe.runIf(isRoot)('scraped live', () => {
    let serve: TestServe;
    beforeAll(async () => {
      serve = await startTestServe();
    });
    afterAll(async () => {
      await serve?.stop();
    });

    it('names only metrics that a running daemon and serve export, and shows each of them', async () => {
      const response = await fetch(`${serve.url}/api/v0/code-exec`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ payload: JSON.stringify({ code: 'x = 1', globals_dict: {}, limit_overrides_context: null, slug: 'grafana' }) }),
      });
      expect(response.status).toBe(200);
      const client = new Client({ socketPath: serve.daemon.socketPath });
      const daemonText = await client.metrics();
      await client.close();
      const serveText = await (await fetch(`${serve.url}/metrics`)).text();
      const exported = new Set([...families(daemonText), ...families(serveText)]);
      expect(unknownNames(exported)).toEqual([]);
      // And the other way: no family either exports is missing from the dashboard.
      const shown = new Set(queries().flatMap(({ expr }) => metricNames(expr).map((n) => (exported.has(n) ? n : n.replace(SERIES_SUFFIX, '')))));
      expect([...exported].filter((name) => !shown.has(name))).toEqual([]);
    });
  });
});
