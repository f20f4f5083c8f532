/**
 * The Helm chart of `nimify build` (chart/ in the deploy folder): a Deployment with probes on the
 * v2 health routes and a locked-down securityContext, a Service, a PodDisruptionBudget, either a
 * HorizontalPodAutoscaler (CPU + the queue-depth Pods metric) or a KEDA ScaledObject (Prometheus
 * trigger on the same metric), a ServiceMonitor when the Prometheus Operator's API is present,
 * GPU resources and tolerations behind `gpu.enabled`, and the prometheus-adapter rule that turns
 * the queue metric into the Pods metric the HPA reads (files/). With `apiKey.existingSecret` the
 * server gets its API key from that Secret and the ServiceMonitor sends the same key to /metrics
 * (which needs it since issue 14 item 8); an annotation-based scrape cannot, hence
 * `apiKey.openMetrics`. values.schema.json is enforced by helm itself on lint, template, install
 * and upgrade.
 *
 * The context fills the defaults (values.yaml); everything a cluster operator may change is a
 * value. Pure: same context → byte-identical files (test/deploy/helm.test.ts).
 */
import { Document, stringify, type Scalar, type YAMLMap } from 'yaml';
import { grpcPortFor, type DeployContext } from './context';
import { RUNTIME_UID } from './dockerfile';
import { CONTAINER_SECURITY, GPU_TOLERATION, LIVE_PATH, READY_PATH } from './pod';
import { checkContext, splitImage } from './schemas/check';
import { TemplateWriter } from './schemas/template';

/** The queue-depth gauge the server exports per model and version (src/server/metrics.ts) and the autoscalers read. */
export const QUEUE_METRIC = 'nv_inference_pending_request_count';
/** Seconds the pod gets beyond the server's drain limit before the kubelet kills it. */
/** The preStop wait, so that endpoints stop routing here before the server stops listening. */
export const PRESTOP_S = 5;
/** terminationGracePeriodSeconds = the server's drain limit + this (preStop + slack). */
export const GRACE_MARGIN_S = 15;

const yaml = (doc: unknown) => stringify(doc, { lineWidth: 0 });
const json = (doc: unknown) => `${JSON.stringify(doc, null, 2)}\n`;

const FULLNAME = 'include "nimify.fullname" .';
const LABELS = 'include "nimify.labels" .';
const SELECTOR = 'include "nimify.selectorLabels" .';

export function helmValues(ctx: DeployContext): Record<string, unknown> {
  const { repository, tag } = splitImage(ctx.image);
  return {
    image: { repository, tag, pullPolicy: 'IfNotPresent' },
    imagePullSecrets: [],
    port: ctx.port,
    grpcPort: grpcPortFor(ctx.port),
    replicas: { min: ctx.replicas.min, max: ctx.replicas.max },
    autoscale: ctx.autoscale,
    hpa: { targetCPUUtilizationPercentage: 80, pendingRequestsPerPod: 8 },
    keda: {
      prometheusServer: 'http://prometheus-operated.monitoring.svc:9090',
      pendingRequestsPerPod: 8,
      pollingInterval: 15,
      cooldownPeriod: 300,
    },
    server: { shutdownTimeoutMs: ctx.drainTimeoutMs, logLevel: 'info' },
    apiKey: { existingSecret: '', secretKey: 'api-key', openMetrics: false },
    resources: {
      requests: { cpu: '500m', memory: `${ctx.memoryMiB.request}Mi` },
      limits: { cpu: '2', memory: `${ctx.memoryMiB.limit}Mi` },
    },
    gpu: {
      enabled: ctx.gpu,
      count: 1,
      tolerations: [GPU_TOLERATION],
    },
    tmpSizeLimit: '256Mi',
    // The models are in the image at modelDir; a PersistentVolumeClaim holding a repository of the
    // same layout may be mounted over it instead (read-only).
    modelRepository: { path: ctx.modelDir, existingClaim: '' },
    service: { type: 'ClusterIP', port: ctx.port, grpcPort: grpcPortFor(ctx.port) },
    podDisruptionBudget: { enabled: true, maxUnavailable: 1 },
    serviceMonitor: { enabled: true, interval: '15s', labels: {} },
    podAnnotations: { 'prometheus.io/scrape': 'true', 'prometheus.io/port': String(ctx.port), 'prometheus.io/path': '/metrics' },
    nodeSelector: {},
    tolerations: [],
    affinity: {},
  };
}

/**
 * values.yaml's comments, by top-level key: what a cluster operator needs to know before changing
 * one (the schema says what each may be). Owned here so that values.yaml is their one place.
 */
const VALUE_COMMENTS: Record<string, string[]> = {
  apiKey: [
    'API keys (nimify serve --api-key). existingSecret: a Secret in the release\'s namespace whose',
    'secretKey holds one key of 8 or more characters, no commas (the ServiceMonitor sends the value',
    'as it is, so no trailing newline either, which --from-file would keep):',
    'kubectl create secret generic <name> --from-literal=api-key=$(openssl rand -hex 24).',
    'When set, every route except /v2/health/live, /v2/health/ready and /documentation needs',
    '"Authorization: Bearer <key>", /metrics included: the ServiceMonitor sends the key from the same',
    'Secret, but a Prometheus that scrapes by the podAnnotations below cannot send one and gets 401,',
    'so the HPA (prometheus-adapter) and KEDA get no queue metric and stop scaling. For that',
    'Prometheus set openMetrics: true (NIMIFY_OPEN_METRICS=1): /metrics, which names every model,',
    'then answers without a key to whoever reaches the pod.',
  ],
  serviceMonitor: ["labels: what the Prometheus Operator's serviceMonitorSelector matches (kube-prometheus-stack: release: <its release>)."],
  podAnnotations: [
    'For a Prometheus that scrapes by annotation (no Prometheus Operator, so no ServiceMonitor): the',
    "HPA's adapter and KEDA need the pods' metrics either way. With apiKey.existingSecret set, this",
    'scrape needs apiKey.openMetrics: true (see apiKey).',
  ],
};

/** values.yaml: helmValues() with VALUE_COMMENTS above their keys. */
export function valuesYaml(ctx: DeployContext): string {
  const doc = new Document(helmValues(ctx));
  for (const pair of (doc.contents as YAMLMap<Scalar<string>, unknown>).items) {
    const comment = VALUE_COMMENTS[pair.key.value];
    if (comment !== undefined) pair.key.commentBefore = comment.map((l) => ` ${l}`).join('\n');
  }
  return `# Defaults from nimify build; values.schema.json says what each may be.\n${doc.toString({ lineWidth: 0 })}`;
}

const quantity = { type: ['string', 'integer'], pattern: '^[0-9]+(\\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti)?$', minimum: 0 };
const resourceMap = { type: 'object', additionalProperties: quantity };

/** JSON Schema draft-07 of values.yaml; helm rejects values that break it before rendering anything. */
export function valuesSchema(): Record<string, unknown> {
  const obj = (properties: Record<string, unknown>, required = Object.keys(properties)) => ({ type: 'object', additionalProperties: false, required, properties });
  const int = (minimum: number, maximum?: number) => ({ type: 'integer', minimum, ...(maximum === undefined ? {} : { maximum }) });
  return {
    $schema: 'http://json-schema.org/draft-07/schema#',
    title: 'nimify service chart values',
    ...obj(
      {
        global: { type: 'object' },
        image: obj({
          repository: { type: 'string', minLength: 1 },
          tag: { type: 'string', minLength: 1 },
          pullPolicy: { enum: ['Always', 'IfNotPresent', 'Never'] },
        }),
        imagePullSecrets: { type: 'array', items: obj({ name: { type: 'string', minLength: 1 } }) },
        port: int(1, 65535),
        grpcPort: int(1, 65535),
        replicas: obj({ min: int(1), max: int(1) }),
        autoscale: { enum: ['hpa', 'keda', 'none'] },
        hpa: obj({ targetCPUUtilizationPercentage: int(1, 100), pendingRequestsPerPod: int(1) }),
        keda: obj({
          prometheusServer: { type: 'string', pattern: '^https?://' },
          pendingRequestsPerPod: int(1),
          pollingInterval: int(1),
          cooldownPeriod: int(0),
        }),
        server: obj({
          shutdownTimeoutMs: int(1),
          logLevel: { enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] },
        }),
        apiKey: obj({
          // A Secret name (DNS-1123 subdomain) or '' for none; a Secret data key.
          existingSecret: { type: 'string', pattern: '^([a-z0-9]([-a-z0-9.]*[a-z0-9])?)?$', maxLength: 253 },
          secretKey: { type: 'string', pattern: '^[-._a-zA-Z0-9]+$', maxLength: 253 },
          openMetrics: { type: 'boolean' },
        }),
        resources: obj({ requests: resourceMap, limits: resourceMap }, []),
        gpu: obj({ enabled: { type: 'boolean' }, count: int(1), tolerations: { type: 'array', items: { type: 'object' } } }),
        tmpSizeLimit: { type: 'string', pattern: quantity.pattern },
        modelRepository: obj({ path: { type: 'string', pattern: '^/' }, existingClaim: { type: 'string', pattern: '^([a-z0-9]([-a-z0-9.]*[a-z0-9])?)?$' } }),
        service: obj({ type: { enum: ['ClusterIP', 'NodePort', 'LoadBalancer'] }, port: int(1, 65535), grpcPort: int(1, 65535) }),
        podDisruptionBudget: obj({ enabled: { type: 'boolean' }, maxUnavailable: int(1) }),
        serviceMonitor: obj(
          { enabled: { type: 'boolean' }, interval: { type: 'string', pattern: '^[0-9]+(ms|s|m|h)$' }, labels: { type: 'object', additionalProperties: { type: 'string' } } },
          ['enabled', 'interval'],
        ),
        podAnnotations: { type: 'object', additionalProperties: { type: 'string' } },
        nodeSelector: { type: 'object', additionalProperties: { type: 'string' } },
        tolerations: { type: 'array', items: { type: 'object' } },
        affinity: { type: 'object' },
      },
      ['image', 'port', 'modelRepository', 'replicas', 'autoscale', 'hpa', 'keda', 'server', 'apiKey', 'resources', 'gpu', 'service', 'podDisruptionBudget', 'serviceMonitor'],
    ),
  };
}

// Go-template helpers: names, labels, the rules JSON Schema cannot state (min ≤ max), and the
// GPU additions to resources and tolerations. Static text, not YAML.
const HELPERS = `{{/* Generated by nimify build. Names, labels and the checks values.schema.json cannot express. */}}
{{- define "nimify.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "nimify.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "nimify.labels" -}}
{{ include "nimify.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "nimify.serviceMonitorLabels" -}}
{{ include "nimify.labels" . }}
{{- with .Values.serviceMonitor.labels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "nimify.check" -}}
{{- if gt (int .Values.replicas.min) (int .Values.replicas.max) -}}
{{- fail (printf "replicas: expected min <= max, received min %v and max %v" .Values.replicas.min .Values.replicas.max) -}}
{{- end -}}
{{- end -}}

{{- define "nimify.resources" -}}
{{- $res := deepCopy .Values.resources -}}
{{- if .Values.gpu.enabled -}}
{{- $_ := set $res "limits" (merge (dict "nvidia.com/gpu" .Values.gpu.count) ($res.limits | default dict)) -}}
{{- end -}}
{{- toYaml $res -}}
{{- end -}}

{{- define "nimify.tolerations" -}}
{{- $t := .Values.tolerations -}}
{{- if .Values.gpu.enabled -}}
{{- $t = concat $t .Values.gpu.tolerations -}}
{{- end -}}
{{- toYaml $t -}}
{{- end -}}
`;

/** A named template whose body is a YAML list: `base`, then each `extra` group's items where its condition holds. */
function listHelper(name: string, items: (t: TemplateWriter) => { base: unknown[]; extra: Array<[cond: string, items: unknown[]]> }): string {
  const t = new TemplateWriter();
  const { base, extra } = items(t);
  const groups = extra.flatMap(([cond, list]) => [`{{- if ${cond} }}`, t.render(list).trimEnd(), '{{- end }}']);
  return [`{{- define "${name}" -}}`, t.render(base).trimEnd(), ...groups, '{{- end -}}', ''].join('\n');
}

// /tmp is the one writable path (read-only root filesystem); the model repository volume is optional.
const VOLUME_HELPERS = [
  listHelper('nimify.volumeMounts', (t) => ({
    base: [{ name: 'tmp', mountPath: '/tmp' }],
    extra: [['.Values.modelRepository.existingClaim', [{ name: 'models', mountPath: t.value('.Values.modelRepository.path | quote'), readOnly: true }]]],
  })),
  listHelper('nimify.volumes', (t) => ({
    base: [{ name: 'tmp', emptyDir: { sizeLimit: t.value('.Values.tmpSizeLimit | quote') } }],
    extra: [['.Values.modelRepository.existingClaim', [{ name: 'models', persistentVolumeClaim: { claimName: t.value('.Values.modelRepository.existingClaim | quote'), readOnly: true } }]]],
  })),
].join('\n');

// The server's settings as nimify serve's environment variables (docs/cli.md). The API key comes
// from the Secret apiKey names, never from values (values end up in the release's history).
const ENV_HELPER = listHelper('nimify.env', (t) => ({
  base: [
    { name: 'NIMIFY_HOST', value: '0.0.0.0' },
    { name: 'NIMIFY_PORT', value: t.value('.Values.port | quote') },
    { name: 'NIMIFY_GRPC_PORT', value: t.value('.Values.grpcPort | quote') },
    { name: 'NIMIFY_SHUTDOWN_TIMEOUT_MS', value: t.value('.Values.server.shutdownTimeoutMs | quote') },
    { name: 'NIMIFY_LOG_LEVEL', value: t.value('.Values.server.logLevel | quote') },
  ],
  extra: [
    ['.Values.apiKey.existingSecret', [{ name: 'NIMIFY_API_KEY', valueFrom: { secretKeyRef: { name: t.value('.Values.apiKey.existingSecret | quote'), key: t.value('.Values.apiKey.secretKey | quote') } } }]],
    ['.Values.apiKey.openMetrics', [{ name: 'NIMIFY_OPEN_METRICS', value: '1' }]],
  ],
}));

function deployment(ctx: DeployContext): string {
  const t = new TemplateWriter();
  const labels = t.block(LABELS);
  const probe = (path: string, periodSeconds: number, failureThreshold: number) => ({
    httpGet: { path, port: 'http' },
    periodSeconds,
    timeoutSeconds: 2,
    failureThreshold,
  });
  const doc = {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: t.value(FULLNAME), labels },
    spec: {
      // An autoscaler owns the replica count; a fixed deployment sets it.
      replicas: t.when('eq .Values.autoscale "none"', '.Values.replicas.min'),
      selector: { matchLabels: t.block(SELECTOR) },
      template: {
        metadata: {
          labels: t.block(SELECTOR),
          annotations: t.block('toYaml .Values.podAnnotations'),
        },
        spec: {
          imagePullSecrets: t.block('toYaml .Values.imagePullSecrets'),
          // The server drains in-flight requests on SIGTERM for up to shutdownTimeoutMs; the
          // kubelet must wait longer than that before it kills the container.
          terminationGracePeriodSeconds: t.value(`add (div .Values.server.shutdownTimeoutMs 1000) ${GRACE_MARGIN_S}`),
          automountServiceAccountToken: false,
          securityContext: {
            runAsNonRoot: true,
            runAsUser: RUNTIME_UID,
            runAsGroup: RUNTIME_UID,
            fsGroup: RUNTIME_UID,
            seccompProfile: { type: 'RuntimeDefault' },
          },
          containers: [
            {
              name: ctx.name,
              image: t.value('printf "%s:%s" .Values.image.repository .Values.image.tag | quote'),
              imagePullPolicy: t.value('.Values.image.pullPolicy'),
              ports: [
                { name: 'http', containerPort: t.value('.Values.port'), protocol: 'TCP' },
                { name: 'grpc', containerPort: t.value('.Values.grpcPort'), protocol: 'TCP' },
              ],
              env: t.block('include "nimify.env" .'),
              // Ready only after every model's warmup (the server answers ready then); the
              // startup probe gives slow loads time before liveness may restart the pod.
              startupProbe: probe(READY_PATH, 5, 120),
              readinessProbe: probe(READY_PATH, 5, 3),
              livenessProbe: probe(LIVE_PATH, 10, 3),
              resources: t.block('include "nimify.resources" .'),
              // Endpoints and proxies keep routing to a terminating pod for a few seconds: keep
              // serving that long before the server stops listening (the grace period covers it).
              lifecycle: { preStop: { exec: { command: ['node', '-e', `setTimeout(() => {}, ${PRESTOP_S * 1000})`] } } },
              securityContext: CONTAINER_SECURITY,
              volumeMounts: t.block('include "nimify.volumeMounts" .'),
            },
          ],
          volumes: t.block('include "nimify.volumes" .'),
          nodeSelector: t.block('toYaml .Values.nodeSelector'),
          tolerations: t.block('include "nimify.tolerations" .'),
          affinity: t.block('toYaml .Values.affinity'),
        },
      },
    },
  };
  return `{{- include "nimify.check" . }}\n${t.render(doc)}`;
}

function service(): string {
  const t = new TemplateWriter();
  return t.render({
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: t.value(FULLNAME), labels: t.block(LABELS) },
    spec: {
      type: t.value('.Values.service.type'),
      selector: t.block(SELECTOR),
      ports: [
        { name: 'http', port: t.value('.Values.service.port'), targetPort: 'http', protocol: 'TCP' },
        { name: 'grpc', port: t.value('.Values.service.grpcPort'), targetPort: 'grpc', protocol: 'TCP', appProtocol: 'grpc' },
      ],
    },
  });
}

function pdb(): string {
  const t = new TemplateWriter();
  return t.render(
    {
      apiVersion: 'policy/v1',
      kind: 'PodDisruptionBudget',
      metadata: { name: t.value(FULLNAME), labels: t.block(LABELS) },
      spec: { maxUnavailable: t.value('.Values.podDisruptionBudget.maxUnavailable'), selector: { matchLabels: t.block(SELECTOR) } },
    },
    '.Values.podDisruptionBudget.enabled',
  );
}

function hpa(): string {
  const t = new TemplateWriter();
  return t.render(
    {
      apiVersion: 'autoscaling/v2',
      kind: 'HorizontalPodAutoscaler',
      metadata: { name: t.value(FULLNAME), labels: t.block(LABELS) },
      spec: {
        scaleTargetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: t.value(FULLNAME) },
        minReplicas: t.value('.Values.replicas.min'),
        maxReplicas: t.value('.Values.replicas.max'),
        metrics: [
          { type: 'Resource', resource: { name: 'cpu', target: { type: 'Utilization', averageUtilization: t.value('.Values.hpa.targetCPUUtilizationPercentage') } } },
          // Served by prometheus-adapter with files/prometheus-adapter-values.yaml (README).
          { type: 'Pods', pods: { metric: { name: QUEUE_METRIC }, target: { type: 'AverageValue', averageValue: t.value('.Values.hpa.pendingRequestsPerPod | quote') } } },
        ],
      },
    },
    'eq .Values.autoscale "hpa"',
  );
}

function scaledObject(): string {
  const t = new TemplateWriter();
  // Queue depth summed over this release's pods; KEDA divides by the threshold per replica.
  const query = `printf "sum(${QUEUE_METRIC}{namespace=%q,pod=~%q})" .Release.Namespace (printf "%s-[a-z0-9]+-[a-z0-9]+" (${FULLNAME})) | quote`;
  return t.render(
    {
      apiVersion: 'keda.sh/v1alpha1',
      kind: 'ScaledObject',
      metadata: { name: t.value(FULLNAME), labels: t.block(LABELS) },
      spec: {
        scaleTargetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: t.value(FULLNAME) },
        minReplicaCount: t.value('.Values.replicas.min'),
        maxReplicaCount: t.value('.Values.replicas.max'),
        pollingInterval: t.value('.Values.keda.pollingInterval'),
        cooldownPeriod: t.value('.Values.keda.cooldownPeriod'),
        triggers: [
          {
            type: 'prometheus',
            metricType: 'AverageValue',
            metadata: {
              serverAddress: t.value('.Values.keda.prometheusServer | quote'),
              query: t.value(query),
              threshold: t.value('.Values.keda.pendingRequestsPerPod | quote'),
            },
          },
        ],
      },
    },
    'eq .Values.autoscale "keda"',
  );
}

function serviceMonitor(): string {
  const t = new TemplateWriter();
  return t.render(
    {
      apiVersion: 'monitoring.coreos.com/v1',
      kind: 'ServiceMonitor',
      metadata: { name: t.value(FULLNAME), labels: t.block('include "nimify.serviceMonitorLabels" .') },
      spec: {
        selector: { matchLabels: t.block(SELECTOR) },
        endpoints: [
          {
            port: 'http',
            path: '/metrics',
            interval: t.value('.Values.serviceMonitor.interval | quote'),
            // /metrics needs the key when one is set (nimify serve without --open-metrics): the
            // Prometheus Operator reads it from the same Secret (its namespace is this release's).
            authorization: t.whenBlock(
              '.Values.apiKey.existingSecret',
              'toYaml (dict "type" "Bearer" "credentials" (dict "name" .Values.apiKey.existingSecret "key" .Values.apiKey.secretKey))',
            ),
          },
        ],
      },
    },
    'and .Values.serviceMonitor.enabled (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1")',
  );
}

/**
 * Values for the prometheus-community/prometheus-adapter chart (its `rules.custom` list) that
 * expose the queue gauge as a Pods metric, summed over models per pod:
 * `helm install prometheus-adapter prometheus-community/prometheus-adapter -f chart/files/prometheus-adapter-values.yaml`.
 */
export function adapterRules(): Record<string, unknown> {
  return {
    rules: {
      custom: [
      {
        seriesQuery: `${QUEUE_METRIC}{namespace!="",pod!=""}`,
        resources: { overrides: { namespace: { resource: 'namespace' }, pod: { resource: 'pod' } } },
        name: { matches: `^${QUEUE_METRIC}$`, as: QUEUE_METRIC },
        metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)',
      },
      ],
    },
  };
}

function notes(ctx: DeployContext): string {
  return [
    `{{ include "nimify.fullname" . }} serves ${ctx.models.map((m) => m.name).join(', ')} (KServe v2) on port {{ .Values.service.port }}.`,
    '',
    '  kubectl port-forward svc/{{ include "nimify.fullname" . }} {{ .Values.service.port }}',
    `  curl localhost:{{ .Values.service.port }}${READY_PATH}`,
    '{{- if eq .Values.autoscale "hpa" }}',
    '',
    `The HPA reads the Pods metric ${QUEUE_METRIC}: install prometheus-adapter with the values in files/prometheus-adapter-values.yaml`,
    '(helm install prometheus-adapter prometheus-community/prometheus-adapter -f <chart>/files/prometheus-adapter-values.yaml).',
    '{{- else if eq .Values.autoscale "keda" }}',
    '',
    'The ScaledObject needs KEDA and the Prometheus server at {{ .Values.keda.prometheusServer }}.',
    '{{- end }}',
    '{{- if .Values.apiKey.existingSecret }}',
    '',
    'Requests need "Authorization: Bearer <key>", the key being {{ .Values.apiKey.secretKey }} of Secret {{ .Values.apiKey.existingSecret }}{{ if not .Values.apiKey.openMetrics }}, /metrics included{{ end }}.',
    '{{- if and (not .Values.apiKey.openMetrics) (not (and .Values.serviceMonitor.enabled (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1"))) }}',
    'No ServiceMonitor was rendered: a Prometheus that scrapes the pods by their prometheus.io annotations cannot send the key',
    'and gets 401, so autoscaling gets no queue metric. Set apiKey.openMetrics=true for it (/metrics then answers without a key).',
    '{{- end }}',
    '{{- end }}',
    '',
  ].join('\n');
}

/** The chart's files, keyed by path relative to the deploy folder (chart/…). */
export function helmChart(ctx: DeployContext): Record<string, string> {
  checkContext(ctx);
  const { tag } = splitImage(ctx.image);
  const chart = {
    apiVersion: 'v2',
    name: ctx.name,
    description: `${ctx.models.map((m) => m.name).join(', ')} served by nimify (KServe v2 / Triton protocol)`,
    type: 'application',
    version: ctx.nimifyVersion,
    appVersion: tag,
    keywords: ['nimify', 'onnx', 'inference', 'kserve'],
  };
  const files: Record<string, string> = {
    'chart/Chart.yaml': yaml(chart),
    'chart/values.yaml': valuesYaml(ctx),
    'chart/values.schema.json': json(valuesSchema()),
    'chart/.helmignore': '.git/\n*.tgz\n',
    'chart/files/prometheus-adapter-values.yaml': yaml(adapterRules()),
    'chart/templates/_helpers.tpl': `${HELPERS}\n${VOLUME_HELPERS}\n${ENV_HELPER}`,
    'chart/templates/NOTES.txt': notes(ctx),
    'chart/templates/deployment.yaml': deployment(ctx),
    'chart/templates/service.yaml': service(),
    'chart/templates/pdb.yaml': pdb(),
    'chart/templates/hpa.yaml': hpa(),
    'chart/templates/scaledobject.yaml': scaledObject(),
    'chart/templates/servicemonitor.yaml': serviceMonitor(),
  };
  return Object.fromEntries(Object.entries(files).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}
