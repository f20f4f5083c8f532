/**
 * Model: a loaded ONNX model. infer() validates in TypeScript, makes one native call that runs
 * the model on a libuv threadpool thread, and resolves with output Tensors whose memory is
 * ORT's own (no copy). inferSync() does the same on the calling thread.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { NimifyError, fromNative } from './errors';
import { getBinding, type ModelStats, type NativeBinding, type NativeDescription, type NativeResult, type NativeSession, type NativeTensorLike } from './binding';
import { submitted } from './completions';
import { checkInferOptions, toNativeConfig, type InferOptions, type LoadOptions } from './options';
import { Tensor, nativeView, type TensorDataMap, type TensorType } from './tensor';
import { describe, invalid, isPlainObject } from './validate';

export interface TensorInfo {
  name: string;
  /** Element type, or 'sequence' / 'map' / 'optional' for non-tensor values (not feedable). */
  type: TensorType | 'sequence' | 'map' | 'optional' | string;
  /** Numbers for fixed dims; a string for a named symbolic dim; -1 for an unnamed dynamic dim. null = rank unknown. */
  shape: Array<number | string> | null;
}

export interface ModelMetadata {
  producerName: string;
  graphName: string;
  domain: string;
  description: string;
  graphDescription: string;
  version: number;
  custom: Record<string, string>;
}

export type Feeds = Record<string, Tensor | NativeTensorLike>;
export type Outputs = Record<string, Tensor>;

let nextRunId = 0;

function shapeText(shape: Array<number | string> | null): string {
  return shape ? `[${shape.map((d) => (d === -1 ? '?' : d)).join(', ')}]` : '(any shape)';
}

function checkAgainst(info: TensorInfo, t: Tensor, what: string): void {
  if (t.type !== info.type) {
    throw new NimifyError('INVALID_ARGUMENT', `${what}: expected type ${info.type}, received ${t.type}`);
  }
  const shape = info.shape;
  if (shape === null) return;
  const dims = t.dims;
  let ok = dims.length === shape.length;
  for (let i = 0; ok && i < dims.length; i++) {
    const d = shape[i];
    ok = typeof d !== 'number' || d < 0 || d === dims[i];
  }
  if (!ok) {
    throw new NimifyError('INVALID_ARGUMENT', `${what}: expected shape ${shapeText(shape)}, received [${dims.join(', ')}]`);
  }
}

export class Model {
  readonly inputs: readonly TensorInfo[];
  readonly outputs: readonly TensorInfo[];
  readonly metadata: ModelMetadata;

  #session: NativeSession | null;
  readonly #binding: NativeBinding;
  readonly #inputByName = new Map<string, TensorInfo>();
  readonly #outputByName = new Map<string, TensorInfo>();
  readonly #allOutputNames: string[];
  readonly #noPreallocated: null[];
  #inFlight = 0;
  #disposing: Promise<void> | null = null;
  #drained: (() => void) | null = null;

  /** @internal Use loadModel(). */
  constructor(binding: NativeBinding, session: NativeSession, description: NativeDescription) {
    this.#binding = binding;
    this.#session = session;
    this.inputs = Object.freeze(description.inputs.map((i) => Object.freeze(i)));
    this.outputs = Object.freeze(description.outputs.map((o) => Object.freeze(o)));
    this.metadata = Object.freeze(description.metadata);
    for (const i of this.inputs) this.#inputByName.set(i.name, i);
    for (const o of this.outputs) this.#outputByName.set(o.name, o);
    this.#allOutputNames = this.outputs.map((o) => o.name);
    this.#noPreallocated = this.#allOutputNames.map(() => null);
  }

  /** Number of infer() calls not yet settled. */
  get pending(): number {
    return this.#inFlight;
  }

  /** Cumulative counters: runs, failures, and how outputs reached JS (zero-copy or the copy path). */
  stats(): ModelStats {
    return this.#session?.stats() ?? { runs: 0, failures: 0, outputsZeroCopy: 0, outputsCopied: 0, bytesCopied: 0, shapeFallbacks: 0 };
  }

  get disposed(): boolean {
    return this.#disposing !== null;
  }

  /** Runs the model off the main thread. */
  async infer(feeds: Feeds, options?: InferOptions): Promise<Outputs> {
    const session = this.#open();
    const opts = options === undefined ? undefined : checkInferOptions(options);
    const [names, tensors] = this.#feeds(feeds);
    const [outNames, outTensors, callerTensors] = this.#fetches(opts?.outputs);
    let runId = 0;
    let timer: NodeJS.Timeout | undefined;
    let onAbort: (() => void) | undefined;
    const signal = opts?.signal;
    if (signal !== undefined || opts?.timeoutMs !== undefined) {
      if (signal?.aborted) throw new NimifyError('ABORTED', 'inference was aborted before it started');
      runId = ++nextRunId;
      const id = runId;
      if (signal) {
        onAbort = () => session.cancel(id, 'ABORTED');
        signal.addEventListener('abort', onAbort, { once: true });
      }
      if (opts?.timeoutMs !== undefined) timer = setTimeout(() => session.cancel(id, 'TIMEOUT'), opts.timeoutMs);
    }
    let results: NativeResult[];
    this.#inFlight++;
    try {
      const pending = session.run(names, tensors, outNames, outTensors, runId);
      submitted(this.#binding);
      results = await pending;
    } catch (err) {
      throw fromNative(err);
    } finally {
      if (timer !== undefined) clearTimeout(timer);
      if (onAbort !== undefined) signal!.removeEventListener('abort', onAbort);
      if (--this.#inFlight === 0 && this.#drained) this.#drained();
    }
    return this.#wrap(outNames, results, callerTensors);
  }

  /** Runs the model on the calling thread (blocks it): for tiny models where a thread hop costs more than the run. */
  inferSync(feeds: Feeds, options?: Pick<InferOptions, 'outputs'>): Outputs {
    const session = this.#open();
    if (options !== undefined) {
      const o = checkInferOptions(options);
      if (o.signal !== undefined || o.timeoutMs !== undefined) {
        throw new NimifyError('INVALID_ARGUMENT', 'options: inferSync() supports only `outputs`; use infer() for signal/timeoutMs');
      }
    }
    const [names, tensors] = this.#feeds(feeds);
    const [outNames, outTensors, callerTensors] = this.#fetches(options?.outputs);
    let results: NativeResult[];
    try {
      results = session.runSync(names, tensors, outNames, outTensors);
    } catch (err) {
      throw fromNative(err);
    }
    return this.#wrap(outNames, results, callerTensors);
  }

  /**
   * Stops accepting work, waits for in-flight infer() calls to settle, then frees the session.
   * Idempotent. Any later call fails with DISPOSED.
   */
  dispose(): Promise<void> {
    if (this.#disposing) return this.#disposing;
    const drained = this.#inFlight === 0 ? Promise.resolve() : new Promise<void>((resolve) => (this.#drained = resolve));
    this.#disposing = drained.then(() => {
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

  #feeds(feeds: unknown): [string[], NativeTensorLike[]] {
    if (!isPlainObject(feeds)) throw invalid('feeds', 'an object mapping input names to Tensors', feeds);
    const names: string[] = [];
    const tensors: NativeTensorLike[] = [];
    for (const name in feeds) {
      const info = this.#inputByName.get(name);
      if (info === undefined) {
        throw new NimifyError('INVALID_ARGUMENT', `feeds: unknown input '${name}' (model inputs: ${[...this.#inputByName.keys()].join(', ')})`);
      }
      const t = Tensor.from(feeds[name], `input '${name}'`);
      checkAgainst(info, t, `input '${name}'`);
      names.push(name);
      tensors.push(nativeView(t));
    }
    if (names.length !== this.#inputByName.size) {
      for (const info of this.inputs) {
        if (!Object.prototype.hasOwnProperty.call(feeds, info.name)) {
          throw new NimifyError('INVALID_ARGUMENT', `feeds: missing input '${info.name}' (expected ${info.type} ${shapeText(info.shape)})`);
        }
      }
    }
    return [names, tensors];
  }

  #fetches(spec: InferOptions['outputs']): [string[], (NativeTensorLike | null)[], (Tensor | null)[] | null] {
    if (spec === undefined) return [this.#allOutputNames, this.#noPreallocated, null];
    const names: string[] = [];
    if (Array.isArray(spec)) {
      if (spec.length === 0) throw invalid('options.outputs', 'at least one output name', spec);
      for (const name of spec) {
        if (typeof name !== 'string' || !this.#outputByName.has(name)) {
          throw new NimifyError('INVALID_ARGUMENT', `options.outputs: unknown output ${typeof name === 'string' ? `'${name}'` : describe(name)} (model outputs: ${this.#allOutputNames.join(', ')})`);
        }
        if (names.includes(name)) throw new NimifyError('INVALID_ARGUMENT', `options.outputs: output '${name}' listed twice`);
        names.push(name);
      }
      return [names, names.map(() => null), null];
    }
    if (!isPlainObject(spec)) throw invalid('options.outputs', 'an array of output names or an object of output name → Tensor', spec);
    const callers: (Tensor | null)[] = [];
    for (const name in spec) {
      const info = this.#outputByName.get(name);
      if (info === undefined) {
        throw new NimifyError('INVALID_ARGUMENT', `options.outputs: unknown output '${name}' (model outputs: ${this.#allOutputNames.join(', ')})`);
      }
      const v = spec[name];
      if (v === null || v === undefined) {
        callers.push(null);
      } else {
        const t = Tensor.from(v, `output '${name}'`);
        checkAgainst(info, t, `output '${name}'`);
        if (t.type === 'string') throw new NimifyError('INVALID_ARGUMENT', `output '${name}': string outputs cannot be preallocated`);
        callers.push(t);
      }
      names.push(name);
    }
    if (names.length === 0) throw invalid('options.outputs', 'at least one output', spec);
    return [names, callers.map((t) => (t ? nativeView(t) : null)), callers];
  }

  #wrap(names: string[], results: NativeResult[], callers: (Tensor | null)[] | null): Outputs {
    const out: Outputs = {};
    for (let i = 0; i < names.length; i++) {
      const r = results[i];
      out[names[i]] = r === null ? (callers as Tensor[])[i] : Tensor.fromNative(r[0] as TensorType, r[1] as TensorDataMap[TensorType], r[2]);
    }
    return out;
  }
}

/** Loads a model from a file path or from its bytes. Parsing and optimization run off the main thread. */
export async function loadModel(source: string | Uint8Array | ArrayBuffer, options?: LoadOptions): Promise<Model> {
  const config = toNativeConfig(options);
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
  return new Model(binding, session, session.describe());
}
