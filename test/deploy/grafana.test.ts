/**
 * The generated Grafana dashboard: every metric named in any of its queries is exported by a
 * real server (buildServer over mlp_tiny, a few inferences and a failure through inject(), then
 * GET /metrics); it covers the panels issue 13 asks for, per model and version; same context →
 * same bytes.
 */
import * as path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dashboard, dashboardQueries, grafanaDashboard } from '../../src/deploy/grafana';
import { buildServer } from '../../src/server';
import { MODELS } from '../helpers';
import { sampleContext } from './sample-context';

let app: FastifyInstance;
let exported: Set<string>;
let exposition: string;

/**
 * Metric names a Prometheus scraping this text would know: every sample's name, and for families
 * without samples yet (a labelled counter nothing has hit) the names their TYPE line promises.
 */
function exportedNames(text: string): Set<string> {
  const names = new Set<string>();
  for (const line of text.split('\n')) {
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type) {
      const [, name, kind] = type as unknown as [string, string, string];
      if (kind === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(name + s);
      else if (kind === 'summary') for (const s of ['', '_sum', '_count']) names.add(name + s);
      else names.add(name);
    } else if (line !== '' && !line.startsWith('#')) {
      names.add(/^[A-Za-z_:][A-Za-z0-9_:]*/.exec(line)![0]);
    }
  }
  return names;
}

/**
 * The metric names of a PromQL expression: label matchers, ranges, strings and grouping clauses
 * removed, what remains is functions (followed by `(`), numbers, operators and metric names.
 */
function metricNames(expr: string): string[] {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(by|without)\s*\([^)]*\)/g, ' ')
    .replace(/^label_values\((.*),\s*[A-Za-z_]+\)$/, '$1');
  const names: string[] = [];
  for (const m of stripped.matchAll(/[A-Za-z_:][A-Za-z0-9_:]*(\s*\()?/g)) {
    if (m[1] === undefined && !/^(and|or|unless|offset|bool|on|ignoring|group_left|group_right|e|inf|nan)$/i.test(m[0])) names.push(m[0]);
  }
  return names;
}

beforeAll(async () => {
  app = await buildServer({ repository: path.join(MODELS, 'mlp_tiny.onnx'), logger: false });
  await app.ready();
  for (let i = 0; i < 5; i++) {
    const r = await app.inject({ method: 'POST', url: '/v2/models/mlp_tiny/infer', payload: { inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: new Array(64).fill(i) }] } });
    expect(r.statusCode).toBe(200);
  }
  const bad = await app.inject({ method: 'POST', url: '/v2/models/mlp_tiny/infer', payload: { inputs: [{ name: 'x', shape: [1, 3], datatype: 'FP32', data: [1, 2, 3] }] } });
  expect(bad.statusCode).toBe(400);
  const metrics = await app.inject('/metrics');
  expect(metrics.statusCode).toBe(200);
  exposition = metrics.body;
  exported = exportedNames(exposition);
});

afterAll(async () => {
  await app?.close();
});

describe('grafana dashboard', () => {
  it('is deterministic JSON under grafana/', () => {
    const a = grafanaDashboard(sampleContext());
    expect(Object.keys(a)).toEqual(['grafana/dashboard.json']);
    expect(grafanaDashboard(sampleContext())).toEqual(a);
    const d = JSON.parse(a['grafana/dashboard.json']!);
    expect(d.uid).toBe('nimify-mlp-tiny');
    expect(JSON.parse(grafanaDashboard(sampleContext({ name: 'other' }))['grafana/dashboard.json']!).uid).toBe('nimify-other');
  });

  it('the metric-name extraction finds names and skips functions, labels and strings', () => {
    expect(metricNames('histogram_quantile(0.99, sum by (le, model) (rate(a_bucket{model=~"$model"}[5m])))')).toEqual(['a_bucket']);
    expect(metricNames('sum(rate(x_total[1m])) / sum(y{reason="z"}) or vector(0)')).toEqual(['x_total', 'y']);
    expect(metricNames('label_values(nv_inference_request_success{model=~"$model"}, version)')).toEqual(['nv_inference_request_success']);
  });

  it('the server really exports the latency histogram and the labelled counters after traffic', () => {
    expect(exposition).toMatch(/^nimify_request_duration_seconds_bucket\{le="[^"]+",model="mlp_tiny",version="1"\} [1-9]/m);
    expect(exposition).toMatch(/^nimify_request_duration_seconds_count\{model="mlp_tiny",version="1"\} 5$/m);
    expect(exposition).toMatch(/^nv_inference_request_failure\{model="mlp_tiny",version="1",reason="OTHER"\} 1$/m);
    expect(exposition).toMatch(/^nimify_batch_executions_total\{model="mlp_tiny",version="1",batch_size="1"\} [1-9]/m);
  });

  it('every query names only metrics the server exports', () => {
    const queries = dashboardQueries(dashboard(sampleContext()));
    expect(queries.length).toBeGreaterThanOrEqual(12);
    const used = new Set<string>();
    for (const q of queries) {
      const names = metricNames(q);
      expect(names.length, q).toBeGreaterThan(0);
      for (const n of names) {
        expect(exported.has(n), `${n} in ${q}`).toBe(true);
        used.add(n);
      }
    }
    for (const n of [
      'nv_inference_request_success',
      'nv_inference_request_failure',
      'nimify_request_duration_seconds_bucket',
      'nv_inference_pending_request_count',
      'nv_inference_queue_duration_us',
      'nimify_batch_executions_total',
      'nimify_circuit_breaker_state',
    ]) {
      expect(used.has(n), n).toBe(true);
    }
  });

  it('a query naming a metric the server does not export is caught', () => {
    const names = metricNames('sum(rate(nv_inference_request_sucess{model=~"$model"}[5m]))');
    expect(names.filter((n) => !exported.has(n))).toEqual(['nv_inference_request_sucess']);
  });

  it('has the panels issue 13 asks for, scoped to one service and filtered per model and version', () => {
    const d = dashboard(sampleContext()) as { panels: Array<{ title: string; targets: Array<{ expr: string }> }>; templating: { list: Array<{ name: string }> } };
    expect(d.templating.list.map((v) => v.name)).toEqual(['datasource', 'namespace', 'service', 'model', 'version']);
    // Every query is scoped to the chosen namespace and service (another nimify in the same Prometheus stays out).
    for (const p of d.panels) for (const t of p.targets) expect(t.expr, p.title).toContain('namespace=~"$namespace",service=~"$service"');
    const titles = d.panels.map((p) => p.title);
    for (const t of ['Request rate', 'Latency p50 / p99', 'Queue depth', 'Queue time per inference', 'Batch sizes', 'Failures by reason', 'Circuit breaker state']) expect(titles).toContain(t);
    const latency = d.panels.find((p) => p.title === 'Latency p50 / p99')!.targets.map((t) => t.expr);
    expect(latency[0]).toMatch(/^histogram_quantile\(0\.5,/);
    expect(latency[1]).toMatch(/^histogram_quantile\(0\.99,/);
    for (const p of d.panels) {
      if (p.title === 'Circuit breaker state') expect(p.targets[0]!.expr).toContain('model=~"$model"'); // the breaker is per model
      else if (p.title !== 'Shed and in flight') for (const t of p.targets) expect(t.expr, p.title).toContain('model=~"$model",version=~"$version"');
    }
    expect(new Set(d.panels.map((p: any) => p.id)).size).toBe(d.panels.length);
  });
});
