/**
 * Validation of loadModel() and infer() options, and their translation into what the addon
 * reads (enums as numbers).
 */
import {
  expectBoolean,
  expectInteger,
  expectKnownKeys,
  expectOneOf,
  expectPlainObject,
  expectPositiveNumber,
  expectString,
  invalid,
} from './validate';
import type { Tensor } from './tensor';
import type { PipelineOptions } from '../pipeline/pipeline';
import { toProviderRequests, type ExecutionProvider } from './providers';
import { RUN_TIMING_LENGTH } from './binding';

export type { ExecutionProvider } from './providers';

export interface LoadOptions {
  /**
   * Execution providers in order of preference, e.g. ['cuda', 'cpu'] or [{ name: 'cuda', deviceId: 1,
   * required: true }] (src/runtime/providers.ts lists each provider's options). One that cannot be
   * used (library missing, no device) is skipped with a warning, or fails the load with
   * EP_UNAVAILABLE when `required`; the CPU provider is always the last resort.
   * `model.providers` says what the session uses.
   */
  executionProviders?: ExecutionProvider[];
  /** Threads ORT uses inside one operator (0 = ORT default: one per core). */
  intraOpNumThreads?: number;
  /** Threads ORT uses across operators in 'parallel' execution mode (0 = default). */
  interOpNumThreads?: number;
  graphOptimizationLevel?: 'disabled' | 'basic' | 'extended' | 'all';
  executionMode?: 'sequential' | 'parallel';
  /** Where ORT saves the optimized graph after loading. */
  optimizedModelFilePath?: string;
  /** Fixes symbolic dims by name, e.g. { batch: 1 }. */
  freeDimensionOverrides?: Record<string, number>;
  /** ORT log severity for this session: 0 verbose, 1 info, 2 warning, 3 error, 4 fatal. */
  logSeverityLevel?: 0 | 1 | 2 | 3 | 4;
  /**
   * Whether threads busy-wait for the next run instead of sleeping (default: true): ORT's
   * thread-pool threads, and the batching scheduler's idle instance thread, which polls for a
   * few microseconds before it sleeps. false gives the cores back between runs: better when the
   * JS thread has work of its own (a server) on a small machine; `nimify serve` uses false
   * unless told otherwise.
   */
  allowSpinning?: boolean;
  /**
   * ONNX Runtime's CPU memory arena (default: true, ORT's default). The arena keeps the largest
   * memory a run ever needed for the model's life: after one request with a huge shape the
   * process stays that large. false returns each tensor's memory when ORT frees it: no cost
   * measurable on small models, ~7 % per run on a ResNet-18-class batch of 32 (622 vs 664 ms:
   * its large activations are mapped and faulted in again on every run; bench/results/memory.md);
   * `nimify serve` uses false unless told otherwise.
   */
  memoryArena?: boolean;
  /**
   * Run infer() on the JS thread itself, with no thread hop, when the run is predicted (from
   * this model's measured runs) to take at most this many µs. Default 100; 0 = never (infer()
   * always runs off the main thread). For tiny models a run is shorter than the two thread hops
   * it saves: a lone request (a sequential client) runs inside infer(), for up to this many µs
   * per event-loop turn; with `batching`, a batch runs at the end of the turn that queued it.
   * The first runs, inputs much larger than recent ones and models on a GPU always run off the
   * main thread; so do requests with a `signal` or `timeoutMs` to a model without a scheduler
   * (their timer and signal could not act during a run that took longer than predicted).
   */
  inlineBelowMicros?: number;
  /**
   * Number of ORT sessions of the model that run requests concurrently (default 1). Each has
   * its own scheduler thread, ORT thread pool and memory. With more than one, infer() goes
   * through the native scheduler even without `batching`.
   */
  instances?: number;
  /** Dynamic batching (absent: every request runs on its own). See BatchingOptions. */
  batching?: BatchingOptions;
  /**
   * Pre- and postprocessing for model.predict(): the `preprocess` / `postprocess` sections a
   * config.json may hold, checked against the model when it loads (src/pipeline/pipeline.ts).
   */
  pipeline?: PipelineOptions;
}

/** The native dynamic batcher (native/scheduler.h explains batch formation and the adaptive rule). */
export interface BatchingOptions {
  /** Most rows (on the batch dim) one run may hold. Default 8. A single request may not exceed it. */
  maxBatchSize?: number;
  /** How long the oldest queued request may wait for company, in µs. Default 500. With `adaptive`, the upper bound. */
  maxQueueDelayMicros?: number;
  /** Batch sizes to prefer: a batch runs at once when it reaches the largest; when the delay is over it runs the largest one it can fill. */
  preferredBatchSizes?: number[];
  /** Requests that may wait; beyond it infer() rejects with QUEUE_FULL. Default 1024. */
  maxQueueSize?: number;
  /** Tune the delay online from arrivals and measured compute time. Default true. */
  adaptive?: boolean;
  /**
   * Whether dim 0 of every input and output is the batch dim. Default: detected (true when every
   * input and output is a numeric tensor whose first dim is dynamic). false: requests run
   * unbatched through the same queue (priorities, timeouts and instances still apply).
   */
  batchDim?: boolean;
  /**
   * Pad every batch with zero rows up to the smallest of `preferredBatchSizes` (else
   * `maxBatchSize`) that holds it, so the model only ever runs those batch sizes: CUDA graphs
   * (`enableCudaGraph`) and TensorRT profiles are built once per size and reused. Padding rows
   * are computed and dropped (stats().paddingRows counts them). Default false.
   */
  padToPreferred?: boolean;
}

export interface InferOptions {
  /** Output names to fetch, or output name → preallocated Tensor written in place. Default: all. */
  outputs?: readonly string[] | Record<string, Tensor | null | undefined>;
  /** Aborting rejects with ABORTED and terminates the run. */
  signal?: AbortSignal;
  /**
   * Rejects with TIMEOUT after this many milliseconds. A queued request (scheduled models) is
   * dropped before it runs; a running one is terminated (or, inside a batch that other requests
   * share, its result is discarded).
   */
  timeoutMs?: number;
  /** 1: high priority (served before any queued 0). Default 0. Scheduled models only; ignored otherwise. */
  priority?: 0 | 1;
  /**
   * Where the outputs go. 'cpu' (default): Tensors in JS memory. 'device': DeviceTensors that
   * stay where the model's session keeps them — GPU memory on a GPU model, the session's own
   * host memory on a CPU one — for a later infer() on the same device, download() or dispose()
   * (src/runtime/device-tensor.ts). 'gpu': 'device', refused for a model that is not on a GPU.
   * Not with supplied output buffers or string outputs.
   */
  outputLocation?: OutputLocation;
  /**
   * @internal Per-request timing for tracing (src/server/tracing.ts): a Float64Array of
   * RUN_TIMING_LENGTH (binding.ts RUN_TIMING) that infer() stamps at submit and the addon fills
   * when the request settles. Absent (the default), the request pays nothing for it.
   */
  timing?: Float64Array;
  /**
   * @internal Cancels the call without an AbortSignal (the server's inference requests: a
   * signal's listener costs ~1 µs a request there). See Canceller.
   */
  canceller?: Canceller;
}

/**
 * @internal One infer() call's cancellation, for callers that would otherwise make an
 * AbortSignal per call only to cancel it when a client leaves (src/server/admission.ts). infer()
 * arms it with the call's cancel while the call is pending and disarms it when the call settles;
 * cancel() ends that call with ABORTED as an aborted signal would, and a call given a cancelled
 * Canceller is refused with ABORTED before it starts. One call at a time. Event-loop thread only.
 */
export class Canceller {
  /** The pending call's cancel: set and cleared by infer(). */
  onCancel: (() => void) | null = null;
  #cancelled = false;

  get cancelled(): boolean {
    return this.#cancelled;
  }

  cancel(): void {
    this.#cancelled = true;
    const cancel = this.onCancel;
    this.onCancel = null;
    cancel?.();
  }
}

/** The ORT session settings: LoadOptions keys that a served model's config.json `runtime` section holds too (src/repository/config.ts). */
export const RUNTIME_OPTION_KEYS = [
  'executionProviders',
  'intraOpNumThreads',
  'interOpNumThreads',
  'graphOptimizationLevel',
  'executionMode',
  'optimizedModelFilePath',
  'freeDimensionOverrides',
  'logSeverityLevel',
  'allowSpinning',
  'memoryArena',
  'inlineBelowMicros',
] as const;

/** LoadOptions.inlineBelowMicros when it is left out (the library's and `nimify serve`'s). */
export const INLINE_BELOW_MICROS_DEFAULT = 100;

const LOAD_KEYS = [...RUNTIME_OPTION_KEYS, 'instances', 'batching', 'pipeline'] as const;

/**
 * What a `batching` object leaves out gets (the library's defaults; a served model with no
 * batching section at all gets the server's, src/repository/config.ts DEFAULT_BATCHING).
 */
export const BATCHING_DEFAULTS = Object.freeze({ maxBatchSize: 8, maxQueueDelayMicros: 500, maxQueueSize: 1024, adaptive: true });

/**
 * Most requests one model's queue may hold. Each queued request holds its input memory (or a copy
 * of it), so the bound is about memory: 65536 requests of a 1 KB input are 64 MB; a larger queue
 * only makes requests wait longer than any client does (the predicted-wait admission refuses
 * those anyway).
 */
export const MAX_QUEUE_SIZE = 65_536;

const BATCHING_KEYS = ['maxBatchSize', 'maxQueueDelayMicros', 'preferredBatchSizes', 'maxQueueSize', 'adaptive', 'batchDim', 'padToPreferred'] as const;

const OPT_LEVELS = { disabled: 0, basic: 1, extended: 2, all: 99 } as const;
const EXEC_MODES = { sequential: 0, parallel: 1 } as const;

/**
 * NIMIFY_IO_BINDING, a diagnostics switch read when a model loads: 'always' runs every batch of a
 * CPU model through IoBinding (the device path's code), 'fixed' on fixed buffers per batch size
 * (the CUDA-graph path's); unset or '' for neither. Any other value is refused.
 */
export function ioBindingFromEnv(env: NodeJS.ProcessEnv = process.env): 'always' | 'fixed' | undefined {
  const v = env.NIMIFY_IO_BINDING;
  if (v === undefined || v === '') return undefined;
  return expectOneOf('NIMIFY_IO_BINDING', v, ['always', 'fixed'] as const);
}

/** Validates LoadOptions and returns the addon's config object. */
export function toNativeConfig(options: unknown): Record<string, unknown> {
  const o = options === undefined ? {} : expectPlainObject('options', options);
  expectKnownKeys('options', o, LOAD_KEYS);
  const config: Record<string, unknown> = {
    inlineBelowMicros: o.inlineBelowMicros === undefined ? INLINE_BELOW_MICROS_DEFAULT : expectInteger('options.inlineBelowMicros', o.inlineBelowMicros, 0, 1_000_000),
  };
  if (o.executionProviders !== undefined) config.executionProviders = toProviderRequests('options.executionProviders', o.executionProviders);
  if (o.intraOpNumThreads !== undefined) config.intraOpNumThreads = expectInteger('options.intraOpNumThreads', o.intraOpNumThreads, 0, 1024);
  if (o.interOpNumThreads !== undefined) config.interOpNumThreads = expectInteger('options.interOpNumThreads', o.interOpNumThreads, 0, 1024);
  if (o.graphOptimizationLevel !== undefined) {
    config.graphOptimizationLevel = OPT_LEVELS[expectOneOf('options.graphOptimizationLevel', o.graphOptimizationLevel, Object.keys(OPT_LEVELS) as (keyof typeof OPT_LEVELS)[])];
  }
  if (o.executionMode !== undefined) {
    config.executionMode = EXEC_MODES[expectOneOf('options.executionMode', o.executionMode, Object.keys(EXEC_MODES) as (keyof typeof EXEC_MODES)[])];
  }
  if (o.optimizedModelFilePath !== undefined) config.optimizedModelFilePath = expectString('options.optimizedModelFilePath', o.optimizedModelFilePath);
  if (o.freeDimensionOverrides !== undefined) {
    const fdo = expectPlainObject('options.freeDimensionOverrides', o.freeDimensionOverrides);
    const out: Record<string, number> = {};
    for (const [k, v] of Object.entries(fdo)) out[k] = expectInteger(`options.freeDimensionOverrides.${k}`, v, 0);
    config.freeDimensionOverrides = out;
  }
  if (o.logSeverityLevel !== undefined) config.logSeverityLevel = expectInteger('options.logSeverityLevel', o.logSeverityLevel, 0, 4);
  if (o.allowSpinning !== undefined) config.allowSpinning = expectBoolean('options.allowSpinning', o.allowSpinning);
  if (o.memoryArena !== undefined) config.memoryArena = expectBoolean('options.memoryArena', o.memoryArena);
  if (o.instances !== undefined) config.instances = expectInteger('options.instances', o.instances, 1, 64);
  if (o.batching !== undefined) config.batching = toNativeBatching(o.batching);
  return config;
}

function toNativeBatching(value: unknown): Record<string, unknown> {
  const b = expectPlainObject('options.batching', value);
  if (b.inlineBelowMicros !== undefined) {
    throw invalid('options.batching.inlineBelowMicros', 'no such key here: inlineBelowMicros is a model-level option now (options.inlineBelowMicros; config.json runtime.inlineBelowMicros)', b.inlineBelowMicros);
  }
  expectKnownKeys('options.batching', b, BATCHING_KEYS);
  const maxBatchSize = b.maxBatchSize === undefined ? BATCHING_DEFAULTS.maxBatchSize : expectInteger('options.batching.maxBatchSize', b.maxBatchSize, 1, 1 << 20);
  const out: Record<string, unknown> = {
    maxBatchSize,
    maxQueueDelayMicros: b.maxQueueDelayMicros === undefined ? BATCHING_DEFAULTS.maxQueueDelayMicros : expectInteger('options.batching.maxQueueDelayMicros', b.maxQueueDelayMicros, 0, 60_000_000),
    maxQueueSize: b.maxQueueSize === undefined ? BATCHING_DEFAULTS.maxQueueSize : expectInteger('options.batching.maxQueueSize', b.maxQueueSize, 1, MAX_QUEUE_SIZE),
    adaptive: b.adaptive === undefined ? BATCHING_DEFAULTS.adaptive : expectBoolean('options.batching.adaptive', b.adaptive),
  };
  if (b.batchDim !== undefined) out.batchDim = expectBoolean('options.batching.batchDim', b.batchDim);
  if (b.padToPreferred !== undefined) out.padToPreferred = expectBoolean('options.batching.padToPreferred', b.padToPreferred);
  if (b.preferredBatchSizes !== undefined) {
    if (!Array.isArray(b.preferredBatchSizes)) throw invalid('options.batching.preferredBatchSizes', 'an array of batch sizes', b.preferredBatchSizes);
    out.preferredBatchSizes = b.preferredBatchSizes.map((n: unknown, i: number) =>
      expectInteger(`options.batching.preferredBatchSizes[${i}]`, n, 1, maxBatchSize),
    );
  }
  return out;
}

/** infer()'s `outputLocation` values. */
export const OUTPUT_LOCATIONS = ['cpu', 'device', 'gpu'] as const;
export type OutputLocation = (typeof OUTPUT_LOCATIONS)[number];

const INFER_KEYS = ['outputs', 'signal', 'timeoutMs', 'priority', 'outputLocation', 'timing', 'canceller'] as const;

export function checkInferOptions(options: unknown): InferOptions {
  if (options === undefined) return {};
  const o = expectPlainObject('options', options);
  expectKnownKeys('options', o, INFER_KEYS);
  // Each field read once, here: what was validated is what is used, and a getter cannot run
  // later — between the call's preparation and its submission, say, where calling infer() again
  // would overwrite the plan's encoded spec (io-plan.ts NativeCall.spec).
  const { outputs, signal, timeoutMs, priority, outputLocation, timing, canceller } = o;
  if (signal !== undefined && !(signal instanceof AbortSignal)) throw invalid('options.signal', 'an AbortSignal', signal);
  if (timeoutMs !== undefined) {
    expectPositiveNumber('options.timeoutMs', timeoutMs);
    // setTimeout holds at most 2^31 - 1 ms; a longer value would fire at once.
    if ((timeoutMs as number) > 2_147_483_647) throw invalid('options.timeoutMs', 'a number of milliseconds up to 2147483647', timeoutMs);
  }
  if (priority !== undefined && priority !== 0 && priority !== 1) throw invalid('options.priority', '0 (normal) or 1 (high)', priority);
  if (outputLocation !== undefined) expectOneOf('options.outputLocation', outputLocation, OUTPUT_LOCATIONS);
  if (timing !== undefined && !(timing instanceof Float64Array && timing.length >= RUN_TIMING_LENGTH)) {
    throw invalid('options.timing', `a Float64Array of at least ${RUN_TIMING_LENGTH} elements`, timing);
  }
  if (canceller !== undefined && !(canceller instanceof Canceller)) throw invalid('options.canceller', 'a Canceller', canceller);
  return { outputs, signal, timeoutMs, priority, outputLocation, timing, canceller } as InferOptions;
}
