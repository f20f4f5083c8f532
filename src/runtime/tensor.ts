/**
 * Tensor: a typed array (or string[]) with an element type and dims. Constructing one validates
 * everything once; the addon then wraps `data` without copying it.
 */
import { NimifyError } from './errors';
import { describe, expectDims, invalid } from './validate';

export interface TensorDataMap {
  float32: Float32Array;
  float64: Float64Array;
  /** IEEE half-precision bit patterns (a Float16Array is accepted where Node has one). */
  float16: Uint16Array;
  /** bfloat16 bit patterns (the high 16 bits of a float32). */
  bfloat16: Uint16Array;
  int8: Int8Array;
  uint8: Uint8Array;
  int16: Int16Array;
  uint16: Uint16Array;
  int32: Int32Array;
  uint32: Uint32Array;
  int64: BigInt64Array;
  uint64: BigUint64Array;
  /** One byte per element, 0 or 1. */
  bool: Uint8Array;
  string: string[];
}

export type TensorType = keyof TensorDataMap;

/** Any object with `type`, `data` and `dims`, such as an onnxruntime-node Tensor; validated on use. */
export interface TensorLike {
  readonly type: string;
  readonly data: unknown;
  readonly dims: readonly number[];
}
export type TensorData = TensorDataMap[TensorType];

/** @internal */
export type TypedArrayCtor = {
  new (length: number): ArrayBufferView & ArrayLike<unknown>;
  new (buffer: ArrayBuffer, byteOffset: number, length: number): ArrayBufferView & ArrayLike<unknown>;
  from(src: ArrayLike<unknown>): ArrayBufferView & ArrayLike<unknown>;
  readonly BYTES_PER_ELEMENT: number;
  name: string;
};

/** @internal The typed array class that holds each numeric tensor type (the protocol codec uses it too). */
export const CTORS: Record<Exclude<TensorType, 'string'>, TypedArrayCtor> = {
  float32: Float32Array,
  float64: Float64Array,
  float16: Uint16Array,
  bfloat16: Uint16Array,
  int8: Int8Array,
  uint8: Uint8Array,
  int16: Int16Array,
  uint16: Uint16Array,
  int32: Int32Array,
  uint32: Uint32Array,
  int64: BigInt64Array,
  uint64: BigUint64Array,
  bool: Uint8Array,
} as unknown as Record<Exclude<TensorType, 'string'>, TypedArrayCtor>;

export const TENSOR_TYPES: readonly TensorType[] = [...Object.keys(CTORS), 'string'] as TensorType[];

const Float16ArrayCtor = (globalThis as { Float16Array?: TypedArrayCtor }).Float16Array;

/** Marks construction from addon results: already validated natively, skip the checks. */
const TRUSTED = Symbol('nimify.trustedTensor');

/** @internal */
export function isTensorType(t: unknown): t is TensorType {
  return typeof t === 'string' && (t === 'string' || Object.prototype.hasOwnProperty.call(CTORS, t));
}

/** @internal Elements of a tensor of `dims`. */
export function elementCount(dims: readonly number[]): number {
  let n = 1;
  for (const d of dims) n *= d;
  return n;
}

function coerceData(type: TensorType, data: unknown, name: string): TensorData {
  if (type === 'string') {
    if (!Array.isArray(data)) throw invalid(`${name}.data`, 'an array of strings for type string', data);
    for (let i = 0; i < data.length; i++) {
      if (typeof data[i] !== 'string') throw invalid(`${name}.data[${i}]`, 'a string', data[i]);
    }
    return data as string[];
  }
  const ctor = CTORS[type];
  if (ArrayBuffer.isView(data)) {
    if (data instanceof ctor) return data as unknown as TensorData;
    if (type === 'bool' && data instanceof Uint8ClampedArray) return data as unknown as TensorData;
    if (type === 'float16' && Float16ArrayCtor && data instanceof Float16ArrayCtor) return data as unknown as TensorData;
    throw invalid(`${name}.data`, `a ${ctor.name} for type ${type}`, data);
  }
  if (Array.isArray(data)) {
    // Plain arrays are converted (a copy) for convenience, as onnxruntime-node does.
    try {
      if (type === 'int64' || type === 'uint64') return ctor.from(data.map((v) => BigInt(v as bigint))) as unknown as TensorData;
      if (type === 'bool') return Uint8Array.from(data, (v) => (v ? 1 : 0)) as unknown as TensorData;
      for (let i = 0; i < data.length; i++) {
        if (typeof data[i] !== 'number') throw invalid(`${name}.data[${i}]`, 'a number', data[i]);
      }
      return ctor.from(data) as unknown as TensorData;
    } catch (err) {
      if (err instanceof NimifyError) throw err;
      throw invalid(`${name}.data`, `values convertible to ${type}`, data);
    }
  }
  throw invalid(`${name}.data`, `a ${ctor.name} (or an array) for type ${type}`, data);
}

export class Tensor<T extends TensorType = TensorType> {
  readonly type: T;
  readonly data: TensorDataMap[T];
  readonly dims: readonly number[];

  /**
   * @param type element type
   * @param data the typed array for `type` (see TensorDataMap), a plain array (copied), or string[]
   * @param dims defaults to [data.length]
   */
  constructor(type: T, data: TensorDataMap[T] | readonly unknown[], dims?: readonly number[]);
  constructor(type: T, data: TensorDataMap[T] | readonly unknown[], dims?: readonly number[], trusted?: typeof TRUSTED) {
    if (trusted === TRUSTED) {
      this.type = type;
      this.data = data as TensorDataMap[T];
      this.dims = dims as number[];
      return;
    }
    if (!isTensorType(type)) throw invalid('tensor type', `one of ${TENSOR_TYPES.join(', ')}`, type);
    const d = coerceData(type, data, 'tensor');
    const shape = dims === undefined ? [d.length] : expectDims('tensor dims', dims);
    const n = elementCount(shape);
    if (n !== d.length) {
      throw new NimifyError(
        'INVALID_ARGUMENT',
        `tensor data: dims [${shape.join(', ')}] need ${n} elements, received ${describe(d)}`,
      );
    }
    this.type = type;
    this.data = d as TensorDataMap[T];
    this.dims = dims === undefined ? shape : shape.slice();
  }

  /** Number of elements. */
  get size(): number {
    return this.data.length;
  }

  /** @internal Builds a tensor from values the addon produced and checked. */
  static fromNative<T extends TensorType>(type: T, data: TensorDataMap[T], dims: number[]): Tensor<T> {
    return new (Tensor as unknown as new (t: T, d: unknown, s: number[], k: typeof TRUSTED) => Tensor<T>)(type, data, dims, TRUSTED);
  }

  /** Accepts a Tensor, or a tensor-like object such as an onnxruntime-node Tensor. */
  static from(value: unknown, name = 'tensor'): Tensor {
    if (value instanceof Tensor) return value;
    if (value !== null && typeof value === 'object' && 'type' in value && 'data' in value && 'dims' in value) {
      const v = value as { type: unknown; data: unknown; dims: unknown };
      try {
        return new Tensor(v.type as TensorType, v.data as TensorData, v.dims as number[]);
      } catch (err) {
        if (err instanceof NimifyError) {
          throw new NimifyError(err.code, err.message.replace(/^tensor/, name));
        }
        throw err;
      }
    }
    throw invalid(name, 'a Tensor', value);
  }
}

/** @internal The data as the addon reads it: a Float16Array as a Uint16Array view (no copy). */
export function nativeData(t: Tensor): unknown {
  const d = t.data;
  if (Float16ArrayCtor !== undefined && d instanceof Float16ArrayCtor) {
    const a = d as unknown as ArrayBufferView & { length: number };
    return new Uint16Array(a.buffer, a.byteOffset, a.length);
  }
  return d;
}
