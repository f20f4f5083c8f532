/**
 * Pinned subsets of the custom resources' OpenAPI schemas (from the upstream CRDs: KServe
 * v0.14 serving.kserve.io_servingruntimes / _inferenceservices, KEDA v2.16 keda.sh_scaledobjects,
 * prometheus-operator v0.79 monitoring.coreos.com_servicemonitors), holding the fields nimify
 * generates and their common siblings, with `additionalProperties: false` so that a misspelt
 * field fails (the real CRDs prune unknown fields silently: a typo would be lost, not rejected).
 * Embedded core types (containers, volumes, tolerations, affinity, metadata) are left open here
 * and validated as Kubernetes types by k8s-validate.ts. Used only by test/deploy/*.
 */
const open = { type: 'object' };
const str = { type: 'string' };
const int = (minimum = 0) => ({ type: 'integer', minimum });
const strMap = { type: 'object', additionalProperties: { type: 'string' } };
const closed = (properties: Record<string, unknown>, required: string[] = []) => ({ type: 'object', additionalProperties: false, properties, required });
const top = (apiVersion: string, kind: string, spec: Record<string, unknown>) =>
  closed({ apiVersion: { const: apiVersion }, kind: { const: kind }, metadata: open, spec, status: open }, ['apiVersion', 'kind', 'metadata', 'spec']);

const resources = closed({ limits: strOrIntMap(), requests: strOrIntMap(), claims: { type: 'array' } });
function strOrIntMap() {
  return { type: 'object', additionalProperties: { type: ['string', 'integer'] } };
}

/** serving.kserve.io/v1alpha1 ServingRuntime (ServingRuntimeSpec, inlined ServingRuntimePodSpec). */
export const servingRuntime = top(
  'serving.kserve.io/v1alpha1',
  'ServingRuntime',
  closed(
    {
      supportedModelFormats: {
        type: 'array',
        items: closed({ name: str, version: str, autoSelect: { type: 'boolean' }, priority: int(1) }, ['name']),
      },
      protocolVersions: { type: 'array', items: { enum: ['v1', 'v2', 'grpc-v1', 'grpc-v2'] } },
      multiModel: { type: 'boolean' },
      disabled: { type: 'boolean' },
      grpcEndpoint: str,
      grpcDataEndpoint: str,
      httpDataEndpoint: str,
      replicas: int(0),
      storageHelper: closed({ disabled: { type: 'boolean' } }),
      builtInAdapter: open,
      containers: { type: 'array', minItems: 1, items: open },
      volumes: { type: 'array', items: open },
      nodeSelector: strMap,
      affinity: open,
      tolerations: { type: 'array', items: open },
      labels: strMap,
      annotations: strMap,
      imagePullSecrets: { type: 'array', items: open },
      hostIPC: { type: 'boolean' },
      workerSpec: open,
    },
    ['containers'],
  ),
);

/** serving.kserve.io/v1beta1 InferenceService (predictor with the model-format form of PredictorSpec). */
export const inferenceService = top(
  'serving.kserve.io/v1beta1',
  'InferenceService',
  closed(
    {
      predictor: closed({
        model: closed(
          {
            modelFormat: closed({ name: str, version: str }, ['name']),
            runtime: str,
            protocolVersion: { enum: ['v1', 'v2', 'grpc-v1', 'grpc-v2'] },
            storageUri: str,
            storage: open,
            args: { type: 'array', items: str },
            env: { type: 'array', items: open },
            resources,
          },
          ['modelFormat'],
        ),
        minReplicas: int(0),
        maxReplicas: int(0),
        scaleTarget: int(0),
        scaleMetric: { enum: ['cpu', 'memory', 'concurrency', 'rps'] },
        scaleMetricType: { enum: ['Utilization', 'AverageValue', 'Value'] },
        containerConcurrency: int(0),
        timeout: int(0),
        canaryTrafficPercent: int(0),
        serviceAccountName: str,
        nodeSelector: strMap,
        tolerations: { type: 'array', items: open },
        affinity: open,
        labels: strMap,
        annotations: strMap,
        deploymentStrategy: open,
      }),
      explainer: open,
      transformer: open,
    },
    ['predictor'],
  ),
);

/** keda.sh/v1alpha1 ScaledObject. */
export const scaledObject = top(
  'keda.sh/v1alpha1',
  'ScaledObject',
  closed(
    {
      scaleTargetRef: closed({ apiVersion: str, kind: str, name: str, envSourceContainerName: str }, ['name']),
      pollingInterval: int(0),
      cooldownPeriod: int(0),
      initialCooldownPeriod: int(0),
      idleReplicaCount: int(0),
      minReplicaCount: int(0),
      maxReplicaCount: int(0),
      advanced: open,
      fallback: open,
      triggers: {
        type: 'array',
        minItems: 1,
        items: closed(
          {
            type: str,
            name: str,
            metadata: strMap,
            metricType: { enum: ['AverageValue', 'Value', 'Utilization'] },
            useCachedMetrics: { type: 'boolean' },
            authenticationRef: closed({ name: str, kind: str }, ['name']),
          },
          ['type', 'metadata'],
        ),
      },
    },
    ['scaleTargetRef', 'triggers'],
  ),
);

/** monitoring.coreos.com/v1 ServiceMonitor. */
export const serviceMonitor = top(
  'monitoring.coreos.com/v1',
  'ServiceMonitor',
  closed(
    {
      selector: open,
      namespaceSelector: open,
      jobLabel: str,
      targetLabels: { type: 'array', items: str },
      podTargetLabels: { type: 'array', items: str },
      sampleLimit: int(0),
      endpoints: {
        type: 'array',
        items: closed({
          port: str,
          targetPort: { type: ['string', 'integer'] },
          path: str,
          scheme: { enum: ['http', 'https'] },
          interval: { type: 'string', pattern: '^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$' },
          scrapeTimeout: str,
          honorLabels: { type: 'boolean' },
          relabelings: { type: 'array', items: open },
          metricRelabelings: { type: 'array', items: open },
          tlsConfig: open,
          // SafeAuthorization: credentials is a core SecretKeySelector in the release's namespace.
          authorization: closed({ type: str, credentials: closed({ name: str, key: str, optional: { type: 'boolean' } }, ['key']) }),
          bearerTokenSecret: open,
        }),
      },
    },
    ['selector'],
  ),
);
