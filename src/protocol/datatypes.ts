/**
 * Open Inference Protocol datatypes ↔ nimify tensor types, and the 16-bit float conversions the
 * JSON encoding needs (FP16/BF16 travel as numbers in JSON, as bit patterns in binary).
 */
import { CTORS, type TensorType } from '../runtime/tensor';

export const DATATYPE_TO_TYPE = {
  BOOL: 'bool',
  UINT8: 'uint8',
  UINT16: 'uint16',
  UINT32: 'uint32',
  UINT64: 'uint64',
  INT8: 'int8',
  INT16: 'int16',
  INT32: 'int32',
  INT64: 'int64',
  FP16: 'float16',
  FP32: 'float32',
  FP64: 'float64',
  BYTES: 'string',
  BF16: 'bfloat16',
} as const satisfies Record<string, TensorType>;

export type Datatype = keyof typeof DATATYPE_TO_TYPE;

export const DATATYPES = Object.keys(DATATYPE_TO_TYPE) as Datatype[];

// Record<TensorType, …>: every tensor type has a wire name (the compiler checks the table is complete).
const TYPE_TO_DATATYPE: Record<TensorType, Datatype> = Object.fromEntries(Object.entries(DATATYPE_TO_TYPE).map(([d, t]) => [t, d])) as Record<TensorType, Datatype>;

/** The wire datatype of a model tensor type; null for types the protocol cannot carry (sequence, map). */
export function toDatatype(type: string): Datatype | null {
  return Object.prototype.hasOwnProperty.call(TYPE_TO_DATATYPE, type) ? TYPE_TO_DATATYPE[type as TensorType] : null;
}

export function isDatatype(value: unknown): value is Datatype {
  return typeof value === 'string' && Object.prototype.hasOwnProperty.call(DATATYPE_TO_TYPE, value);
}

/** Bytes per element (0 for BYTES: variable, length-prefixed). */
export const ELEMENT_BYTES = Object.fromEntries(
  DATATYPES.map((d) => [d, d === 'BYTES' ? 0 : CTORS[DATATYPE_TO_TYPE[d] as Exclude<TensorType, 'string'>].BYTES_PER_ELEMENT]),
) as Record<Datatype, number>;

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/**
 * Rounds |value| to `mantBits` fractional bits with round-half-to-even, straight from the double
 * (going through float32 first would round twice). Returns [biased exponent, mantissa] or null
 * for overflow; exponent 0 = subnormal.
 */
function roundToFormat(abs: number, mantBits: number, bias: number, maxExp: number): [number, number] | null {
  const minExp = 1 - bias;
  let e = Math.max(Math.floor(Math.log2(abs)), minExp);
  if (2 ** e > abs && e > minExp) e--; // log2 rounding at powers of two
  if (2 ** (e + 1) <= abs) e++;
  const scaled = abs / 2 ** (e - mantBits); // exact: division by a power of two
  let m = Math.floor(scaled);
  const frac = scaled - m;
  if (frac > 0.5 || (frac === 0.5 && (m & 1) === 1)) m++;
  let biased = e + bias;
  if (m >= 2 ** (mantBits + 1)) {
    m /= 2;
    biased++;
  }
  if (m < 2 ** mantBits) biased = 0; // subnormal (or zero)
  if (biased > maxExp) return null;
  return [biased, m & (2 ** mantBits - 1)];
}

/** float → bits of a 16-bit float format; NaN stays NaN, overflow → ±Infinity. */
function toBits16(value: number, mantBits: number, bias: number, maxExp: number, infBits: number, nanBits: number): number {
  const sign = value < 0 || Object.is(value, -0) ? 0x8000 : 0;
  if (Number.isNaN(value)) return nanBits;
  const abs = Math.abs(value);
  if (abs === 0) return sign;
  const r = abs === Infinity ? null : roundToFormat(abs, mantBits, bias, maxExp);
  return r === null ? sign | infBits : sign | (r[0] << mantBits) | r[1];
}

/** float → IEEE half bits, round to nearest even; NaN stays NaN, overflow → ±Infinity. */
export function toHalfBits(value: number): number {
  return toBits16(value, 10, 15, 30, 0x7c00, 0x7e00);
}

/** IEEE half bits → float. */
export function fromHalfBits(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant !== 0 ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/** float → bfloat16 bits (round to nearest even from the double; NaN stays NaN, overflow → ±Infinity). */
export function toBf16Bits(value: number): number {
  return toBits16(value, 7, 127, 254, 0x7f80, 0x7fc0);
}

/** bfloat16 bits → float. */
export function fromBf16Bits(b: number): number {
  u32[0] = b << 16;
  return f32[0];
}
