import { describe, expect, it } from 'vitest';
import { NimifyError, type ErrorCode } from '../../src/runtime/errors';
import type { Datatype } from '../../src/protocol/datatypes';
import { decodeInferRequest, MAX_RANK, type DecodedRequest, type WireModel, type WireTensor } from '../../src/protocol/request';
import { Tensor } from '../../src/runtime/tensor';

// ---------------------------------------------------------------------------------------------
// helpers

type Spec = [name: string, datatype: Datatype, shape: number[]];

function wire(inputs: Spec[], outputs: Spec[] = [['y', 'FP32', [-1]]], batched = false): WireModel {
  const t = ([name, datatype, shape]: Spec): WireTensor => ({ name, datatype, shape });
  return { inputs: inputs.map(t), outputs: outputs.map(t), batched };
}

function expectError(fn: () => unknown, code: ErrorCode, pattern?: RegExp): NimifyError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  if (caught === undefined) throw new Error(`expected a NimifyError ${code}, nothing was thrown`);
  expect(caught).toBeInstanceOf(NimifyError);
  const err = caught as NimifyError;
  expect(err.code, err.message).toBe(code);
  if (pattern !== undefined) expect(err.message).toMatch(pattern);
  return err;
}

const invalid = (fn: () => unknown, pattern?: RegExp): NimifyError => expectError(fn, 'INVALID_ARGUMENT', pattern);
const unsupported = (fn: () => unknown, pattern?: RegExp): NimifyError => expectError(fn, 'UNSUPPORTED', pattern);

/** Decodes one JSON input `x` of a model whose only input is `x` with `modelShape` (default: all variable). */
function decodeOne(datatype: Datatype, shape: number[], data: unknown, modelShape: number[] = shape.map(() => -1)): Tensor {
  const m = wire([['x', datatype, modelShape]]);
  const r = decodeInferRequest(m, { inputs: [{ name: 'x', datatype, shape, data }] }, null);
  return r.feeds.x;
}

/** A Buffer over a fresh ArrayBuffer, starting `at` bytes into it (so its byteOffset is controlled). */
function bufferAt(bytes: Uint8Array | number[], at = 0, extra = 0): Buffer {
  const src = bytes instanceof Uint8Array ? bytes : Uint8Array.from(bytes);
  const ab = new ArrayBuffer(at + src.length + extra);
  const b = Buffer.from(ab, at, src.length);
  b.set(src);
  return b;
}

function bytesOf(view: ArrayBufferView): Uint8Array {
  return new Uint8Array(view.buffer.slice(view.byteOffset, view.byteOffset + view.byteLength));
}

/** BYTES binary form: each element a 4-byte little-endian length, then its UTF-8 bytes. */
function bytesElements(strings: string[]): Buffer {
  return Buffer.concat(
    strings.map((s) => {
      const b = Buffer.from(s, 'utf8');
      const len = Buffer.alloc(4);
      len.writeUInt32LE(b.length, 0);
      return Buffer.concat([len, b]);
    }),
  );
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const total = parts.reduce((a, p) => a + p.length, 0);
  const out = new Uint8Array(total);
  let pos = 0;
  for (const p of parts) {
    out.set(p, pos);
    pos += p.length;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// JSON data

interface DatatypeCase {
  datatype: Datatype;
  type: string;
  flat: unknown[];
  ctor: new (...args: never[]) => unknown;
  expected: ArrayLike<unknown> | unknown[];
}

const CASES: DatatypeCase[] = [
  { datatype: 'BOOL', type: 'bool', flat: [true, false, false, true], ctor: Uint8Array, expected: new Uint8Array([1, 0, 0, 1]) },
  { datatype: 'UINT8', type: 'uint8', flat: [0, 255, 7, 1], ctor: Uint8Array, expected: new Uint8Array([0, 255, 7, 1]) },
  { datatype: 'UINT16', type: 'uint16', flat: [0, 65535, 300, 1], ctor: Uint16Array, expected: new Uint16Array([0, 65535, 300, 1]) },
  { datatype: 'UINT32', type: 'uint32', flat: [0, 4294967295, 70000, 1], ctor: Uint32Array, expected: new Uint32Array([0, 4294967295, 70000, 1]) },
  {
    datatype: 'UINT64', type: 'uint64', flat: [0, Number.MAX_SAFE_INTEGER, 4294967296, 1], ctor: BigUint64Array,
    expected: new BigUint64Array([0n, 9007199254740991n, 4294967296n, 1n]),
  },
  { datatype: 'INT8', type: 'int8', flat: [-128, 127, 0, -1], ctor: Int8Array, expected: new Int8Array([-128, 127, 0, -1]) },
  { datatype: 'INT16', type: 'int16', flat: [-32768, 32767, 0, -1], ctor: Int16Array, expected: new Int16Array([-32768, 32767, 0, -1]) },
  {
    datatype: 'INT32', type: 'int32', flat: [-2147483648, 2147483647, 0, -1], ctor: Int32Array,
    expected: new Int32Array([-2147483648, 2147483647, 0, -1]),
  },
  {
    datatype: 'INT64', type: 'int64', flat: [-Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER, -4294967296, 0], ctor: BigInt64Array,
    expected: new BigInt64Array([-9007199254740991n, 9007199254740991n, -4294967296n, 0n]),
  },
  { datatype: 'FP16', type: 'float16', flat: [1, -2, 65504, 0.5], ctor: Uint16Array, expected: new Uint16Array([0x3c00, 0xc000, 0x7bff, 0x3800]) },
  { datatype: 'FP32', type: 'float32', flat: [0.1, -1.5, 3, 1e-3], ctor: Float32Array, expected: new Float32Array([0.1, -1.5, 3, 1e-3]) },
  { datatype: 'FP64', type: 'float64', flat: [0.1, -1.5, 1e300, -5e-324], ctor: Float64Array, expected: new Float64Array([0.1, -1.5, 1e300, -5e-324]) },
  { datatype: 'BYTES', type: 'string', flat: ['a', '', 'héllo wörld', 'x\u0000y'], ctor: Array, expected: ['a', '', 'héllo wörld', 'x\u0000y'] },
  { datatype: 'BF16', type: 'bfloat16', flat: [1, -2, 3, 0.1], ctor: Uint16Array, expected: new Uint16Array([0x3f80, 0xc000, 0x4040, 0x3dcd]) },
];

describe('decodeInferRequest: JSON data for every datatype', () => {
  describe.each(CASES)('$datatype', ({ datatype, type, flat, ctor, expected }) => {
    it('flat data', () => {
      const t = decodeOne(datatype, [2, 2], flat);
      expect(t).toBeInstanceOf(Tensor);
      expect(t.type).toBe(type);
      expect(t.dims).toEqual([2, 2]);
      expect(t.data).toBeInstanceOf(ctor);
      expect(t.data).toEqual(expected);
    });

    it('nested data (natural shape)', () => {
      const t = decodeOne(datatype, [2, 2], [flat.slice(0, 2), flat.slice(2)]);
      expect(t.type).toBe(type);
      expect(t.dims).toEqual([2, 2]);
      expect(t.data).toBeInstanceOf(ctor);
      expect(t.data).toEqual(expected);
    });

    it('scalar data for a one-element tensor', () => {
      const t0 = decodeOne(datatype, [], flat[1]);
      expect(t0.dims).toEqual([]);
      expect(t0.data).toBeInstanceOf(ctor);
      expect(Array.from(t0.data as ArrayLike<unknown>)).toEqual([Array.from(expected as ArrayLike<unknown>)[1]]);
      const t1 = decodeOne(datatype, [1, 1], flat[2]);
      expect(t1.dims).toEqual([1, 1]);
      expect(Array.from(t1.data as ArrayLike<unknown>)).toEqual([Array.from(expected as ArrayLike<unknown>)[2]]);
    });

    it('zero elements', () => {
      const t = decodeOne(datatype, [2, 0], []);
      expect(t.dims).toEqual([2, 0]);
      expect(t.data).toBeInstanceOf(ctor);
      expect((t.data as ArrayLike<unknown>).length).toBe(0);
    });
  });

  it('FP16 and BF16 numbers are stored as rounded bit patterns', () => {
    expect(decodeOne('FP16', [4], [1 + 2 ** -11, 1e6, -1e-10, 2 ** -24]).data).toEqual(new Uint16Array([0x3c00, 0x7c00, 0x8000, 0x0001]));
    expect(decodeOne('BF16', [3], [1 + 2 ** -8, 65504, -0]).data).toEqual(new Uint16Array([0x3f80, 0x4780, 0x8000]));
  });

  it('FP32 values are rounded to float32', () => {
    const t = decodeOne('FP32', [2], [1 / 3, 16777217]);
    expect(Array.from(t.data as Float32Array)).toEqual([Math.fround(1 / 3), 16777216]);
  });

  it('nested data of rank 3, and nesting shallower than the rank, are both read in row-major order', () => {
    const full = decodeOne('INT32', [2, 1, 3], [[[1, 2, 3]], [[4, 5, 6]]]);
    expect(Array.from(full.data as Int32Array)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(full.dims).toEqual([2, 1, 3]);
    const partial = decodeOne('INT32', [2, 1, 3], [[1, 2, 3], [4, 5, 6]]);
    expect(Array.from(partial.data as Int32Array)).toEqual([1, 2, 3, 4, 5, 6]);
  });

  it('a one-element array is accepted for a scalar tensor', () => {
    const t = decodeOne('FP64', [], [2.5]);
    expect(t.dims).toEqual([]);
    expect(Array.from(t.data as Float64Array)).toEqual([2.5]);
  });

  it('a scalar is refused for a tensor of more than one element, and null/object data is refused', () => {
    invalid(() => decodeOne('FP32', [2], 5), /^inputs\[0\]\.data: expected an array of 2 FP32 values, received number 5$/);
    invalid(() => decodeOne('FP32', [1], null), /^inputs\[0\]\.data: expected an array of 1 FP32 values, received null$/);
    invalid(() => decodeOne('FP32', [1], { 0: 1 }), /^inputs\[0\]\.data: expected an array/);
    invalid(() => decodeOne('BYTES', [0], 'a'), /inputs\[0\]\.data: expected an array of 0 BYTES values/);
  });
});

describe('decodeInferRequest: JSON data errors', () => {
  const two = wire([['a', 'FP32', [-1]], ['x', 'INT32', [-1, -1]]]);
  const decode2 = (data: unknown, shape = [2, 2]) =>
    decodeInferRequest(two, { inputs: [{ name: 'a', datatype: 'FP32', shape: [1], data: [0] }, { name: 'x', datatype: 'INT32', shape, data }] }, null);

  it('too few elements → INVALID_ARGUMENT naming inputs[i].data', () => {
    invalid(() => decode2([1, 2, 3]), /^inputs\[1\]\.data: shape \[2, 2\] needs 4 elements, received 3$/);
    invalid(() => decode2([[1, 2], [3]]), /^inputs\[1\]\.data: shape \[2, 2\] needs 4 elements, received 3$/);
    invalid(() => decode2([]), /^inputs\[1\]\.data: shape \[2, 2\] needs 4 elements, received 0$/);
    invalid(() => decodeOne('FP32', [], []), /^inputs\[0\]\.data: shape \[\] needs 1 elements, received 0$/);
  });

  it('too many elements → INVALID_ARGUMENT naming inputs[i].data', () => {
    invalid(() => decode2([1, 2, 3, 4, 5]), /^inputs\[1\]\.data: shape \[2, 2\] needs 4 elements, received 5$/);
    invalid(() => decode2([[1, 2], [3, 4], [5, 6]]), /^inputs\[1\]\.data: shape \[2, 2\] needs 4 elements, received 6$/);
    invalid(() => decodeOne('BOOL', [0], [true]), /^inputs\[0\]\.data: shape \[0\] needs 0 elements, received 1$/);
  });

  it('nesting deeper than the rank is refused', () => {
    invalid(() => decode2([[[1, 2]], [[3, 4]]]), /^inputs\[1\]\.data: nested deeper than the tensor's 2 dims$/);
    invalid(() => decodeOne('FP32', [2], [[1], [2]]), /^inputs\[0\]\.data: nested deeper than the tensor's 1 dims$/);
    invalid(() => decodeOne('FP32', [], [[1]]), /^inputs\[0\]\.data: nested deeper/);
  });

  it('wrong element types are refused with the (flat) element index', () => {
    invalid(() => decodeOne('FP32', [3], [1, 2, 'x']), /^inputs\[0\]\.data: element 2: expected a number, received the string "x"$/);
    invalid(() => decodeOne('INT32', [2], [1, 1.5]), /^inputs\[0\]\.data: element 1: expected an integer in \[-2147483648, 2147483647\], received number 1\.5$/);
    invalid(() => decodeOne('UINT8', [1], [300]), /^inputs\[0\]\.data: element 0: expected an integer in \[0, 255\], received number 300$/);
    invalid(() => decodeOne('INT64', [2], [0, 2 ** 53]), /^inputs\[0\]\.data: element 1: expected an integer in \[-9007199254740991, 9007199254740991\] .*binary extension.*received number 9007199254740992$/);
    invalid(() => decode2([[1, 2], [3, 'x']]), /^inputs\[1\]\.data: element 3: expected an integer/);
  });

  it.each<[Datatype, unknown, RegExp]>([
    ['BOOL', 1, /element 0: expected true or false, received number 1/],
    ['BOOL', 'true', /element 0: expected true or false, received the string "true"/],
    ['BYTES', 5, /element 0: expected a string, received number 5/],
    ['FP16', 'x', /element 0: expected a number/],
    ['BF16', true, /element 0: expected a number, received boolean true/],
    ['FP64', null, /element 0: expected a number, received null/],
    ['FP32', {}, /element 0: expected a number, received an object/],
    ['INT8', -129, /element 0: expected an integer in \[-128, 127\]/],
    ['INT8', 128, /element 0: expected an integer in \[-128, 127\]/],
    ['INT16', 32768, /element 0: expected an integer in \[-32768, 32767\]/],
    ['UINT16', -1, /element 0: expected an integer in \[0, 65535\]/],
    ['UINT32', 2 ** 32, /element 0: expected an integer in \[0, 4294967295\]/],
    ['INT32', 2 ** 31, /element 0: expected an integer in \[-2147483648/],
    ['UINT64', -1, /element 0: expected an integer in \[0, 9007199254740991\]/],
    ['UINT64', 2 ** 53, /element 0: expected an integer in \[0, 9007199254740991\]/],
    ['INT64', -(2 ** 53), /element 0: expected an integer/],
    ['INT64', 0.5, /element 0: expected an integer/],
    ['INT64', '1', /element 0: expected an integer/],
  ])('%s refuses %j', (datatype, value, pattern) => {
    const err = invalid(() => decodeOne(datatype, [1], [value]));
    expect(err.message).toMatch(/^inputs\[0\]\.data: /);
    expect(err.message).toMatch(pattern);
  });
});

describe('decodeInferRequest: inputs', () => {
  const m = wire([['x', 'FP32', [-1, 3]], ['z', 'INT64', [2]]]);
  const x = { name: 'x', datatype: 'FP32', shape: [1, 3], data: [1, 2, 3] };
  const z = { name: 'z', datatype: 'INT64', shape: [2], data: [4, 5] };

  it('decodes several inputs into feeds keyed by name', () => {
    const r = decodeInferRequest(m, { inputs: [z, x] }, null);
    expect(Object.keys(r.feeds).sort()).toEqual(['x', 'z']);
    expect(r.feeds.x.dims).toEqual([1, 3]);
    expect(r.feeds.z.data).toEqual(new BigInt64Array([4n, 5n]));
  });

  it('an unknown input name → INVALID_ARGUMENT listing the model inputs', () => {
    invalid(() => decodeInferRequest(m, { inputs: [x, { ...z, name: 'w' }] }, null), /^inputs\[1\]\.name: unexpected input 'w'; the model's inputs are 'x', 'z'$/);
  });

  it('a duplicate input → INVALID_ARGUMENT', () => {
    invalid(() => decodeInferRequest(m, { inputs: [x, z, x] }, null), /^inputs\[2\]\.name: input 'x' is given twice$/);
  });

  it('a datatype mismatch → INVALID_ARGUMENT', () => {
    invalid(() => decodeInferRequest(m, { inputs: [{ ...x, datatype: 'FP64' }] }, null), /^inputs\[0\]\.datatype: input 'x' is FP32, received FP64$/);
    invalid(() => decodeInferRequest(m, { inputs: [{ ...x, datatype: 'FLOAT32' }] }, null), /^inputs\[0\]\.datatype: expected one of BOOL, .*BF16, received the string "FLOAT32"$/);
    invalid(() => decodeInferRequest(m, { inputs: [{ ...x, datatype: 'fp32' }] }, null), /^inputs\[0\]\.datatype: expected one of/);
    invalid(() => decodeInferRequest(m, { inputs: [{ ...x, datatype: undefined }] }, null), /^inputs\[0\]\.datatype: expected one of .* received undefined$/);
  });

  it('a wrong rank → INVALID_ARGUMENT', () => {
    invalid(() => decodeInferRequest(m, { inputs: [{ ...x, shape: [3], data: [1, 2, 3] }] }, null), /^inputs\[0\]\.shape: input 'x' has 2 dims \[-1, 3\], received \[3\]$/);
    invalid(() => decodeInferRequest(m, { inputs: [{ ...x, shape: [1, 1, 3] }] }, null), /^inputs\[0\]\.shape: input 'x' has 2 dims/);
  });

  it('a fixed dim mismatch → INVALID_ARGUMENT; variable dims take any size', () => {
    invalid(() => decodeInferRequest(m, { inputs: [{ ...x, shape: [1, 4], data: [1, 2, 3, 4] }] }, null), /^inputs\[0\]\.shape\[1\]: input 'x' needs shape \[-1, 3\] \(-1 = any\), received \[1, 4\]$/);
    invalid(() => decodeInferRequest(m, { inputs: [{ ...z, shape: [3], data: [1, 2, 3] }] }, null), /^inputs\[0\]\.shape\[0\]: input 'z' needs shape \[2\]/);
    const r = decodeInferRequest(m, { inputs: [{ ...x, shape: [2, 3], data: [1, 2, 3, 4, 5, 6] }] }, null);
    expect(r.feeds.x.dims).toEqual([2, 3]);
  });

  it('negative, non-integer and non-number dims → INVALID_ARGUMENT', () => {
    invalid(() => decodeInferRequest(m, { inputs: [{ ...x, shape: [-1, 3] }] }, null), /^inputs\[0\]\.shape\[0\]: expected a non-negative integer, received number -1$/);
    invalid(() => decodeInferRequest(m, { inputs: [{ ...x, shape: [1.5, 3] }] }, null), /^inputs\[0\]\.shape\[0\]: expected a non-negative integer, received number 1\.5$/);
    invalid(() => decodeInferRequest(m, { inputs: [{ ...x, shape: [1, '3'] }] }, null), /^inputs\[0\]\.shape\[1\]: expected a non-negative integer, received the string "3"$/);
    invalid(() => decodeInferRequest(m, { inputs: [{ ...x, shape: [2 ** 53, 3] }] }, null), /^inputs\[0\]\.shape\[0\]: expected a non-negative integer/);
    invalid(() => decodeInferRequest(m, { inputs: [{ ...x, shape: '1,3' }] }, null), /^inputs\[0\]\.shape: expected an array of non-negative integers/);
    invalid(() => decodeInferRequest(m, { inputs: [{ ...x, shape: undefined }] }, null), /^inputs\[0\]\.shape: expected an array/);
  });

  it(`rank above ${MAX_RANK} → INVALID_ARGUMENT; rank ${MAX_RANK} is accepted`, () => {
    expect(MAX_RANK).toBe(32);
    const deep = wire([['x', 'FP32', new Array(40).fill(-1)]]);
    invalid(() => decodeInferRequest(deep, { inputs: [{ name: 'x', datatype: 'FP32', shape: new Array(33).fill(1), data: [1] }] }, null), /^inputs\[0\]\.shape: expected at most 32 dims, received an array of length 33$/);
    const ok = wire([['x', 'FP32', new Array(32).fill(-1)]]);
    const r = decodeInferRequest(ok, { inputs: [{ name: 'x', datatype: 'FP32', shape: new Array(32).fill(1), data: [7] }] }, null);
    expect(r.feeds.x.dims).toHaveLength(32);
    expect(Array.from(r.feeds.x.data as Float32Array)).toEqual([7]);
  });

  it('a shape whose element count overflows → INVALID_ARGUMENT (before any allocation)', () => {
    const big = wire([['x', 'FP32', [-1, -1, -1]]]);
    invalid(
      () => decodeInferRequest(big, { inputs: [{ name: 'x', datatype: 'FP32', shape: [2 ** 30, 2 ** 30, 2 ** 30], data: [1] }] }, null),
      /^inputs\[0\]\.shape: \[1073741824, 1073741824, 1073741824\] has more elements than any request can carry$/,
    );
    invalid(
      () => decodeInferRequest(big, { inputs: [{ name: 'x', datatype: 'FP32', shape: [2 ** 27, 2 ** 27, 2], parameters: { binary_data_size: 4 } }] }, Buffer.alloc(4)),
      /has more elements than any request can carry/,
    );
  });

  it('missing data, and malformed names and inputs → INVALID_ARGUMENT', () => {
    invalid(() => decodeInferRequest(m, { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 3] }] }, null), /^inputs\[0\]\.data: missing/);
    invalid(() => decodeInferRequest(m, { inputs: [{ ...x, name: '' }] }, null), /^inputs\[0\]\.name: expected a non-empty string, received the string ""$/);
    invalid(() => decodeInferRequest(m, { inputs: [{ ...x, name: 3 }] }, null), /^inputs\[0\]\.name: expected a non-empty string/);
    invalid(() => decodeInferRequest(m, { inputs: [x, 'z'] }, null), /^inputs\[1\]: expected an object/);
    invalid(() => decodeInferRequest(m, { inputs: [] }, null), /^inputs: expected a non-empty array/);
    invalid(() => decodeInferRequest(m, { inputs: x }, null), /^inputs: expected a non-empty array/);
    invalid(() => decodeInferRequest(m, {}, null), /^inputs: expected a non-empty array.*received undefined$/);
    invalid(() => decodeInferRequest(m, null, null), /^request body: expected a JSON object/);
    invalid(() => decodeInferRequest(m, [x], null), /^request body: expected a JSON object/);
    invalid(() => decodeInferRequest(m, 'x', null), /^request body: expected a JSON object/);
  });

  it('input parameters must be an object of scalars', () => {
    invalid(() => decodeInferRequest(m, { inputs: [{ ...x, parameters: 5 }] }, null), /^inputs\[0\]\.parameters: expected an object/);
    invalid(() => decodeInferRequest(m, { inputs: [{ ...x, parameters: { foo: [1] } }] }, null), /^inputs\[0\]\.parameters\.foo: expected a string, number or boolean/);
    const r = decodeInferRequest(m, { inputs: [{ ...x, parameters: { content_type: 'np' } }] }, null);
    expect(Array.from(r.feeds.x.data as Float32Array)).toEqual([1, 2, 3]);
  });
});

describe('decodeInferRequest: id and request parameters', () => {
  const m = wire([['x', 'FP32', [-1]]], [['a', 'FP32', [-1]], ['b', 'INT64', [-1]]]);
  const inputs = [{ name: 'x', datatype: 'FP32', shape: [1], data: [1] }];
  const decode = (extra: Record<string, unknown>): DecodedRequest => decodeInferRequest(m, { inputs, ...extra }, null);

  it('echoes a string id; leaves it undefined when absent', () => {
    expect(decode({ id: 'req-42' }).id).toBe('req-42');
    expect(decode({ id: '' }).id).toBe('');
    expect(decode({}).id).toBeUndefined();
  });

  it('refuses a non-string id', () => {
    invalid(() => decode({ id: 42 }), /^id: expected a string, received number 42$/);
    invalid(() => decode({ id: null }), /^id: expected a string, received null$/);
    invalid(() => decode({ id: ['a'] }), /^id: expected a string/);
  });

  it('with no parameters: defaults', () => {
    const r = decode({});
    expect(r.parameters).toBeUndefined();
    expect(r.priority).toBeUndefined();
    expect(r.timeoutMs).toBeUndefined();
    expect(r.outputs).toEqual(['a', 'b']);
    expect(r.binary).toEqual([false, false]);
  });

  it('returns custom parameters (and only those) in `parameters`', () => {
    const r = decode({ parameters: { custom: 'v', n: 3, flag: false, priority: 1, timeout: 1000, binary_data_output: false } });
    expect(r.parameters).toEqual({ custom: 'v', n: 3, flag: false });
    expect(decode({ parameters: {} }).parameters).toBeUndefined();
    expect(decode({ parameters: { priority: 0 } }).parameters).toBeUndefined();
  });

  it('refuses parameters that are not an object of string/number/boolean', () => {
    invalid(() => decode({ parameters: 'x' }), /^parameters: expected an object of string, number or boolean values/);
    invalid(() => decode({ parameters: [1] }), /^parameters: expected an object/);
    invalid(() => decode({ parameters: null }), /^parameters: expected an object/);
    invalid(() => decode({ parameters: { foo: { a: 1 } } }), /^parameters\.foo: expected a string, number or boolean, received an object$/);
    invalid(() => decode({ parameters: { foo: null } }), /^parameters\.foo: expected a string, number or boolean, received null$/);
  });

  it('priority: 1 → 1 (high); 0, 2 and levels above the two → 0 (default, as Triton); not a non-negative integer → INVALID_ARGUMENT', () => {
    expect(decode({ parameters: { priority: 1 } }).priority).toBe(1);
    expect(decode({ parameters: { priority: 0 } }).priority).toBe(0);
    expect(decode({ parameters: { priority: 2 } }).priority).toBe(0);
    expect(decode({ parameters: { priority: 3 } }).priority).toBe(0);
    expect(decode({ parameters: { priority: 1e15 } }).priority).toBe(0);
    for (const p of [-1, 1.5, 2 ** 53, '1', true]) {
      invalid(() => decode({ parameters: { priority: p } }), /^parameters\.priority: expected a non-negative integer \(1 high; 0, 2 and above: the default level\)/);
    }
  });

  it('timeout in microseconds → timeoutMs', () => {
    expect(decode({ parameters: { timeout: 1000 } }).timeoutMs).toBe(1);
    expect(decode({ parameters: { timeout: 2_500_000 } }).timeoutMs).toBe(2500);
    expect(decode({ parameters: { timeout: 1500 } }).timeoutMs).toBe(1.5);
    expect(decode({ parameters: { timeout: 1 } }).timeoutMs).toBe(0.001);
    for (const t of [0, -1000, 1.5, '1000', false]) {
      invalid(() => decode({ parameters: { timeout: t } }), /^parameters\.timeout: expected a positive integer of microseconds up to 2147483647000/);
    }
  });

  it('binary_data_output: true sets every output binary', () => {
    const r = decode({ parameters: { binary_data_output: true } });
    expect(r.outputs).toEqual(['a', 'b']);
    expect(r.binary).toEqual([true, true]);
    expect(decode({ parameters: { binary_data_output: false } }).binary).toEqual([false, false]);
    invalid(() => decode({ parameters: { binary_data_output: 'yes' } }), /^parameters\.binary_data_output: expected true or false/);
    invalid(() => decode({ parameters: { binary_data_output: 1 } }), /^parameters\.binary_data_output: expected true or false/);
  });

  it('reserved sequence parameters, headers and triton_* → UNSUPPORTED', () => {
    unsupported(() => decode({ parameters: { sequence_id: 7 } }), /^parameters\.sequence_id: reserved parameter that nimify does not implement \(sequence batching\)$/);
    unsupported(() => decode({ parameters: { sequence_start: true } }), /^parameters\.sequence_start:/);
    unsupported(() => decode({ parameters: { sequence_end: true } }), /^parameters\.sequence_end:/);
    unsupported(() => decode({ parameters: { headers: 'x' } }), /^parameters\.headers:/);
    unsupported(() => decode({ parameters: { triton_enable_empty_final_response: true } }), /^parameters\.triton_enable_empty_final_response:/);
    // a custom parameter merely containing a reserved word is fine
    expect(decode({ parameters: { my_sequence_id: 7, tritonish: 1 } }).parameters).toEqual({ my_sequence_id: 7, tritonish: 1 });
  });
});

describe('decodeInferRequest: requested outputs', () => {
  const m = wire([['x', 'FP32', [-1]]], [['a', 'FP32', [-1]], ['b', 'INT64', [-1]], ['c', 'BYTES', [-1]]]);
  const inputs = [{ name: 'x', datatype: 'FP32', shape: [1], data: [1] }];
  const decode = (extra: Record<string, unknown>): DecodedRequest => decodeInferRequest(m, { inputs, ...extra }, null);

  it('absent → all model outputs in model order', () => {
    const r = decode({});
    expect(r.outputs).toEqual(['a', 'b', 'c']);
    expect(r.binary).toEqual([false, false, false]);
  });

  it('keeps the requested order and subset', () => {
    const r = decode({ outputs: [{ name: 'c' }, { name: 'a' }] });
    expect(r.outputs).toEqual(['c', 'a']);
    expect(r.binary).toEqual([false, false]);
    expect(decode({ outputs: [{ name: 'b' }] }).outputs).toEqual(['b']);
  });

  it('an unknown output → INVALID_ARGUMENT listing the model outputs', () => {
    invalid(() => decode({ outputs: [{ name: 'a' }, { name: 'zz' }] }), /^outputs\[1\]\.name: unknown output "zz"; the model's outputs are 'a', 'b', 'c'$/);
    invalid(() => decode({ outputs: [{ name: 5 }] }), /^outputs\[0\]\.name: unknown output 5;/);
    invalid(() => decode({ outputs: [{}] }), /^outputs\[0\]\.name: unknown output undefined;/);
    invalid(() => decode({ outputs: [{ name: 'x' }] }), /^outputs\[0\]\.name: unknown output "x"/); // an input is not an output
  });

  it('a duplicate output → INVALID_ARGUMENT', () => {
    invalid(() => decode({ outputs: [{ name: 'b' }, { name: 'a' }, { name: 'b' }] }), /^outputs\[2\]\.name: output 'b' is requested twice$/);
  });

  it('malformed outputs → INVALID_ARGUMENT', () => {
    invalid(() => decode({ outputs: { name: 'a' } }), /^outputs: expected an array of \{name\}/);
    invalid(() => decode({ outputs: ['a'] }), /^outputs\[0\]: expected an object with a name, received the string "a"$/);
    invalid(() => decode({ outputs: [{ name: 'a', parameters: 'bin' }] }), /^outputs\[0\]\.parameters: expected an object/);
  });

  it('per-output binary_data, overriding binary_data_output either way', () => {
    const r = decode({ outputs: [{ name: 'a', parameters: { binary_data: true } }, { name: 'b' }, { name: 'c', parameters: { binary_data: false } }] });
    expect(r.outputs).toEqual(['a', 'b', 'c']);
    expect(r.binary).toEqual([true, false, false]);
    const r2 = decode({
      parameters: { binary_data_output: true },
      outputs: [{ name: 'a', parameters: { binary_data: false } }, { name: 'b' }, { name: 'c', parameters: { binary_data: true } }],
    });
    expect(r2.binary).toEqual([false, true, true]);
    invalid(() => decode({ outputs: [{ name: 'a', parameters: { binary_data: 'true' } }] }), /^outputs\[0\]\.parameters\.binary_data: expected true or false/);
  });

  it('classification and shared memory → UNSUPPORTED', () => {
    unsupported(() => decode({ outputs: [{ name: 'a' }, { name: 'c', parameters: { classification: 3 } }] }), /^outputs\[1\]\.parameters\.classification: the classification extension is not supported$/);
    unsupported(() => decode({ outputs: [{ name: 'a', parameters: { shared_memory_region: 'r0' } }] }), /^outputs\[0\]\.parameters\.shared_memory_region:/);
  });
});

// ---------------------------------------------------------------------------------------------
// binary tensor data extension

describe('decodeInferRequest: binary tensor data extension', () => {
  it('reads inputs from the binary part in order, as zero-copy views when aligned', () => {
    const m = wire([['x', 'FP32', [-1, 2]], ['j', 'INT32', [-1]], ['i', 'INT64', [-1]]]);
    const xs = new Float32Array([1.5, -2, 3.25, 4]);
    const is = new BigInt64Array([2n ** 62n, -(2n ** 63n)]);
    const at = 8; // the binary part does not start at the beginning of its ArrayBuffer
    const binary = bufferAt(concat(bytesOf(xs), bytesOf(is)), at, 5);
    expect(binary.byteOffset).toBe(at);
    const r = decodeInferRequest(
      m,
      {
        inputs: [
          { name: 'x', datatype: 'FP32', shape: [2, 2], parameters: { binary_data_size: 16 } },
          { name: 'j', datatype: 'INT32', shape: [2], data: [7, 8] }, // JSON data in between consumes no bytes
          { name: 'i', datatype: 'INT64', shape: [2], parameters: { binary_data_size: 16 } },
        ],
      },
      binary,
    );
    const x = r.feeds.x.data as Float32Array;
    const i = r.feeds.i.data as BigInt64Array;
    expect(r.feeds.x.type).toBe('float32');
    expect(r.feeds.x.dims).toEqual([2, 2]);
    expect(x).toBeInstanceOf(Float32Array);
    expect(Array.from(x)).toEqual([1.5, -2, 3.25, 4]);
    expect(x.buffer).toBe(binary.buffer);
    expect(x.byteOffset).toBe(binary.byteOffset);
    expect(i).toBeInstanceOf(BigInt64Array);
    expect(Array.from(i)).toEqual([2n ** 62n, -(2n ** 63n)]);
    expect(i.buffer).toBe(binary.buffer);
    expect(i.byteOffset).toBe(binary.byteOffset + 16);
    expect(Array.from(r.feeds.j.data as Int32Array)).toEqual([7, 8]);
    // a view, not a copy: writes to the body show through
    binary.writeFloatLE(9, 0);
    expect(x[0]).toBe(9);
  });

  it('copies a misaligned tensor (values still right) and leaves the aligned ones as views', () => {
    const m = wire([['u', 'UINT8', [-1]], ['x', 'FP32', [-1]], ['d', 'FP64', [-1]]]);
    const xs = new Float32Array([0.25, -8]);
    const ds = new Float64Array([Math.PI]);
    const binary = bufferAt(concat(new Uint8Array([1, 2, 3]), bytesOf(xs), bytesOf(ds)));
    const r = decodeInferRequest(
      m,
      {
        inputs: [
          { name: 'u', datatype: 'UINT8', shape: [3], parameters: { binary_data_size: 3 } },
          { name: 'x', datatype: 'FP32', shape: [2], parameters: { binary_data_size: 8 } },
          { name: 'd', datatype: 'FP64', shape: [1], parameters: { binary_data_size: 8 } },
        ],
      },
      binary,
    );
    const u = r.feeds.u.data as Uint8Array;
    expect(Array.from(u)).toEqual([1, 2, 3]);
    expect(u.buffer).toBe(binary.buffer); // 1-byte elements are always aligned
    const x = r.feeds.x.data as Float32Array;
    expect(Array.from(x)).toEqual([0.25, -8]);
    expect(x.buffer).not.toBe(binary.buffer);
    expect(x.byteOffset % 4).toBe(0);
    const d = r.feeds.d.data as Float64Array;
    expect(Array.from(d)).toEqual([Math.PI]);
    expect(d.buffer).not.toBe(binary.buffer); // offset 11
    // the copy is independent of the body
    binary.fill(0);
    expect(Array.from(x)).toEqual([0.25, -8]);
  });

  it('copies when the whole binary part starts misaligned', () => {
    const m = wire([['x', 'INT32', [-1]]]);
    const binary = bufferAt(bytesOf(new Int32Array([-5, 1 << 30])), 1);
    expect(binary.byteOffset).toBe(1);
    const r = decodeInferRequest(m, { inputs: [{ name: 'x', datatype: 'INT32', shape: [2], parameters: { binary_data_size: 8 } }] }, binary);
    expect(Array.from(r.feeds.x.data as Int32Array)).toEqual([-5, 1 << 30]);
    expect((r.feeds.x.data as Int32Array).buffer).not.toBe(binary.buffer);
  });

  const BINARY_CASES: [Datatype, string, ArrayBufferView & ArrayLike<unknown>][] = [
    ['BOOL', 'bool', new Uint8Array([1, 0, 1])],
    ['UINT8', 'uint8', new Uint8Array([0, 128, 255])],
    ['UINT16', 'uint16', new Uint16Array([0, 65535, 258])],
    ['UINT32', 'uint32', new Uint32Array([0, 4294967295, 16909060])],
    ['UINT64', 'uint64', new BigUint64Array([0n, 2n ** 64n - 1n, 2n ** 53n + 1n])],
    ['INT8', 'int8', new Int8Array([-128, 127, -1])],
    ['INT16', 'int16', new Int16Array([-32768, 32767, -2])],
    ['INT32', 'int32', new Int32Array([-2147483648, 2147483647, -3])],
    ['INT64', 'int64', new BigInt64Array([-(2n ** 63n), 2n ** 63n - 1n, 2n ** 53n + 1n])],
    ['FP16', 'float16', new Uint16Array([0x3c00, 0xc000, 0x7e00])],
    ['FP32', 'float32', new Float32Array([0.1, -Infinity, NaN])],
    ['FP64', 'float64', new Float64Array([0.1, 1e-310, -0])],
    ['BF16', 'bfloat16', new Uint16Array([0x3f80, 0x7fc0, 0x0001])],
  ];

  it.each(BINARY_CASES)('%s: little-endian bytes → %s tensor with the same values', (datatype, type, values) => {
    const m = wire([['x', datatype, [-1]]]);
    const binary = bufferAt(bytesOf(values));
    const r = decodeInferRequest(m, { inputs: [{ name: 'x', datatype, shape: [3], parameters: { binary_data_size: binary.length } }] }, binary);
    const t = r.feeds.x;
    expect(t.type).toBe(type);
    expect(t.dims).toEqual([3]);
    expect(t.data).toBeInstanceOf(values.constructor);
    expect(bytesOf(t.data as ArrayBufferView)).toEqual(bytesOf(values));
    expect((t.data as ArrayBufferView).buffer).toBe(binary.buffer);
  });

  it('a zero-byte binary input for a zero-element tensor', () => {
    const m = wire([['x', 'FP32', [-1, 4]]]);
    const r = decodeInferRequest(m, { inputs: [{ name: 'x', datatype: 'FP32', shape: [0, 4], parameters: { binary_data_size: 0 } }] }, Buffer.alloc(0));
    expect(r.feeds.x.dims).toEqual([0, 4]);
    expect((r.feeds.x.data as Float32Array).length).toBe(0);
  });

  it('binary_data_size that does not match the shape → INVALID_ARGUMENT', () => {
    const m = wire([['x', 'FP32', [-1]]]);
    invalid(
      () => decodeInferRequest(m, { inputs: [{ name: 'x', datatype: 'FP32', shape: [2], parameters: { binary_data_size: 12 } }] }, Buffer.alloc(12)),
      /^inputs\[0\]\.parameters\.binary_data_size: shape \[2\] of FP32 needs 8 bytes, received 12$/,
    );
    invalid(
      () => decodeInferRequest(m, { inputs: [{ name: 'x', datatype: 'FP32', shape: [2], parameters: { binary_data_size: 6 } }] }, Buffer.alloc(6)),
      /needs 8 bytes, received 6/,
    );
  });

  it('binary bytes left over after the last binary input → INVALID_ARGUMENT', () => {
    const m = wire([['x', 'FP32', [-1]], ['z', 'INT32', [-1]]]);
    invalid(
      () => decodeInferRequest(m, { inputs: [{ name: 'x', datatype: 'FP32', shape: [2], parameters: { binary_data_size: 8 } }] }, Buffer.alloc(12)),
      /^request body: 4 bytes of binary data after the last binary input \(binary_data_size adds up to 8\)$/,
    );
    // a binary part with JSON-only inputs
    invalid(
      () => decodeInferRequest(m, { inputs: [{ name: 'x', datatype: 'FP32', shape: [1], data: [1] }] }, Buffer.alloc(3)),
      /^request body: 3 bytes of binary data after the last binary input \(binary_data_size adds up to 0\)$/,
    );
    // an empty binary part with JSON-only inputs is fine
    const r = decodeInferRequest(m, { inputs: [{ name: 'x', datatype: 'FP32', shape: [1], data: [1] }] }, Buffer.alloc(0));
    expect(Array.from(r.feeds.x.data as Float32Array)).toEqual([1]);
  });

  it('binary_data_size beyond the binary part (or with no binary part) → INVALID_ARGUMENT', () => {
    const m = wire([['x', 'FP32', [-1]], ['z', 'INT32', [-1]]]);
    invalid(
      () => decodeInferRequest(m, { inputs: [{ name: 'x', datatype: 'FP32', shape: [4], parameters: { binary_data_size: 16 } }] }, Buffer.alloc(8)),
      /^inputs\[0\]\.parameters\.binary_data_size: 16 bytes at offset 0, but the binary part of the body has 8 bytes/,
    );
    invalid(
      () =>
        decodeInferRequest(
          m,
          {
            inputs: [
              { name: 'x', datatype: 'FP32', shape: [2], parameters: { binary_data_size: 8 } },
              { name: 'z', datatype: 'INT32', shape: [2], parameters: { binary_data_size: 8 } },
            ],
          },
          Buffer.alloc(12),
        ),
      /^inputs\[1\]\.parameters\.binary_data_size: 8 bytes at offset 8, but the binary part of the body has 12 bytes/,
    );
    invalid(
      () => decodeInferRequest(m, { inputs: [{ name: 'x', datatype: 'FP32', shape: [1], parameters: { binary_data_size: 4 } }] }, null),
      /^inputs\[0\]\.parameters\.binary_data_size: 4 bytes at offset 0, but the binary part of the body has 0 bytes/,
    );
  });

  it('both data and binary_data_size → INVALID_ARGUMENT', () => {
    const m = wire([['x', 'FP32', [-1]]]);
    invalid(
      () => decodeInferRequest(m, { inputs: [{ name: 'x', datatype: 'FP32', shape: [1], data: [1], parameters: { binary_data_size: 4 } }] }, Buffer.alloc(4)),
      /^inputs\[0\]: has both data and binary_data_size; send one$/,
    );
  });

  it('a malformed binary_data_size → INVALID_ARGUMENT', () => {
    const m = wire([['x', 'FP32', [-1]]]);
    for (const size of [-4, 1.5, '4', true]) {
      invalid(
        () => decodeInferRequest(m, { inputs: [{ name: 'x', datatype: 'FP32', shape: [1], parameters: { binary_data_size: size } }] }, Buffer.alloc(4)),
        /^inputs\[0\]\.parameters\.binary_data_size: expected a non-negative integer/,
      );
    }
  });

  describe('BYTES elements (4-byte little-endian length prefix)', () => {
    const m = wire([['s', 'BYTES', [-1]], ['x', 'FP32', [-1]]]);

    it('decodes UTF-8 elements, including empty ones, and keeps the offset for the next input', () => {
      const strings = ['ab', '', 'héllo', '日本'];
      const sBytes = bytesElements(strings);
      expect(sBytes.length).toBe(4 * 4 + 2 + 0 + 6 + 6);
      const binary = bufferAt(concat(sBytes, bytesOf(new Float32Array([2.5]))));
      const r = decodeInferRequest(
        m,
        {
          inputs: [
            { name: 's', datatype: 'BYTES', shape: [4], parameters: { binary_data_size: sBytes.length } },
            { name: 'x', datatype: 'FP32', shape: [1], parameters: { binary_data_size: 4 } },
          ],
        },
        binary,
      );
      expect(r.feeds.s.type).toBe('string');
      expect(r.feeds.s.dims).toEqual([4]);
      expect(r.feeds.s.data).toEqual(strings);
      expect(Array.from(r.feeds.x.data as Float32Array)).toEqual([2.5]);
    });

    it('a 2-D BYTES tensor', () => {
      const m2 = wire([['s', 'BYTES', [-1, 2]]]);
      const b = bytesElements(['a', 'b', 'c', 'd']);
      const r = decodeInferRequest(m2, { inputs: [{ name: 's', datatype: 'BYTES', shape: [2, 2], parameters: { binary_data_size: b.length } }] }, b);
      expect(r.feeds.s.dims).toEqual([2, 2]);
      expect(r.feeds.s.data).toEqual(['a', 'b', 'c', 'd']);
    });

    const one = (shape: number[], bytes: Buffer) =>
      decodeInferRequest(m, { inputs: [{ name: 's', datatype: 'BYTES', shape, parameters: { binary_data_size: bytes.length } }] }, bytes);

    it('a truncated length prefix → INVALID_ARGUMENT', () => {
      const bytes = Buffer.concat([bytesElements(['ab']), Buffer.from([1, 0])]);
      invalid(() => one([2], bytes), /^inputs\[0\]: BYTES element 1 of 2: the binary data ends before its 4-byte length$/);
      invalid(() => one([1], Buffer.alloc(0)), /^inputs\[0\]: 1 BYTES elements need at least 4 bytes \(4-byte lengths\), received 0$/);
    });

    it('a truncated element → INVALID_ARGUMENT', () => {
      const bytes = Buffer.concat([Buffer.from([10, 0, 0, 0]), Buffer.from('abc')]);
      invalid(() => one([1], bytes), /^inputs\[0\]: BYTES element 0 declares 10 bytes, only 3 remain$/);
      const huge = Buffer.from([0xff, 0xff, 0xff, 0xff, 0x61]);
      invalid(() => one([1], huge), /^inputs\[0\]: BYTES element 0 declares 4294967295 bytes, only 1 remain$/);
    });

    it('bytes left over after the elements → INVALID_ARGUMENT', () => {
      const bytes = bytesElements(['ab', 'cd']);
      invalid(() => one([1], bytes), /^inputs\[0\]: 6 bytes left after 1 BYTES elements$/);
    });
  });
});

// ---------------------------------------------------------------------------------------------
// raw binary mode (Inference-Header-Content-Length: 0)

describe('decodeInferRequest: raw binary mode', () => {
  it('a batched single-input model: batch 1, the variable dim inferred from the byte length, all outputs binary', () => {
    const m = wire([['x', 'FP32', [-1, -1, 3]]], [['a', 'FP32', [-1]], ['b', 'INT64', [-1]]], true);
    const values = new Float32Array([1, 2, 3, 4, 5, 6]);
    const body = bufferAt(bytesOf(values));
    const r = decodeInferRequest(m, null, body, true);
    expect(r.feeds.x.type).toBe('float32');
    expect(r.feeds.x.dims).toEqual([1, 2, 3]);
    expect(Array.from(r.feeds.x.data as Float32Array)).toEqual([1, 2, 3, 4, 5, 6]);
    expect((r.feeds.x.data as Float32Array).buffer).toBe(body.buffer);
    expect(r.outputs).toEqual(['a', 'b']);
    expect(r.binary).toEqual([true, true]);
    expect(r.id).toBeUndefined();
    expect(r.parameters).toBeUndefined();
    expect(r.priority).toBeUndefined();
    expect(r.timeoutMs).toBeUndefined();
  });

  it('ignores the header in raw mode', () => {
    const m = wire([['x', 'INT32', [-1]]], [['y', 'INT32', [-1]]], true);
    const r = decodeInferRequest(m, { id: 'ignored', inputs: 'not even valid' }, bufferAt(bytesOf(new Int32Array([9]))), true);
    expect(r.id).toBeUndefined();
    expect(r.feeds.x.dims).toEqual([1]);
    expect(Array.from(r.feeds.x.data as Int32Array)).toEqual([9]);
  });

  it('a batched model whose other dims are fixed: batch 1, exact byte length required', () => {
    const m = wire([['x', 'FP32', [-1, 4]]], [['y', 'FP32', [-1]]], true);
    const r = decodeInferRequest(m, null, bufferAt(bytesOf(new Float32Array([1, 2, 3, 4]))), true);
    expect(r.feeds.x.dims).toEqual([1, 4]);
    invalid(() => decodeInferRequest(m, null, Buffer.alloc(32), true), /needs 16 bytes, received 32/);
  });

  it('a non-batched model: the variable dim is inferred', () => {
    const m = wire([['x', 'INT16', [-1, 2]]], [['y', 'INT16', [-1]]], false);
    const r = decodeInferRequest(m, null, bufferAt(bytesOf(new Int16Array([1, 2, 3, 4, 5, 6]))), true);
    expect(r.feeds.x.dims).toEqual([3, 2]);
    expect(Array.from(r.feeds.x.data as Int16Array)).toEqual([1, 2, 3, 4, 5, 6]);
  });

  it('copies a misaligned body (values still right)', () => {
    const m = wire([['x', 'FP64', [-1]]], [['y', 'FP64', [-1]]], false);
    const body = bufferAt(bytesOf(new Float64Array([0.5, -1])), 3);
    const r = decodeInferRequest(m, null, body, true);
    expect(r.feeds.x.dims).toEqual([2]);
    expect(Array.from(r.feeds.x.data as Float64Array)).toEqual([0.5, -1]);
    expect((r.feeds.x.data as Float64Array).buffer).not.toBe(body.buffer);
  });

  it('a BYTES input of one element takes the whole body as its string', () => {
    const m = wire([['s', 'BYTES', [-1]]], [['y', 'FP32', [-1]]], true);
    const r = decodeInferRequest(m, null, Buffer.from('héllo', 'utf8'), true);
    expect(r.feeds.s.type).toBe('string');
    expect(r.feeds.s.dims).toEqual([1]);
    expect(r.feeds.s.data).toEqual(['héllo']);
    const m2 = wire([['s', 'BYTES', [2]]], [['y', 'FP32', [-1]]], false);
    invalid(() => decodeInferRequest(m2, null, Buffer.from('ab'), true), /^raw binary request: a BYTES input must hold one element/);
  });

  it('a model with two inputs → INVALID_ARGUMENT', () => {
    const m = wire([['x', 'FP32', [-1]], ['z', 'FP32', [-1]]], [['y', 'FP32', [-1]]], true);
    invalid(() => decodeInferRequest(m, null, Buffer.alloc(8), true), /^Inference-Header-Content-Length: 0 \(raw binary request\) needs a model with exactly one input; this one has 2$/);
  });

  it('a byte length that is not a whole number of rows → INVALID_ARGUMENT', () => {
    const m = wire([['x', 'FP32', [-1, -1, 3]]], [['y', 'FP32', [-1]]], true);
    invalid(() => decodeInferRequest(m, null, Buffer.alloc(10), true), /^raw binary request: 10 bytes is not a whole number of \[-1, -1, 3\] FP32 rows \(12 bytes each\)$/);
    invalid(() => decodeInferRequest(m, null, Buffer.alloc(18), true), /^raw binary request: 18 bytes is not a whole number/);
  });

  it('more than one variable dim besides the batch → INVALID_ARGUMENT', () => {
    const m = wire([['x', 'FP32', [-1, -1, -1]]], [['y', 'FP32', [-1]]], true);
    invalid(() => decodeInferRequest(m, null, Buffer.alloc(8), true), /^raw binary request: input 'x' has shape \[-1, -1, -1\] with more than one variable dim besides the batch/);
    const unbatched = wire([['x', 'FP32', [-1, -1]]], [['y', 'FP32', [-1]]], false);
    invalid(() => decodeInferRequest(unbatched, null, Buffer.alloc(8), true), /more than one variable dim/);
  });
});

describe('decodeInferRequest: fixed after review', () => {
  const m: WireModelForFixes = { inputs: [{ name: 'x', datatype: 'FP32', shape: [-1] }, { name: 's', datatype: 'BYTES', shape: [-1] }], outputs: [], batched: false };
  it('a huge declared shape with little data is a 400 before anything is allocated', () => {
    for (const [name, datatype] of [['x', 'FP32'], ['s', 'BYTES']] as const) {
      for (const shape of [[2 ** 40], [2 ** 33], [2 ** 31]]) {
        let err: unknown;
        try {
          decodeInferRequest(m, { inputs: [{ name, datatype, shape, data: [datatype === 'BYTES' ? 'a' : 1] }] }, null);
        } catch (e) {
          err = e;
        }
        expect(err).toBeInstanceOf(NimifyError);
        expect((err as NimifyError).code).toBe('INVALID_ARGUMENT');
        expect((err as NimifyError).message).toContain('received 1');
      }
    }
  });
  it('a shape with a zero dim holds zero elements however large the others are', () => {
    const r = decodeInferRequest({ inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, -1, -1] }], outputs: [], batched: false }, { inputs: [{ name: 'x', datatype: 'FP32', shape: [2 ** 40, 2 ** 40, 0], data: [] }] }, null);
    expect(r.feeds.x.data.length).toBe(0);
  });
});
type WireModelForFixes = Parameters<typeof decodeInferRequest>[0];

describe('decodeInferRequest: bounds from the malformed-input review', () => {
  const m = { inputs: [{ name: 's', datatype: 'BYTES' as const, shape: [-1] }], outputs: [], batched: false };
  it('a huge BYTES count with a few binary bytes is a 400 before allocating', () => {
    expect(() => decodeInferRequest(m, { inputs: [{ name: 's', datatype: 'BYTES', shape: [5e9], parameters: { binary_data_size: 8 } }] }, Buffer.alloc(8))).toThrow(/need at least 20000000000 bytes/);
  });
  it('timeouts beyond what a timer can hold are refused', () => {
    expect(() => decodeInferRequest(m, { parameters: { timeout: 3e12 }, inputs: [{ name: 's', datatype: 'BYTES', shape: [1], data: ['a'] }] }, null)).toThrow(/up to 2147483647000/);
  });
});
