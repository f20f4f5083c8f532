/**
 * The generated Helm chart, proven without a cluster: the real helm 3 (scripts/fetch-helm.js)
 * lints it strictly and renders it for three value profiles (HPA, KEDA, GPU); every rendered
 * object is validated against the Kubernetes schemas (unknown fields included) and the CRD
 * subsets (k8s-validate.ts); values.schema.json and the chart's own checks refuse bad values;
 * the same context gives the same bytes. With `apiKey.existingSecret` the pod environment the
 * chart renders, given that Secret, starts a real server whose /metrics answers the
 * ServiceMonitor's credentials and refuses a scrape without them (issue 14 item 8).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import YAML from 'yaml';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serveOptions } from '../../src/cli/serve';
import { GRACE_MARGIN_S, QUEUE_METRIC, helmChart } from '../../src/deploy/helm';
import { deployReadme } from '../../src/deploy/readme';
import { buildServer } from '../../src/server';
import { TemplateWriter } from '../../src/deploy/schemas/template';
import { NimifyError } from '../../src/runtime/errors';
import { MODELS, ROOT } from '../helpers';
import { validateObject } from './k8s-validate';
import { sampleContext } from './sample-context';

type Obj = Record<string, any>;

let helm: string;
let dir: string;
let chart: string;

function writeFiles(root: string, files: Record<string, string>): void {
  for (const [rel, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
    fs.writeFileSync(path.join(root, rel), text);
  }
}

function run(args: string[]): { status: number | null; out: string } {
  const r = spawnSync(helm, args, { encoding: 'utf8', env: { ...process.env, HELM_CACHE_HOME: path.join(dir, '.cache'), HELM_CONFIG_HOME: path.join(dir, '.config'), HELM_DATA_HOME: path.join(dir, '.data') } });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

/** Profiles: extra helm arguments (values file, API versions the cluster would have). */
const PROFILES: Record<string, { values: Obj; apiVersions: string[] }> = {
  hpa: { values: { autoscale: 'hpa', serviceMonitor: { enabled: true, interval: '15s', labels: { release: 'kube-prometheus' } } }, apiVersions: ['monitoring.coreos.com/v1'] },
  keda: { values: { autoscale: 'keda', keda: { prometheusServer: 'http://prometheus.monitoring:9090', pendingRequestsPerPod: 4, pollingInterval: 10, cooldownPeriod: 120 } }, apiVersions: ['keda.sh/v1alpha1'] },
  gpu: {
    values: { autoscale: 'none', gpu: { enabled: true, count: 2, tolerations: [{ key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' }] }, modelRepository: { path: '/models', existingClaim: 'model-store' } },
    apiVersions: [],
  },
};

const rendered: Record<string, Obj[]> = {};

function render(profile: string, extra: string[] = []): Obj[] {
  const p = PROFILES[profile]!;
  const values = path.join(dir, `${profile}.values.yaml`);
  fs.writeFileSync(values, YAML.stringify(p.values));
  const r = run(['template', 'svc', chart, '--namespace', 'prod', '-f', values, ...p.apiVersions.flatMap((a) => ['--api-versions', a]), ...extra]);
  expect(r.status, r.out).toBe(0);
  return YAML.parseAllDocuments(r.out)
    .map((d) => d.toJS() as Obj | null)
    .filter((o): o is Obj => o !== null);
}

const byKind = (objs: Obj[], kind: string) => objs.filter((o) => o.kind === kind);

beforeAll(() => {
  helm = execFileSync(process.execPath, [path.join(ROOT, 'scripts', 'fetch-helm.js')], { encoding: 'utf8' }).trim();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nimify-helm-'));
  writeFiles(dir, helmChart(sampleContext()));
  chart = path.join(dir, 'chart');
  for (const name of Object.keys(PROFILES)) rendered[name] = render(name);
  const counts = Object.fromEntries(Object.entries(rendered).map(([name, objs]) => [name, `${objs.length} objects (${objs.map((o) => o.kind).join(', ')})`]));
  process.stdout.write(`[nimify:helm] rendered per profile: ${JSON.stringify(counts, null, 2)}\n`);
}, 120_000);

afterAll(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

describe('helm chart', () => {
  it('is deterministic: two generations are byte-identical, and the context shows in them', () => {
    const a = helmChart(sampleContext());
    const b = helmChart(sampleContext());
    expect(Object.keys(a)).toEqual(Object.keys(b));
    for (const k of Object.keys(a)) expect(b[k], k).toBe(a[k]);
    expect(Object.keys(a)).toEqual([...Object.keys(a)].sort());
    const other = helmChart(sampleContext({ port: 9100 }));
    expect(other['chart/values.yaml']).not.toBe(a['chart/values.yaml']);
    expect(YAML.parse(other['chart/values.yaml']!).port).toBe(9100);
  });

  it('refuses a malformed context with INVALID_ARGUMENT naming the field', () => {
    const bad = () => helmChart(sampleContext({ name: 'Bad_Name' }));
    expect(bad).toThrow(NimifyError);
    expect(bad).toThrow(/context\.name: expected a DNS-1035 label .*received the string "Bad_Name"/);
    expect(() => helmChart(sampleContext({ replicas: { min: 3, max: 2 } }))).toThrow(/context\.replicas\.max: expected an integer >= 3, received number 2/);
  });

  it('passes helm lint --strict for every profile', () => {
    for (const name of Object.keys(PROFILES)) {
      const r = run(['lint', '--strict', chart, '-f', path.join(dir, `${name}.values.yaml`)]);
      expect(r.status, r.out).toBe(0);
      expect(r.out).toMatch(/1 chart\(s\) linted, 0 chart\(s\) failed/);
    }
  });

  it('renders the expected objects per profile', () => {
    const kinds = (name: string) => rendered[name]!.map((o) => o.kind).sort();
    expect(kinds('hpa')).toEqual(['Deployment', 'HorizontalPodAutoscaler', 'PodDisruptionBudget', 'Service', 'ServiceMonitor']);
    expect(kinds('keda')).toEqual(['Deployment', 'PodDisruptionBudget', 'ScaledObject', 'Service']);
    expect(kinds('gpu')).toEqual(['Deployment', 'PodDisruptionBudget', 'Service']);
  });

  it('every rendered object validates against the Kubernetes and CRD schemas', async () => {
    for (const [name, objs] of Object.entries(rendered)) {
      for (const o of objs) expect(await validateObject(o), `${name}: ${o.kind}`).toEqual([]);
    }
  });

  it('Deployment: probes, security, drain time, env, port, /tmp', () => {
    const ctx = sampleContext();
    const [dep] = byKind(rendered.hpa!, 'Deployment') as [Obj];
    const pod = dep.spec.template.spec;
    const [c] = pod.containers;
    expect(dep.metadata.name).toBe('svc-mlp-tiny');
    expect(dep.spec.replicas).toBeUndefined(); // the HPA owns it
    expect(c.image).toBe(ctx.image);
    expect(c.ports).toEqual([
      { name: 'http', containerPort: ctx.port, protocol: 'TCP' },
      { name: 'grpc', containerPort: ctx.port + 1, protocol: 'TCP' },
    ]);
    expect(c.startupProbe.httpGet).toEqual({ path: '/v2/health/ready', port: 'http' });
    expect(c.readinessProbe.httpGet).toEqual({ path: '/v2/health/ready', port: 'http' });
    expect(c.livenessProbe.httpGet).toEqual({ path: '/v2/health/live', port: 'http' });
    expect(c.securityContext).toEqual({
      runAsNonRoot: true,
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    });
    expect(pod.securityContext.runAsNonRoot).toBe(true);
    expect(pod.securityContext.runAsUser).toBeGreaterThan(0);
    expect(pod.terminationGracePeriodSeconds * 1000).toBeGreaterThan(ctx.drainTimeoutMs);
    expect(pod.terminationGracePeriodSeconds).toBe(ctx.drainTimeoutMs / 1000 + GRACE_MARGIN_S);
    const env = Object.fromEntries(c.env.map((e: Obj) => [e.name, e.value]));
    expect(env).toMatchObject({ NIMIFY_HOST: '0.0.0.0', NIMIFY_PORT: String(ctx.port), NIMIFY_GRPC_PORT: String(ctx.port + 1), NIMIFY_SHUTDOWN_TIMEOUT_MS: String(ctx.drainTimeoutMs) });
    expect(c.volumeMounts).toEqual([{ name: 'tmp', mountPath: '/tmp' }]);
    expect(c.resources).toEqual({ requests: { cpu: '500m', memory: `${ctx.memoryMiB.request}Mi` }, limits: { cpu: '2', memory: `${ctx.memoryMiB.limit}Mi` } });
    expect(pod.tolerations).toEqual([]);
    const [svc] = byKind(rendered.hpa!, 'Service') as [Obj];
    expect(svc.spec.selector).toEqual(dep.spec.selector.matchLabels);
    expect(dep.spec.template.metadata.labels).toMatchObject(dep.spec.selector.matchLabels);
  });

  it('HPA: CPU utilization and the queue-depth Pods metric; adapter rule exposes that metric', () => {
    const [hpa] = byKind(rendered.hpa!, 'HorizontalPodAutoscaler') as [Obj];
    expect(hpa.spec).toMatchObject({ minReplicas: 2, maxReplicas: 6, scaleTargetRef: { kind: 'Deployment', name: 'svc-mlp-tiny' } });
    expect(hpa.spec.metrics).toEqual([
      { type: 'Resource', resource: { name: 'cpu', target: { type: 'Utilization', averageUtilization: 80 } } },
      { type: 'Pods', pods: { metric: { name: QUEUE_METRIC }, target: { type: 'AverageValue', averageValue: '8' } } },
    ]);
    // Values for the prometheus-adapter chart: its custom rules list.
    const values = YAML.parse(fs.readFileSync(path.join(chart, 'files', 'prometheus-adapter-values.yaml'), 'utf8'));
    expect(values.rules.custom[0].seriesQuery).toContain(QUEUE_METRIC);
    expect(values.rules.custom[0].name.as).toBe(QUEUE_METRIC);
    expect(values.rules.custom[0].resources.overrides.pod).toEqual({ resource: 'pod' });
  });

  it('KEDA: a Prometheus trigger on the queue metric of this release, no HPA of its own', () => {
    const [so] = byKind(rendered.keda!, 'ScaledObject') as [Obj];
    expect(so.spec).toMatchObject({ minReplicaCount: 2, maxReplicaCount: 6, pollingInterval: 10, cooldownPeriod: 120, scaleTargetRef: { name: 'svc-mlp-tiny' } });
    expect(so.spec.triggers).toEqual([
      {
        type: 'prometheus',
        metricType: 'AverageValue',
        metadata: { serverAddress: 'http://prometheus.monitoring:9090', query: `sum(${QUEUE_METRIC}{namespace="prod",pod=~"svc-mlp-tiny-[a-z0-9]+-[a-z0-9]+"})`, threshold: '4' },
      },
    ]);
    // Only this Deployment's pods (<deployment>-<replicaset>-<pod>), not a release named svc-mlp-tiny-canary.
    const podRe = new RegExp(`^${/pod=~"([^"]+)"/.exec(so.spec.triggers[0].metadata.query)![1]}$`);
    expect(podRe.test('svc-mlp-tiny-7d9c5b8f6-x2k4q')).toBe(true);
    expect(podRe.test('svc-mlp-tiny-canary-7d9c5b8f6-x2k4q')).toBe(false);
    expect(byKind(rendered.keda!, 'ServiceMonitor')).toEqual([]); // no Prometheus Operator API offered
  });

  it('rollouts: a preStop wait inside the grace period; pods carry prometheus.io scrape annotations', () => {
    const [dep] = byKind(rendered.hpa!, 'Deployment') as [Obj];
    const pod = dep.spec.template;
    const c = pod.spec.containers[0];
    expect(c.lifecycle.preStop.exec.command.slice(0, 2)).toEqual(['node', '-e']);
    const waitMs = Number(/setTimeout\(\(\) => \{\}, (\d+)\)/.exec(c.lifecycle.preStop.exec.command[2])![1]);
    const drainMs = Number(c.env.find((e: Obj) => e.name === 'NIMIFY_SHUTDOWN_TIMEOUT_MS').value);
    expect(pod.spec.terminationGracePeriodSeconds * 1000).toBeGreaterThan(waitMs + drainMs);
    expect(pod.metadata.annotations).toMatchObject({ 'prometheus.io/scrape': 'true', 'prometheus.io/path': '/metrics' });
  });

  it('GPU: nvidia.com/gpu limits, tolerations, fixed replicas', () => {
    const [dep] = byKind(rendered.gpu!, 'Deployment') as [Obj];
    const pod = dep.spec.template.spec;
    expect(pod.containers[0].resources.limits['nvidia.com/gpu']).toBe(2);
    expect(pod.tolerations).toEqual([{ key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' }]);
    expect(dep.spec.replicas).toBe(2);
  });

  it('model repository: in the image by default, a read-only PVC over modelDir when existingClaim is set', () => {
    const [hpaDep] = byKind(rendered.hpa!, 'Deployment') as [Obj];
    expect(hpaDep.spec.template.spec.volumes).toEqual([{ name: 'tmp', emptyDir: { sizeLimit: '256Mi' } }]);
    const [dep] = byKind(rendered.gpu!, 'Deployment') as [Obj];
    expect(dep.spec.template.spec.containers[0].volumeMounts).toEqual([
      { name: 'tmp', mountPath: '/tmp' },
      { name: 'models', mountPath: sampleContext().modelDir, readOnly: true },
    ]);
    expect(dep.spec.template.spec.volumes[1]).toEqual({ name: 'models', persistentVolumeClaim: { claimName: 'model-store', readOnly: true } });
  });

  it('ServiceMonitor: scrapes /metrics on the http port, only where the Prometheus Operator API exists', () => {
    const [sm] = byKind(rendered.hpa!, 'ServiceMonitor') as [Obj];
    expect(sm.spec.endpoints).toEqual([{ port: 'http', path: '/metrics', interval: '15s' }]);
    expect(sm.metadata.labels).toMatchObject({ release: 'kube-prometheus', 'app.kubernetes.io/name': 'mlp-tiny' });
    const [svc] = byKind(rendered.hpa!, 'Service') as [Obj];
    expect(sm.spec.selector.matchLabels).toEqual(svc.spec.selector);
  });

  it('a chart generated for a GPU + KEDA context lints, renders with its own defaults and validates', async () => {
    const other = fs.mkdtempSync(path.join(dir, 'gpu-keda-'));
    writeFiles(other, helmChart(sampleContext({ name: 'gpu-svc', gpu: true, autoscale: 'keda', port: 9000, replicas: { min: 1, max: 3 } })));
    const c = path.join(other, 'chart');
    const lint = run(['lint', '--strict', c]);
    expect(lint.status, lint.out).toBe(0);
    const r = run(['template', 'x', c]);
    expect(r.status, r.out).toBe(0);
    const objs = YAML.parseAllDocuments(r.out).map((d) => d.toJS() as Obj).filter((o) => o !== null);
    expect(objs.map((o) => o.kind).sort()).toEqual(['Deployment', 'PodDisruptionBudget', 'ScaledObject', 'Service']);
    for (const o of objs) expect(await validateObject(o), o.kind).toEqual([]);
    const [dep] = byKind(objs, 'Deployment') as [Obj];
    expect(dep.metadata.name).toBe('x-gpu-svc');
    expect(dep.spec.template.spec.containers[0].resources.limits['nvidia.com/gpu']).toBe(1);
    expect(dep.spec.template.spec.containers[0].ports[0].containerPort).toBe(9000);
    expect(byKind(objs, 'ScaledObject')[0]!.spec).toMatchObject({ minReplicaCount: 1, maxReplicaCount: 3 });
  });

  it('template splices: value, block and conditional keys; misplaced ones are refused', () => {
    const t = new TemplateWriter();
    const text = t.render({ a: t.value('.Values.a'), list: [{ b: t.block('toYaml .Values.b') }], c: t.when('.Values.on', '.Values.c') });
    expect(text).toBe(['a: {{ .Values.a }}', 'list:', '  - b:{{- toYaml .Values.b | nindent 6 }}', '{{- if .Values.on }}', 'c: {{ .Values.c }}', '{{- end }}', ''].join('\n'));
    const b = new TemplateWriter();
    expect(b.render({ list: [{ a: 1, auth: b.whenBlock('.Values.on', 'toYaml .Values.auth') }] })).toBe(
      ['list:', '  - a: 1', '    {{- if .Values.on }}', '    auth:{{- toYaml .Values.auth | nindent 6 }}', '    {{- end }}', ''].join('\n'),
    );
    const u = new TemplateWriter();
    expect(() => u.render([u.block('x')])).toThrow(/a block splice must be a mapping value/);
    const w = new TemplateWriter();
    expect(() => w.render([{ k: w.when('c', 'x') }])).toThrow(/a conditional key cannot start a sequence item \(k\)/);
  });

  it('a GPU context sets gpu.enabled by default', () => {
    const values = YAML.parse(helmChart(sampleContext({ gpu: true }))['chart/values.yaml']!);
    expect(values.gpu.enabled).toBe(true);
    expect(YAML.parse(helmChart(sampleContext())['chart/values.yaml']!).gpu.enabled).toBe(false);
  });

  describe('bad values are refused before anything renders', () => {
    const refusals: Array<[string, string[], RegExp]> = [
      ['negative replicas.min (schema minimum)', ['--set', 'replicas.min=-1'], /replicas\.min: Must be greater than or equal to 1/],
      ['unknown autoscale mode (schema enum)', ['--set', 'autoscale=sometimes'], /autoscale must be one of the following: "hpa", "keda", "none"/],
      ['misspelt value key (additionalProperties)', ['--set', 'imag.tag=x'], /Additional property imag is not allowed/],
      ['string port (schema type)', ['--set-string', 'port=http'], /port: Invalid type\. Expected: integer, given: string/],
      ['min above max (chart check)', ['--set', 'replicas.min=5', '--set', 'replicas.max=3'], /replicas: expected min <= max, received min 5 and max 3/],
      ['apiKey.existingSecret that is no Secret name (schema pattern)', ['--set', 'apiKey.existingSecret=Bad_Secret'], /apiKey\.existingSecret: Does not match pattern/],
      ['apiKey.openMetrics that is no boolean (schema type)', ['--set-string', 'apiKey.openMetrics=yes'], /apiKey\.openMetrics: Invalid type\. Expected: boolean, given: string/],
    ];
    for (const [what, args, message] of refusals) {
      it(`helm template: ${what}`, () => {
        const r = run(['template', 'svc', chart, ...args]);
        expect(r.status, r.out).not.toBe(0);
        expect(r.out).toMatch(message);
      });
    }
    it('helm lint --strict: negative replicas.min', () => {
      const r = run(['lint', '--strict', chart, '--set', 'replicas.min=-1']);
      expect(r.status).not.toBe(0);
      expect(r.out).toMatch(/replicas\.min: Must be greater than or equal to 1/);
    });
  });

  describe('validation catches what the API server would refuse or drop', () => {
    const deployment = () => structuredClone(byKind(rendered.hpa!, 'Deployment')[0]!);
    it('a misspelt field (readinesProbe) is an unknown field', async () => {
      const d = deployment();
      d.spec.template.spec.containers[0].readinesProbe = d.spec.template.spec.containers[0].readinessProbe;
      expect(await validateObject(d)).toEqual(['Deployment/svc-mlp-tiny.spec.template.spec.containers[0].readinesProbe: unknown field']);
    });
    it('a wrong type is refused', async () => {
      const d = deployment();
      d.spec.replicas = 'two';
      expect((await validateObject(d)).join('\n')).toMatch(/spec\/replicas must be integer/);
    });
    it('a missing required field is refused', async () => {
      const d = deployment();
      delete d.spec.selector;
      expect((await validateObject(d)).join('\n')).toMatch(/spec must have required property selector/);
    });
    it('a misspelt field of a KEDA ScaledObject is refused by the CRD subset', async () => {
      const so = structuredClone(byKind(rendered.keda!, 'ScaledObject')[0]!);
      so.spec.maxReplicas = so.spec.maxReplicaCount;
      expect((await validateObject(so)).join('\n')).toMatch(/ScaledObject\/svc-mlp-tiny\.spec: must NOT have additional properties/);
    });
    it('a misspelt ServiceMonitor authorization field is refused by the CRD subset', async () => {
      const sm = structuredClone(byKind(rendered.hpa!, 'ServiceMonitor')[0]!);
      sm.spec.endpoints[0].authorization = { type: 'Bearer', credential: { name: 's', key: 'k' } };
      expect((await validateObject(sm)).join('\n')).toMatch(/ServiceMonitor\/svc-mlp-tiny\.spec\.endpoints\.0\.authorization: must NOT have additional properties/);
    });
    it('a kind without a schema is refused', async () => {
      expect(await validateObject({ apiVersion: 'example.com/v1', kind: 'Widget', metadata: { name: 'w' } })).toEqual(['Widget/w: no schema for example.com/v1/Widget']);
    });
  });
});

describe('API keys: apiKey.existingSecret reaches the server and the ServiceMonitor (issue 14 item 8)', () => {
  // The Secret the cluster would hold: one key, what the values comment asks for.
  const SECRET = { name: 'svc-keys', key: 'token', value: 'key-0123456789abcdef' };
  const withKey = ['--set', `apiKey.existingSecret=${SECRET.name}`, '--set', `apiKey.secretKey=${SECRET.key}`];
  const secrets: Record<string, Record<string, string>> = { [SECRET.name]: { [SECRET.key]: SECRET.value } };
  const apps: FastifyInstance[] = [];
  afterAll(async () => {
    for (const app of apps) await app.close();
  });

  const container = (objs: Obj[]) => (byKind(objs, 'Deployment')[0] as Obj).spec.template.spec.containers[0] as Obj;
  const envNames = (objs: Obj[]) => (container(objs).env as Obj[]).map((e) => e.name as string);
  const endpoint = (objs: Obj[]) => (byKind(objs, 'ServiceMonitor')[0] as Obj).spec.endpoints[0] as Obj;
  /** The container's environment as the kubelet would set it, secretKeyRef resolved from `secrets`. */
  const resolveEnv = (objs: Obj[]) =>
    Object.fromEntries(
      (container(objs).env as Obj[]).map((e) => {
        const ref = e.valueFrom?.secretKeyRef as Obj | undefined;
        if (ref === undefined) return [e.name, e.value];
        const v = secrets[ref.name]?.[ref.key];
        if (v === undefined) throw new Error(`env ${e.name}: no key ${ref.key} in Secret ${ref.name}`);
        return [e.name, v];
      }),
    ) as Record<string, string>;
  /** A real server started from that environment, as `nimify serve` in the pod would read it. */
  async function serverFrom(objs: Obj[]): Promise<string> {
    const { options } = serveOptions([], { ...resolveEnv(objs), NIMIFY_REPOSITORY: path.join(MODELS, 'mlp_tiny.onnx') });
    const app = await buildServer({ ...options, logger: false });
    apps.push(app);
    return app.listen({ port: 0, host: '127.0.0.1' });
  }
  const scrape = (base: string, key?: string) => fetch(`${base}/metrics`, { headers: key === undefined ? {} : { authorization: `Bearer ${key}` } });

  it('without it: no NIMIFY_API_KEY, no NIMIFY_OPEN_METRICS, no ServiceMonitor authorization', () => {
    expect(envNames(rendered.hpa!)).toEqual(['NIMIFY_HOST', 'NIMIFY_PORT', 'NIMIFY_GRPC_PORT', 'NIMIFY_SHUTDOWN_TIMEOUT_MS', 'NIMIFY_LOG_LEVEL']);
    expect(endpoint(rendered.hpa!).authorization).toBeUndefined();
    expect(envNames(rendered.gpu!)).not.toContain('NIMIFY_API_KEY');
  });

  it('with it: the Deployment reads NIMIFY_API_KEY from the Secret, the ServiceMonitor sends the same key; lints and validates', async () => {
    const objs = render('hpa', withKey);
    expect(container(objs).env).toContainEqual({ name: 'NIMIFY_API_KEY', valueFrom: { secretKeyRef: { name: SECRET.name, key: SECRET.key } } });
    expect(envNames(objs)).not.toContain('NIMIFY_OPEN_METRICS');
    expect(endpoint(objs)).toEqual({ port: 'http', path: '/metrics', interval: '15s', authorization: { type: 'Bearer', credentials: { name: SECRET.name, key: SECRET.key } } });
    for (const o of objs) expect(await validateObject(o), o.kind).toEqual([]);
    const lint = run(['lint', '--strict', chart, ...withKey, '--set', 'apiKey.openMetrics=true']);
    expect(lint.status, lint.out).toBe(0);
    // KEDA and GPU profiles (no ServiceMonitor) get the key too.
    for (const name of ['keda', 'gpu']) expect(envNames(render(name, withKey)), name).toContain('NIMIFY_API_KEY');
  });

  it("the rendered environment starts a server whose /metrics refuses a scrape without the key and answers the ServiceMonitor's", async () => {
    const objs = render('hpa', withKey);
    const base = await serverFrom(objs);
    expect((await scrape(base)).status).toBe(401);
    const { credentials } = endpoint(objs).authorization as Obj;
    const sent = secrets[credentials.name]![credentials.key]!;
    const ok = await scrape(base, sent);
    expect(ok.status).toBe(200);
    expect(await ok.text()).toContain(QUEUE_METRIC);
  });

  it('apiKey.openMetrics: NIMIFY_OPEN_METRICS=1, and /metrics answers an annotation scrape (no key) while the model routes still need one', async () => {
    const objs = render('gpu', [...withKey, '--set', 'apiKey.openMetrics=true']);
    expect(container(objs).env).toContainEqual({ name: 'NIMIFY_OPEN_METRICS', value: '1' });
    const base = await serverFrom(objs);
    const open = await scrape(base);
    expect(open.status).toBe(200);
    expect(await open.text()).toContain(QUEUE_METRIC);
    expect((await fetch(`${base}/v2/models/mlp_tiny`)).status).toBe(401);
  });

  it('NOTES.txt warns of the 401 for an annotation scrape only with a key, no ServiceMonitor and no openMetrics', () => {
    // NOTES.txt is rendered only by install; a probe template includes it so that helm template shows it.
    const probe = fs.mkdtempSync(path.join(dir, 'notes-'));
    fs.cpSync(chart, path.join(probe, 'chart'), { recursive: true });
    fs.writeFileSync(path.join(probe, 'chart', 'templates', 'notes-probe.yaml'), 'notes: |\n{{ include (print .Template.BasePath "/NOTES.txt") . | indent 2 }}\n');
    const notes = (args: string[]) => {
      const r = run(['template', 'svc', path.join(probe, 'chart'), '--show-only', 'templates/notes-probe.yaml', ...args]);
      expect(r.status, r.out).toBe(0);
      return (YAML.parse(r.out) as { notes: string }).notes;
    };
    const warning = /prometheus\.io annotations cannot send the key\s+and gets 401[\s\S]*apiKey\.openMetrics=true/;
    const keyed = notes(withKey);
    expect(keyed).toContain(`the key being ${SECRET.key} of Secret ${SECRET.name}, /metrics included`);
    expect(keyed).toMatch(warning);
    expect(notes([...withKey, '--api-versions', 'monitoring.coreos.com/v1'])).not.toMatch(warning);
    const opened = notes([...withKey, '--set', 'apiKey.openMetrics=true']);
    expect(opened).not.toMatch(warning);
    expect(opened).not.toContain('/metrics included');
    expect(notes([])).not.toContain('Authorization');
  });

  it('values.yaml and the deploy README say how to set the key and what an annotation scrape then needs', () => {
    const values = helmChart(sampleContext())['chart/values.yaml']!;
    const comment = (key: string) => /((?:#.*\n)+)$/.exec(values.slice(0, values.indexOf(`\n${key}:`) + 1))?.[1] ?? '';
    expect(comment('apiKey')).toMatch(/ServiceMonitor sends the key[\s\S]*podAnnotations[\s\S]*401[\s\S]*openMetrics: true/);
    expect(comment('podAnnotations')).toMatch(/apiKey\.openMetrics: true/);
    expect(YAML.parse(values).apiKey).toEqual({ existingSecret: '', secretKey: 'api-key', openMetrics: false });
    const readme = deployReadme(sampleContext());
    expect(readme).toContain('helm install mlp-tiny ./chart --set apiKey.existingSecret=mlp-tiny-api-key');
    expect(readme).toContain('kubectl create secret generic mlp-tiny-api-key --from-literal=api-key=');
    expect(readme).toMatch(/`prometheus\.io\/\*` annotations cannot send a key[\s\S]*--set apiKey\.openMetrics=true/);
    expect(readme).toMatch(/ServingRuntime sets no API key[\s\S]*NIMIFY_OPEN_METRICS=1/);
  });
});
