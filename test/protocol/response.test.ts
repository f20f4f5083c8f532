import { describe, expect, it } from 'vitest';
import { decodeInferRequest, type WireModel } from '../../src/protocol/request';
import { encodeInferResponse, type EncodedResponse, type ResponseMeta } from '../../src/protocol/response';
import { Tensor } from '../../src/runtime/tensor';

// ---------------------------------------------------------------------------------------------
// helpers

const META: ResponseMeta = { modelName: 'm', modelVersion: '1', id: undefined, parameters: undefined };

interface OutputJson {
  name: string;
  datatype: string;
  shape: number[];
  data?: unknown[];
  parameters?: Record<string, unknown>;
}
interface ResponseJson {
  model_name: string;
  model_version: string;
  id?: string;
  parameters?: Record<string, unknown>;
  outputs: OutputJson[];
}

/** A JSON-only response: the body must be a string and there is no header length. */
function jsonOf(res: EncodedResponse): ResponseJson {
  expect(typeof res.body).toBe('string');
  expect(res.headerLength).toBeUndefined();
  return JSON.parse(res.body as string) as ResponseJson;
}

/** A binary response: the header JSON and the bytes that follow it. */
function splitBinary(res: EncodedResponse): { header: ResponseJson; headerText: string; rest: Buffer } {
  expect(Buffer.isBuffer(res.body)).toBe(true);
  const body = res.body as Buffer;
  expect(typeof res.headerLength).toBe('number');
  const headerText = body.subarray(0, res.headerLength).toString('utf8');
  return { header: JSON.parse(headerText) as ResponseJson, headerText, rest: body.subarray(res.headerLength) };
}

function bytesOf(view: ArrayBufferView): Buffer {
  return Buffer.from(view.buffer.slice(view.byteOffset, view.byteOffset + view.byteLength));
}

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

const encodeJson = (results: Record<string, Tensor>, names = Object.keys(results), meta: ResponseMeta = META) =>
  encodeInferResponse(meta, results, names, names.map(() => false));
const encodeBinary = (results: Record<string, Tensor>, names = Object.keys(results), meta: ResponseMeta = META) =>
  encodeInferResponse(meta, results, names, names.map(() => true));

// ---------------------------------------------------------------------------------------------
// JSON responses

describe('encodeInferResponse: JSON', () => {
  it('has model_name, model_version, id, parameters and outputs with name, datatype, shape and data', () => {
    const res = encodeInferResponse(
      { modelName: 'resnet', modelVersion: '3', id: 'req-1', parameters: { custom: 'v', n: 2, flag: true } },
      { y: new Tensor('float32', new Float32Array([1, 2.5, -3, 4, 5, 6]), [2, 3]) },
      ['y'],
      [false],
    );
    const body = jsonOf(res);
    expect(body).toEqual({
      model_name: 'resnet',
      model_version: '3',
      id: 'req-1',
      parameters: { custom: 'v', n: 2, flag: true },
      outputs: [{ name: 'y', datatype: 'FP32', shape: [2, 3], data: [1, 2.5, -3, 4, 5, 6] }],
    });
  });

  it('omits id and parameters when they are undefined', () => {
    const body = jsonOf(encodeJson({ y: new Tensor('int32', new Int32Array([1]), [1]) }));
    expect(Object.keys(body)).toEqual(['model_name', 'model_version', 'outputs']);
    expect('id' in body).toBe(false);
    expect('parameters' in body).toBe(false);
  });

  it('escapes names, ids and parameters as JSON strings', () => {
    const meta: ResponseMeta = { modelName: 'we"ird\\mo\ndel', modelVersion: 'v"1', id: '</script>\u2028"', parameters: { 'k"ey': 'va\u0000l' } };
    const body = jsonOf(encodeJson({ 'out"put': new Tensor('uint8', new Uint8Array([1]), [1]) }, undefined, meta));
    expect(body.model_name).toBe('we"ird\\mo\ndel');
    expect(body.model_version).toBe('v"1');
    expect(body.id).toBe('</script>\u2028"');
    expect(body.parameters).toEqual({ 'k"ey': 'va\u0000l' });
    expect(body.outputs[0].name).toBe('out"put');
  });

  it('lists outputs in the order of `names` (a subset of the results)', () => {
    const results = {
      a: new Tensor('int32', new Int32Array([1]), [1]),
      b: new Tensor('int32', new Int32Array([2]), [1]),
      c: new Tensor('int32', new Int32Array([3]), [1]),
    };
    const body = jsonOf(encodeJson(results, ['c', 'a']));
    expect(body.outputs.map((o) => o.name)).toEqual(['c', 'a']);
    expect(body.outputs.map((o) => o.data)).toEqual([[3], [1]]);
  });

  it.each<[string, Tensor, string, unknown[]]>([
    ['bool', new Tensor('bool', new Uint8Array([1, 0, 1, 2]), [4]), 'BOOL', [true, false, true, true]],
    ['uint8', new Tensor('uint8', new Uint8Array([0, 255]), [2]), 'UINT8', [0, 255]],
    ['uint16', new Tensor('uint16', new Uint16Array([0, 65535]), [2]), 'UINT16', [0, 65535]],
    ['uint32', new Tensor('uint32', new Uint32Array([0, 4294967295]), [2]), 'UINT32', [0, 4294967295]],
    ['uint64', new Tensor('uint64', new BigUint64Array([0n, 12345n]), [2]), 'UINT64', [0, 12345]],
    ['int8', new Tensor('int8', new Int8Array([-128, 127]), [2]), 'INT8', [-128, 127]],
    ['int16', new Tensor('int16', new Int16Array([-32768, 32767]), [2]), 'INT16', [-32768, 32767]],
    ['int32', new Tensor('int32', new Int32Array([-2147483648, 2147483647]), [2]), 'INT32', [-2147483648, 2147483647]],
    ['int64', new Tensor('int64', new BigInt64Array([-5n, 9007199254740991n]), [2]), 'INT64', [-5, 9007199254740991]],
    ['float16', new Tensor('float16', new Uint16Array([0x3c00, 0xc000, 0x3555, 0x7bff, 0x0001]), [5]), 'FP16', [1, -2, 0.333251953125, 65504, 2 ** -24]],
    ['float32', new Tensor('float32', new Float32Array([0.5, -1.25, 0.1]), [3]), 'FP32', [0.5, -1.25, Math.fround(0.1)]],
    ['float64', new Tensor('float64', new Float64Array([0.1, 1e300, 5e-324]), [3]), 'FP64', [0.1, 1e300, 5e-324]],
    ['bfloat16', new Tensor('bfloat16', new Uint16Array([0x3f80, 0x4040, 0xc000, 0x3dcd]), [4]), 'BF16', [1, 3, -2, Math.fround(0.10009765625)]],
    ['string', new Tensor('string', ['a', '', 'héllo "q"', '\n'], [4]), 'BYTES', ['a', '', 'héllo "q"', '\n']],
  ])('%s → datatype %s with JSON data', (_type, tensor, datatype, data) => {
    const body = jsonOf(encodeJson({ y: tensor }));
    expect(body.outputs[0].datatype).toBe(datatype);
    expect(body.outputs[0].shape).toEqual(tensor.dims);
    expect(body.outputs[0].data).toEqual(data);
    expect(body.outputs[0].parameters).toBeUndefined();
  });

  it('writes BOOL as true/false literals and FP16/BF16 as decoded numbers (never bit patterns)', () => {
    const text = encodeJson({
      b: new Tensor('bool', new Uint8Array([1, 0]), [2]),
      h: new Tensor('float16', new Uint16Array([0x3c00, 0x3800]), [2]),
      f: new Tensor('bfloat16', new Uint16Array([0x3f80, 0x4000]), [2]),
    }).body as string;
    expect(text).toContain('"data":[true,false]');
    expect(text).toContain('"data":[1,0.5]');
    expect(text).toContain('"data":[1,2]');
    expect(text).not.toContain('15360'); // 0x3c00
    expect(text).not.toContain('16256'); // 0x3f80
  });

  it('writes 64-bit integers beyond 2^53 as exact digits in the JSON text', () => {
    const text = encodeJson({
      i: new Tensor('int64', new BigInt64Array([9007199254740993n, -9223372036854775808n, 9223372036854775807n]), [3]),
      u: new Tensor('uint64', new BigUint64Array([18446744073709551615n, 9007199254740993n]), [2]),
    }).body as string;
    expect(text).toContain('"data":[9007199254740993,-9223372036854775808,9223372036854775807]');
    expect(text).toContain('"data":[18446744073709551615,9007199254740993]');
    expect(() => JSON.parse(text)).not.toThrow();
  });

  it('turns NaN and ±Infinity into null (JSON has no such numbers)', () => {
    const res = encodeJson({
      f: new Tensor('float32', new Float32Array([1, NaN, Infinity, -Infinity, 2]), [5]),
      d: new Tensor('float64', new Float64Array([NaN, 0.5]), [2]),
      h: new Tensor('float16', new Uint16Array([0x7c00, 0x7e00, 0xfc00, 0x3c00]), [4]),
      b: new Tensor('bfloat16', new Uint16Array([0x7f80, 0x7fc0, 0x3f80]), [3]),
    });
    const text = res.body as string;
    expect(text).not.toMatch(/NaN|Infinity/);
    const body = jsonOf(res);
    expect(body.outputs.map((o) => o.data)).toEqual([
      [1, null, null, null, 2],
      [null, 0.5],
      [null, null, null, 1],
      [null, null, 1],
    ]);
  });

  it('handles scalar and empty tensors', () => {
    const body = jsonOf(
      encodeJson({
        s: new Tensor('float32', new Float32Array([7]), []),
        e: new Tensor('int64', new BigInt64Array(0), [0, 3]),
        t: new Tensor('string', [], [0]),
        b: new Tensor('bool', new Uint8Array(0), [0]),
      }),
    );
    expect(body.outputs).toEqual([
      { name: 's', datatype: 'FP32', shape: [], data: [7] },
      { name: 'e', datatype: 'INT64', shape: [0, 3], data: [] },
      { name: 't', datatype: 'BYTES', shape: [0], data: [] },
      { name: 'b', datatype: 'BOOL', shape: [0], data: [] },
    ]);
  });

  it('data is the flat row-major element list whatever the rank', () => {
    const body = jsonOf(encodeJson({ y: new Tensor('int16', new Int16Array([1, 2, 3, 4, 5, 6, 7, 8]), [2, 2, 2]) }));
    expect(body.outputs[0].shape).toEqual([2, 2, 2]);
    expect(body.outputs[0].data).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
  });

  it('encodes only the view of a typed array that shares a larger buffer', () => {
    const backing = new Float32Array([100, 1, 2, 3, 200]);
    const body = jsonOf(encodeJson({ y: new Tensor('float32', backing.subarray(1, 4), [3]) }));
    expect(body.outputs[0].data).toEqual([1, 2, 3]);
  });
});

// ---------------------------------------------------------------------------------------------
// binary responses

describe('encodeInferResponse: binary tensor data extension', () => {
  it('headerLength is the JSON header byte length; binary_data_size and the bytes after it match the tensor', () => {
    const y = new Tensor('float32', new Float32Array([1.5, -2, 3.25, NaN, Infinity, 6]), [2, 3]);
    const res = encodeInferResponse({ modelName: 'mödel', modelVersion: '2', id: 'ïd', parameters: { p: 'ü' } }, { y }, ['y'], [true]);
    const { header, headerText, rest } = splitBinary(res);
    expect(res.headerLength).toBe(Buffer.byteLength(headerText, 'utf8'));
    expect(res.headerLength).toBeGreaterThan(headerText.length); // multi-byte characters counted as bytes
    expect(header).toEqual({
      model_name: 'mödel',
      model_version: '2',
      id: 'ïd',
      parameters: { p: 'ü' },
      outputs: [{ name: 'y', datatype: 'FP32', shape: [2, 3], parameters: { binary_data_size: 24 } }],
    });
    expect('data' in header.outputs[0]).toBe(false);
    expect(rest.length).toBe(24);
    expect(rest.equals(bytesOf(y.data as Float32Array))).toBe(true); // NaN/Infinity bits preserved in binary
    expect((res.body as Buffer).length).toBe(res.headerLength! + 24);
  });

  it.each<[string, Tensor, string]>([
    ['bool', new Tensor('bool', new Uint8Array([1, 0, 1]), [3]), 'BOOL'],
    ['uint8', new Tensor('uint8', new Uint8Array([0, 128, 255]), [3]), 'UINT8'],
    ['uint16', new Tensor('uint16', new Uint16Array([0, 258, 65535]), [3]), 'UINT16'],
    ['uint32', new Tensor('uint32', new Uint32Array([1, 16909060, 4294967295]), [3]), 'UINT32'],
    ['uint64', new Tensor('uint64', new BigUint64Array([0n, 2n ** 64n - 1n, 2n ** 53n + 1n]), [3]), 'UINT64'],
    ['int8', new Tensor('int8', new Int8Array([-128, 0, 127]), [3]), 'INT8'],
    ['int16', new Tensor('int16', new Int16Array([-32768, -1, 32767]), [3]), 'INT16'],
    ['int32', new Tensor('int32', new Int32Array([-2147483648, -1, 2147483647]), [3]), 'INT32'],
    ['int64', new Tensor('int64', new BigInt64Array([-(2n ** 63n), -1n, 2n ** 63n - 1n]), [3]), 'INT64'],
    ['float16', new Tensor('float16', new Uint16Array([0x3c00, 0x7e00, 0x8001]), [3]), 'FP16'],
    ['float32', new Tensor('float32', new Float32Array([0.1, -0, NaN]), [3]), 'FP32'],
    ['float64', new Tensor('float64', new Float64Array([0.1, -Infinity, 1e-310]), [3]), 'FP64'],
    ['bfloat16', new Tensor('bfloat16', new Uint16Array([0x3f80, 0x7fc0, 0x0001]), [3]), 'BF16'],
  ])('%s → %s little-endian bytes after the header', (_type, tensor, datatype) => {
    const res = encodeBinary({ y: tensor });
    const { header, rest } = splitBinary(res);
    const expected = bytesOf(tensor.data as ArrayBufferView);
    expect(header.outputs[0]).toEqual({ name: 'y', datatype, shape: [3], parameters: { binary_data_size: expected.length } });
    expect(rest.equals(expected)).toBe(true);
  });

  it('BYTES outputs are length-prefixed elements (4-byte little-endian length + UTF-8)', () => {
    const strings = ['ab', '', 'héllo', '日本語'];
    const res = encodeBinary({ s: new Tensor('string', strings, [2, 2]) });
    const { header, rest } = splitBinary(res);
    const expected = bytesElements(strings);
    expect(expected.length).toBe(16 + 2 + 0 + 6 + 9);
    expect(header.outputs[0]).toEqual({ name: 's', datatype: 'BYTES', shape: [2, 2], parameters: { binary_data_size: expected.length } });
    expect(rest.equals(expected)).toBe(true);
    expect(rest.readUInt32LE(0)).toBe(2);
    expect(rest.readUInt32LE(6)).toBe(0);
    expect(rest.readUInt32LE(10)).toBe(6);
  });

  it('writes only the bytes of a view into a larger buffer', () => {
    const backing = new Int32Array([111, 1, 2, 3, 222]);
    const res = encodeBinary({ y: new Tensor('int32', backing.subarray(1, 4), [3]) });
    const { header, rest } = splitBinary(res);
    expect(header.outputs[0].parameters).toEqual({ binary_data_size: 12 });
    expect(rest.equals(bytesOf(new Int32Array([1, 2, 3])))).toBe(true);
  });

  it('a zero-element binary output has binary_data_size 0 (the body is the header alone)', () => {
    const res = encodeBinary({ y: new Tensor('float32', new Float32Array(0), [0, 4]) });
    const { header, rest } = splitBinary(res);
    expect(header.outputs[0]).toEqual({ name: 'y', datatype: 'FP32', shape: [0, 4], parameters: { binary_data_size: 0 } });
    expect(rest.length).toBe(0);
    expect((res.body as Buffer).length).toBe(res.headerLength);
  });

  it('mixed binary and JSON outputs: JSON ones carry data, binary ones are concatenated in output order', () => {
    const a = new Tensor('float32', new Float32Array([1, 2]), [2]);
    const b = new Tensor('int64', new BigInt64Array([2n ** 60n + 1n]), [1]);
    const c = new Tensor('string', ['x', 'yz'], [2]);
    const d = new Tensor('bool', new Uint8Array([0, 1]), [2]);
    const e = new Tensor('uint16', new Uint16Array([7, 8, 9]), [3]);
    const res = encodeInferResponse(
      { ...META, id: '9' },
      { a, b, c, d, e },
      ['e', 'a', 'b', 'c', 'd'],
      [true, false, true, true, false],
    );
    const { header, headerText, rest } = splitBinary(res);
    expect(res.headerLength).toBe(Buffer.byteLength(headerText));
    expect(header.id).toBe('9');
    expect(header.outputs).toEqual([
      { name: 'e', datatype: 'UINT16', shape: [3], parameters: { binary_data_size: 6 } },
      { name: 'a', datatype: 'FP32', shape: [2], data: [1, 2] },
      { name: 'b', datatype: 'INT64', shape: [1], parameters: { binary_data_size: 8 } },
      { name: 'c', datatype: 'BYTES', shape: [2], parameters: { binary_data_size: 4 + 1 + 4 + 2 } },
      { name: 'd', datatype: 'BOOL', shape: [2], data: [false, true] },
    ]);
    const expected = Buffer.concat([bytesOf(e.data as Uint16Array), bytesOf(b.data as BigInt64Array), bytesElements(['x', 'yz'])]);
    expect(rest.equals(expected)).toBe(true);
    // walking the body by binary_data_size recovers each tensor
    let pos = 0;
    const parts: Record<string, Buffer> = {};
    for (const o of header.outputs) {
      const size = o.parameters?.binary_data_size as number | undefined;
      if (size === undefined) continue;
      parts[o.name] = rest.subarray(pos, pos + size);
      pos += size;
    }
    expect(pos).toBe(rest.length);
    expect(parts.b.readBigInt64LE(0)).toBe(2n ** 60n + 1n);
    expect(parts.e.readUInt16LE(4)).toBe(9);
  });

  it('stays a JSON string (no headerLength) when no output is binary', () => {
    const res = encodeInferResponse(META, { a: new Tensor('float32', new Float32Array([1]), [1]) }, ['a'], [false]);
    expect(typeof res.body).toBe('string');
    expect(res.headerLength).toBeUndefined();
  });

  it('does not alias the tensor memory: later writes to the tensor do not change the body', () => {
    const data = new Float32Array([1, 2]);
    const res = encodeBinary({ y: new Tensor('float32', data, [2]) });
    data[0] = 42;
    const { rest } = splitBinary(res);
    expect(rest.readFloatLE(0)).toBe(1);
  });
});

// ---------------------------------------------------------------------------------------------
// decode → encode

describe('request decode → response encode', () => {
  const model: WireModel = {
    inputs: [
      { name: 'x', datatype: 'FP16', shape: [-1, 2] },
      { name: 'i', datatype: 'INT64', shape: [-1] },
      { name: 's', datatype: 'BYTES', shape: [-1] },
    ],
    outputs: [
      { name: 'x', datatype: 'FP16', shape: [-1, 2] },
      { name: 'i', datatype: 'INT64', shape: [-1] },
      { name: 's', datatype: 'BYTES', shape: [-1] },
    ],
    batched: true,
  };

  it('an identity round trip through JSON preserves values, shapes, id and parameters', () => {
    const req = decodeInferRequest(
      model,
      {
        id: 'rt',
        parameters: { tag: 'abc', binary_data_output: false },
        inputs: [
          { name: 'x', datatype: 'FP16', shape: [2, 2], data: [[1, -2], [0.5, 65504]] },
          { name: 'i', datatype: 'INT64', shape: [2], data: [-(2 ** 53) + 1, 42] },
          { name: 's', datatype: 'BYTES', shape: [1], data: ['héllo'] },
        ],
      },
      null,
    );
    const body = jsonOf(encodeInferResponse({ modelName: 'id', modelVersion: '1', id: req.id, parameters: req.parameters }, req.feeds, req.outputs, req.binary));
    expect(body.id).toBe('rt');
    expect(body.parameters).toEqual({ tag: 'abc' });
    expect(body.outputs).toEqual([
      { name: 'x', datatype: 'FP16', shape: [2, 2], data: [1, -2, 0.5, 65504] },
      { name: 'i', datatype: 'INT64', shape: [2], data: [-9007199254740991, 42] },
      { name: 's', datatype: 'BYTES', shape: [1], data: ['héllo'] },
    ]);
  });

  it('an identity round trip through the binary extension reproduces the request bytes', () => {
    const x = Buffer.from(new Uint16Array([0x3c00, 0x7e00, 0x0001, 0xfbff]).buffer);
    const i = Buffer.from(new BigInt64Array([2n ** 63n - 1n]).buffer);
    const s = bytesElements(['a', 'bc']);
    const binary = Buffer.concat([x, i, s]);
    const req = decodeInferRequest(
      model,
      {
        parameters: { binary_data_output: true },
        inputs: [
          { name: 'x', datatype: 'FP16', shape: [2, 2], parameters: { binary_data_size: x.length } },
          { name: 'i', datatype: 'INT64', shape: [1], parameters: { binary_data_size: i.length } },
          { name: 's', datatype: 'BYTES', shape: [2], parameters: { binary_data_size: s.length } },
        ],
      },
      binary,
    );
    const res = encodeInferResponse({ modelName: 'id', modelVersion: '1', id: req.id, parameters: req.parameters }, req.feeds, req.outputs, req.binary);
    const { header, rest } = splitBinary(res);
    expect(header.outputs.map((o) => o.parameters?.binary_data_size)).toEqual([x.length, i.length, s.length]);
    expect(rest.equals(binary)).toBe(true);
  });
});
