/**
 * KServe manifests of `nimify build` (kserve/ in the deploy folder): a ServingRuntime whose
 * `kserve-container` is the nimify image (it speaks the v2 protocol KServe routes, so nothing
 * sits between them) and an InferenceService that selects it for the onnx model format. The
 * models are in the image (ctx.modelDir), so the InferenceService needs no storageUri and no
 * storage initializer. Pure: same context → byte-identical files.
 */
import { stringify } from 'yaml';
import type { DeployContext } from './context';
import { RUNTIME_UID } from './dockerfile';
import { CONTAINER_SECURITY, GPU_TOLERATION, LIVE_PATH, READY_PATH } from './pod';
import { checkContext } from './schemas/check';

const yaml = (doc: unknown) => stringify(doc, { lineWidth: 0 });

/** The ServingRuntime's name: what the InferenceService's `runtime` names. */
export function runtimeName(ctx: DeployContext): string {
  return `${ctx.name}-runtime`.slice(0, 63).replace(/-+$/, '');
}

export function servingRuntime(ctx: DeployContext): Record<string, unknown> {
  const limits: Record<string, string | number> = { cpu: '2', memory: `${ctx.memoryMiB.limit}Mi` };
  if (ctx.gpu) limits['nvidia.com/gpu'] = 1;
  return {
    apiVersion: 'serving.kserve.io/v1alpha1',
    kind: 'ServingRuntime',
    metadata: {
      name: runtimeName(ctx),
      labels: { 'app.kubernetes.io/name': ctx.name, 'app.kubernetes.io/managed-by': 'nimify' },
    },
    spec: {
      // Where the server's metrics are: KServe copies the runtime's spec.annotations onto the pods;
      // scraping itself is switched on per InferenceService (inferenceService() below). That
      // scrape cannot send an API key: whoever adds NIMIFY_API_KEY to the env below must add
      // NIMIFY_OPEN_METRICS=1 too (the deploy README says so; no key is set here).
      annotations: { 'prometheus.kserve.io/path': '/metrics', 'prometheus.kserve.io/port': String(ctx.port) },
      // Not autoSelect: this image holds only these models, so it must serve only the
      // InferenceService that names it, never another ONNX model in the namespace.
      supportedModelFormats: [{ name: 'onnx', version: '1', autoSelect: false }],
      protocolVersions: ['v2'],
      multiModel: false,
      containers: [
        {
          name: 'kserve-container',
          image: ctx.image,
          env: [
            { name: 'NIMIFY_HOST', value: '0.0.0.0' },
            { name: 'NIMIFY_PORT', value: String(ctx.port) },
            { name: 'NIMIFY_SHUTDOWN_TIMEOUT_MS', value: String(ctx.drainTimeoutMs) },
          ],
          ports: [{ containerPort: ctx.port, name: 'http1', protocol: 'TCP' }],
          readinessProbe: { httpGet: { path: READY_PATH, port: ctx.port }, periodSeconds: 5, failureThreshold: 3 },
          livenessProbe: { httpGet: { path: LIVE_PATH, port: ctx.port }, periodSeconds: 10, failureThreshold: 3 },
          resources: { requests: { cpu: '500m', memory: `${ctx.memoryMiB.request}Mi` }, limits },
          securityContext: { ...CONTAINER_SECURITY, runAsUser: RUNTIME_UID, runAsGroup: RUNTIME_UID },
          volumeMounts: [{ name: 'tmp', mountPath: '/tmp' }],
        },
      ],
      volumes: [{ name: 'tmp', emptyDir: {} }],
      ...(ctx.gpu ? { tolerations: [GPU_TOLERATION] } : {}),
    },
  };
}

export function inferenceService(ctx: DeployContext): Record<string, unknown> {
  return {
    apiVersion: 'serving.kserve.io/v1beta1',
    kind: 'InferenceService',
    metadata: {
      name: ctx.name,
      labels: { 'app.kubernetes.io/name': ctx.name, 'app.kubernetes.io/managed-by': 'nimify' },
      annotations: { 'serving.kserve.io/enable-prometheus-scraping': 'true' },
    },
    spec: {
      predictor: {
        minReplicas: ctx.replicas.min,
        maxReplicas: ctx.replicas.max,
        model: {
          modelFormat: { name: 'onnx', version: '1' },
          runtime: runtimeName(ctx),
          protocolVersion: 'v2',
        },
      },
    },
  };
}

/** kserve/servingruntime.yaml and kserve/inferenceservice.yaml, keyed by path relative to the deploy folder. */
export function kserveManifests(ctx: DeployContext): Record<string, string> {
  checkContext(ctx);
  return {
    'kserve/inferenceservice.yaml': yaml(inferenceService(ctx)),
    'kserve/servingruntime.yaml': yaml(servingRuntime(ctx)),
  };
}
