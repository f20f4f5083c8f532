/**
 * Open Inference Protocol datatypes ↔ nimify tensor types, and the 16-bit float conversions the
 * JSON encoding needs (FP16/BF16 travel as numbers in JSON, as bit patterns in binary).
 */
import type { TensorType } from '../tensor';

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

const TYPE_TO_DATATYPE = Object.fromEntries(Object.entries(DATATYPE_TO_TYPE).map(([d, t]) => [t, d])) as Record<TensorType, Datatype>;

/** The wire datatype of a model tensor type; null for types the protocol cannot carry (sequence, map). */
export function toDatatype(type: string): Datatype | null {
  return Object.prototype.hasOwnProperty.call(TYPE_TO_DATATYPE, type) ? TYPE_TO_DATATYPE[type as TensorType] : null;
}

export function isDatatype(value: unknown): value is Datatype {
  return typeof value === 'string' && Object.prototype.hasOwnProperty.call(DATATYPE_TO_TYPE, value);
}

/** Bytes per element (0 for BYTES: variable, length-prefixed). */
export const ELEMENT_BYTES: Record<Datatype, number> = {
  BOOL: 1, UINT8: 1, UINT16: 2, UINT32: 4, UINT64: 8, INT8: 1, INT16: 2, INT32: 4, INT64: 8,
  FP16: 2, FP32: 4, FP64: 8, BYTES: 0, BF16: 2,
};

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** float → IEEE half bits, round to nearest even; NaN stays NaN, overflow → ±Infinity. */
export function toHalfBits(value: number): number {
  f32[0] = value;
  const x = u32[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && (half & 1) !== 0)) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (half & 1) !== 0)) half++;
  return sign | half;
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

/** float → bfloat16 bits (the high half of the float32, round to nearest even). */
export function toBf16Bits(value: number): number {
  f32[0] = value;
  const x = u32[0];
  if ((x & 0x7f800000) === 0x7f800000 && (x & 0x7fffff) !== 0) return (x >>> 16) | 0x40;
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

/** bfloat16 bits → float. */
export function fromBf16Bits(b: number): number {
  u32[0] = b << 16;
  return f32[0];
}
