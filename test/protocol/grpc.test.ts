/**
 * The gRPC codec (src/protocol/grpc.ts) against hand-built ModelInferRequest messages: typed
 * contents for every datatype that has a field, raw_input_contents (little-endian, BYTES
 * length-prefixed, FP16/BF16 bit patterns), parameters (InferParameter oneof), output selection,
 * id, and the refusals with the field they name. Then a message round trip through the .proto
 * itself (proto-loader's serializer), so that int64 stays exact on the wire.
 */
import { describe, expect, it } from 'vitest';
import { Tensor } from '../../src';
import { decodeGrpcInferRequest, encodeGrpcInferResponse, GRPC_SERVICE, loadInferenceProto, parameterValue, PROTO_DIR, responseParameters, type InferTensorContents, type ModelInferRequest } from '../../src/protocol/grpc';
import type { WireModel } from '../../src/protocol/request';

const EMPTY: InferTensorContents = { bool_contents: [], int_contents: [], int64_contents: [], uint_contents: [], uint64_contents: [], fp32_contents: [], fp64_contents: [], bytes_contents: [] };
const contents = (c: Partial<typeof EMPTY>) => ({ ...EMPTY, ...c });
const request = (r: Partial<ModelInferRequest>): ModelInferRequest => ({ model_name: 'm', model_version: '', id: '', parameters: {}, inputs: [], outputs: [], raw_input_contents: [], ...r });
const input = (name: string, datatype: string, shape: Array<string | number>, c: Partial<typeof EMPTY> | null = null) => ({ name, datatype, shape, parameters: {}, contents: c === null ? null : contents(c) });
const one = (datatype: WireModel['inputs'][number]['datatype'], shape = [-1]): WireModel => ({ inputs: [{ name: 'x', datatype, shape }], outputs: [{ name: 'y', datatype, shape }], batched: false });

describe('typed contents', () => {
  it('each datatype from its own field, values exact (int64 beyond 2^53 included)', () => {
    const cases: Array<[WireModel['inputs'][number]['datatype'], Partial<typeof EMPTY>, unknown[]]> = [
      ['FP32', { fp32_contents: [1.5, -2] }, [1.5, -2]],
      ['FP64', { fp64_contents: [0.1, 1e300] }, [0.1, 1e300]],
      ['INT8', { int_contents: [-128, 127] }, [-128, 127]],
      ['INT32', { int_contents: [-5, 2147483647] }, [-5, 2147483647]],
      ['UINT16', { uint_contents: [0, 65535] }, [0, 65535]],
      ['INT64', { int64_contents: ['9007199254740993', '-9223372036854775808'] }, [9007199254740993n, -9223372036854775808n]],
      ['UINT64', { uint64_contents: ['18446744073709551615', '1'] }, [18446744073709551615n, 1n]],
      ['BOOL', { bool_contents: [true, false] }, [1, 0]],
      ['BYTES', { bytes_contents: [Buffer.from('héllo'), Buffer.alloc(0)] }, ['héllo', '']],
    ];
    for (const [datatype, c, expected] of cases) {
      const d = decodeGrpcInferRequest(one(datatype), request({ inputs: [input('x', datatype, ['2'], c)] }));
      expect(Array.from(d.feeds.x.data as ArrayLike<unknown>), datatype).toEqual(expected);
      expect(d.feeds.x.dims).toEqual([2]);
    }
  });

  it('refuses values out of the datatype range, the wrong field, a typed FP16, missing contents', () => {
    expect(() => decodeGrpcInferRequest(one('INT8'), request({ inputs: [input('x', 'INT8', [1], { int_contents: [200] })] }))).toThrow(/inputs\[0\]\.data: element 0: expected an integer in \[-128, 127\]/);
    expect(() => decodeGrpcInferRequest(one('FP32'), request({ inputs: [input('x', 'FP32', [1], { int_contents: [1] })] }))).toThrow(/inputs\[0\]\.contents\.int_contents: a FP32 tensor's elements go in contents\.fp32_contents/);
    expect(() => decodeGrpcInferRequest(one('FP16'), request({ inputs: [input('x', 'FP16', [1], { fp32_contents: [1] })] }))).toThrow(/FP16 has no typed contents field; send its bytes in raw_input_contents/);
    expect(() => decodeGrpcInferRequest(one('FP32'), request({ inputs: [input('x', 'FP32', [1])] }))).toThrow(/inputs\[0\]\.contents: missing/);
    expect(() => decodeGrpcInferRequest(one('FP32'), request({ inputs: [input('x', 'FP32', [3], { fp32_contents: [1, 2] })] }))).toThrow(/needs 3 elements, received 2/);
    // The HTTP codec's own checks apply: datatype, shape against the model.
    expect(() => decodeGrpcInferRequest(one('FP32', [2]), request({ inputs: [input('x', 'FP32', [3], { fp32_contents: [1, 2, 3] })] }))).toThrow(/needs shape \[2\]/);
    expect(() => decodeGrpcInferRequest(one('FP32'), request({ inputs: [input('x', 'INT32', [1], { int_contents: [1] })] }))).toThrow(/input 'x' is FP32, received INT32/);
    try {
      decodeGrpcInferRequest(one('FP32'), request({ inputs: [input('x', 'FP32', ['99999999999999999999'], { fp32_contents: [] })] }));
      expect.unreachable();
    } catch (err) {
      expect((err as { code: string }).code).toBe('INVALID_ARGUMENT');
    }
  });
});

describe('raw_input_contents', () => {
  it('one little-endian entry per input, in order: FP32, INT64, BYTES, FP16 and BF16 bit patterns', () => {
    const model: WireModel = {
      inputs: [
        { name: 'f', datatype: 'FP32', shape: [-1] }, { name: 'i', datatype: 'INT64', shape: [-1] },
        { name: 's', datatype: 'BYTES', shape: [-1] }, { name: 'h', datatype: 'FP16', shape: [-1] }, { name: 'b', datatype: 'BF16', shape: [-1] },
      ],
      outputs: [{ name: 'y', datatype: 'FP32', shape: [-1] }],
      batched: false,
    };
    const i64 = BigInt64Array.from([2n ** 62n + 1n, -3n]);
    const bytes = Buffer.concat([Buffer.from([2, 0, 0, 0]), Buffer.from('ab'), Buffer.from([0, 0, 0, 0])]);
    const d = decodeGrpcInferRequest(model, request({
      inputs: ['f', 'i', 's', 'h', 'b'].map((n, k) => input(n, model.inputs[k].datatype, [2])),
      raw_input_contents: [
        Buffer.from(Float32Array.from([0.25, -1]).buffer), Buffer.from(i64.buffer), bytes,
        Buffer.from(Uint16Array.from([0x3c00, 0xc000]).buffer), Buffer.from(Uint16Array.from([0x3f80, 0x7f80]).buffer),
      ],
    }));
    expect(Array.from(d.feeds.f.data as Float32Array)).toEqual([0.25, -1]);
    expect(Array.from(d.feeds.i.data as BigInt64Array)).toEqual([2n ** 62n + 1n, -3n]);
    expect(d.feeds.s.data).toEqual(['ab', '']);
    expect(d.feeds.h.type).toBe('float16');
    expect(Array.from(d.feeds.h.data as Uint16Array)).toEqual([0x3c00, 0xc000]);
    expect(d.feeds.b.type).toBe('bfloat16');
    expect(Array.from(d.feeds.b.data as Uint16Array)).toEqual([0x3f80, 0x7f80]);
  });

  it('refuses a size mismatch, too few entries, contents beside raw, binary_data_size', () => {
    const m = one('FP32');
    expect(() => decodeGrpcInferRequest(m, request({ inputs: [input('x', 'FP32', [2])], raw_input_contents: [Buffer.alloc(4)] }))).toThrow(/raw_input_contents\[0\]: shape \[2\] of FP32 needs 8 bytes, received 4/);
    const two: WireModel = { inputs: [{ name: 'a', datatype: 'FP32', shape: [-1] }, { name: 'b', datatype: 'FP32', shape: [-1] }], outputs: [], batched: false };
    expect(() => decodeGrpcInferRequest(two, request({ inputs: [input('a', 'FP32', [1]), input('b', 'FP32', [1])], raw_input_contents: [Buffer.alloc(4)] }))).toThrow(/raw_input_contents: 1 entries for 2 inputs/);
    expect(() => decodeGrpcInferRequest(m, request({ inputs: [input('x', 'FP32', [1], { fp32_contents: [1] })], raw_input_contents: [Buffer.alloc(4)] }))).toThrow(/contents: set while the request has raw_input_contents/);
    expect(() => decodeGrpcInferRequest(m, request({ inputs: [{ ...input('x', 'FP32', [1]), parameters: { binary_data_size: { parameter_choice: 'int64_param', int64_param: '4' } } }], raw_input_contents: [Buffer.alloc(4)] }))).toThrow(/binary_data_size: the HTTP binary extension's parameter/);
    expect(() => decodeGrpcInferRequest(one('BYTES'), request({ inputs: [input('x', 'BYTES', [1])], raw_input_contents: [Buffer.from([9, 0, 0, 0, 1])] }))).toThrow(/BYTES element 0 declares 9 bytes/);
  });
});

describe('parameters, outputs, id', () => {
  it('reads priority and timeout (µs) as the HTTP codec does, keeps the caller\'s own for the response, refuses reserved ones', () => {
    const model: WireModel = { inputs: [{ name: 'x', datatype: 'FP32', shape: [-1] }], outputs: [{ name: 'a', datatype: 'FP32', shape: [-1] }, { name: 'b', datatype: 'FP32', shape: [-1] }], batched: false };
    const msg = request({
      id: 'req-7',
      parameters: {
        priority: { parameter_choice: 'uint64_param', uint64_param: '1' },
        timeout: { parameter_choice: 'int64_param', int64_param: '2500' },
        mine: { parameter_choice: 'double_param', double_param: 0.5 },
        tag: { parameter_choice: 'string_param', string_param: 't' },
      },
      inputs: [input('x', 'FP32', [1], { fp32_contents: [1] })],
      outputs: [{ name: 'b', parameters: {} }],
    });
    const d = decodeGrpcInferRequest(model, msg);
    expect(d).toMatchObject({ id: 'req-7', priority: 1, timeoutMs: 2.5, outputs: ['b'], parameters: { mine: 0.5, tag: 't' } });
    expect(responseParameters(msg, d)).toEqual({ mine: msg.parameters.mine, tag: msg.parameters.tag });
    expect(decodeGrpcInferRequest(model, { ...msg, outputs: [] }).outputs).toEqual(['a', 'b']);
    expect(() => decodeGrpcInferRequest(model, { ...msg, parameters: { sequence_id: { parameter_choice: 'int64_param', int64_param: '3' } } })).toThrow(/sequence batching/);
    expect(() => decodeGrpcInferRequest(model, { ...msg, parameters: { timeout: { parameter_choice: 'int64_param', int64_param: '-1' } } })).toThrow(/parameters\.timeout/);
    expect(() => decodeGrpcInferRequest(model, { ...msg, outputs: [{ name: 'zz', parameters: {} }] })).toThrow(/outputs\[0\]\.name: unknown output "zz"/);
    expect(() => parameterValue('p', {})).toThrow(/p: an InferParameter with no value set/);
    expect(parameterValue('p', { parameter_choice: 'int64_param', int64_param: '9007199254740993' })).toBe('9007199254740993');
  });
});

describe('response and the wire', () => {
  it('raw_output_contents hold each output\'s bytes; a message survives the .proto round trip with int64 exact', () => {
    const results = {
      y: new Tensor('int64', BigInt64Array.from([2n ** 63n - 1n, -1n]), [1, 2]),
      s: new Tensor('string', ['x', 'yz'], [2]),
    };
    const res = encodeGrpcInferResponse({ modelName: 'm', modelVersion: '3', id: 'i', parameters: {} }, results, ['y', 's']);
    expect(res.outputs).toEqual([{ name: 'y', datatype: 'INT64', shape: [1, 2], parameters: {} }, { name: 's', datatype: 'BYTES', shape: [2], parameters: {} }]);
    expect(res.raw_output_contents[1]).toEqual(Buffer.from([1, 0, 0, 0, 0x78, 2, 0, 0, 0, 0x79, 0x7a]));
    const svc = loadInferenceProto()[GRPC_SERVICE] as Record<string, { responseSerialize(v: unknown): Buffer; responseDeserialize(b: Buffer): ModelInferResponseWire; requestSerialize(v: unknown): Buffer; requestDeserialize(b: Buffer): ModelInferRequest }>;
    const back = svc.ModelInfer.responseDeserialize(svc.ModelInfer.responseSerialize(res));
    expect(back.outputs[0].shape).toEqual(['1', '2']);
    const raw = back.raw_output_contents[0];
    expect(Array.from(new BigInt64Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.length)))).toEqual([2n ** 63n - 1n, -1n]);
    const req = svc.ModelInfer.requestDeserialize(svc.ModelInfer.requestSerialize(request({ inputs: [input('x', 'INT64', [1], { int64_contents: ['-9223372036854775807'] })] })));
    expect(Array.from(decodeGrpcInferRequest(one('INT64'), req).feeds.x.data as BigInt64Array)).toEqual([-9223372036854775807n]);
  });
});

interface ModelInferResponseWire {
  outputs: Array<{ shape: string[] }>;
  raw_output_contents: Buffer[];
}

describe('packaging', () => {
  it('the .proto files are where the codec loads them from, and the package ships that folder', () => {
    const fs = require('node:fs') as typeof import('node:fs');
    const path = require('node:path') as typeof import('node:path');
    for (const f of ['grpc_service.proto', 'model_config.proto']) expect(fs.existsSync(path.join(PROTO_DIR, f)), f).toBe(true);
    const pkg = JSON.parse(fs.readFileSync(path.join(PROTO_DIR, '..', 'package.json'), 'utf8'));
    expect(pkg.files).toContain(`${path.basename(PROTO_DIR)}/`);
  });
});
