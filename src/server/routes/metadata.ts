/**
 * Server and model metadata (KServe v2), plus Triton's model configuration and statistics
 * extensions: the completed config and the scheduler's counters per version.
 */
import type { FastifyPluginAsync } from 'fastify';
import { NimifyError } from '../../runtime/errors';
import { checkModelName, checkVersion, type ModelRepository, type ServedVersion } from '../../repository/repository';
import { version } from '../../runtime/version';
import { requestDurationsNs } from '../admission';
import type { NimifyContext } from '../context';
import { tritonModelConfig } from '../grpc/model-config';
import { errorResponses, modelMetadataResponse, modelParams, serverMetadataResponse } from '../schemas';

export const EXTENSIONS = ['binary_tensor_data', 'model_repository', 'model_configuration', 'statistics', 'parameters'];

type Params = { model_name: string; model_version?: string };

type Repository = ModelRepository;
const resolveParams = (repository: Repository, p: Params): ServedVersion => repository.resolve(checkModelName(p.model_name), p.model_version === undefined ? undefined : checkVersion(p.model_version));

/**
 * The version model metadata describes: the one requests go to, else — the model is not ready
 * (loading, or it failed) — the version asked for or the newest, whenever its inputs and
 * outputs are known: reading them is how a user writes the warmup or config that makes it load.
 */
function describedVersion(repository: Repository, p: Params): ServedVersion {
  try {
    return resolveParams(repository, p);
  } catch (err) {
    if (!(err instanceof NimifyError) || err.code !== 'NOT_READY') throw err;
    const known = repository.versions(p.model_name).find((v) => v.io !== null && (p.model_version === undefined || v.version === p.model_version));
    if (known === undefined) throw err;
    return known;
  }
}

/** Model metadata (KServe v2), shared by the HTTP route and gRPC ModelMetadata. */
export function modelMetadata(repository: Repository, p: Params) {
  const v = describedVersion(repository, p);
  const io = v.io!; // the completed config's for a ready version
  return {
    name: v.name,
    versions: repository.versions(v.name).filter((x) => x.ready).map((x) => x.version),
    platform: v.config?.platform ?? 'onnxruntime_onnx',
    inputs: io.inputs,
    outputs: io.outputs,
    // Not in the protocol: clients ignore unknown fields, people read why the model is not ready.
    ...(v.ready ? {} : { state: v.state, ...(v.reason ? { reason: v.reason } : {}) }),
  };
}

/**
 * Triton's statistics extension for one version (shared by the HTTP routes and gRPC
 * ModelStatistics), from model.stats() (src/runtime/binding.ts
 * RequestStats defines the counts; the repository zeroes them after the warmup):
 * - success.count: infer() requests that resolved; fail.count: the others that ended — refused
 *   at admission (QUEUE_FULL: rejected, never admitted), failed in ONNX Runtime, timed out, or
 *   cancelled (Triton's REJECTED, BACKEND, CANCELED reasons). Requests still queued or running
 *   are in neither. Requests refused before reaching the model (400, 401, shed 503) are not
 *   model statistics: they are in the Prometheus failure counter only.
 * - queue: requests that left the queue for a batch, and their summed wait.
 * - compute_input / compute_infer / compute_output: per execution (a batch), not per request
 *   as Triton attributes a batch's time to each of its requests: the scheduler sums time per
 *   batch only. batch_stats gives the executions per batch size.
 * - last_inference: when the last request that reached the model (or was answered from the
 *   cache) ended, ms since the epoch; 0 before any.
 * - inference_count: rows run (a batch of n counts n); execution_count: executions.
 * - success.ns / fail.ns: summed receipt-to-outcome time of the inference routes' requests
 *   that succeeded / failed on this version after reaching the model (admission.ts; the
 *   Prometheus counter nv_inference_request_duration_us sums every request). A predict request
 *   whose items run in several chunks is one request here and several in the counts.
 * Keys Triton does not have (failure reasons, pending, in_flight, percentiles) sit beside
 * Triton's, never inside its {count, ns} entries.
 */
export function versionStats(ctx: NimifyContext, v: ServedVersion) {
  const s = v.model!.stats();
  const ns = (us: number) => Math.round(us * 1000);
  const durations = requestDurationsNs(v);
  // Cache hits are successful requests that never reached the model (Triton counts them in success too).
  const cache = ctx.cache?.counts(v) ?? { hits: 0, hitNs: 0, misses: 0, missNs: 0 };
  return {
    name: v.name,
    version: v.version,
    last_inference: durations.lastInferenceMs,
    inference_count: Object.entries(s.batchSizeHistogram).reduce((a, [size, n]) => a + Number(size) * n, 0),
    execution_count: s.batches,
    pending: s.queueDepth,
    in_flight: s.inFlight,
    inference_stats: {
      success: { count: s.succeeded + cache.hits, ns: durations.success },
      fail: { count: s.rejected + s.failed + s.expired + s.cancelled, ns: durations.fail },
      queue: { count: s.queueTimeUs.count, ns: ns(s.queueTimeUs.sum) },
      compute_input: { count: s.batches, ns: ns(s.computeInputUs) },
      compute_infer: { count: s.batches, ns: ns(s.computeInferUs) },
      compute_output: { count: s.batches, ns: ns(s.computeOutputUs) },
      cache_hit: { count: cache.hits, ns: Math.round(cache.hitNs) },
      cache_miss: { count: cache.misses, ns: Math.round(cache.missNs) },
    },
    latency_us: { queue: { p50: s.queueTimeUs.p50, p99: s.queueTimeUs.p99 }, compute_infer: { p50: s.computeTimeUs.p50, p99: s.computeTimeUs.p99 } },
    fail_reasons: { rejected: s.rejected, failed: s.failed, expired: s.expired, cancelled: s.cancelled },
    batch_stats: Object.entries(s.batchSizeHistogram).map(([size, n]) => ({ batch_size: Number(size), compute_infer: { count: n } })),
  };
}

const metadata: FastifyPluginAsync = async (app) => {
  const { repository } = app.nimify;
  const config = { nimifyArea: 'metadata' as const };

  const server = async () => ({ name: 'nimify', version, extensions: EXTENSIONS });
  const serverSchema = { summary: 'Server metadata', tags: ['metadata'], response: { 200: serverMetadataResponse } };
  app.get('/v2', { config, schema: serverSchema }, server);
  app.get('/v2/', { config, schema: { ...serverSchema, hide: true } }, server);

  const resolve = (p: Params): ServedVersion => resolveParams(repository, p);

  const model = async (request: { params: Params }) => modelMetadata(repository, request.params);
  const modelSchema = { summary: 'Model metadata', tags: ['metadata'], params: modelParams, response: { 200: modelMetadataResponse, 404: errorResponses[404], 503: errorResponses[503] } };
  app.get<{ Params: Params }>('/v2/models/:model_name', { config, schema: modelSchema }, model);
  app.get<{ Params: Params }>('/v2/models/:model_name/versions/:model_version', { config, schema: modelSchema }, model);

  // nimify's completed config, with Triton's ModelConfig fields beside it (max_batch_size, input,
  // output, dynamic_batching, instance_group, …; no key in common but name and platform, which
  // agree): Triton's tools read those from this route (perf_analyzer's default HTTP protocol takes
  // max_batch_size from it to know that dim 0 is the batch dim).
  const modelConfig = async (request: { params: Params }) => {
    const v = resolve(request.params);
    return { ...tritonModelConfig(v), ...v.config! };
  };
  const configSchema = { summary: 'Completed model configuration (config.json + defaults + model metadata), with Triton\'s ModelConfig fields', tags: ['metadata'], params: modelParams, response: { 404: errorResponses[404], 503: errorResponses[503] } };
  app.get<{ Params: Params }>('/v2/models/:model_name/config', { config, schema: configSchema }, modelConfig);
  app.get<{ Params: Params }>('/v2/models/:model_name/versions/:model_version/config', { config, schema: configSchema }, modelConfig);

  const statsSchema = { summary: 'Model statistics (Triton statistics extension)', tags: ['metadata'], response: { 404: errorResponses[404], 503: errorResponses[503] } };
  app.get('/v2/models/stats', { config, schema: statsSchema }, async () => ({
    model_stats: repository.names().flatMap((name) => repository.versions(name).filter((v) => v.ready && v.model !== null).map((v) => versionStats(app.nimify, v))),
  }));
  app.get<{ Params: Params }>('/v2/models/:model_name/stats', { config, schema: { ...statsSchema, params: modelParams } }, async (request) => {
    const name = checkModelName(request.params.model_name);
    repository.resolve(name);
    return { model_stats: repository.versions(name).filter((v) => v.ready && v.model !== null).map((v) => versionStats(app.nimify, v)) };
  });
  app.get<{ Params: Params }>('/v2/models/:model_name/versions/:model_version/stats', { config, schema: { ...statsSchema, params: modelParams } }, async (request) => ({
    model_stats: [versionStats(app.nimify, resolve(request.params))],
  }));
};

export default metadata;
