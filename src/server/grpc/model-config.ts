/**
 * A served version's completed config (config.json + defaults + model metadata) as Triton's
 * `inference.ModelConfig` message (proto/model_config.proto), for the ModelConfig RPC. Only
 * what nimify has an equivalent for is filled in; the HTTP config route answers nimify's own
 * completed config instead (GET /v2/models/{m}/config).
 */
import type { CompletedConfig, VersionPolicy } from '../../repository/config';
import type { ServedVersion } from '../../repository/repository';
import { BATCHING_DEFAULTS } from '../../runtime/options';

function versionPolicy(p: VersionPolicy): Record<string, unknown> {
  if (p === 'all') return { all: {} };
  if ('specific' in p) return { specific: { versions: p.specific } };
  return { latest: { num_versions: p.latest } };
}

/** dims as Triton's config lists them: without the batch dim when the model batches. */
function tensors(list: CompletedConfig['inputs'], batched: boolean, dimsField: 'dims'): Array<Record<string, unknown>> {
  return list.map((t) => ({ name: t.name, data_type: `TYPE_${t.datatype === 'BYTES' ? 'STRING' : t.datatype}`, [dimsField]: batched ? t.shape.slice(1) : t.shape.slice() }));
}

/** The ModelConfig message of a version with a completed config. */
export function tritonModelConfig(v: ServedVersion): Record<string, unknown> {
  const c = v.config!;
  const b = c.batching;
  const batched = b !== false && b.batchDim === true;
  const out: Record<string, unknown> = {
    name: c.name,
    platform: c.platform,
    backend: 'onnxruntime',
    version_policy: versionPolicy(c.versionPolicy),
    max_batch_size: batched ? (b.maxBatchSize ?? BATCHING_DEFAULTS.maxBatchSize) : 0,
    input: tensors(c.inputs, batched, 'dims'),
    output: tensors(c.outputs, batched, 'dims'),
    instance_group: [{ name: `${c.name}_0`, kind: v.model?.onDevice === true ? 'KIND_GPU' : 'KIND_CPU', count: c.instances }],
    default_model_filename: 'model.onnx',
    response_cache: { enable: c.responseCache?.enable === true },
  };
  if (b !== false) {
    out.dynamic_batching = {
      preferred_batch_size: b.preferredBatchSizes ?? [],
      max_queue_delay_microseconds: b.maxQueueDelayMicros ?? BATCHING_DEFAULTS.maxQueueDelayMicros,
      // nimify's two levels: 1 high, 2 normal (the request's `priority` parameter).
      priority_levels: 2,
      default_priority_level: 2,
      default_queue_policy: {
        max_queue_size: b.maxQueueSize ?? BATCHING_DEFAULTS.maxQueueSize,
        default_timeout_microseconds: c.timeoutMs === undefined ? 0 : Math.round(c.timeoutMs * 1000),
        allow_timeout_override: true,
      },
    };
  }
  return out;
}
