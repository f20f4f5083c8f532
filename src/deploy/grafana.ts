/**
 * The Grafana dashboard of `nimify build` (grafana/dashboard.json): request rate, latency p50 /
 * p99, queue depth and queue time, batch sizes, failures by reason and circuit-breaker state, per
 * model and version (dashboard variables), for every pod of the service. Every query names only
 * metrics the server exports (src/server/metrics.ts; test/deploy/grafana.test.ts checks them
 * against a real server's /metrics). Pure: same context → byte-identical JSON.
 */
import type { DeployContext } from './context';
import { checkContext } from './schemas/check';

const DS = { type: 'prometheus', uid: '${datasource}' };
// Scoped to one service: the namespace and service labels Prometheus adds when it scrapes the pods
// (a ServiceMonitor adds both). "All" is `.*`, which also matches a series without the label.
const SCOPE = 'namespace=~"$namespace",service=~"$service"';
const SEL = `${SCOPE},model=~"$model",version=~"$version"`;
const RATE = '[$__rate_interval]';

interface Target {
  expr: string;
  legend: string;
}

interface Panel {
  title: string;
  description: string;
  unit: string;
  targets: Target[];
  /** Value → text, for state gauges. */
  mappings?: Record<string, string>;
  stacked?: boolean;
}

const PANELS: Panel[] = [
  {
    title: 'Request rate',
    description: 'Successful and failed inference requests per second (nv_inference_request_success / _failure).',
    unit: 'reqps',
    targets: [
      { expr: `sum by (model, version) (rate(nv_inference_request_success{${SEL}}${RATE}))`, legend: '{{model}} v{{version}} ok' },
      { expr: `sum by (model, version) (rate(nv_inference_request_failure{${SEL}}${RATE}))`, legend: '{{model}} v{{version}} failed' },
    ],
  },
  {
    title: 'Latency p50 / p99',
    description: 'Successful request duration, receipt to response (nimify_request_duration_seconds).',
    unit: 's',
    targets: [
      { expr: `histogram_quantile(0.5, sum by (le, model, version) (rate(nimify_request_duration_seconds_bucket{${SEL}}${RATE})))`, legend: '{{model}} v{{version}} p50' },
      { expr: `histogram_quantile(0.99, sum by (le, model, version) (rate(nimify_request_duration_seconds_bucket{${SEL}}${RATE})))`, legend: '{{model}} v{{version}} p99' },
    ],
  },
  {
    title: 'Queue depth',
    description: 'Requests waiting for the dynamic batcher, summed over pods: the metric the HPA / KEDA scale on.',
    unit: 'short',
    targets: [{ expr: `sum by (model, version) (nv_inference_pending_request_count{${SEL}})`, legend: '{{model}} v{{version}}' }],
  },
  {
    title: 'Queue time per inference',
    description: 'Mean time a request waited in the queue (nv_inference_queue_duration_us / nv_inference_request_success: the queue time is recorded once per request, as Triton does).',
    unit: 'µs',
    targets: [
      {
        expr: `sum by (model, version) (rate(nv_inference_queue_duration_us{${SEL}}${RATE})) / sum by (model, version) (rate(nv_inference_request_success{${SEL}}${RATE}))`,
        legend: '{{model}} v{{version}}',
      },
    ],
  },
  {
    title: 'Batch sizes',
    description: 'Model executions per second by batch size (rows) from the dynamic batcher.',
    unit: 'ops',
    stacked: true,
    targets: [{ expr: `sum by (batch_size) (rate(nimify_batch_executions_total{${SEL}}${RATE}))`, legend: 'batch {{batch_size}}' }],
  },
  {
    title: 'Mean batch size',
    description: 'Inferences per model execution (nv_inference_count / nv_inference_exec_count).',
    unit: 'short',
    targets: [
      {
        expr: `sum by (model, version) (rate(nv_inference_count{${SEL}}${RATE})) / sum by (model, version) (rate(nv_inference_exec_count{${SEL}}${RATE}))`,
        legend: '{{model}} v{{version}}',
      },
    ],
  },
  {
    title: 'Failures by reason',
    description: 'Failed requests per second by reason: REJECTED (shed, breaker, timeout), CANCELED, BACKEND, OTHER.',
    unit: 'reqps',
    stacked: true,
    targets: [{ expr: `sum by (model, version, reason) (rate(nv_inference_request_failure{${SEL}}${RATE}))`, legend: '{{model}} v{{version}} {{reason}}' }],
  },
  {
    title: 'Circuit breaker state',
    description: 'Worst state over pods: 0 closed, 1 half-open, 2 open (nimify_circuit_breaker_state).',
    unit: 'short',
    mappings: { '0': 'closed', '1': 'half-open', '2': 'open' },
    targets: [{ expr: `max by (model) (nimify_circuit_breaker_state{${SCOPE},model=~"$model"})`, legend: '{{model}}' }],
  },
  {
    title: 'Shed and in flight',
    description: 'Requests refused by load shedding per second, and requests being served, summed over pods.',
    unit: 'short',
    targets: [
      { expr: `sum by (reason) (rate(nimify_requests_shed_total{${SCOPE}}${RATE}))`, legend: 'shed {{reason}}' },
      { expr: `sum(nimify_inference_in_flight{${SCOPE}})`, legend: 'in flight' },
    ],
  },
  {
    title: 'Model ready',
    description: '1 when the version is loaded and warmed up, per pod (nimify_model_ready).',
    unit: 'short',
    targets: [{ expr: `sum by (model, version) (nimify_model_ready{${SEL}})`, legend: '{{model}} v{{version}} ready pods' }],
  },
];

function panel(p: Panel, i: number): Record<string, unknown> {
  const custom: Record<string, unknown> = { drawStyle: 'line', lineWidth: 1, fillOpacity: p.stacked ? 30 : 0 };
  if (p.stacked) custom.stacking = { mode: 'normal', group: 'A' };
  const mappings = p.mappings
    ? [{ type: 'value', options: Object.fromEntries(Object.entries(p.mappings).map(([v, text]) => [v, { text, index: Number(v) }])) }]
    : [];
  return {
    id: i + 1,
    type: 'timeseries',
    title: p.title,
    description: p.description,
    datasource: DS,
    gridPos: { h: 8, w: 12, x: (i % 2) * 12, y: Math.floor(i / 2) * 8 },
    fieldConfig: { defaults: { unit: p.unit, custom, mappings }, overrides: [] },
    options: { legend: { displayMode: 'list', placement: 'bottom', showLegend: true }, tooltip: { mode: 'multi', sort: 'desc' } },
    targets: p.targets.map((t, j) => ({ refId: String.fromCharCode(65 + j), datasource: DS, expr: t.expr, legendFormat: t.legend })),
  };
}

function variable(name: string, label: string, query: string): Record<string, unknown> {
  return {
    name,
    label,
    type: 'query',
    datasource: DS,
    query: { query, refId: `${name}-var` },
    definition: query,
    includeAll: true,
    multi: true,
    allValue: '.*',
    current: { selected: true, text: ['All'], value: ['$__all'] },
    refresh: 2,
    sort: 1,
  };
}

/** Every PromQL expression of the dashboard, variables included (what the test checks against /metrics). */
export function dashboardQueries(dashboard: Record<string, unknown>): string[] {
  const panels = dashboard.panels as Array<{ targets: Array<{ expr: string }> }>;
  const vars = (dashboard.templating as { list: Array<{ definition?: string }> }).list;
  return [...panels.flatMap((p) => p.targets.map((t) => t.expr)), ...vars.flatMap((v) => (v.definition ? [v.definition] : []))];
}

export function dashboard(ctx: DeployContext): Record<string, unknown> {
  checkContext(ctx);
  return {
    title: `${ctx.name} (nimify)`,
    uid: `nimify-${ctx.name}`.slice(0, 40),
    description: `${ctx.models.map((m) => m.name).join(', ')} served by nimify ${ctx.nimifyVersion}`,
    tags: ['nimify', 'inference', ctx.name],
    editable: true,
    graphTooltip: 1,
    schemaVersion: 39,
    version: 1,
    time: { from: 'now-1h', to: 'now' },
    refresh: '30s',
    timezone: 'browser',
    templating: {
      list: [
        { name: 'datasource', label: 'Prometheus', type: 'datasource', query: 'prometheus', current: {}, refresh: 1 },
        variable('namespace', 'Namespace', 'label_values(nv_inference_request_success, namespace)'),
        variable('service', 'Service', 'label_values(nv_inference_request_success{namespace=~"$namespace"}, service)'),
        variable('model', 'Model', `label_values(nv_inference_request_success{${SCOPE}}, model)`),
        variable('version', 'Version', `label_values(nv_inference_request_success{${SCOPE},model=~"$model"}, version)`),
      ],
    },
    annotations: { list: [] },
    panels: PANELS.map(panel),
  };
}

/** grafana/dashboard.json, keyed by path relative to the deploy folder. */
export function grafanaDashboard(ctx: DeployContext): Record<string, string> {
  return { 'grafana/dashboard.json': `${JSON.stringify(dashboard(ctx), null, 2)}\n` };
}
