/**
 * Validation of rendered manifests without a cluster, for test/deploy/*:
 * - Kubernetes kinds: `kubernetes-models` (the OpenAPI schemas compiled: types, formats, required
 *   fields) and a round trip through `@kubernetes/client-node`'s ObjectSerializer, which keeps
 *   only the fields the type declares: a field that does not survive it is unknown (a typo the
 *   API server would drop or, with strict field validation, refuse).
 * - KEDA and Prometheus Operator kinds: their `@kubernetes-models/*` packages (types, required)
 *   plus the pinned CRD subsets of crd-schemas.ts (unknown fields); KServe kinds: the pinned
 *   subsets only (no npm model exists). Core types embedded in them (containers, volumes,
 *   tolerations, metadata) go through the Kubernetes checks above.
 *
 * The packages are ESM devDependencies: loaded with import() from the project's node_modules.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import Ajv, { type ValidateFunction } from 'ajv';
import { ROOT } from '../helpers';
import * as crd from './crd-schemas';

const MODULES = [path.join(ROOT, 'node_modules')].find((d) => fs.existsSync(path.join(d, 'kubernetes-models')));

async function load(rel: string): Promise<Record<string, unknown>> {
  if (MODULES === undefined) throw new Error('k8s-validate: expected kubernetes-models, @kubernetes-models/keda, @kubernetes-models/prometheus-operator and @kubernetes/client-node in node_modules (devDependencies), received none');
  return (await import(path.join(MODULES, rel))) as Record<string, unknown>;
}

type Validate = (data: unknown) => boolean;
interface Serializer {
  serialize(data: unknown, type: string): unknown;
  deserialize(data: unknown, type: string): unknown;
}

interface CoreKind {
  model: string;
  type: string;
}

const CORE: Record<string, CoreKind> = {
  'apps/v1/Deployment': { model: 'kubernetes-models/apps/v1/Deployment.js', type: 'V1Deployment' },
  'v1/Service': { model: 'kubernetes-models/v1/Service.js', type: 'V1Service' },
  'v1/ConfigMap': { model: 'kubernetes-models/v1/ConfigMap.js', type: 'V1ConfigMap' },
  'policy/v1/PodDisruptionBudget': { model: 'kubernetes-models/policy/v1/PodDisruptionBudget.js', type: 'V1PodDisruptionBudget' },
  'autoscaling/v2/HorizontalPodAutoscaler': { model: 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler.js', type: 'V2HorizontalPodAutoscaler' },
};

const CUSTOM: Record<string, { model?: string; schema: object; embedded: Array<[string[], string, string]> }> = {
  'keda.sh/v1alpha1/ScaledObject': { model: '@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject.mjs', schema: crd.scaledObject, embedded: [] },
  'monitoring.coreos.com/v1/ServiceMonitor': {
    model: '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor.js',
    schema: crd.serviceMonitor,
    embedded: [[['spec', 'selector'], 'V1LabelSelector', 'IoK8sApimachineryPkgApisMetaV1LabelSelector']],
  },
  'serving.kserve.io/v1alpha1/ServingRuntime': {
    schema: crd.servingRuntime,
    embedded: [
      [['spec', 'containers', '*'], 'V1Container', 'IoK8sApiCoreV1Container'],
      [['spec', 'volumes', '*'], 'V1Volume', 'IoK8sApiCoreV1Volume'],
      [['spec', 'tolerations', '*'], 'V1Toleration', 'IoK8sApiCoreV1Toleration'],
    ],
  },
  'serving.kserve.io/v1beta1/InferenceService': { schema: crd.inferenceService, embedded: [] },
};

/** Paths of `original` that `roundTripped` lacks or holds differently: the fields the type does not know. */
export function lostFields(original: unknown, roundTripped: unknown, at = ''): string[] {
  if (Array.isArray(original)) {
    if (!Array.isArray(roundTripped)) return [`${at}: not kept as an array`];
    return original.flatMap((v, i) => lostFields(v, roundTripped[i], `${at}[${i}]`));
  }
  if (original !== null && typeof original === 'object') {
    if (roundTripped === null || typeof roundTripped !== 'object') return [`${at}: not kept as an object`];
    return Object.entries(original).flatMap(([k, v]) =>
      (roundTripped as Record<string, unknown>)[k] === undefined ? [`${at}.${k}: unknown field`] : lostFields(v, (roundTripped as Record<string, unknown>)[k], `${at}.${k}`),
    );
  }
  return original === roundTripped ? [] : [`${at}: ${JSON.stringify(original)} became ${JSON.stringify(roundTripped)}`];
}

let serializer: Serializer | undefined;
const ajv = new Ajv({ allErrors: true, strict: true, allowUnionTypes: true });
const compiled = new Map<object, ValidateFunction>();

async function roundTrip(obj: unknown, type: string, at: string): Promise<string[]> {
  serializer ??= (await load('@kubernetes/client-node/dist/serializer.js')).ObjectSerializer as Serializer;
  const back = serializer.serialize(serializer.deserialize(structuredClone(obj), type), type);
  return lostFields(obj, JSON.parse(JSON.stringify(back)), at);
}

function modelErrors(validate: Validate, obj: unknown, at: string): string[] {
  if (validate(obj)) return [];
  const errors = (validate as unknown as { errors?: Array<{ instancePath: string; message?: string; params?: unknown }> }).errors ?? [];
  return errors.map((e) => `${at}${e.instancePath.replace(/\//g, '.')}: ${e.message ?? JSON.stringify(e.params)}`);
}

async function schemaValidator(name: string): Promise<Validate> {
  const mod = await load(`kubernetes-models/_schemas/${name}.js`).catch(() => load(`@kubernetes-models/apimachinery/_schemas/${name}.js`));
  return mod.validate as Validate;
}

function pick(obj: unknown, keys: string[], at: string): Array<[unknown, string]> {
  if (keys.length === 0) return [[obj, at]];
  const [k, ...rest] = keys;
  if (obj === null || typeof obj !== 'object') return [];
  if (k === '*') return Array.isArray(obj) ? obj.flatMap((v, i) => pick(v, rest, `${at}[${i}]`)) : [];
  const v = (obj as Record<string, unknown>)[k!];
  return v === undefined ? [] : pick(v, rest, `${at}.${k}`);
}

/** Every problem found in one rendered object (empty: valid), each naming the path. */
export async function validateObject(obj: Record<string, unknown>): Promise<string[]> {
  const id = `${obj.apiVersion}/${obj.kind}`;
  const name = `${obj.kind}/${(obj.metadata as { name?: string } | undefined)?.name ?? '?'}`;
  const core = CORE[id];
  if (core !== undefined) {
    const Model = (await load(core.model))[String(obj.kind)] as { validate?: Validate } & (new (d: unknown) => { validate(): void });
    const errors: string[] = [];
    try {
      new Model(obj).validate();
    } catch (err) {
      errors.push(`${name}: ${(err as Error).message}`);
    }
    return [...errors, ...(await roundTrip(obj, core.type, name))];
  }
  const custom = CUSTOM[id];
  if (custom === undefined) return [`${name}: no schema for ${id}`];
  const errors: string[] = [];
  if (custom.model !== undefined) {
    const Model = (await load(custom.model))[String(obj.kind)] as new (d: unknown) => { validate(): void };
    try {
      new Model(obj).validate();
    } catch (err) {
      errors.push(`${name}: ${(err as Error).message}`);
    }
  }
  let v = compiled.get(custom.schema);
  if (v === undefined) compiled.set(custom.schema, (v = ajv.compile(custom.schema)));
  errors.push(...modelErrors(v, obj, name));
  errors.push(...(await roundTrip(obj.metadata, 'V1ObjectMeta', `${name}.metadata`)));
  for (const [keys, type, schema] of custom.embedded) {
    const check = await schemaValidator(schema);
    for (const [part, at] of pick(obj, keys, name)) {
      errors.push(...modelErrors(check, part, at), ...(await roundTrip(part, type, at)));
    }
  }
  return errors;
}
