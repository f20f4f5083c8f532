/**
 * Options of buildServer() and nimifyPlugin, validated once with the same vocabulary of checks as
 * the runtime API (a misspelt option fails with INVALID_ARGUMENT naming it).
 */
import { checkPreprocessPoolOptions, type PreprocessPoolOptions } from '../pipeline/pool';
import { JSON_POOL_MAX_BYTES, JSON_POOL_MAX_QUEUE } from '../protocol/json-pool';
import type { Registry } from 'prom-client';
import { NimifyError } from '../runtime/errors';
import { INFER_TIMEOUT_MS_DEFAULT, type ModelDefaults } from '../repository/config';
import type { ControlMode, ModelRepository } from '../repository/repository';
import { expectBoolean, expectInteger, expectKnownKeys, expectOneOf, expectPlainObject, expectString, invalid } from '../runtime/validate';
import { BREAKER_DEFAULTS, type BreakerOptions } from './breaker';
import { checkTracingOptions, type TracingOptions } from './tracing';

export type AuthArea = 'health' | 'metrics' | 'docs';

export interface RateLimitOptions {
  /** Requests per window per client (API key when one is sent, else IP). */
  max: number;
  /** Window length in ms (default 60000). */
  timeWindowMs?: number;
  /** Per-API-key overrides of `max`. */
  perKey?: Record<string, number>;
}

export interface SheddingOptions {
  /** Shed (503) while event-loop delay is above this, in ms (default 200; 0 = off). */
  maxEventLoopDelayMs?: number;
  /** Shed while the V8 heap uses more than this many bytes (default off). */
  maxHeapUsedBytes?: number;
  /** Shed a model's requests while it has this many pending (default: 90 % of its maxQueueSize, else 1024). */
  maxPendingPerModel?: number;
  /** Most inference requests served at once by the whole server (default 4096). */
  maxConcurrentRequests?: number;
  /** Retry-After in seconds on a shed response (default 1). */
  retryAfterSeconds?: number;
}

export interface NimifyPluginOptions {
  /** A repository directory or a single .onnx path (opened and closed by the plugin), or an open ModelRepository (owned by the caller). */
  repository: string | ModelRepository;
  controlMode?: ControlMode;
  /** Models loaded at start in explicit mode ('*' = all). */
  startupModels?: string[];
  pollIntervalMs?: number;
  /** Defaults for every model's config (CLI flags); each model's config.json wins. */
  modelDefaults?: ModelDefaults;
  /** Bearer API keys; when set, every route except the `authExempt` areas needs one. Default: NIMIFY_API_KEYS (comma-separated), else none. */
  apiKeys?: string[];
  /**
   * Areas left open when API keys are set (default ['health', 'docs']): 'health' is the server's
   * /v2/health/live and /v2/health/ready (probes; they name no model while open; the per-model ready
   * routes need a key like metadata), 'docs' the OpenAPI document and UI. 'metrics' opens /metrics,
   * which names every model: only for a Prometheus scraper that cannot send a key.
   */
  authExempt?: AuthArea[];
  /** @fastify/rate-limit on inference and repository routes; default off. */
  rateLimit?: RateLimitOptions | false;
  /** A circuit breaker per model; default BREAKER_DEFAULTS (breaker.ts: 5 consecutive failures, 10 s open). */
  breaker?: BreakerOptions | false;
  /** Load shedding; default on with the defaults in SheddingOptions. */
  shedding?: SheddingOptions | false;
  /** Default per-request inference timeout in ms (a model's config.timeoutMs and the request's `timeout` parameter win). Default 30000. */
  inferTimeoutMs?: number;
  /** prom-client registry to register into (default: a new one, exposed as fastify.nimify.metrics.registry). */
  registry?: Registry;
  /** Register process/Node metrics (default true). */
  processMetrics?: boolean;
  /** Serve GET /metrics (default true). */
  metricsRoute?: boolean;
  /** OpenAPI at /documentation/json and a UI at /documentation (default true). */
  docs?: boolean;
  /** JSON inference bodies of at least this many bytes are decoded in a worker thread (default 262144; 0 = never). */
  jsonWorkerBytes?: number;
  /** Large JSON bodies that may wait for a decode worker beyond those being decoded (default JSON_POOL_MAX_QUEUE, 256); one more is 503 QUEUE_FULL with Retry-After. */
  jsonWorkerMaxQueue?: number;
  /**
   * Bytes of large JSON bodies the decode pool may hold at once — decoding, waiting, and on their
   * way (counted from Content-Length when admitted, before the body is read) — default
   * JSON_POOL_MAX_BYTES (256 MiB); beyond it 503 QUEUE_FULL with Retry-After.
   */
  jsonWorkerMaxQueueBytes?: number;
  /**
   * Inflated bytes of compressed request bodies (Content-Encoding gzip/deflate) the server holds
   * at once, from inflation until the response is sent (default 256 MiB, never below bodyLimit):
   * a small compressed body can inflate a thousandfold; past this, 503 OVERLOADED with Retry-After.
   */
  maxInflatedBytes?: number;
  /**
   * The response cache's byte budget, shared by every model whose config enables it
   * (`responseCache: { enable: true }`): least recently used results are evicted past it.
   * Default 0: no cache.
   */
  responseCacheBytes?: number;
  /** The preprocessing pool of the predict route (image decoding, tokenization): worker threads (default: the core count) and tasks queued before 503 QUEUE_FULL (default 256). */
  preprocess?: PreprocessPoolOptions;
  /**
   * OpenTelemetry tracing of inference requests (src/server/tracing.ts): `{ exporter: 'otlp', url }`
   * exports through nimify's own provider, `{ tracerProvider }` uses the caller's. Default false:
   * off, no OpenTelemetry module loaded and nothing recorded per request.
   */
  tracing?: TracingOptions | false;
}

export interface ServerOptions extends NimifyPluginOptions {
  /** Fastify logger: true / false / pino options (default: info level). Authorization headers are redacted. */
  logger?: boolean | Record<string, unknown>;
  /**
   * Log every request and response (Fastify's access log, at info). Default false: two synchronous
   * log lines per request are a large share of a small request's cost (on the 2-core VM, the tiny
   * model served ~30 % more req/s at 64 connections without them). Refusals (5xx) and internal
   * faults are logged either way, with their request id.
   */
  logRequests?: boolean;
  /** Largest request body in bytes (default 64 MiB). */
  bodyLimit?: number;
  /** Time allowed to receive a whole request, in ms (default 30000; 0 = none). */
  requestTimeoutMs?: number;
  /** Idle keep-alive timeout in ms (default 72000, above common load-balancer idles). */
  keepAliveTimeoutMs?: number;
  /**
   * Serve the common inference request (POST …/infer, a sized body that is not compressed) from
   * Node's HTTP server without Fastify's request machinery, through the same admission,
   * validation, inference and error answers (fast-lane.ts; a tiny model served 1.2 × the requests
   * per second of the route on the 2-core VM, `npm run bench -- http`). Default false:
   * hooks or plugins you add to the returned instance do not see the requests it serves. `nimify
   * serve` sets it (--no-fast-lane turns it off). Off by itself with tracing, a rate limit or
   * logRequests; applies once the server listens (inject() always goes through Fastify).
   */
  fastLane?: boolean;
}

/** Default of maxInflatedBytes. */
export const MAX_INFLATED_BYTES = 256 * 1024 * 1024;

export const PLUGIN_KEYS = [
  'repository', 'controlMode', 'startupModels', 'pollIntervalMs', 'modelDefaults', 'apiKeys', 'authExempt', 'rateLimit', 'breaker',
  'shedding', 'inferTimeoutMs', 'registry', 'processMetrics', 'metricsRoute', 'docs', 'jsonWorkerBytes', 'jsonWorkerMaxQueue', 'jsonWorkerMaxQueueBytes', 'maxInflatedBytes', 'responseCacheBytes', 'preprocess', 'tracing',
] as const;
export const SERVER_KEYS = [...PLUGIN_KEYS, 'logger', 'logRequests', 'bodyLimit', 'requestTimeoutMs', 'keepAliveTimeoutMs', 'fastLane'] as const;

export interface CheckedPluginOptions extends NimifyPluginOptions {
  apiKeys: string[];
  authExempt: AuthArea[];
  rateLimit: RateLimitOptions | false;
  breaker: Required<BreakerOptions> | false;
  shedding: Required<Omit<SheddingOptions, 'maxHeapUsedBytes' | 'maxPendingPerModel'>> & Pick<SheddingOptions, 'maxHeapUsedBytes' | 'maxPendingPerModel'> | false;
  inferTimeoutMs: number;
  jsonWorkerBytes: number;
  jsonWorkerMaxQueue: number;
  jsonWorkerMaxQueueBytes: number;
  maxInflatedBytes: number;
  responseCacheBytes: number;
  preprocess: PreprocessPoolOptions;
  tracing: TracingOptions | false;
}

/** Validates plugin options (keys checked by the caller: the plugin accepts Fastify's own too). */
export function checkPluginOptions(o: Record<string, unknown>, env: NodeJS.ProcessEnv = process.env): CheckedPluginOptions {
  if (typeof o.repository !== 'string' && (typeof o.repository !== 'object' || o.repository === null || typeof (o.repository as ModelRepository).resolve !== 'function')) {
    throw invalid('options.repository', 'a repository directory, an .onnx path or a ModelRepository', o.repository);
  }
  if (typeof o.repository === 'string') expectString('options.repository', o.repository);
  if (o.controlMode !== undefined) expectOneOf('options.controlMode', o.controlMode, ['none', 'explicit', 'poll'] as const);
  if (o.startupModels !== undefined) {
    if (!Array.isArray(o.startupModels)) throw invalid('options.startupModels', 'an array of model names', o.startupModels);
    o.startupModels.forEach((m, i) => expectString(`options.startupModels[${i}]`, m));
  }
  if (o.pollIntervalMs !== undefined) expectInteger('options.pollIntervalMs', o.pollIntervalMs, 10);
  if (o.modelDefaults !== undefined) expectPlainObject('options.modelDefaults', o.modelDefaults);

  let apiKeys: string[] = [];
  if (o.apiKeys !== undefined) {
    if (!Array.isArray(o.apiKeys)) throw invalid('options.apiKeys', 'an array of API key strings', o.apiKeys);
    apiKeys = o.apiKeys.map((k, i) => expectString(`options.apiKeys[${i}]`, k));
  } else if (env.NIMIFY_API_KEYS) {
    apiKeys = env.NIMIFY_API_KEYS.split(',').map((k) => k.trim()).filter(Boolean);
  }
  for (const [i, k] of apiKeys.entries()) {
    if (k.length < 8 || /\s/.test(k)) throw new NimifyError('INVALID_ARGUMENT', `options.apiKeys[${i}]: expected at least 8 characters without spaces, received a key of ${k.length} characters`);
  }
  let authExempt: AuthArea[] = ['health', 'docs'];
  if (o.authExempt !== undefined) {
    if (!Array.isArray(o.authExempt)) throw invalid('options.authExempt', "an array of 'health', 'metrics', 'docs'", o.authExempt);
    authExempt = o.authExempt.map((a, i) => expectOneOf(`options.authExempt[${i}]`, a, ['health', 'metrics', 'docs'] as const));
  }

  let rateLimit: RateLimitOptions | false = false;
  if (o.rateLimit !== undefined && o.rateLimit !== false) {
    const r = expectPlainObject('options.rateLimit', o.rateLimit);
    expectKnownKeys('options.rateLimit', r, ['max', 'timeWindowMs', 'perKey']);
    rateLimit = { max: expectInteger('options.rateLimit.max', r.max, 1), timeWindowMs: r.timeWindowMs === undefined ? 60_000 : expectInteger('options.rateLimit.timeWindowMs', r.timeWindowMs, 1) };
    if (r.perKey !== undefined) {
      const per = expectPlainObject('options.rateLimit.perKey', r.perKey);
      rateLimit.perKey = Object.fromEntries(Object.entries(per).map(([k, v]) => [k, expectInteger(`options.rateLimit.perKey[${JSON.stringify(k.slice(0, 4) + '…')}]`, v, 1)]));
    }
  }

  let breaker: CheckedPluginOptions['breaker'] = { ...BREAKER_DEFAULTS };
  if (o.breaker === false) breaker = false;
  else if (o.breaker !== undefined) {
    const b = expectPlainObject('options.breaker', o.breaker);
    expectKnownKeys('options.breaker', b, ['failureThreshold', 'resetTimeoutMs']);
    breaker = {
      failureThreshold: b.failureThreshold === undefined ? BREAKER_DEFAULTS.failureThreshold : expectInteger('options.breaker.failureThreshold', b.failureThreshold, 1),
      resetTimeoutMs: b.resetTimeoutMs === undefined ? BREAKER_DEFAULTS.resetTimeoutMs : expectInteger('options.breaker.resetTimeoutMs', b.resetTimeoutMs, 1),
    };
  }

  let shedding: CheckedPluginOptions['shedding'] = { maxEventLoopDelayMs: 200, maxConcurrentRequests: 4096, retryAfterSeconds: 1 };
  if (o.shedding === false) shedding = false;
  else if (o.shedding !== undefined) {
    const s = expectPlainObject('options.shedding', o.shedding);
    expectKnownKeys('options.shedding', s, ['maxEventLoopDelayMs', 'maxHeapUsedBytes', 'maxPendingPerModel', 'maxConcurrentRequests', 'retryAfterSeconds']);
    shedding = {
      maxEventLoopDelayMs: s.maxEventLoopDelayMs === undefined ? 200 : expectInteger('options.shedding.maxEventLoopDelayMs', s.maxEventLoopDelayMs, 0),
      maxConcurrentRequests: s.maxConcurrentRequests === undefined ? 4096 : expectInteger('options.shedding.maxConcurrentRequests', s.maxConcurrentRequests, 1),
      retryAfterSeconds: s.retryAfterSeconds === undefined ? 1 : expectInteger('options.shedding.retryAfterSeconds', s.retryAfterSeconds, 0, 3600),
    };
    if (s.maxHeapUsedBytes !== undefined) shedding.maxHeapUsedBytes = expectInteger('options.shedding.maxHeapUsedBytes', s.maxHeapUsedBytes, 1);
    if (s.maxPendingPerModel !== undefined) shedding.maxPendingPerModel = expectInteger('options.shedding.maxPendingPerModel', s.maxPendingPerModel, 1);
  }
  const inferTimeoutMs = o.inferTimeoutMs === undefined ? INFER_TIMEOUT_MS_DEFAULT : expectInteger('options.inferTimeoutMs', o.inferTimeoutMs, 1);
  if (o.processMetrics !== undefined) expectBoolean('options.processMetrics', o.processMetrics);
  if (o.metricsRoute !== undefined) expectBoolean('options.metricsRoute', o.metricsRoute);
  if (o.docs !== undefined) expectBoolean('options.docs', o.docs);
  const jsonWorkerBytes = o.jsonWorkerBytes === undefined ? 256 * 1024 : expectInteger('options.jsonWorkerBytes', o.jsonWorkerBytes, 0);
  const jsonWorkerMaxQueue = o.jsonWorkerMaxQueue === undefined ? JSON_POOL_MAX_QUEUE : expectInteger('options.jsonWorkerMaxQueue', o.jsonWorkerMaxQueue, 0, 1_000_000);
  const jsonWorkerMaxQueueBytes = o.jsonWorkerMaxQueueBytes === undefined ? JSON_POOL_MAX_BYTES : expectInteger('options.jsonWorkerMaxQueueBytes', o.jsonWorkerMaxQueueBytes, 1);
  const maxInflatedBytes = o.maxInflatedBytes === undefined ? MAX_INFLATED_BYTES : expectInteger('options.maxInflatedBytes', o.maxInflatedBytes, 1);
  const responseCacheBytes = o.responseCacheBytes === undefined ? 0 : expectInteger('options.responseCacheBytes', o.responseCacheBytes, 0);
  const preprocess = o.preprocess === undefined ? {} : checkPreprocessPoolOptions('options.preprocess', o.preprocess);
  const tracing = o.tracing === undefined ? false : checkTracingOptions('options.tracing', o.tracing);
  return { ...(o as unknown as NimifyPluginOptions), apiKeys, authExempt, rateLimit, breaker, shedding, inferTimeoutMs, jsonWorkerBytes, jsonWorkerMaxQueue, jsonWorkerMaxQueueBytes, maxInflatedBytes, responseCacheBytes, preprocess, tracing };
}
