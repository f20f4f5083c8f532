/**
 * Model: a loaded ONNX model. infer() validates in TypeScript, makes one native call, and
 * resolves with output Tensors ORT wrote into. Without batching/instances the run goes to
 * nimify's executor threads; with them, to the model's native scheduler (queue, dynamic
 * batching, instances: native/scheduler.h). inferSync() runs on the calling thread.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { NimifyError, fromNative } from './errors';
import { getBinding, RUN_TIMING, type ModelStats, type NativeBinding, type NativeDescription, type NativeResult, type NativeSession, type SchedulerStats } from './binding';
import { IoPlan, SPEC_REQUEST, type NativeCall } from './io-plan';
import { submitted } from './completions';
import { open, refuse, SETTLE_KIND, ticket as lastTicket, useSettler } from './settle';
import { checkInferOptions, ioBindingFromEnv, toNativeConfig, type InferOptions, type LoadOptions, type OutputLocation } from './options';
import type { Tensor, TensorLike, TensorType } from './tensor';
import type { DeviceTensor } from './device-tensor';
import { invalid } from './validate';
// Types only: predict()'s signature is the pipeline layer's (src/pipeline/), which this module
// never loads; the pipeline is attached at load by that layer (src/pipeline/load.ts).
import type { Pipeline, PredictInput, PredictOptions } from '../pipeline/pipeline';
import type { Prediction } from '../pipeline/postprocess';

export interface TensorInfo {
  name: string;
  /** Element type, or 'sequence' / 'map' / 'optional' for non-tensor values (not feedable). */
  type: TensorType | 'sequence' | 'map' | 'optional' | string;
  /** Numbers for fixed dims; a string for a named symbolic dim; -1 for an unnamed dynamic dim. null = rank unknown. */
  shape: Array<number | string> | null;
}

/** The model's metadata as ONNX Runtime reads it (`version` is 0 when the model sets none). */
export type ModelMetadata = NativeDescription['metadata'];

export type Feeds = Record<string, Tensor | TensorLike | DeviceTensor>;
export type Outputs = Record<string, Tensor>;
/** infer()'s results with `outputLocation: 'device'` (or 'gpu'). */
export type DeviceOutputs = Record<string, DeviceTensor>;

export type { PredictOptions } from '../pipeline/pipeline';

let nextRunId = 0;

/**
 * The JS clock tracing's submit time is read from: bound once, so that caller code replacing
 * performance.now cannot run between a call's preparation and its submission (it could call
 * infer() again, re-encoding the plan's spec).
 */
const submitClock = performance.now.bind(performance);

export class Model {
  readonly inputs: readonly TensorInfo[];
  readonly outputs: readonly TensorInfo[];
  readonly metadata: ModelMetadata;
  /** @internal Why dim 0 cannot be a batch dim (the scheduler's rule, from the addon), or null when it can. */
  readonly noBatchDim: string | null;
  /** The execution providers the session uses, in preference order, ending with 'cpu' (LoadOptions.executionProviders). */
  readonly providers: readonly string[];
  /** Providers that were asked for but could not be used, and why (each also emitted as a process warning, code NIMIFY_EP_SKIPPED). */
  readonly skippedProviders: ReadonlyArray<Readonly<{ name: string; reason: string }>>;
  /** Whether the session runs on a device provider (anything besides the CPU): its batches never run on the JS thread. */
  readonly onDevice: boolean;
  /** Where the session keeps tensors (and DeviceTensor results live): 'cpu', 'cuda:0', … */
  readonly device: string;
  /** Whether batches are gathered into the provider's pinned host memory (a GPU provider that has it; false on the CPU). */
  readonly pinnedStaging: boolean;
  /** The pre/postprocessing predict() runs (LoadOptions.pipeline, or a served model's config.json); null without one. */
  readonly pipeline: Pipeline | null;

  #session: NativeSession | null;
  readonly #binding: NativeBinding;
  readonly #plan: IoPlan;
  #inFlight = 0;
  #disposing: Promise<void> | null = null;
  #idleWaiters: Array<() => void> = [];
  /** Most rows one run may hold on the batch dim (the scheduler's maxBatchSize). */
  readonly #maxRows: number;
  /** infer() goes through the native scheduler, which enforces timeoutMs on running requests itself. */
  readonly #scheduled: boolean;

  /** @internal Use loadModel(). */
  constructor(binding: NativeBinding, session: NativeSession, description: NativeDescription, pipeline: Pipeline | null = null, maxRows = Infinity) {
    useSettler(binding);
    this.#binding = binding;
    this.pipeline = pipeline;
    this.#maxRows = maxRows;
    this.#session = session;
    this.inputs = Object.freeze(description.inputs.map((i) => Object.freeze(i)));
    this.outputs = Object.freeze(description.outputs.map((o) => Object.freeze(o)));
    this.metadata = Object.freeze(description.metadata);
    this.noBatchDim = description.noBatchDim;
    this.providers = Object.freeze([...description.providers]);
    this.skippedProviders = Object.freeze(description.skippedProviders.map((p) => Object.freeze({ name: p.name, reason: p.reason })));
    this.onDevice = description.onDevice;
    this.device = description.device;
    this.pinnedStaging = description.pinnedStaging;
    this.#plan = new IoPlan(description, binding.copiedOutputBytes);
    this.#scheduled = description.scheduled;
  }

  /** Most rows one run may hold on the batch dim: batching.maxBatchSize, or Infinity without batching. */
  get maxBatchRows(): number {
    return this.#maxRows;
  }

  /** Number of infer() calls not yet settled. */
  get pending(): number {
    return this.#inFlight;
  }

  /**
   * Counters (cumulative, except queueDepth and inFlight which are current): what became of
   * infer() requests (RequestStats: the same definitions with or without a scheduler), ORT runs
   * and how outputs reached JS, and the scheduler's queue, batch and timing figures. For a model
   * without batching/instances every request is its own run and nothing queues.
   */
  stats(): ModelStats {
    const native = this.#session?.stats() ?? {
      runs: 0, failures: 0, outputsZeroCopy: 0, outputsCopied: 0, bytesCopied: 0, shapeFallbacks: 0,
      requests: 0, rejected: 0, succeeded: 0, failed: 0, expired: 0, cancelled: 0, inlineRuns: 0, inlineSingleThreaded: false,
    };
    const { scheduler, inlineRuns, ...session } = native;
    return { ...session, scheduled: scheduler !== undefined, ...(scheduler ?? this.#unscheduledStats(session.runs, inlineRuns)) };
  }

  #unscheduledStats(runs: number, inlineRuns: number): SchedulerStats {
    const none = { p50: 0, p99: 0, count: 0, sum: 0 };
    return {
      queueDepth: 0, inFlight: this.#inFlight, batches: runs, inlineBatches: inlineRuns, wakes: 0, batchSizeHistogram: runs > 0 ? { 1: runs } : {},
      queueTimeUs: none, computeTimeUs: none, computeInputUs: 0, computeInferUs: 0, computeOutputUs: 0,
      instances: 1, bytesGathered: 0, bytesScattered: 0, paddingRows: 0, delayUs: 0,
    };
  }

  /**
   * @internal Zeroes every cumulative counter and histogram of stats() (queueDepth and inFlight
   * are current, not counters). The repository calls it once warmup has settled, so warmup runs
   * are not counted; call it while the model is idle (a run finishing meanwhile may be counted).
   */
  resetStats(): void {
    this.#session?.resetStats();
  }

  get disposed(): boolean {
    return this.#disposing !== null;
  }

  /**
   * Runs the model off the main thread. Written without `async`/`await` on purpose: one promise
   * reaction per call instead of three (this is the per-request hot path).
   */
  infer(feeds: Feeds, options: InferOptions & { outputLocation: 'device' | 'gpu' }): Promise<DeviceOutputs>;
  infer(feeds: Feeds, options?: InferOptions & { outputLocation?: 'cpu' }): Promise<Outputs>;
  infer(feeds: Feeds, options?: InferOptions): Promise<Outputs | DeviceOutputs>;
  infer(feeds: Feeds, options?: InferOptions): Promise<Outputs | DeviceOutputs> {
    let session: NativeSession;
    let opts: InferOptions | undefined;
    let deviceOutputs = false;
    try {
      session = this.#open();
      opts = options === undefined ? undefined : checkInferOptions(options);
      if (opts?.outputLocation !== undefined) deviceOutputs = this.#deviceOutputs(opts.outputLocation);
    } catch (err) {
      return Promise.reject(err);
    }
    // Everything the options ask for is set up before the call is prepared: from prepare() to
    // session.run() no caller code may run (a signal's or timing array's overridden methods
    // calling infer() again would overwrite the plan's encoded spec).
    let runId = 0;
    let cleanup: (() => void) | undefined;
    let priority = 0;
    let timeoutUs = 0;
    let timing: Float64Array | undefined;
    let aborted = false;
    if (opts !== undefined) {
      // The native deadline drops a queued request exactly on time even when this thread is busy,
      // and the scheduler's watchdog ends a running one (native/scheduler.h). Without a scheduler
      // (the executor threads) a timer terminates the run when it fires.
      if (opts.timeoutMs !== undefined) timeoutUs = opts.timeoutMs * 1000;
      const timed = opts.timeoutMs !== undefined && !this.#scheduled;
      const signal = opts.signal;
      const canceller = opts.canceller;
      // (Refused after the call is validated: a bad call's own error comes first.)
      aborted = signal?.aborted === true || canceller?.cancelled === true;
      if ((signal !== undefined || canceller !== undefined || timed) && !aborted) {
        const id = (runId = ++nextRunId);
        const onAbort = () => session.cancel(id, 'ABORTED');
        signal?.addEventListener('abort', onAbort, { once: true });
        if (canceller !== undefined) canceller.onCancel = onAbort;
        const timer = timed ? setTimeout(() => session.cancel(id, 'TIMEOUT'), opts.timeoutMs) : undefined;
        cleanup = () => {
          if (timer !== undefined) clearTimeout(timer);
          signal?.removeEventListener('abort', onAbort);
          if (canceller !== undefined && canceller.onCancel === onAbort) canceller.onCancel = null;
        };
      }
      if (opts.priority !== undefined) priority = opts.priority;
      timing = opts.timing;
      if (timing !== undefined) Float64Array.prototype.fill.call(timing, 0);
    }
    let call: NativeCall;
    try {
      call = this.#plan.prepare(feeds, opts?.outputs, deviceOutputs, true);
    } catch (err) {
      cleanup?.();
      return Promise.reject(err);
    }
    if (aborted) return Promise.reject(new NimifyError('ABORTED', 'inference was aborted before it started'));
    // The promise and its ticket exist, and the request counts as in flight, before run(): a
    // run on this thread settles inside it (settle.ts).
    const promise = open<Outputs | DeviceOutputs>(this.#finish, call, cleanup);
    const t = lastTicket();
    this.#inFlight++;
    const spec = call.spec;
    spec[SPEC_REQUEST.TICKET] = t;
    spec[SPEC_REQUEST.RUN_ID] = runId;
    spec[SPEC_REQUEST.PRIORITY] = priority;
    spec[SPEC_REQUEST.TIMEOUT_US] = timeoutUs;
    try {
      if (timing === undefined) {
        session.run(call.inArg, call.outArg, spec);
      } else {
        // Tracing (options.ts `timing`): the JS clock at submit, to which the addon's times are relative.
        timing[RUN_TIMING.SUBMITTED_MS] = submitClock();
        session.run(call.inArg, call.outArg, spec, timing);
      }
    } catch (err) {
      refuse(t, fromNative(err));
      try {
        this.#settled(cleanup);
      } catch {
        // Caller code (a signal's removeEventListener) threw while the refused request was
        // cleaned up: it keeps its own error, and infer() still returns its promise (throwing
        // here would leave that rejection unhandled).
      }
      return promise;
    }
    submitted(this.#binding);
    return promise;
  }

  /** A request's outcome → its promise's value (settle.ts Finish): `a` its call, `b` its cleanup. */
  readonly #finish = (kind: number, value: unknown, call: unknown, cleanup: unknown, data: ArrayBuffer, offset: number): unknown => {
    this.#settled(cleanup as (() => void) | undefined);
    if (kind === SETTLE_KIND.ERROR) throw fromNative(value);
    return this.#plan.wrap(call as NativeCall, value as NativeResult[] | null, data, offset);
  };

  /** Whether `location` keeps results on the device; 'gpu' only for a model on a GPU. */
  #deviceOutputs(location: OutputLocation): boolean {
    if (location === 'gpu' && this.device === 'cpu') {
      throw new NimifyError('INVALID_ARGUMENT', `options.outputLocation: 'gpu' needs a model on a GPU; this one runs on ${this.device} (providers: ${this.providers.join(', ')}): use 'device' to keep results in the model's own memory`);
    }
    return location !== 'cpu';
  }

  /** A request settled. Counted first: `cleanup` runs caller code (a signal's removeEventListener), which may throw. */
  #settled(cleanup: (() => void) | undefined): void {
    if (--this.#inFlight === 0 && this.#idleWaiters.length > 0) for (const w of this.#idleWaiters.splice(0)) w();
    cleanup?.();
  }

  /**
   * Resolves when no infer() call is pending — queued requests included, which dispose() would
   * reject. For graceful unloads: stop sending new requests, await whenIdle(), then dispose().
   */
  whenIdle(): Promise<void> {
    if (this.#inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  /**
   * Runs the model's pipeline: `input` (image bytes, a text, or { text, pair }) is preprocessed
   * in the worker pool, run, and ranked by the postprocess section: predictions best first. An
   * array of inputs runs as one batch (cut to maxBatchSize rows) and gives one list per input.
   * Needs LoadOptions.pipeline with both sections (or a served model's config.json); for the raw
   * outputs of a pipeline without postprocess, use runPipeline().
   */
  predict(input: PredictInput, options?: PredictOptions): Promise<Prediction[]>;
  predict(inputs: readonly PredictInput[], options?: PredictOptions): Promise<Prediction[][]>;
  predict(input: PredictInput | readonly PredictInput[], options?: PredictOptions): Promise<Prediction[] | Prediction[][]> {
    try {
      return this.#pipeline('predict()').predict(this, input, options);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /**
   * Preprocesses `input` like predict() and runs the model; resolves with the raw outputs of
   * each run (one per maxBatchSize chunk of the inputs, in order, rows = inputs). Needs a
   * pipeline with a preprocess section.
   */
  runPipeline(input: PredictInput | readonly PredictInput[], options?: PredictOptions): Promise<Outputs[]> {
    try {
      this.#open();
      return this.#pipeline('runPipeline()').runPipeline(this, input, options);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  #pipeline(what: string): Pipeline {
    if (this.pipeline === null || this.pipeline.preprocess === null) {
      throw new NimifyError('INVALID_ARGUMENT', `${what}: the model was loaded without a preprocess section; pass options.pipeline = { preprocess, postprocess } to loadModel()`);
    }
    return this.pipeline;
  }

  /** Runs the model on the calling thread (blocks it): for tiny models where a thread hop costs more than the run. */
  inferSync(feeds: Feeds, options?: Pick<InferOptions, 'outputs'>): Outputs {
    const session = this.#open();
    const o = options === undefined ? undefined : checkInferOptions(options);
    if (o !== undefined && (o.signal !== undefined || o.timeoutMs !== undefined || o.outputLocation !== undefined)) {
      throw new NimifyError('INVALID_ARGUMENT', 'options: inferSync() supports only `outputs`; use infer() for signal, timeoutMs and outputLocation');
    }
    const call = this.#plan.prepare(feeds, o?.outputs);
    let results: NativeResult[] | null;
    try {
      results = session.runSync(call.inArg, call.outArg, call.spec);
    } catch (err) {
      throw fromNative(err);
    }
    return this.#plan.wrap(call, results);
  }

  /**
   * Stops accepting work, rejects queued requests with DISPOSED, waits for running ones to
   * settle, then frees the session (and its instances). Idempotent. Any later call fails with
   * DISPOSED.
   */
  dispose(): Promise<void> {
    if (this.#disposing) return this.#disposing;
    this.#session?.close();
    this.#disposing = this.whenIdle().then(() => {
      this.#session?.release();
      this.#session = null;
    });
    return this.#disposing;
  }

  async [Symbol.asyncDispose ?? Symbol.for('nodejs.asyncDispose')](): Promise<void> {
    await this.dispose();
  }

  #open(): NativeSession {
    if (this.#disposing || this.#session === null) throw new NimifyError('DISPOSED', 'model has been disposed');
    return this.#session;
  }

}

/**
 * @internal How the pipeline layer attaches a pipeline to a model being loaded
 * (src/pipeline/load.ts): resolves it against the model's inputs and outputs; `file` is the
 * model's path (null when loaded from bytes). A failure fails the load.
 */
export type PipelineResolver = (description: NativeDescription, file: string | null) => Promise<Pipeline>;

/**
 * Loads a model from a file path or from its bytes. Parsing and optimization run off the main
 * thread. The package root's loadModel() routes options.pipeline to the pipeline layer; this one
 * (the runtime's) has none to attach.
 */
export function loadModel(source: string | Uint8Array | ArrayBuffer, options?: LoadOptions): Promise<Model> {
  return loadModelWith(source, options);
}

/** @internal loadModel() with the pipeline layer's resolver (src/pipeline/load.ts). */
export async function loadModelWith(source: string | Uint8Array | ArrayBuffer, options?: LoadOptions, resolvePipeline?: PipelineResolver): Promise<Model> {
  const config = toNativeConfig(options);
  const ioBinding = ioBindingFromEnv();
  if (ioBinding !== undefined) config.ioBinding = ioBinding;
  if (options?.pipeline !== undefined && resolvePipeline === undefined) {
    throw new NimifyError('INVALID_ARGUMENT', "options.pipeline: this loader has no pipeline layer; use loadModel() from 'nimify' or 'nimify/pipeline'");
  }
  let src: string | Uint8Array;
  if (typeof source === 'string') {
    if (source.length === 0) throw invalid('model', 'a path to an .onnx file', source);
    src = path.resolve(source);
    let isFile = false;
    try {
      isFile = (await fsp.stat(src)).isFile();
    } catch {
      throw new NimifyError('NOT_FOUND', `model: file '${src}' does not exist`);
    }
    if (!isFile) throw new NimifyError('INVALID_ARGUMENT', `model: '${src}' is not a file; expected an .onnx file`);
  } else if (source instanceof Uint8Array) {
    src = source;
  } else if (source instanceof ArrayBuffer) {
    src = new Uint8Array(source);
  } else {
    throw invalid('model', 'a path string, a Uint8Array or an ArrayBuffer', source);
  }
  if (typeof src !== 'string' && src.byteLength === 0) throw new NimifyError('INVALID_MODEL', 'model: the bytes are empty');
  const binding = getBinding();
  let session: NativeSession;
  try {
    session = await binding.createSession(src, config);
  } catch (err) {
    throw fromNative(err);
  }
  const description = session.describe();
  for (const skip of description.skippedProviders) {
    process.emitWarning(`execution provider '${skip.name}' skipped: ${skip.reason}`, { code: 'NIMIFY_EP_SKIPPED', detail: `the model runs on: ${description.providers.join(', ')}` });
  }
  let pipeline: Pipeline | null = null;
  if (resolvePipeline !== undefined) {
    try {
      pipeline = await resolvePipeline(description, typeof src === 'string' ? src : null);
    } catch (err) {
      session.close();
      session.release();
      throw err;
    }
  }
  const batching = config.batching as { maxBatchSize?: number } | undefined;
  return new Model(binding, session, description, pipeline, batching?.maxBatchSize ?? Infinity);
}
