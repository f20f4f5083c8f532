import { describe, expect, it } from 'vitest';
import {
  DATATYPE_TO_TYPE,
  DATATYPES,
  ELEMENT_BYTES,
  fromBf16Bits,
  fromHalfBits,
  isDatatype,
  toBf16Bits,
  toDatatype,
  toHalfBits,
  type Datatype,
} from '../../src/protocol/datatypes';
import { TENSOR_TYPES } from '../../src/runtime/tensor';

/** The float32 whose bit pattern is `bits` (as a JS number). */
function f32FromBits(bits: number): number {
  const u = new Uint32Array([bits >>> 0]);
  return new Float32Array(u.buffer)[0];
}

/** The bit pattern of Math.fround(value). */
function bitsOfF32(value: number): number {
  return new Uint32Array(new Float32Array([value]).buffer)[0];
}

const isHalfNaN = (h: number): boolean => (h & 0x7c00) === 0x7c00 && (h & 0x03ff) !== 0;
const isBf16NaN = (b: number): boolean => (b & 0x7f80) === 0x7f80 && (b & 0x007f) !== 0;

/** NaNs with various signs and payloads (as JS numbers; where the platform keeps payloads, they differ in bits). */
const NANS: number[] = ([
  [0x7ff80000, 0x00000000],
  [0xfff80000, 0x00000000],
  [0x7fffffff, 0xffffffff],
  [0xffffffff, 0xffffffff],
  [0x7ff00000, 0x00000001],
  [0x7ff00000, 0x20000000],
  [0x7ff7ffff, 0xe0000000],
] as const).map(([hi, lo]) => {
  const dv = new DataView(new ArrayBuffer(8));
  dv.setUint32(0, hi);
  dv.setUint32(4, lo);
  return dv.getFloat64(0);
});

const ALL: [Datatype, string][] = [
  ['BOOL', 'bool'],
  ['UINT8', 'uint8'],
  ['UINT16', 'uint16'],
  ['UINT32', 'uint32'],
  ['UINT64', 'uint64'],
  ['INT8', 'int8'],
  ['INT16', 'int16'],
  ['INT32', 'int32'],
  ['INT64', 'int64'],
  ['FP16', 'float16'],
  ['FP32', 'float32'],
  ['FP64', 'float64'],
  ['BYTES', 'string'],
  ['BF16', 'bfloat16'],
];

describe('datatype table', () => {
  it('lists the fourteen Open Inference Protocol datatypes', () => {
    expect(DATATYPES).toHaveLength(14);
    expect([...DATATYPES].sort()).toEqual(ALL.map(([d]) => d).sort());
  });

  it.each(ALL)('%s ↔ %s', (datatype, type) => {
    expect(DATATYPE_TO_TYPE[datatype]).toBe(type);
    expect(toDatatype(type)).toBe(datatype);
    expect(isDatatype(datatype)).toBe(true);
  });

  it('maps every tensor type to exactly one datatype (a bijection)', () => {
    const seen = new Set<string>();
    for (const type of TENSOR_TYPES) {
      const d = toDatatype(type);
      expect(d, type).not.toBeNull();
      expect(DATATYPE_TO_TYPE[d!]).toBe(type);
      seen.add(d!);
    }
    expect(seen.size).toBe(14);
  });

  it('toDatatype returns null for types the protocol cannot carry and for non-types', () => {
    for (const t of ['sequence', 'map', 'float', 'double', 'FP32', 'BYTES', '', 'toString', 'constructor', '__proto__', 'hasOwnProperty']) {
      expect(toDatatype(t), t).toBeNull();
    }
  });

  it('isDatatype is exact and case-sensitive and refuses non-strings and inherited names', () => {
    for (const v of ['fp32', 'Fp32', 'FP8', 'STRING', 'TYPE_FP32', 'float32', 'string', '', ' FP32', 'FP32 ', 'toString', 'constructor', '__proto__', 'valueOf']) {
      expect(isDatatype(v), JSON.stringify(v)).toBe(false);
    }
    for (const v of [0, 1, null, undefined, true, {}, [], ['FP32'], { FP32: 1 }]) {
      expect(isDatatype(v)).toBe(false);
    }
  });

  it('ELEMENT_BYTES matches the protocol table (BYTES is variable: 0)', () => {
    expect(ELEMENT_BYTES).toEqual({
      BOOL: 1, UINT8: 1, UINT16: 2, UINT32: 4, UINT64: 8, INT8: 1, INT16: 2, INT32: 4, INT64: 8,
      FP16: 2, FP32: 4, FP64: 8, BYTES: 0, BF16: 2,
    });
  });
});

describe('IEEE half (FP16) conversion', () => {
  it('encodes known values to their bit patterns', () => {
    const cases: [number, number][] = [
      [0, 0x0000],
      [1, 0x3c00],
      [-1, 0xbc00],
      [-2, 0xc000],
      [2, 0x4000],
      [0.5, 0x3800],
      [1.5, 0x3e00],
      [3, 0x4200],
      [0.1, 0x2e66],
      [1 / 3, 0x3555],
      [65504, 0x7bff], // largest finite half
      [-65504, 0xfbff],
      [2 ** -14, 0x0400], // smallest normal
      [2 ** -24, 0x0001], // smallest subnormal
      [-(2 ** -24), 0x8001],
      [1023 * 2 ** -24, 0x03ff], // largest subnormal
      [512 * 2 ** -24, 0x0200],
      [2048, 0x6800],
      [Infinity, 0x7c00],
      [-Infinity, 0xfc00],
    ];
    for (const [value, bits] of cases) {
      expect(toHalfBits(value).toString(16), String(value)).toBe(bits.toString(16));
    }
  });

  it('keeps the sign of zero', () => {
    expect(toHalfBits(0)).toBe(0x0000);
    expect(toHalfBits(-0)).toBe(0x8000);
    expect(Object.is(fromHalfBits(0x8000), -0)).toBe(true);
    expect(Object.is(fromHalfBits(0x0000), 0)).toBe(true);
  });

  it('decodes known bit patterns', () => {
    expect(fromHalfBits(0x3c00)).toBe(1);
    expect(fromHalfBits(0xc000)).toBe(-2);
    expect(fromHalfBits(0x7bff)).toBe(65504);
    expect(fromHalfBits(0xfbff)).toBe(-65504);
    expect(fromHalfBits(0x3555)).toBe(0.333251953125);
    expect(fromHalfBits(0x2e66)).toBe(0.0999755859375);
    expect(fromHalfBits(0x0400)).toBe(2 ** -14);
    expect(fromHalfBits(0x0001)).toBe(2 ** -24);
    expect(fromHalfBits(0x8001)).toBe(-(2 ** -24));
    expect(fromHalfBits(0x03ff)).toBe(1023 * 2 ** -24);
    expect(fromHalfBits(0x7c00)).toBe(Infinity);
    expect(fromHalfBits(0xfc00)).toBe(-Infinity);
    expect(fromHalfBits(0x7e00)).toBeNaN();
    expect(fromHalfBits(0x7c01)).toBeNaN();
    expect(fromHalfBits(0xfe00)).toBeNaN();
  });

  it('overflows to ±Infinity past the largest finite half (65520 is the rounding threshold)', () => {
    expect(toHalfBits(65519)).toBe(0x7bff);
    expect(toHalfBits(65519.99)).toBe(0x7bff);
    expect(toHalfBits(65520)).toBe(0x7c00); // the midpoint to 2^16 rounds to even = Infinity
    expect(toHalfBits(65536)).toBe(0x7c00);
    expect(toHalfBits(1e6)).toBe(0x7c00);
    expect(toHalfBits(-1e6)).toBe(0xfc00);
    expect(toHalfBits(Number.MAX_VALUE)).toBe(0x7c00);
    expect(toHalfBits(-Number.MAX_VALUE)).toBe(0xfc00);
    expect(fromHalfBits(toHalfBits(1e9))).toBe(Infinity);
  });

  it('underflows to a signed zero below half the smallest subnormal', () => {
    expect(toHalfBits(2 ** -26)).toBe(0x0000);
    expect(toHalfBits(1e-10)).toBe(0x0000);
    expect(toHalfBits(-1e-10)).toBe(0x8000);
    expect(toHalfBits(Number.MIN_VALUE)).toBe(0x0000);
    expect(toHalfBits(2 ** -25)).toBe(0x0000); // exact midpoint between 0 and 2^-24: ties to even (0)
    expect(toHalfBits(-(2 ** -25))).toBe(0x8000);
    expect(toHalfBits(1.5 * 2 ** -25)).toBe(0x0001);
  });

  it('maps NaN (any sign or payload) to a NaN bit pattern', () => {
    const h = toHalfBits(NaN);
    expect(isHalfNaN(h)).toBe(true);
    expect(fromHalfBits(h)).toBeNaN();
    for (const v of NANS) {
      expect(Number.isNaN(v)).toBe(true);
      const bits = toHalfBits(v);
      expect(isHalfNaN(bits), `0x${bits.toString(16)}`).toBe(true);
    }
  });

  it('rounds to nearest, ties to even (normal range)', () => {
    const ulp = 2 ** -10; // at 1.0
    expect(toHalfBits(1 + ulp / 2)).toBe(0x3c00); // tie → even (0x3c00)
    expect(toHalfBits(1 + 3 * (ulp / 2))).toBe(0x3c02); // tie between 0x3c01 and 0x3c02 → 0x3c02
    expect(toHalfBits(1 + ulp / 2 + 2 ** -20)).toBe(0x3c01); // just above the tie
    expect(toHalfBits(1 + ulp / 2 - 2 ** -20)).toBe(0x3c00); // just below the tie
    expect(toHalfBits(1 + 0.4 * ulp)).toBe(0x3c00);
    expect(toHalfBits(1 + 0.6 * ulp)).toBe(0x3c01);
    expect(toHalfBits(2049)).toBe(0x6800); // ulp 2 at 2048: tie → 2048
    expect(toHalfBits(2051)).toBe(0x6802); // tie → 2052
    expect(toHalfBits(2047.5)).toBe(0x6800); // carry into the exponent: 2047 is odd → 2048
    expect(toHalfBits(-2051)).toBe(0xe802);
  });

  it('rounds to nearest, ties to even (subnormal range and the subnormal/normal boundary)', () => {
    const s = 2 ** -24;
    expect(toHalfBits(1.5 * s)).toBe(0x0002); // tie between 1 and 2 → 2
    expect(toHalfBits(2.5 * s)).toBe(0x0002); // tie between 2 and 3 → 2
    expect(toHalfBits(3.5 * s)).toBe(0x0004);
    expect(toHalfBits(2.4 * s)).toBe(0x0002);
    expect(toHalfBits(2.6 * s)).toBe(0x0003);
    expect(toHalfBits(1023.5 * s)).toBe(0x0400); // largest subnormal is odd → rounds up to the smallest normal
    expect(toHalfBits(1022.5 * s)).toBe(0x03fe);
  });

  it('round-trips every non-NaN half bit pattern exactly', () => {
    let nan = 0;
    for (let h = 0; h <= 0xffff; h++) {
      const v = fromHalfBits(h);
      if (isHalfNaN(h)) {
        nan++;
        expect(v).toBeNaN();
        expect(isHalfNaN(toHalfBits(v))).toBe(true);
        continue;
      }
      const back = toHalfBits(v);
      if (back !== h) expect(back.toString(16), `0x${h.toString(16)}`).toBe(h.toString(16));
    }
    expect(nan).toBe(2 * 1023);
  });

  it('rounds every midpoint between adjacent finite halves to the even one, and neighbours of it to the nearer one', () => {
    for (let h = 0; h < 0x7bff; h++) {
      const a = fromHalfBits(h);
      const b = fromHalfBits(h + 1);
      const mid = (a + b) / 2; // exact in float32 (12 significant bits)
      if (Math.fround(mid) !== mid) expect(Math.fround(mid)).toBe(mid);
      const even = (h & 1) === 0 ? h : h + 1;
      const bits = bitsOfF32(mid);
      const above = f32FromBits(bits + 1);
      const below = f32FromBits(bits - 1);
      const got = [toHalfBits(mid), toHalfBits(above), toHalfBits(below), toHalfBits(-mid), toHalfBits(-above)];
      const want = [even, h + 1, h, 0x8000 | even, 0x8000 | (h + 1)];
      if (got.some((g, i) => g !== want[i])) expect(got, `between 0x${h.toString(16)} and 0x${(h + 1).toString(16)}`).toEqual(want);
    }
  });

  it('values already representable as halves decode to the same number they were encoded from', () => {
    for (const v of [0.25, -0.75, 1024, 0.000060975551605224609375, 6.103515625e-5, 5.9604644775390625e-8, 32768, 1.0009765625]) {
      expect(fromHalfBits(toHalfBits(v))).toBe(v);
    }
  });
});

describe('bfloat16 (BF16) conversion', () => {
  it('encodes known values to their bit patterns', () => {
    const cases: [number, number][] = [
      [0, 0x0000],
      [1, 0x3f80],
      [-1, 0xbf80],
      [-2, 0xc000],
      [2, 0x4000],
      [3, 0x4040],
      [0.5, 0x3f00],
      [0.1, 0x3dcd], // float32 0x3dcccccd rounds up
      [65504, 0x4780], // float32 0x477fe000 rounds up to 65536
      [65536, 0x4780],
      [Infinity, 0x7f80],
      [-Infinity, 0xff80],
      [2 ** -126, 0x0080], // smallest normal float32
      [2 ** -133, 0x0001], // smallest bf16 subnormal
      [-(2 ** -133), 0x8001],
      [127 * 2 ** -133, 0x007f], // largest bf16 subnormal
      [3.3895313892515355e38, 0x7f7f], // largest finite bf16
    ];
    for (const [value, bits] of cases) {
      expect(toBf16Bits(value).toString(16), String(value)).toBe(bits.toString(16));
    }
  });

  it('keeps the sign of zero', () => {
    expect(toBf16Bits(0)).toBe(0x0000);
    expect(toBf16Bits(-0)).toBe(0x8000);
    expect(Object.is(fromBf16Bits(0x8000), -0)).toBe(true);
  });

  it('decodes known bit patterns (the high half of a float32)', () => {
    expect(fromBf16Bits(0x3f80)).toBe(1);
    expect(fromBf16Bits(0xc000)).toBe(-2);
    expect(fromBf16Bits(0x4040)).toBe(3);
    expect(fromBf16Bits(0x3dcd)).toBe(f32FromBits(0x3dcd0000));
    expect(fromBf16Bits(0x4780)).toBe(65536);
    expect(fromBf16Bits(0x7f7f)).toBe(3.3895313892515355e38);
    expect(fromBf16Bits(0x0001)).toBe(2 ** -133);
    expect(fromBf16Bits(0x8001)).toBe(-(2 ** -133));
    expect(fromBf16Bits(0x7f80)).toBe(Infinity);
    expect(fromBf16Bits(0xff80)).toBe(-Infinity);
    expect(fromBf16Bits(0x7fc0)).toBeNaN();
    expect(fromBf16Bits(0x7f81)).toBeNaN();
    expect(fromBf16Bits(0xffc0)).toBeNaN();
  });

  it('overflows to ±Infinity', () => {
    expect(toBf16Bits(3.4028234663852886e38)).toBe(0x7f80); // largest float32 rounds up past the largest bf16
    expect(toBf16Bits(-3.4028234663852886e38)).toBe(0xff80);
    expect(toBf16Bits(1e39)).toBe(0x7f80);
    expect(toBf16Bits(-1e300)).toBe(0xff80);
    expect(toBf16Bits(Number.MAX_VALUE)).toBe(0x7f80);
  });

  it('underflows to a signed zero', () => {
    expect(toBf16Bits(2 ** -134)).toBe(0x0000); // midpoint between 0 and the smallest subnormal → even (0)
    expect(toBf16Bits(-(2 ** -134))).toBe(0x8000);
    expect(toBf16Bits(1e-45)).toBe(0x0000);
    expect(toBf16Bits(Number.MIN_VALUE)).toBe(0x0000);
    expect(toBf16Bits(-1e-300)).toBe(0x8000);
  });

  it('maps NaN (any sign or payload) to a NaN bit pattern (never to Infinity or zero)', () => {
    const b = toBf16Bits(NaN);
    expect(isBf16NaN(b)).toBe(true);
    expect(fromBf16Bits(b)).toBeNaN();
    for (const v of NANS) {
      expect(Number.isNaN(v)).toBe(true);
      const bits = toBf16Bits(v);
      expect(isBf16NaN(bits), `0x${bits.toString(16)}`).toBe(true);
    }
    // float32 NaNs whose payload sits only in the low bits or fills the mantissa (rounding must not carry out)
    for (const f of [0x7f800001, 0x7fffffff, 0xffffffff, 0x7fc00001, 0xff800001]) {
      const v = f32FromBits(f);
      const bits = toBf16Bits(v);
      expect(isBf16NaN(bits), `float32 0x${f.toString(16)} → 0x${bits.toString(16)}`).toBe(true);
    }
  });

  it('rounds to nearest, ties to even', () => {
    expect(toBf16Bits(1 + 2 ** -8)).toBe(0x3f80); // tie → even
    expect(toBf16Bits(1 + 3 * 2 ** -8)).toBe(0x3f82); // tie between 0x3f81 and 0x3f82 → 0x3f82
    expect(toBf16Bits(1 + 2 ** -8 + 2 ** -16)).toBe(0x3f81); // just above the tie
    expect(toBf16Bits(1 + 2 ** -8 - 2 ** -16)).toBe(0x3f80); // just below
    expect(toBf16Bits(255.5)).toBe(0x4380); // 255 = 0x437f (odd), 256 = 0x4380: the tie goes to 256
    expect(toBf16Bits(-(1 + 3 * 2 ** -8))).toBe(0xbf82);
    expect(toBf16Bits(1.5 * 2 ** -133)).toBe(0x0002); // subnormal tie → even
    expect(toBf16Bits(2.5 * 2 ** -133)).toBe(0x0002);
  });

  it('round-trips every non-NaN bf16 bit pattern exactly', () => {
    let nan = 0;
    for (let b = 0; b <= 0xffff; b++) {
      const v = fromBf16Bits(b);
      if (isBf16NaN(b)) {
        nan++;
        expect(v).toBeNaN();
        expect(isBf16NaN(toBf16Bits(v))).toBe(true);
        continue;
      }
      const back = toBf16Bits(v);
      if (back !== b) expect(back.toString(16), `0x${b.toString(16)}`).toBe(b.toString(16));
    }
    expect(nan).toBe(2 * 127);
  });

  it('rounds every midpoint between adjacent finite bf16 values to the even one, and neighbours of it to the nearer one', () => {
    for (let b = 0; b <= 0x7f7f; b++) {
      const bits = ((b << 16) | 0x8000) >>> 0; // float32 exactly halfway between b and b + 1
      const mid = f32FromBits(bits);
      const above = f32FromBits(bits + 1);
      const below = f32FromBits(bits - 1);
      const even = (b & 1) === 0 ? b : b + 1; // 0x7f7f + 1 = 0x7f80: Infinity (IEEE overflow threshold)
      const got = [toBf16Bits(mid), toBf16Bits(above), toBf16Bits(below), toBf16Bits(-mid), toBf16Bits(-above)];
      const want = [even, b + 1, b, 0x8000 | even, 0x8000 | (b + 1)];
      if (got.some((g, i) => g !== want[i])) expect(got, `between 0x${b.toString(16)} and 0x${(b + 1).toString(16)}`).toEqual(want);
    }
  });
});
