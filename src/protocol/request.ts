/**
 * Decoding of Open Inference Protocol inference requests (KServe v2 REST) into nimify feeds:
 * JSON tensors (flat or nested `data`), the binary tensor data extension (`binary_data_size`,
 * `Inference-Header-Content-Length`) and the raw binary mode (header length 0). Binary input bytes
 * become typed-array views of the request body (no per-element decode; one memcpy only when the
 * body is not aligned for the element type). Every failure is a NimifyError naming the field.
 *
 * Runs on the event-loop thread; cost is O(elements) for JSON data and O(inputs) for binary.
 */
import { NimifyError } from '../runtime/errors';
import { CTORS, Tensor } from '../runtime/tensor';
import { describe, invalid, isPlainObject } from '../runtime/validate';
import { copiedAtInfer, requestArray } from './arrays';
import { JsonNumbers } from './infer-json';
import { DATATYPE_TO_TYPE, DATATYPES, ELEMENT_BYTES, isDatatype, toBf16Bits, toHalfBits, type Datatype } from './datatypes';

/** A model tensor as the protocol describes it: shape dims are numbers, -1 for a variable dim. */
export interface WireTensor {
  name: string;
  datatype: Datatype;
  shape: number[];
}

export interface WireModel {
  inputs: readonly WireTensor[];
  outputs: readonly WireTensor[];
  /** Whether dim 0 is the batch dim (raw binary requests are then batch 1). */
  batched: boolean;
}

export interface DecodedRequest {
  id: string | undefined;
  /** Request parameters other than the reserved ones nimify consumes; echoed in the response. */
  parameters: Record<string, unknown> | undefined;
  feeds: Record<string, Tensor>;
  /** Output names in response order. */
  outputs: string[];
  /** Whether each output (same index as `outputs`) goes back as binary. */
  binary: boolean[];
  priority: 0 | 1 | undefined;
  timeoutMs: number | undefined;
}

/** Most dims a request tensor may have (ONNX Runtime itself has no lower limit; this bounds work). */
export const MAX_RANK = 32;

/** Longest request timeout: what setTimeout can hold (2^31 - 1 ms), in µs. */
const MAX_TIMEOUT_US = 2_147_483_647_000;

/** Reserved request-level parameters (Triton's list): consumed or refused, never echoed. */
const RESERVED = new Set(['sequence_id', 'sequence_start', 'sequence_end', 'priority', 'timeout', 'headers', 'binary_data_output']);

function bad(message: string): NimifyError {
  return new NimifyError('INVALID_ARGUMENT', message);
}

/** `data` (at `where`) does not hold the `count` elements `shape` needs. */
const wrongCount = (where: string, shape: readonly number[], count: number, received: number): NimifyError =>
  bad(`${where}: shape [${shape.join(', ')}] needs ${count} elements, received ${received}`);

/** `data` (at `where`) nests its lists deeper than the tensor's rank (at least 1) allows. */
const tooDeep = (where: string, maxDepth: number): NimifyError => bad(`${where}: nested deeper than the tensor's ${maxDepth} dims`);

/**
 * Decodes a request. `header` is the parsed JSON header (already structurally checked by the route
 * schema, re-checked here because the codec is also a public function); `binary` is the bytes
 * after the header (null when the body is JSON only), or — gRPC's `raw_input_contents`
 * (src/protocol/grpc.ts) — one Buffer per input in the order of `inputs`, each input then
 * without `data`. `raw` = raw binary mode (header length 0). `shared` (@internal, the server's
 * own routes): small JSON inputs may be views of shared blocks (arrays.ts) when infer() will copy
 * every numeric input of the request; otherwise, and by default, each array has its own memory.
 */
export function decodeInferRequest(model: WireModel, header: unknown, binary: Buffer | readonly Buffer[] | null, raw = false, shared = false): DecodedRequest {
  const parts = binary !== null && !Buffer.isBuffer(binary) ? (binary as readonly Buffer[]) : null;
  const body = parts === null ? (binary as Buffer | null) : null;
  if (raw) return decodeRaw(model, body ?? Buffer.alloc(0));
  if (!isPlainObject(header)) throw invalid('request body', 'a JSON object with `inputs`', header);
  const id = header.id;
  if (id !== undefined && typeof id !== 'string') throw invalid('id', 'a string', id);

  let priority: 0 | 1 | undefined;
  let timeoutMs: number | undefined;
  let binaryDefault = false;
  let parameters: Record<string, unknown> | undefined;
  if (header.parameters !== undefined) {
    const p = checkParameters('parameters', header.parameters);
    for (const key of Object.keys(p)) {
      const v = p[key];
      if (key === 'priority') {
        // Triton numbers levels from 1 (highest); 0, and any level above the model's
        // priority_levels, is "the default level". nimify has two: 1 high, 2 (the default) normal.
        if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw invalid('parameters.priority', 'a non-negative integer (1 high; 0, 2 and above: the default level)', v);
        priority = v === 1 ? 1 : 0;
      } else if (key === 'timeout') {
        if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0 || v > MAX_TIMEOUT_US) throw invalid('parameters.timeout', `a positive integer of microseconds up to ${MAX_TIMEOUT_US}`, v);
        timeoutMs = v / 1000;
      } else if (key === 'binary_data_output') {
        if (typeof v !== 'boolean') throw invalid('parameters.binary_data_output', 'true or false', v);
        binaryDefault = v;
      } else if (RESERVED.has(key) || key.startsWith('triton_')) {
        throw new NimifyError('UNSUPPORTED', `parameters.${key}: reserved parameter that nimify does not implement${key.startsWith('sequence_') ? ' (sequence batching)' : ''}`);
      } else {
        (parameters ??= {})[key] = v;
      }
    }
  }

  const inputs = header.inputs;
  if (!Array.isArray(inputs) || inputs.length === 0) throw invalid('inputs', 'a non-empty array of input tensors', inputs);
  const feeds: Record<string, Tensor> = Object.create(null);
  const pooled = shared && copiedAtInfer(numericBytes(inputs) ?? [Infinity]);
  let offset = 0;
  for (let i = 0; i < inputs.length; i++) {
    const input = inputs[i];
    const where = `inputs[${i}]`;
    if (!isPlainObject(input)) throw invalid(where, 'an object with name, shape, datatype and data', input);
    const name = input.name;
    if (typeof name !== 'string' || name.length === 0) throw invalid(`${where}.name`, 'a non-empty string', name);
    const spec = model.inputs.find((t) => t.name === name);
    if (spec === undefined) throw bad(`${where}.name: unexpected input '${name}'; the model's inputs are ${model.inputs.map((t) => `'${t.name}'`).join(', ')}`);
    if (feeds[name] !== undefined) throw bad(`${where}.name: input '${name}' is given twice`);
    const datatype = input.datatype;
    if (!isDatatype(datatype)) throw invalid(`${where}.datatype`, `one of ${DATATYPES.join(', ')}`, datatype);
    if (datatype !== spec.datatype) throw bad(`${where}.datatype: input '${name}' is ${spec.datatype}, received ${datatype}`);
    const shape = checkShape(`${where}.shape`, input.shape, spec);
    const count = elementCount(`${where}.shape`, shape);
    const params = input.parameters === undefined ? undefined : checkParameters(`${where}.parameters`, input.parameters);
    if (params?.shared_memory_region !== undefined) throw new NimifyError('UNSUPPORTED', `${where}.parameters.shared_memory_region: shared memory is not supported`);
    const size = params?.binary_data_size;
    if (parts !== null) {
      if (input.data !== undefined) throw bad(`${where}: has contents, and the request has raw_input_contents; send one or the other for every input`);
      if (size !== undefined) throw bad(`${where}.parameters.binary_data_size: the HTTP binary extension's parameter; gRPC carries the bytes in raw_input_contents`);
      const bytes = parts[i];
      if (bytes === undefined) throw bad(`raw_input_contents: ${parts.length} entries for ${inputs.length} inputs; send one per input, in the order of inputs`);
      feeds[name] = fromBytes(where, spec.datatype, bytes, shape, count, `raw_input_contents[${i}]`);
    } else if (size !== undefined) {
      if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) throw invalid(`${where}.parameters.binary_data_size`, 'a non-negative integer', size);
      if (input.data !== undefined) throw bad(`${where}: has both data and binary_data_size; send one`);
      if (body === null || offset + size > body.length) {
        throw bad(`${where}.parameters.binary_data_size: ${size} bytes at offset ${offset}, but the binary part of the body has ${body?.length ?? 0} bytes (is Inference-Header-Content-Length right?)`);
      }
      feeds[name] = fromBytes(where, spec.datatype, body.subarray(offset, offset + size), shape, count);
      offset += size;
    } else {
      if (input.data === undefined) throw bad(`${where}.data: missing (send data, or parameters.binary_data_size with the binary extension)`);
      feeds[name] = fromJson(where, spec.datatype, input.data, shape, count, pooled);
    }
  }
  if (body !== null && offset !== body.length) {
    throw bad(`request body: ${body.length - offset} bytes of binary data after the last binary input (binary_data_size adds up to ${offset})`);
  }
  if (parts !== null && parts.length !== inputs.length) throw bad(`raw_input_contents: ${parts.length} entries for ${inputs.length} inputs; send one per input, in the order of inputs`);

  const outputs: string[] = [];
  const binaryFlags: boolean[] = [];
  if (header.outputs === undefined) {
    for (const o of model.outputs) {
      outputs.push(o.name);
      binaryFlags.push(binaryDefault);
    }
  } else {
    const requested = header.outputs;
    if (!Array.isArray(requested)) throw invalid('outputs', 'an array of {name}', requested);
    for (let i = 0; i < requested.length; i++) {
      const o = requested[i];
      if (!isPlainObject(o)) throw invalid(`outputs[${i}]`, 'an object with a name', o);
      const name = o.name;
      if (typeof name !== 'string' || !model.outputs.some((t) => t.name === name)) {
        throw bad(`outputs[${i}].name: unknown output ${JSON.stringify(name)}; the model's outputs are ${model.outputs.map((t) => `'${t.name}'`).join(', ')}`);
      }
      if (outputs.includes(name)) throw bad(`outputs[${i}].name: output '${name}' is requested twice`);
      let bin = binaryDefault;
      if (o.parameters !== undefined) {
        const p = checkParameters(`outputs[${i}].parameters`, o.parameters);
        if (p.binary_data !== undefined) {
          if (typeof p.binary_data !== 'boolean') throw invalid(`outputs[${i}].parameters.binary_data`, 'true or false', p.binary_data);
          bin = p.binary_data;
        }
        if (p.classification !== undefined) throw new NimifyError('UNSUPPORTED', `outputs[${i}].parameters.classification: the classification extension is not supported`);
        if (p.shared_memory_region !== undefined) throw new NimifyError('UNSUPPORTED', `outputs[${i}].parameters.shared_memory_region: shared memory is not supported`);
      }
      outputs.push(name);
      binaryFlags.push(bin);
    }
  }
  return { id, parameters, feeds, outputs, binary: binaryFlags, priority, timeoutMs };
}

function checkParameters(where: string, value: unknown): Record<string, unknown> {
  if (!isPlainObject(value)) throw invalid(where, 'an object of string, number or boolean values', value);
  for (const key of Object.keys(value)) {
    const v = value[key];
    if (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean') {
      throw invalid(`${where}.${key}`, 'a string, number or boolean', v);
    }
  }
  return value;
}

function checkShape(where: string, value: unknown, spec: WireTensor): number[] {
  if (!Array.isArray(value)) throw invalid(where, 'an array of non-negative integers', value);
  if (value.length > MAX_RANK) throw invalid(where, `at most ${MAX_RANK} dims`, value);
  for (let i = 0; i < value.length; i++) {
    const d = value[i];
    if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) throw invalid(`${where}[${i}]`, 'a non-negative integer', d);
  }
  const dims = value as number[];
  if (spec.shape.length !== dims.length) {
    throw bad(`${where}: input '${spec.name}' has ${spec.shape.length} dims [${spec.shape.join(', ')}], received [${dims.join(', ')}]`);
  }
  for (let i = 0; i < dims.length; i++) {
    if (spec.shape[i] >= 0 && spec.shape[i] !== dims[i]) {
      throw bad(`${where}[${i}]: input '${spec.name}' needs shape [${spec.shape.join(', ')}] (-1 = any), received [${dims.join(', ')}]`);
    }
  }
  return dims;
}

function elementCount(where: string, shape: readonly number[]): number {
  const n = shapeCount(shape);
  if (n === null) throw bad(`${where}: [${shape.join(', ')}] has more elements than any request can carry`);
  return n;
}

/** Binary bytes → a tensor viewing them (little-endian hosts; copies only to align). */
export function fromBytes(where: string, datatype: Datatype, bytes: Buffer, shape: number[], count: number, field = `${where}.parameters.binary_data_size`): Tensor {
  const type = DATATYPE_TO_TYPE[datatype];
  if (datatype === 'BYTES') return new Tensor('string', decodeBytesElements(where, bytes, count), shape);
  const size = ELEMENT_BYTES[datatype];
  if (bytes.length !== count * size) {
    throw bad(`${field}: shape [${shape.join(', ')}] of ${datatype} needs ${count * size} bytes, received ${bytes.length}`);
  }
  let buffer = bytes.buffer as ArrayBuffer;
  let byteOffset = bytes.byteOffset;
  if (byteOffset % size !== 0) {
    const copy = new Uint8Array(bytes.length);
    copy.set(bytes);
    buffer = copy.buffer;
    byteOffset = 0;
  }
  return new Tensor(type, new CTORS[type as Exclude<typeof type, 'string'>](buffer, byteOffset, count) as never, shape);
}

/** BYTES in binary form: each element a 4-byte little-endian length, then that many bytes. */
function decodeBytesElements(where: string, bytes: Buffer, count: number): string[] {
  // Each element takes at least its 4-byte length: check before allocating anything.
  if (count * 4 > bytes.length) throw bad(`${where}: ${count} BYTES elements need at least ${count * 4} bytes (4-byte lengths), received ${bytes.length}`);
  const out: string[] = new Array(count);
  let pos = 0;
  for (let i = 0; i < count; i++) {
    if (pos + 4 > bytes.length) throw bad(`${where}: BYTES element ${i} of ${count}: the binary data ends before its 4-byte length`);
    const len = bytes.readUInt32LE(pos);
    pos += 4;
    if (pos + len > bytes.length) throw bad(`${where}: BYTES element ${i} declares ${len} bytes, only ${bytes.length - pos} remain`);
    out[i] = bytes.toString('utf8', pos, pos + len);
    pos += len;
  }
  if (pos !== bytes.length) throw bad(`${where}: ${bytes.length - pos} bytes left after ${count} BYTES elements`);
  return out;
}

type Sink = { set(i: number, v: unknown, where: string): void };

/**
 * The byte size of each numeric input as the header declares it (datatype and shape; BYTES
 * inputs none), or null when one is not declared well enough to tell (decoding refuses it).
 */
function numericBytes(inputs: unknown[]): number[] | null {
  const sizes: number[] = [];
  for (const input of inputs) {
    if (!isPlainObject(input) || !isDatatype(input.datatype)) return null;
    if (input.datatype === 'BYTES') continue;
    const n = shapeCount(input.shape);
    if (n === null) return null;
    sizes.push(n * ELEMENT_BYTES[input.datatype]);
  }
  return sizes;
}

/** JSON data (flat, or nested to at most the tensor's rank) → a tensor, checking every element. */
function fromJson(where: string, datatype: Datatype, data: unknown, shape: number[], count: number, pooled: boolean): Tensor {
  const type = DATATYPE_TO_TYPE[datatype];
  if (ArrayBuffer.isView(data)) {
    // Pre-decoded off the event loop by the JSON worker (json-worker.ts) with the same checks.
    if (!isArrayFor(datatype, data)) throw invalid(`${where}.data`, `${datatype} values`, data);
    const n = (data as unknown as { length: number }).length;
    if (n !== count) throw wrongCount(`${where}.data`, shape, count, n);
    return new Tensor(type, data as never, shape);
  }
  return new Tensor(type, jsonElements(where, datatype, data, shape, count, pooled) as never, shape);
}

/**
 * A numeric array the scanner read (infer-json.ts) → the typed array (or string[]) for
 * `datatype`: what jsonElements() gives for the same array, with the same errors.
 */
function numberElements(where: string, datatype: Datatype, { values, depth }: JsonNumbers, shape: readonly number[], count: number, pooled: boolean): unknown {
  const maxDepth = Math.max(shape.length, 1);
  if (depth > maxDepth) throw tooDeep(where, maxDepth);
  if (values.length !== count) throw wrongCount(where, shape, count, values.length);
  const type = DATATYPE_TO_TYPE[datatype];
  const out = allocate(type, count, pooled);
  if (datatype === 'FP32' || datatype === 'FP64') {
    // Element by element assignment and set() round a double to float32 the same way.
    (out as Float32Array | Float64Array).set(values);
    return out;
  }
  const sink = makeSink(datatype, out);
  for (let i = 0; i < count; i++) sink.set(i, values[i], where);
  return out;
}

/**
 * The elements of JSON `data` as the typed array (or string[]) for `datatype`: flat or nested to
 * at most the rank, exactly `count` of them, each checked. Shared by the in-thread decode and the
 * JSON worker, so both give the same result and the same messages. `pooled`: a small array may
 * be a view of a shared block (requestArray; decodeInferRequest decides).
 */
export function jsonElements(where: string, datatype: Datatype, data: unknown, shape: readonly number[], count: number, pooled = false): unknown {
  if (data instanceof JsonNumbers) return numberElements(`${where}.data`, datatype, data, shape, count, pooled);
  if (!Array.isArray(data)) {
    // A scalar is accepted for a one-element tensor ([] or [1, 1, ...]).
    if (count !== 1 || data === null || typeof data === 'object') throw invalid(`${where}.data`, `an array of ${count} ${datatype} values`, data);
    data = [data];
  }
  const maxDepth = Math.max(shape.length, 1);
  // Count before allocating: a tiny body must not make the server reserve what its shape claims.
  const leaves = countLeaves(data as unknown[], 1, maxDepth, `${where}.data`);
  if (leaves !== count) throw wrongCount(`${where}.data`, shape, count, leaves);
  const out = allocate(DATATYPE_TO_TYPE[datatype], count, pooled);
  const sink = makeSink(datatype, out);
  const n = fill(data as unknown[], sink, 0, count, 1, maxDepth, `${where}.data`);
  if (n !== count) throw wrongCount(`${where}.data`, shape, count, n);
  return out;
}

function isArrayFor(datatype: Datatype, data: ArrayBufferView): boolean {
  const type = DATATYPE_TO_TYPE[datatype];
  return type !== 'string' && data instanceof CTORS[type];
}

/** Element count of a request shape, or null when the shape is not a valid dims array. */
export function shapeCount(shape: unknown): number | null {
  if (!Array.isArray(shape) || shape.length > MAX_RANK) return null;
  let n = 1;
  for (const d of shape) {
    if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) return null;
    n *= d;
  }
  return n > Number.MAX_SAFE_INTEGER ? null : n;
}

function countLeaves(arr: unknown[], depth: number, maxDepth: number, where: string): number {
  let n = 0;
  for (let i = 0; i < arr.length; i++) {
    const v = arr[i];
    if (Array.isArray(v)) {
      if (depth >= maxDepth) throw tooDeep(where, maxDepth);
      n += countLeaves(v, depth + 1, maxDepth, where);
    } else n++;
  }
  return n;
}

function fill(arr: unknown[], sink: Sink, pos: number, count: number, depth: number, maxDepth: number, where: string): number {
  for (let i = 0; i < arr.length; i++) {
    const v = arr[i];
    if (Array.isArray(v)) {
      if (depth >= maxDepth) throw tooDeep(where, maxDepth);
      pos = fill(v, sink, pos, count, depth + 1, maxDepth, where);
    } else {
      if (pos >= count) throw bad(`${where}: more than the ${count} elements the shape holds`);
      sink.set(pos++, v, where);
    }
  }
  return pos;
}

function allocate(type: (typeof DATATYPE_TO_TYPE)[Datatype], count: number, pooled: boolean): unknown {
  return type === 'string' ? new Array<string>(count) : pooled ? requestArray(CTORS[type], count) : new CTORS[type](count);
}

const INT_RANGES: Partial<Record<Datatype, [number, number]>> = {
  INT8: [-128, 127], UINT8: [0, 255], INT16: [-32768, 32767], UINT16: [0, 65535],
  INT32: [-2147483648, 2147483647], UINT32: [0, 4294967295],
  INT64: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER], UINT64: [0, Number.MAX_SAFE_INTEGER],
};

function elementError(where: string, i: number, expected: string, v: unknown): NimifyError {
  return bad(`${where}: element ${i}: expected ${expected}, received ${describe(v)}`);
}

function makeSink(datatype: Datatype, out: unknown): Sink {
  switch (datatype) {
    case 'FP32': case 'FP64': {
      const a = out as Float32Array;
      return { set(i, v, w) { if (typeof v !== 'number') throw elementError(w, i, 'a number', v); a[i] = v; } };
    }
    case 'FP16': {
      const a = out as Uint16Array;
      return { set(i, v, w) { if (typeof v !== 'number') throw elementError(w, i, 'a number', v); a[i] = toHalfBits(v); } };
    }
    case 'BF16': {
      const a = out as Uint16Array;
      return { set(i, v, w) { if (typeof v !== 'number') throw elementError(w, i, 'a number', v); a[i] = toBf16Bits(v); } };
    }
    case 'BOOL': {
      const a = out as Uint8Array;
      return { set(i, v, w) { if (typeof v !== 'boolean') throw elementError(w, i, 'true or false', v); a[i] = v ? 1 : 0; } };
    }
    case 'BYTES': {
      const a = out as string[];
      return { set(i, v, w) { if (typeof v !== 'string') throw elementError(w, i, 'a string', v); a[i] = v; } };
    }
    case 'INT64': case 'UINT64': {
      const a = out as BigInt64Array;
      const [lo, hi] = INT_RANGES[datatype]!;
      const what = `an integer in [${lo}, ${hi}] (larger 64-bit values need the binary extension)`;
      return { set(i, v, w) { if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v > hi) throw elementError(w, i, what, v); a[i] = BigInt(v); } };
    }
    default: {
      const a = out as Int32Array;
      const [lo, hi] = INT_RANGES[datatype]!;
      const what = `an integer in [${lo}, ${hi}]`;
      return { set(i, v, w) { if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v > hi) throw elementError(w, i, what, v); a[i] = v; } };
    }
  }
}

/**
 * Raw binary mode (Inference-Header-Content-Length: 0): the body is the bytes of the model's only
 * input, batch 1 when the model batches, with at most one other variable dim inferred from the
 * length; all outputs go back binary.
 */
function decodeRaw(model: WireModel, body: Buffer): DecodedRequest {
  if (model.inputs.length !== 1) {
    throw bad(`Inference-Header-Content-Length: 0 (raw binary request) needs a model with exactly one input; this one has ${model.inputs.length}`);
  }
  const spec = model.inputs[0];
  const shape = spec.shape.slice();
  if (model.batched && shape.length > 0 && shape[0] < 0) shape[0] = 1;
  const variable = shape.flatMap((d, i) => (d < 0 ? [i] : []));
  if (variable.length > 1) {
    throw bad(`raw binary request: input '${spec.name}' has shape [${spec.shape.join(', ')}] with more than one variable dim besides the batch; send a JSON header`);
  }
  let data: Tensor;
  if (spec.datatype === 'BYTES') {
    if (variable.length === 1) shape[variable[0]] = 1;
    const count = shape.reduce((a, b) => a * b, 1);
    if (count !== 1) throw bad(`raw binary request: a BYTES input must hold one element, '${spec.name}' has shape [${spec.shape.join(', ')}]`);
    data = new Tensor('string', [body.toString('utf8')], shape);
  } else {
    const size = ELEMENT_BYTES[spec.datatype];
    const fixed = shape.reduce((a, d) => (d < 0 ? a : a * d), 1) * size;
    if (variable.length === 1) {
      if (fixed === 0 || body.length % fixed !== 0) throw bad(`raw binary request: ${body.length} bytes is not a whole number of [${spec.shape.join(', ')}] ${spec.datatype} rows (${fixed} bytes each)`);
      shape[variable[0]] = body.length / fixed;
    }
    data = fromBytes('raw binary request', spec.datatype, body, shape, shape.reduce((a, b) => a * b, 1), 'raw binary request body');
  }
  return {
    id: undefined,
    parameters: undefined,
    feeds: { [spec.name]: data },
    outputs: model.outputs.map((o) => o.name),
    binary: model.outputs.map(() => true),
    priority: undefined,
    timeoutMs: undefined,
  };
}
