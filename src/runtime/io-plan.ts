/**
 * IoPlan: turns a model's feeds and output requests into the arrays the addon reads, in the
 * model's input/output order, and its results back into Tensors.
 *
 * Output memory (see native/tensor_io.h): when an output's shape is known before the run — every
 * dim fixed, or a symbolic dim that an input of this call binds (`batch` in x[batch, 64] →
 * y[batch, 10]) — the plan allocates the output's typed array here and ORT writes into it: no
 * copy, and no native allocation or array building per call. Only outputs with data-dependent
 * shapes (and strings) come back through the addon's counted copy path.
 *
 * Tiny outputs (HEAP_COPY_BYTES) are copied out for the caller: infer()'s are written into the
 * addon's own memory and copied into the settlement's buffer when the request settles (native
 * run_job.h kCopiedOutputBytes), inferSync()'s into internal blocks; small ones share memory
 * (OutputPool), as Node's small Buffers share its Buffer pool: their typed arrays are views of a
 * shared ArrayBuffer that cannot be detached.
 */
import { markAsUntransferable } from 'node:worker_threads';
import { NimifyError } from './errors';
import type { NativeResult, NativeDescription, NativeDeviceTensor, NativeIoInfo } from './binding';
import { CTORS, elementCount, isTensorType, Tensor, nativeData, type TensorDataMap, type TensorType, type TypedArrayCtor } from './tensor';
import { DeviceTensor } from './device-tensor';
import { describe, invalid, isPlainObject } from './validate';

type TensorInfo = NativeIoInfo;

/** Above this size a predicted output is allocated uninitialized (ORT overwrites every byte). */
const ZERO_FILL_LIMIT = 64 * 1024;

/**
 * Where predicted outputs smaller than half a block live, on a Node whose untransferable
 * ArrayBuffers cannot be detached (OutputPool.LIMIT > 0): views of one shared, zero-filled block
 * (the rule and the sizes of Node's Buffer pool), so that a small model's request makes no
 * ArrayBuffer of its own. An ArrayBuffer costs V8 a backing store, an external-memory
 * registration and a sweep on collection: measured on the tiny MLP at 64 in flight (2-core VM,
 * interleaved runs with and without the pool), the JS thread's CPU time per request fell ~20 %
 * (medians 3.1–3.2 → 2.5–2.6 µs on Node 20 while the pool still ran there; 3.2–4.7 → 2.7–3.7 µs
 * on Node 24, a noisier day) and throughput rose 15–25 %.
 *
 * What it means for a caller, as for pooled Buffers: `tensor.data.buffer` may hold other
 * outputs too (always read it with the view's byteOffset/byteLength; cloning the view, as
 * postMessage(view) does, copies the whole block), and a kept result keeps its whole block
 * (8 KiB) alive (`data.slice()` copies it out). The block must never be detached while other
 * requests' runs may still be writing into it, and N-API cannot forbid that: blocks are marked
 * untransferable, and the pool is used only where that mark holds against every way to detach
 * (#detachProof) — Node 24. Node 20 and 22 let a web byte stream (and 22 `transfer()`) detach
 * even an untransferable buffer (Node's own Buffer pool included): there the pool is not used
 * and every output gets its own ArrayBuffer, as before. Each view starts 16-byte aligned.
 *
 * One pool per JS thread (each worker thread loads this module anew), used by that thread only.
 * Blocks are never reused: a full block is left to the views that hold it (the GC frees it with
 * the last one), and the next output starts a new block.
 */
export class OutputPool {
  static readonly BLOCK_BYTES = 8 * 1024;
  /** Outputs of fewer bytes come from the pool (half a block); 0 where the pool is not used. */
  static readonly LIMIT = OutputPool.#detachProof() ? OutputPool.BLOCK_BYTES / 2 : 0;
  #block: ArrayBuffer | null = null;
  #offset = 0;

  /**
   * Whether a buffer marked untransferable stays attached through every way JS has to detach
   * one: a transfer list (structuredClone, like postMessage), ArrayBuffer.prototype.transfer()
   * and transferToFixedLength(), and a web byte stream (enqueueing a view, or reading into one
   * with a BYOB reader, transfers its buffer). Each is tried once, on a probe, synchronously
   * (both byte-stream transfers happen inside the call). Node 24 refuses them all; Node 20 and
   * 22 detach through byte streams (and 22 through transfer()).
   */
  static #detachProof(): boolean {
    const method = (b: ArrayBuffer, name: string) => (b as unknown as Record<string, (() => ArrayBuffer) | undefined>)[name]?.call(b);
    const attempts = [
      (b: ArrayBuffer) => structuredClone(b, { transfer: [b] }),
      (b: ArrayBuffer) => method(b, 'transfer'),
      (b: ArrayBuffer) => method(b, 'transferToFixedLength'),
      (b: ArrayBuffer) => new ReadableStream({ type: 'bytes', start: (c) => c.enqueue(new Uint8Array(b)) }),
      (b: ArrayBuffer) => void new ReadableStream({ type: 'bytes' }).getReader({ mode: 'byob' }).read(new Uint8Array(b)).catch(() => undefined),
    ];
    return attempts.every((attempt) => {
      const probe = new ArrayBuffer(8);
      markAsUntransferable(probe);
      try {
        attempt(probe);
      } catch {
        // Refused: what the pool needs.
      }
      return probe.byteLength === 8;
    });
  }

  /** A zero-filled `ctor` array of `count` elements (`bytes` < LIMIT) inside the current block. */
  take(ctor: TypedArrayCtor, bytes: number, count: number): ArrayBufferView {
    // (A detached block — impossible where the pool is used — would only start a new one.)
    if (this.#block === null || this.#offset + bytes > OutputPool.BLOCK_BYTES || this.#block.byteLength === 0) {
      this.#block = new ArrayBuffer(OutputPool.BLOCK_BYTES);
      markAsUntransferable(this.#block);
      this.#offset = 0;
    }
    const view = new ctor(this.#block, this.#offset, count);
    this.#offset = (this.#offset + bytes + 15) & ~15;
    return view;
  }
}

const outputPool = new OutputPool();

/**
 * Predicted outputs of at most this many bytes (V8's limit for a typed array kept on its heap,
 * `--typed-array-max-size-in-heap`) are written by ORT into a view of an internal block
 * (`scratch`) and handed to the caller as a copy, `view.slice()`, which V8 makes on its
 * heap with no ArrayBuffer of its own. A typed array over an ArrayBuffer of its own costs ~400
 * ns to make (a backing store, an external-memory registration, a sweep when collected); the
 * view and the copy ~90 ns (2-core VM, Node 20 and 24). The blocks never reach a caller, so
 * nothing outside this module can detach one while runs still write into it: unlike the shared
 * pool (OutputPool), this is safe on every Node.
 */
export const HEAP_COPY_BYTES = 64;

/**
 * The internal blocks behind tiny predicted outputs: OutputPool's blocks, which no caller ever
 * sees (wrap() hands out copies). One per JS thread, like the pool.
 */
const scratch = new OutputPool();

/** How one output dim is known before a run: a constant, or dim `dim` of input `input`. */
type DimSource = number | { input: number; dim: number };

interface OutputPlan {
  index: number;
  info: TensorInfo;
  ctor: TypedArrayCtor | undefined;
  /** null when the shape depends on data (or the output is not a numeric tensor). */
  dims: DimSource[] | null;
}

export interface NativeCall {
  inData: unknown[];
  inDims: (readonly number[])[];
  outIndex: number[];
  outData: (ArrayBufferView | null)[];
  /**
   * What the addon's run() is given for inData and outData (setArgs): the array, or its
   * one entry alone when there is exactly one and it is not an array itself (a string tensor's
   * data is), which spares the addon an element read per request (native/run_job.cc Prepare).
   */
  inArg: unknown;
  outArg: unknown;
  outDims: (readonly number[] | null)[];
  /** Bit i: outData[i] was allocated here from a predicted shape. */
  predicted: number;
  /**
   * Bit i: output i is tiny and copied at settlement (infer() only): outData[i] is null, its
   * predicted dims are in outDims[i], and the addon writes it into its own memory (SPEC_COPIED).
   */
  copied: number;
  /**
   * Everything numeric about the call, packed for the addon (one typed array read instead of an
   * napi call per number): [nIn, nOut, predicted, flags (SPEC_FLAGS), then the request's own
   * slots (SPEC_REQUEST: infer() writes them, 0 from prepare()), outIndex..., per input: rank, dims...,
   * per output: rank or -1 when ORT allocates, dims...]. The plan's own reused buffer, not a
   * view cut to size (that would be one more object per call): it may hold stale values after
   * the call's last entry, which the addon never reads (it reads what the header describes).
   * Valid until the next prepare(); the addon reads it during the call only.
   */
  spec: Float64Array;
  outNames: string[];
  /** The Tensor each non-null outData belongs to; null for a tiny output's scratch view (wrap() copies it). */
  outTensors: (Tensor | null)[];
  /** The outputs stay on the device (DeviceTensor results): SPEC_FLAGS.DEVICE_OUTPUTS. */
  deviceOutputs: boolean;
  /** Some feed is a DeviceTensor (SPEC_FLAGS.DEVICE_INPUTS): only then does the addon look for one. */
  deviceInputs: boolean;
  /**
   * The fetched outputs go to the addon in model order whatever order the caller named them in
   * (the order is part of a request's batch key: two requests for the same outputs share a
   * batch). `order[k]`: where the caller's k-th output is in the call's arrays; null when the
   * caller's order is the model's.
   */
  order: number[] | null;
}

/** The spec header's flags word (native/run_job.h RunJob::Prepare). */
export const SPEC_FLAGS = { DEVICE_OUTPUTS: 1, DEVICE_INPUTS: 2 } as const;

/**
 * Where infer() writes its request's numbers into the spec header (native/run_job.h
 * RunJob::Request): the ticket of the promise to settle (settle.ts), the cancel id (0: none),
 * the priority (0 or 1) and the timeout in µs (0: none). inferSync() leaves them 0.
 */
export const SPEC_REQUEST = { TICKET: 4, RUN_ID: 5, PRIORITY: 6, TIMEOUT_US: 7 } as const;
/** The header slot of NativeCall.copied. */
const SPEC_COPIED = 8;
const SPEC_HEADER = 9;

export function shapeText(shape: Array<number | string> | null): string {
  return shape ? `[${shape.map((d) => (d === -1 ? '?' : d)).join(', ')}]` : '(any shape)';
}

/** `kind` and the tensor's name make the message's subject ("input 'x'"), built only on failure. */
function checkAgainst(info: TensorInfo, t: Pick<Tensor, 'type' | 'dims'>, kind: 'input' | 'output'): void {
  if (t.type !== info.type) {
    throw new NimifyError('INVALID_ARGUMENT', `${kind} '${info.name}': expected type ${info.type}, received ${t.type}`);
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
    throw new NimifyError('INVALID_ARGUMENT', `${kind} '${info.name}': expected shape ${shapeText(shape)}, received [${dims.join(', ')}]`);
  }
}

/** Bytes of a `dims`-shaped output of `ctor`, rounded up to 8 as the settlement lays them out. */
function copiedBytes(dims: readonly number[], ctor: TypedArrayCtor): number {
  return (elementCount(dims) * ctor.BYTES_PER_ELEMENT + 7) & ~7;
}

// Views of the settlement buffer last read, one per array type (a settlement made while another
// runs has a buffer of its own: rare, and the cache then follows it).
let viewsOf: ArrayBuffer | undefined;
const views = new Map<TypedArrayCtor, { slice(a: number, b: number): unknown }>();

/** A copy, on V8's heap, of the `dims`-shaped output at byte `at` of the settlement buffer `data`. */
function copyOut(data: ArrayBuffer, ctor: TypedArrayCtor, at: number, dims: readonly number[]): TensorDataMap[TensorType] {
  if (data !== viewsOf) {
    views.clear();
    viewsOf = data;
  }
  let view = views.get(ctor);
  if (view === undefined) views.set(ctor, (view = new ctor(data, 0, data.byteLength / ctor.BYTES_PER_ELEMENT) as never));
  const first = at / ctor.BYTES_PER_ELEMENT;
  return view.slice(first, first + elementCount(dims)) as TensorDataMap[TensorType];
}

/** NativeCall.inArg and outArg from inData and outData. */
function setArgs(call: NativeCall): void {
  call.inArg = call.inData.length === 1 && !Array.isArray(call.inData[0]) ? call.inData[0] : call.inData;
  call.outArg = call.outData.length === 1 ? call.outData[0] : call.outData;
}

/**
 * Puts a call's fetched outputs in model order (NativeCall.order), permuting every per-output
 * array and the predicted-buffer bits together. A call already in model order is left as is.
 */
function inModelOrder(call: NativeCall): void {
  const idx = call.outIndex;
  let sorted = true;
  for (let k = 1; k < idx.length && sorted; k++) sorted = idx[k - 1] < idx[k];
  if (sorted) return;
  // perm[j]: the caller's position of the output at model-order position j.
  const perm = idx.map((_, k) => k).sort((a, b) => idx[a] - idx[b]);
  const permute = <T>(xs: T[]): T[] => perm.map((k) => xs[k]);
  let predicted = 0;
  let copied = 0;
  perm.forEach((k, j) => {
    if (j < 31 && k < 31 && (call.predicted >> k) & 1) predicted |= 1 << j;
    if (j < 31 && k < 31 && (call.copied >> k) & 1) copied |= 1 << j;
  });
  const order: number[] = new Array(idx.length);
  perm.forEach((k, j) => (order[k] = j));
  call.outIndex = permute(idx);
  call.outData = permute(call.outData);
  call.outDims = permute(call.outDims);
  call.outNames = permute(call.outNames);
  call.outTensors = permute(call.outTensors);
  call.predicted = predicted;
  call.copied = copied;
  call.order = order;
}

export class IoPlan {
  readonly #inputs: readonly TensorInfo[];
  readonly #inputIndex = new Map<string, number>();
  readonly #outputs: OutputPlan[];
  readonly #outputIndex = new Map<string, number>();
  readonly #allOutputs: number[];
  /** Output names in model order: the outNames of every call that requests all outputs (shared, never mutated). */
  readonly #allNames: string[];
  #spec = new Float64Array(64);
  /** #spec holds a usual call's spec (every output, none supplied, no DeviceTensor input) for these input ranks and dims. */
  #usualSpec = false;
  /** ... and for infer() (tiny outputs copied at settlement) when true, inferSync() when false. */
  #usualCopied = false;
  readonly #usualDims: number[] = [];
  /** Tiny outputs of infer() of at most this many bytes are copied at settlement (0: never). */
  readonly #copyBytes: number;

  /** `copyBytes`: the addon's copiedOutputBytes (native run_job.h kCopiedOutputBytes). */
  constructor(description: Pick<NativeDescription, 'inputs' | 'outputs'>, copyBytes = 0) {
    this.#copyBytes = Math.min(copyBytes, HEAP_COPY_BYTES);
    this.#inputs = description.inputs;
    description.inputs.forEach((io, i) => this.#inputIndex.set(io.name, i));
    description.outputs.forEach((io, i) => this.#outputIndex.set(io.name, i));
    this.#allOutputs = description.outputs.map((_, i) => i);
    this.#allNames = description.outputs.map((o) => o.name);
    // Where each symbolic dim name can be read from: its first occurrence among the inputs.
    const symbols = new Map<string, { input: number; dim: number }>();
    description.inputs.forEach((io, input) =>
      io.shape?.forEach((d, dim) => {
        if (typeof d === 'string' && !symbols.has(d)) symbols.set(d, { input, dim });
      }),
    );
    this.#outputs = description.outputs.map((info, index) => {
      const ctor = isTensorType(info.type) && info.type !== 'string' ? CTORS[info.type] : undefined;
      let dims: DimSource[] | null = ctor && info.shape ? [] : null;
      for (const d of info.shape ?? []) {
        if (dims === null) break;
        if (typeof d === 'number' && d >= 0) dims.push(d);
        else if (typeof d === 'string' && symbols.has(d)) dims.push(symbols.get(d)!);
        else dims = null;
      }
      return { index, info, ctor, dims };
    });
  }

  /**
   * Validates feeds and output requests; throws NimifyError('INVALID_ARGUMENT'). Feeds may be
   * DeviceTensors (passed to the addon as they are). `deviceOutputs`: the results stay on the
   * device (no output buffers are allocated or accepted, string outputs are refused). `settles`:
   * the call is infer()'s, whose tiny outputs are copied at settlement (NativeCall.copied).
   */
  prepare(feeds: unknown, outputs: readonly string[] | Record<string, unknown> | undefined, deviceOutputs = false, settles = false): NativeCall {
    if (!isPlainObject(feeds)) throw invalid('feeds', 'an object mapping input names to Tensors', feeds);
    const n = this.#inputs.length;
    const inData: unknown[] = new Array(n);
    const inDims: (readonly number[])[] = new Array(n);
    let given = 0;
    let deviceInputs = false;
    for (const name in feeds) {
      const i = this.#inputIndex.get(name);
      if (i === undefined) {
        throw new NimifyError('INVALID_ARGUMENT', `feeds: unknown input '${name}' (model inputs: ${[...this.#inputIndex.keys()].join(', ')})`);
      }
      const v = feeds[name];
      given++;
      if (v instanceof DeviceTensor) {
        // Checked here like a Tensor; the addon re-checks it and that it is on the model's device.
        const native = DeviceTensor.nativeOf(v, `input '${name}'`);
        checkAgainst(this.#inputs[i], v, 'input');
        inData[i] = native;
        inDims[i] = v.dims;
        deviceInputs = true;
        continue;
      }
      const t = v instanceof Tensor ? v : Tensor.from(v, `input '${name}'`);
      checkAgainst(this.#inputs[i], t, 'input');
      inData[i] = nativeData(t);
      inDims[i] = t.dims;
    }
    if (given !== n) {
      for (const info of this.#inputs) {
        if (!Object.prototype.hasOwnProperty.call(feeds, info.name)) {
          throw new NimifyError('INVALID_ARGUMENT', `feeds: missing input '${info.name}' (expected ${info.type} ${shapeText(info.shape)})`);
        }
      }
    }

    if (deviceOutputs) return this.#deviceCall(inData, inDims, deviceInputs, outputs);
    if (outputs === undefined) {
      // The usual call (every output, none supplied): arrays sized once, the index and name
      // lists shared by every such call (per-request JS cost is the library's throughput limit).
      const m = this.#allOutputs.length;
      const outData: (ArrayBufferView | null)[] = new Array(m);
      const outDims: (readonly number[] | null)[] = new Array(m);
      const outTensors: (Tensor | null)[] = new Array(m);
      let predicted = 0;
      let copied = 0;
      for (let i = 0; i < m; i++) {
        const plan = this.#outputs[i];
        if (plan.dims !== null && plan.ctor !== undefined) {
          outTensors[i] = this.#allocate(plan, inDims, outData, outDims, i, settles);
          if (i < 31) predicted |= 1 << i;
          if (i < 31 && outData[i] === null) copied |= 1 << i;
        } else {
          outTensors[i] = outData[i] = outDims[i] = null;
        }
      }
      const call: NativeCall = { inData, inDims, outIndex: this.#allOutputs, outData, outDims, predicted, copied, outNames: this.#allNames, outTensors, inArg: null, outArg: null, spec: this.#spec, deviceOutputs: false, deviceInputs, order: null };
      // A usual call's spec follows from its input dims alone (the outputs' dims and predicted
      // and copied bits are the plans' functions of them and of `settles`): the last one encoded
      // is reused as it is.
      if (this.#usualSpec && !deviceInputs && this.#usualCopied === settles && this.#sameUsualDims(inDims)) {
        setArgs(call);
        return call;
      }
      call.spec = this.#encode(call);
      if (!deviceInputs) this.#rememberUsual(inDims, settles);
      return call;
    }

    const call: NativeCall = { inData, inDims, outIndex: [], outData: [], outDims: [], predicted: 0, copied: 0, outNames: [], outTensors: [], inArg: null, outArg: null, spec: this.#spec, deviceOutputs: false, deviceInputs, order: null };
    if (Array.isArray(outputs)) {
      for (const i of this.#namedOutputs(outputs)) this.#addOutput(call, inDims, i, null, settles);
    } else if (isPlainObject(outputs)) {
      for (const name in outputs) {
        const i = this.#outputIndex.get(name);
        if (i === undefined) {
          throw new NimifyError('INVALID_ARGUMENT', `options.outputs: unknown output '${name}' (model outputs: ${[...this.#outputIndex.keys()].join(', ')})`);
        }
        const v = outputs[name];
        let t: Tensor | null = null;
        if (v !== null && v !== undefined) {
          t = Tensor.from(v, `output '${name}'`);
          checkAgainst(this.#outputs[i].info, t, 'output');
          if (t.type === 'string') throw new NimifyError('INVALID_ARGUMENT', `output '${name}': string outputs cannot be preallocated`);
        }
        this.#addOutput(call, inDims, i, t, settles);
      }
      if (call.outIndex.length === 0) throw invalid('options.outputs', 'at least one output', outputs);
    } else {
      throw invalid('options.outputs', 'an array of output names or an object of output name → Tensor', outputs);
    }
    inModelOrder(call);
    call.spec = this.#encode(call);
    return call;
  }

  /** The model indices of options.outputs given as names: each known, none twice, at least one. */
  #namedOutputs(outputs: readonly unknown[]): number[] {
    if (outputs.length === 0) throw invalid('options.outputs', 'at least one output name', outputs);
    const out: number[] = [];
    for (const name of outputs) {
      const i = typeof name === 'string' ? this.#outputIndex.get(name) : undefined;
      if (i === undefined) {
        throw new NimifyError('INVALID_ARGUMENT', `options.outputs: unknown output ${typeof name === 'string' ? `'${name}'` : describe(name)} (model outputs: ${[...this.#outputIndex.keys()].join(', ')})`);
      }
      if (out.includes(i)) throw new NimifyError('INVALID_ARGUMENT', `options.outputs: output '${name}' listed twice`);
      out.push(i);
    }
    return out;
  }

  /** A call whose outputs stay on the device: named outputs (or all), no buffers, no strings. */
  #deviceCall(inData: unknown[], inDims: (readonly number[])[], deviceInputs: boolean, outputs: readonly string[] | Record<string, unknown> | undefined): NativeCall {
    let outIndex: number[];
    if (outputs === undefined) {
      outIndex = this.#allOutputs;
    } else if (Array.isArray(outputs)) {
      outIndex = this.#namedOutputs(outputs);
    } else {
      throw invalid('options.outputs', "an array of output names (buffers cannot be supplied with outputLocation 'device')", outputs);
    }
    for (const i of outIndex) {
      const info = this.#outputs[i].info;
      if (info.type === 'string') throw new NimifyError('INVALID_ARGUMENT', `options.outputLocation: output '${info.name}' is a string tensor; strings come back to the CPU only`);
    }
    const m = outIndex.length;
    const call: NativeCall = {
      inData, inDims, outIndex, outData: new Array(m).fill(null), outDims: new Array(m).fill(null), predicted: 0, copied: 0,
      outNames: outIndex.map((i) => this.#outputs[i].info.name), outTensors: new Array(m).fill(null), inArg: null, outArg: null, spec: this.#spec, deviceOutputs: true, deviceInputs, order: null,
    };
    inModelOrder(call);
    call.spec = this.#encode(call);
    return call;
  }

  #addOutput(call: NativeCall, inDims: (readonly number[])[], index: number, supplied: Tensor | null, settles: boolean): void {
    const plan = this.#outputs[index];
    const slot = call.outIndex.length;
    call.outIndex.push(index);
    call.outNames.push(plan.info.name);
    if (supplied === null && plan.dims !== null && plan.ctor !== undefined) {
      call.outTensors.push(this.#allocate(plan, inDims, call.outData, call.outDims, slot, settles));
      if (slot < 31) call.predicted |= 1 << slot;
      if (slot < 31 && call.outData[slot] === null) call.copied |= 1 << slot;
      return;
    }
    call.outTensors.push(supplied);
    call.outData.push(supplied === null ? null : (nativeData(supplied) as ArrayBufferView));
    call.outDims.push(supplied === null ? null : supplied.dims);
  }

  /** Whether `inDims` are those of the usual call whose spec #spec holds (#rememberUsual). */
  #sameUsualDims(inDims: (readonly number[])[]): boolean {
    const u = this.#usualDims;
    let k = 0;
    for (let i = 0; i < inDims.length; i++) {
      const d = inDims[i];
      if (u[k++] !== d.length) return false;
      for (let j = 0; j < d.length; j++) if (u[k++] !== d[j]) return false;
    }
    return true;
  }

  #rememberUsual(inDims: (readonly number[])[], settles: boolean): void {
    const u = this.#usualDims;
    u.length = 0;
    for (const d of inDims) u.push(d.length, ...d);
    this.#usualSpec = true;
    this.#usualCopied = settles;
  }

  #encode(call: NativeCall): Float64Array {
    setArgs(call);
    this.#usualSpec = false;
    const nOut = call.outIndex.length;
    let size = SPEC_HEADER + nOut;
    for (const d of call.inDims) size += 1 + d.length;
    for (const d of call.outDims) size += 1 + (d === null ? 0 : d.length);
    if (this.#spec.length < size) this.#spec = new Float64Array(Math.max(size, this.#spec.length * 2));
    const spec = this.#spec;
    let k = 0;
    spec[k++] = call.inDims.length;
    spec[k++] = nOut;
    spec[k++] = call.predicted;
    spec[k++] = (call.deviceOutputs ? SPEC_FLAGS.DEVICE_OUTPUTS : 0) | (call.deviceInputs ? SPEC_FLAGS.DEVICE_INPUTS : 0);
    while (k < SPEC_HEADER) spec[k++] = 0;
    spec[SPEC_COPIED] = call.copied;
    for (let i = 0; i < nOut; i++) spec[k++] = call.outIndex[i];
    for (const d of call.inDims) {
      spec[k++] = d.length;
      for (let j = 0; j < d.length; j++) spec[k++] = d[j];
    }
    for (const d of call.outDims) {
      if (d === null) {
        spec[k++] = -1;
        continue;
      }
      spec[k++] = d.length;
      for (let j = 0; j < d.length; j++) spec[k++] = d[j];
    }
    return spec;
  }

  /**
   * Builds the outputs object from the addon's results (null: ORT wrote into outData; all of
   * them when `results` is null; the addon's DeviceTensor wrappers for a device-outputs call).
   */
  wrap(call: NativeCall, results: NativeResult[] | null, data?: ArrayBuffer, offset?: number): Record<string, Tensor>;
  wrap(call: NativeCall & { deviceOutputs: true }, results: NativeDeviceTensor[]): Record<string, DeviceTensor>;
  wrap(call: NativeCall, results: unknown[] | null, data?: ArrayBuffer, offset?: number): Record<string, Tensor | DeviceTensor>;
  wrap(call: NativeCall, results: unknown[] | null, data?: ArrayBuffer, offset = 0): Record<string, Tensor | DeviceTensor> {
    const out: Record<string, Tensor | DeviceTensor> = {};
    // Outputs copied at settlement lie in `data` from `offset`: those the run wrote, in model
    // order, each 8-byte aligned (native RunJob::Settle). In model order (the usual call) each
    // one's place is the running total; a call in another order gets them all first.
    let next = offset;
    let copiedAt: number[] | null = null;
    if (call.copied !== 0 && call.order !== null) {
      copiedAt = [];
      for (let i = 0; i < call.outIndex.length && i < 31; i++) {
        if (((call.copied >> i) & 1) === 0 || (results !== null && results[i] !== null)) continue;
        copiedAt[i] = next;
        next += copiedBytes(call.outDims[i] as number[], this.#outputs[call.outIndex[i]].ctor as TypedArrayCtor);
      }
    }
    // In the caller's order (the object's keys keep it), from the call's model-order arrays.
    for (let k = 0; k < call.outNames.length; k++) {
      const i = call.order === null ? k : call.order[k];
      const r = results === null ? null : results[i];
      const plan = this.#outputs[call.outIndex[i]];
      const type = plan.info.type as TensorType;
      let t: Tensor | DeviceTensor;
      if (call.deviceOutputs) {
        t = DeviceTensor.fromNative(r as NativeDeviceTensor);
      } else if (r !== null) {
        t = Tensor.fromNative(type, (r as NativeResult & object)[0] as TensorDataMap[TensorType], (r as NativeResult & object)[1]);
      } else if (i < 31 && (call.copied >> i) & 1) {
        // A tiny output the addon copied into the settlement's buffer: the caller gets a copy.
        const dims = call.outDims[i] as number[];
        const ctor = plan.ctor as TypedArrayCtor;
        const at = copiedAt === null ? next : copiedAt[i];
        if (copiedAt === null) next += copiedBytes(dims, ctor);
        t = Tensor.fromNative(type, copyOut(data as ArrayBuffer, ctor, at, dims), dims);
      } else {
        // ORT wrote into the call's own Tensor, or, for a tiny output, a scratch view
        // (#allocate): the caller gets a copy of that.
        t = call.outTensors[i] ?? Tensor.fromNative(type, (call.outData[i] as unknown as { slice(): TensorDataMap[TensorType] }).slice(), call.outDims[i] as number[]);
      }
      const name = call.outNames[i];
      // Output names come from the model file: never let one named __proto__ set a prototype.
      if (name === '__proto__') Object.defineProperty(out, name, { value: t, enumerable: true, writable: true, configurable: true });
      else out[name] = t;
    }
    return out;
  }

  /**
   * Allocates output `slot`'s buffer from its predicted shape into outData[slot] and
   * outDims[slot]. Returns its Tensor — or null for a tiny output (HEAP_COPY_BYTES): with
   * `settles` (infer()) one copied at settlement, with no buffer (outData[slot] null); else a
   * scratch view that wrap() copies for the caller and nothing else ever sees.
   */
  #allocate(plan: OutputPlan, inDims: (readonly number[])[], outData: (ArrayBufferView | null)[], outDims: (readonly number[] | null)[], slot: number, settles: boolean): Tensor | null {
    const src = plan.dims as DimSource[];
    const dims: number[] = new Array(src.length);
    let count = 1;
    for (let d = 0; d < src.length; d++) {
      const s = src[d];
      dims[d] = typeof s === 'number' ? s : inDims[s.input][s.dim];
      count *= dims[d];
    }
    const ctor = plan.ctor as TypedArrayCtor;
    const bytes = count * ctor.BYTES_PER_ELEMENT;
    outDims[slot] = dims;
    if (settles && bytes <= this.#copyBytes) {
      outData[slot] = null; // copied at settlement (NativeCall.copied)
      return null;
    }
    if (bytes <= HEAP_COPY_BYTES) {
      outData[slot] = scratch.take(ctor, bytes, count);
      return null;
    }
    // Small: a view of the shared pool (OutputPool). Middling: a zero-filled array (cheapest to
    // create) over its own ArrayBuffer — never `new ctor(count)`, which would put one of at most
    // 64 bytes on V8's heap, where the addon's first look at its memory must move it off-heap (a
    // second allocation and a copy). Large: uninitialized, unpooled memory.
    const data =
      bytes < OutputPool.LIMIT
        ? outputPool.take(ctor, bytes, count)
        : bytes <= ZERO_FILL_LIMIT
          ? new ctor(new ArrayBuffer(bytes), 0, count)
          : new ctor(Buffer.allocUnsafeSlow(bytes).buffer as ArrayBuffer, 0, count);
    outData[slot] = data;
    return Tensor.fromNative(plan.info.type as TensorType, data as never, dims);
  }
}
