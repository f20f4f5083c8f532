/**
 * nimify driven over a real gRPC port as tritonclient.grpc drives Triton (issue 16 item 5): a
 * @grpc/grpc-js client sending the messages the Python client builds (_get_inference_request):
 * every input's bytes in raw_input_contents (BYTES length-prefixed), `priority` as uint64_param,
 * `timeout` as int64_param, the caller's own parameters as string/int64/bool/double params, the
 * request id, requested outputs without parameters (or `classification` as int64_param, refused
 * by name), the `authorization` metadata the client's headers become, gzip message compression
 * (compression_algorithm='gzip'), and ModelStreamInfer as start_stream/async_stream_infer use it
 * (with `triton_enable_empty_final_response`, answered with `triton_final_response`).
 */
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel, Tensor, type Model } from '../../src';
import { loadInferenceProto } from '../../src/protocol/grpc';
import { maxAbsDiff, model } from '../helpers';
import { KEY, startCompatServer, type CompatServer } from './server';

type Client = grpc.Client & Record<string, (...args: unknown[]) => any>;
const Service = (grpc.loadPackageDefinition(loadInferenceProto()).inference as unknown as { GRPCInferenceService: grpc.ServiceClientConstructor }).GRPCInferenceService;

let s: CompatServer;
let client: Client;
let gzipClient: Client;
let mlp: Model;

beforeAll(async () => {
  s = await startCompatServer();
  // The channel options tritonclient.grpc.InferenceServerClient sets by default.
  const options = { 'grpc.max_send_message_length': 2 ** 31 - 1, 'grpc.max_receive_message_length': 2 ** 31 - 1, 'grpc.keepalive_time_ms': 2 ** 31 - 1, 'grpc.keepalive_timeout_ms': 20000, 'grpc.keepalive_permit_without_calls': 0, 'grpc.http2.max_pings_without_data': 2 };
  client = new Service(s.grpc.address, grpc.credentials.createInsecure(), options) as unknown as Client;
  gzipClient = new Service(s.grpc.address, grpc.credentials.createInsecure(), { ...options, 'grpc.default_compression_algorithm': 2 }) as unknown as Client;
  mlp = await loadModel(model('mlp_tiny.onnx'));
}, 60_000);
afterAll(async () => {
  client?.close();
  gzipClient?.close();
  await s?.close();
  await mlp?.dispose();
});

/** headers={'Authorization': 'Bearer …'} as the client sends them: lower-cased metadata. */
const auth = (key: string | null = KEY) => {
  const m = new grpc.Metadata();
  if (key !== null) m.set('authorization', `Bearer ${key}`);
  return m;
};

function call<T = any>(rpc: string, request: unknown, metadata = auth(), c: Client = client): Promise<T> {
  return new Promise((resolve, reject) => c[rpc](request, metadata, (err: grpc.ServiceError | null, res: T) => (err ? reject(err) : resolve(res))));
}
async function refusal(rpc: string, request: unknown, metadata = auth()): Promise<grpc.ServiceError> {
  return call(rpc, request, metadata).then(() => { throw new Error(`${rpc} succeeded`); }, (err: grpc.ServiceError) => err);
}

const raw = (v: ArrayBufferView) => Buffer.from(v.buffer, v.byteOffset, v.byteLength);
const f32 = (b: Buffer) => new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length));
const rows = (n: number, k = 0) => Float32Array.from({ length: n * 64 }, (_, i) => Math.sin(i / 5 + k));
const bytesTensor = (items: Buffer[]) => Buffer.concat(items.flatMap((b) => [Buffer.from(Uint32Array.of(b.length).buffer), b]));

/** tritonclient.grpc's ModelInferRequest for one input tensor list (InferInput.set_data_from_numpy: raw bytes). */
function request(modelName: string, inputs: Array<{ name: string; datatype: string; shape: number[]; bytes: Buffer }>, extra: Record<string, unknown> = {}) {
  return {
    model_name: modelName, model_version: '', ...extra,
    inputs: inputs.map((i) => ({ name: i.name, datatype: i.datatype, shape: i.shape.map(String) })),
    raw_input_contents: inputs.map((i) => i.bytes),
  };
}

describe('tritonclient.grpc calls', () => {
  it('is_server_live/ready, is_model_ready, get_server_metadata, get_model_metadata, get_model_config', async () => {
    expect(await call('ServerLive', {})).toEqual({ live: true });
    expect(await call('ServerReady', {})).toEqual({ ready: true });
    expect(await call('ModelReady', { name: 'mlp_tiny', version: '' })).toEqual({ ready: true });
    expect(await call('ModelReady', { name: 'mlp_tiny', version: '1' })).toEqual({ ready: true });
    expect(await call('ModelReady', { name: 'nope', version: '' })).toEqual({ ready: false });
    expect(await call('ServerMetadata', {})).toMatchObject({ name: 'nimify', extensions: expect.arrayContaining(['binary_tensor_data', 'model_repository']) });
    expect(await call('ModelMetadata', { name: 'mlp_tiny', version: '' })).toEqual({ name: 'mlp_tiny', versions: ['1'], platform: 'onnxruntime_onnx', inputs: [{ name: 'x', datatype: 'FP32', shape: ['-1', '64'] }], outputs: [{ name: 'y', datatype: 'FP32', shape: ['-1', '10'] }] });
    const { config } = await call('ModelConfig', { name: 'cached', version: '' });
    expect(config).toMatchObject({ name: 'cached', max_batch_size: 32, input: [{ name: 'x', data_type: 'TYPE_FP32', dims: ['64'] }], response_cache: { enable: true } });
  });

  it('get_inference_statistics (all, one model), get_model_repository_index, unload_model/load_model (with config)', async () => {
    const all = await call('ModelStatistics', { name: '', version: '' });
    expect(all.model_stats.map((m: { name: string }) => m.name).sort()).toEqual(['bf16', 'bool', 'cached', 'f16', 'i64', 'mlp_tiny', 'pair', 'str']);
    expect((await call('ModelStatistics', { name: 'mlp_tiny', version: '' })).model_stats[0].inference_stats.cache_hit).toEqual({ count: expect.any(String), ns: expect.any(String) });
    expect((await call('RepositoryIndex', { repository_name: '', ready: false })).models).toContainEqual({ name: 'bool', version: '1', state: 'READY', reason: '' });
    // unload_model(…, unload_dependents=False) sends the bool parameter; load_model(…, config=…) a string one.
    await call('RepositoryModelUnload', { repository_name: '', model_name: 'bool', parameters: { unload_dependents: { bool_param: false } } });
    expect(await call('ModelReady', { name: 'bool', version: '' })).toEqual({ ready: false });
    await call('RepositoryModelLoad', { repository_name: '', model_name: 'bool', parameters: {} });
    await call('RepositoryModelLoad', { repository_name: '', model_name: 'bool', parameters: { config: { string_param: JSON.stringify({ instances: 1 }) } } });
    expect(await call('ModelReady', { name: 'bool', version: '' })).toEqual({ ready: true });
  });

  it('infer: raw FP32 with request id, priority (uint64), timeout (int64) and own parameters of every type; plain and gzip-compressed', async () => {
    const x = rows(2);
    const want = (await mlp.infer({ x: new Tensor('float32', x, [2, 64]) })).y!.data as Float32Array;
    const params = { priority: { uint64_param: '1' }, timeout: { int64_param: '10000000' }, s: { string_param: 'v' }, n: { int64_param: '3' }, b: { bool_param: true }, d: { double_param: 0.5 } };
    for (const c of [client, gzipClient]) {
      const r = await call('ModelInfer', request('mlp_tiny', [{ name: 'x', datatype: 'FP32', shape: [2, 64], bytes: raw(x) }], { id: 'req-1', parameters: params, outputs: [{ name: 'y', parameters: {} }] }), auth(), c);
      expect(r).toMatchObject({ model_name: 'mlp_tiny', model_version: '1', id: 'req-1', outputs: [{ name: 'y', datatype: 'FP32', shape: ['2', '10'] }] });
      expect(Object.keys(r.parameters).sort()).toEqual(['b', 'd', 'n', 's']);
      expect(r.parameters.n).toMatchObject({ int64_param: '3' });
      expect(maxAbsDiff(f32(r.raw_output_contents[0]), want)).toBeLessThan(1e-6);
    }
    const versioned = await call('ModelInfer', { ...request('mlp_tiny', [{ name: 'x', datatype: 'FP32', shape: [2, 64], bytes: raw(x) }]), model_version: '1' });
    expect(versioned.outputs[0].name).toBe('y'); // no outputs requested: every output
  });

  it('infer INT64, BYTES, FP16, BF16, BOOL and two inputs with raw_input_contents; as_numpy reads raw_output_contents', async () => {
    const echo = async (m: string, datatype: string, shape: number[], bytes: Buffer) => {
      const r = await call('ModelInfer', request(m, [{ name: 'x', datatype, shape, bytes }], { outputs: [{ name: 'y', parameters: {} }] }));
      expect(r.outputs[0]).toMatchObject({ datatype, shape: shape.map(String) });
      expect(r.raw_output_contents[0]).toEqual(bytes);
    };
    await echo('i64', 'INT64', [3], raw(BigInt64Array.of(1n, -2n, 2n ** 62n)));
    await echo('str', 'BYTES', [3], bytesTensor([Buffer.from('hello'), Buffer.from('wörld'), Buffer.alloc(0)]));
    await echo('f16', 'FP16', [3], raw(Uint16Array.of(0x3e00, 0xc080, 0x7bff)));
    await echo('bf16', 'BF16', [2], raw(Uint16Array.of(0x3f80, 0x4000)));
    await echo('bool', 'BOOL', [3], raw(Uint8Array.of(1, 0, 1)));
    const pair = await call('ModelInfer', request('pair', [{ name: 'a', datatype: 'FP32', shape: [1, 4], bytes: raw(Float32Array.of(1, 2, 3, 4)) }, { name: 'b', datatype: 'FP32', shape: [1, 4], bytes: raw(Float32Array.of(2, 2, 2, 2)) }], { outputs: [{ name: 'prod' }, { name: 'sum' }] }));
    expect(pair.outputs.map((o: { name: string }) => o.name)).toEqual(['prod', 'sum']);
    expect(Array.from(f32(pair.raw_output_contents[0]))).toEqual([2, 4, 6, 8]);
    expect(Array.from(f32(pair.raw_output_contents[1]))).toEqual([3, 4, 5, 6]);
  });

  it('errors as InferenceServerException statuses: unknown model, bad shape, no key; class_count, sequences, shared memory, trace and log settings refused', async () => {
    const x = { name: 'x', datatype: 'FP32', shape: [1, 64], bytes: raw(rows(1)) };
    const unknown = await refusal('ModelInfer', request('nope', [x]));
    expect([unknown.code, unknown.details]).toEqual([grpc.status.NOT_FOUND, "unknown model 'nope'"]);
    expect((await refusal('ModelInfer', request('mlp_tiny', [{ ...x, shape: [1, 63], bytes: raw(rows(1)).subarray(0, 252) }]))).code).toBe(grpc.status.INVALID_ARGUMENT);
    expect((await refusal('ModelMetadata', { name: 'mlp_tiny', version: '' }, auth(null))).code).toBe(grpc.status.UNAUTHENTICATED);
    const cls = await refusal('ModelInfer', request('mlp_tiny', [x], { outputs: [{ name: 'y', parameters: { classification: { int64_param: '3' } } }] }));
    expect([cls.code, cls.details]).toEqual([grpc.status.UNIMPLEMENTED, 'outputs[0].parameters.classification: the classification extension is not supported']);
    const seq = await refusal('ModelInfer', request('mlp_tiny', [x], { parameters: { sequence_id: { int64_param: '5' }, sequence_start: { bool_param: true }, sequence_end: { bool_param: false } } }));
    expect(seq.code).toBe(grpc.status.UNIMPLEMENTED);
    expect(seq.details).toMatch(/sequence batching/);
    for (const rpc of ['SystemSharedMemoryStatus', 'CudaSharedMemoryStatus', 'TraceSetting', 'LogSettings']) expect((await refusal(rpc, {})).code).toBe(grpc.status.UNIMPLEMENTED);
  });
});

describe('start_stream / async_stream_infer / stop_stream', () => {
  /** Sends `requests` on one stream, ends it (stop_stream), collects every response. */
  function stream(requests: unknown[], c: Client = client): Promise<any[]> {
    return new Promise((resolve, reject) => {
      const got: any[] = [];
      const call = c.ModelStreamInfer(auth()) as grpc.ClientDuplexStream<unknown, any>;
      call.on('data', (r) => got.push(r));
      call.on('error', reject);
      call.on('end', () => resolve(got));
      for (const r of requests) call.write(r);
      call.end();
    });
  }

  it('answers in order with the request ids, a failed request as error_message without ending the stream; gzip too', async () => {
    for (const c of [client, gzipClient]) {
      const reqs = Array.from({ length: 20 }, (_, k) => request('mlp_tiny', [{ name: 'x', datatype: 'FP32', shape: [1, 64], bytes: raw(k === 7 ? rows(1).subarray(0, 63) : rows(1, k)) }].map((i) => (k === 7 ? { ...i, shape: [1, 63] } : i)), { id: String(k), outputs: [{ name: 'y' }] }));
      const got = await stream(reqs, c);
      expect(got.map((r) => r.infer_response.id)).toEqual(reqs.map((_, k) => String(k)));
      expect(got.map((r) => r.error_message !== '')).toEqual(reqs.map((_, k) => k === 7));
      const want = (await mlp.infer({ x: new Tensor('float32', rows(1, 3), [1, 64]) })).y!.data as Float32Array;
      expect(maxAbsDiff(f32(got[3].infer_response.raw_output_contents[0]), want)).toBeLessThan(1e-6);
    }
  });

  it('every response carries triton_final_response = true; enable_empty_final_response (a bool) is accepted and never adds an empty response', async () => {
    const x = { name: 'x', datatype: 'FP32', shape: [1, 64], bytes: raw(rows(1)) };
    const got = await stream([
      request('mlp_tiny', [x], { id: 'a' }),
      request('mlp_tiny', [x], { id: 'b', parameters: { triton_enable_empty_final_response: { bool_param: true } } }),
      request('mlp_tiny', [{ ...x, shape: [1, 63] }], { id: 'c', parameters: { triton_enable_empty_final_response: { bool_param: true } } }),
      request('mlp_tiny', [x], { id: 'd', parameters: { triton_enable_empty_final_response: { string_param: 'yes' } } }),
    ]);
    expect(got.map((r) => r.infer_response.id)).toEqual(['a', 'b', 'c', 'd']);
    for (const r of got) expect(r.infer_response.parameters.triton_final_response).toMatchObject({ bool_param: true });
    expect(got.map((r) => r.error_message === '')).toEqual([true, true, false, false]);
    expect(got[1].infer_response.parameters.triton_enable_empty_final_response).toBeUndefined();
    expect(got[3].error_message).toBe('parameters.triton_enable_empty_final_response: expected bool_param, received string_param');
    // Any other triton_ key stays refused, as Triton refuses it.
    const other = await refusal('ModelInfer', request('mlp_tiny', [x], { parameters: { triton_other: { bool_param: true } } }));
    expect(other.details).toMatch(/parameters\.triton_other: reserved parameter/);
  });
});
