/**
 * The KServe v2 gRPC endpoint over a real port with a real @grpc/grpc-js client built from the
 * same .proto: every RPC, ModelInfer with typed and raw contents for FP32, INT64 (exact beyond
 * 2^53), BYTES, FP16/BF16 and BOOL compared with model.infer()'s own results, errors with their
 * gRPC status (from ERROR_TABLE), bearer keys in metadata, a stream of 1,000 requests answered
 * in order, a client that cancels mid-stream (its work is cancelled, in-flight drops to 0, the
 * server keeps serving) and the drain on app.close().
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ERROR_TABLE, loadModel, Tensor, type Model } from '../../src';
import { GRPC_SERVICE, loadInferenceProto } from '../../src/protocol/grpc';
import { buildServer } from '../../src/server';
import { startGrpcServer, type GrpcServer } from '../../src/server/grpc/server';
import { BATCHING_DEFAULTS } from '../../src/runtime/options';
import { MODELS, maxAbsDiff } from '../helpers';

const KEY = 'grpc-test-key';
type Client = grpc.Client & Record<string, (...args: unknown[]) => unknown>;
const Service = grpc.loadPackageDefinition(loadInferenceProto()).inference as unknown as { GRPCInferenceService: grpc.ServiceClientConstructor };

let root: string;
let app: FastifyInstance;
let server: GrpcServer;
let client: Client;
let mlp: Model;

const auth = (key = KEY) => {
  const m = new grpc.Metadata();
  if (key !== '') m.set('authorization', `Bearer ${key}`);
  return m;
};

/** A unary call as a promise; rejects with the ServiceError. */
function call<T = Record<string, unknown>>(rpc: string, request: unknown, metadata = auth(), c: Client = client): Promise<T> {
  return new Promise((resolve, reject) => {
    c[rpc](request, metadata, (err: grpc.ServiceError | null, res: T) => (err ? reject(err) : resolve(res)));
  });
}

async function refusal(rpc: string, request: unknown, metadata = auth()): Promise<grpc.ServiceError> {
  try {
    await call(rpc, request, metadata);
  } catch (err) {
    return err as grpc.ServiceError;
  }
  throw new Error(`${rpc} succeeded`);
}

const raw = (view: ArrayBufferView) => Buffer.from(view.buffer, view.byteOffset, view.byteLength);
const f32 = (b: Buffer) => new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length));
const i64 = (b: Buffer) => new BigInt64Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length));
const u16 = (b: Buffer) => new Uint16Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length));
const row = (k: number) => Float32Array.from({ length: 64 }, (_, i) => Math.sin(i + k));

function put(rel: string, file: string): void {
  const dest = path.join(root, rel);
  fs.mkdirSync(path.dirname(dest), { recursive: true });
  fs.copyFileSync(path.join(MODELS, file), dest);
}

async function inFlightDrops(): Promise<void> {
  for (let i = 0; i < 400 && app.nimify.inFlight > 0; i++) await new Promise((r) => setTimeout(r, 25));
  expect(app.nimify.inFlight).toBe(0);
}

beforeAll(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'nimify-grpc-'));
  put('mlp_tiny/1/model.onnx', 'mlp_tiny.onnx');
  put('i64/1/model.onnx', 'identity_int64.onnx');
  put('str/1/model.onnx', 'identity_string.onnx');
  put('f16/1/model.onnx', 'identity_float16.onnx');
  put('bf16/1/model.onnx', 'identity_bfloat16.onnx');
  put('bool/1/model.onnx', 'identity_bool.onnx');
  put('pair/1/model.onnx', 'two_inputs.onnx');
  put('slow/1/model.onnx', 'slow.onnx');
  app = await buildServer({ repository: root, controlMode: 'explicit', startupModels: ['*'], logger: false, apiKeys: [KEY], breaker: false, bodyLimit: 2 * 1024 * 1024 });
  server = await startGrpcServer(app, { port: 0 });
  await app.ready();
  client = new Service.GRPCInferenceService(server.address, grpc.credentials.createInsecure()) as unknown as Client;
  mlp = await loadModel(path.join(MODELS, 'mlp_tiny.onnx'));
}, 60_000);

afterAll(async () => {
  client?.close();
  await app?.close();
  await mlp?.dispose();
  fs.rmSync(root, { recursive: true, force: true });
});

describe('health, metadata, config, statistics, repository', () => {
  it('ServerLive and ServerReady need no key (health is exempt, as on HTTP); ModelReady needs one', async () => {
    expect(await call('ServerLive', {}, auth(''))).toEqual({ live: true });
    expect(await call('ServerReady', {}, auth(''))).toEqual({ ready: true });
    expect(await call('ModelReady', { name: 'mlp_tiny', version: '' })).toEqual({ ready: true });
    expect(await call('ModelReady', { name: 'mlp_tiny', version: '1' })).toEqual({ ready: true });
    expect(await call('ModelReady', { name: 'nope', version: '' })).toEqual({ ready: false });
    const e = await refusal('ModelReady', { name: 'mlp_tiny', version: '' }, auth(''));
    expect(e.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(e.details).toMatch(/missing API key/);
    expect((await refusal('ServerMetadata', {}, auth('wrong'))).code).toBe(grpc.status.UNAUTHENTICATED);
  });

  it('ServerMetadata and ModelMetadata say what the HTTP routes say', async () => {
    const http = (url: string) => app.inject({ url, headers: { authorization: `Bearer ${KEY}` } }).then((r) => r.json());
    const sm = await call('ServerMetadata', {});
    expect(sm).toEqual(await http('/v2'));
    const mm = await call<{ inputs: Array<{ shape: string[] }> }>('ModelMetadata', { name: 'mlp_tiny', version: '' });
    expect(mm).toEqual({ name: 'mlp_tiny', versions: ['1'], platform: 'onnxruntime_onnx', inputs: [{ name: 'x', datatype: 'FP32', shape: ['-1', '64'] }], outputs: [{ name: 'y', datatype: 'FP32', shape: ['-1', '10'] }] });
    expect((await refusal('ModelMetadata', { name: 'nope', version: '' })).code).toBe(grpc.status.NOT_FOUND);
    expect((await refusal('ModelMetadata', { name: '../etc', version: '' })).code).toBe(grpc.status.INVALID_ARGUMENT);
  });

  it('ModelConfig is Triton\'s ModelConfig of the completed config', async () => {
    const { config } = await call<{ config: Record<string, unknown> }>('ModelConfig', { name: 'mlp_tiny', version: '' });
    const http = (await app.inject({ url: '/v2/models/mlp_tiny/config', headers: { authorization: `Bearer ${KEY}` } })).json();
    expect(config).toMatchObject({
      name: 'mlp_tiny', platform: 'onnxruntime_onnx', backend: 'onnxruntime', max_batch_size: http.batching.maxBatchSize,
      input: [{ name: 'x', data_type: 'TYPE_FP32', dims: ['64'] }], output: [{ name: 'y', data_type: 'TYPE_FP32', dims: ['10'] }],
      version_policy: { latest: { num_versions: 1 }, policy_choice: 'latest' },
      dynamic_batching: { max_queue_delay_microseconds: String(http.batching.maxQueueDelayMicros ?? BATCHING_DEFAULTS.maxQueueDelayMicros), default_queue_policy: { max_queue_size: http.batching.maxQueueSize ?? BATCHING_DEFAULTS.maxQueueSize } },
      instance_group: [{ kind: 'KIND_CPU', count: 1 }],
      scheduling_choice: 'dynamic_batching',
    });
    const { config: c2 } = await call<{ config: Record<string, unknown> }>('ModelConfig', { name: 'str', version: '1' });
    expect(c2).toMatchObject({ input: [{ data_type: 'TYPE_STRING' }] });
  });

  it('RepositoryIndex, RepositoryModelUnload / Load (with a config override), ModelStatistics', async () => {
    const index = await call<{ models: Array<{ name: string; state: string }> }>('RepositoryIndex', { repository_name: '', ready: false });
    expect(index.models.map((m) => `${m.name}:${m.state}`)).toContain('pair:READY');
    await call('RepositoryModelUnload', { repository_name: '', model_name: 'pair', parameters: {} });
    expect(await call('ModelReady', { name: 'pair', version: '' })).toEqual({ ready: false });
    await call('RepositoryModelLoad', { repository_name: '', model_name: 'pair', parameters: { config: { string_param: JSON.stringify({ instances: 2 }) } } });
    const { config } = await call<{ config: { instance_group: Array<{ count: number }> } }>('ModelConfig', { name: 'pair', version: '' });
    expect(config.instance_group[0].count).toBe(2);
    expect((await refusal('RepositoryModelLoad', { model_name: 'pair', parameters: { 'file:1/model.onnx': { bytes_param: Buffer.from('x') } } })).code).toBe(grpc.status.UNIMPLEMENTED);

    const before = await call<{ model_stats: Array<{ inference_stats: { success: { count: string } } }> }>('ModelStatistics', { name: 'mlp_tiny', version: '' });
    await call('ModelInfer', { model_name: 'mlp_tiny', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 64], contents: { fp32_contents: Array.from(row(0)) } }] });
    const after = await call<{ model_stats: Array<{ name: string; version: string; last_inference: string; inference_stats: { success: { count: string } } }> }>('ModelStatistics', { name: 'mlp_tiny', version: '' });
    expect(Number(after.model_stats[0].inference_stats.success.count)).toBe(Number(before.model_stats[0].inference_stats.success.count) + 1);
    const http = (await app.inject({ url: '/v2/models/mlp_tiny/stats', headers: { authorization: `Bearer ${KEY}` } })).json();
    expect(Number(after.model_stats[0].inference_stats.success.count)).toBe(http.model_stats[0].inference_stats.success.count);
    expect(Number(after.model_stats[0].last_inference)).toBe(http.model_stats[0].last_inference);
    expect(Math.abs(Number(after.model_stats[0].last_inference) - Date.now())).toBeLessThan(60_000);
    const all = await call<{ model_stats: Array<{ name: string }> }>('ModelStatistics', { name: '', version: '' });
    expect(all.model_stats.map((s) => s.name)).toEqual(expect.arrayContaining(['mlp_tiny', 'i64', 'str', 'pair']));
  });

  it('shared memory, trace and log settings answer UNIMPLEMENTED', async () => {
    for (const rpc of ['SystemSharedMemoryStatus', 'CudaSharedMemoryRegister', 'TraceSetting', 'LogSettings']) {
      const e = await refusal(rpc, {});
      expect(e.code, rpc).toBe(grpc.status.UNIMPLEMENTED);
      expect(e.details).toMatch(/not implemented by nimify/);
    }
  });
});

describe('ModelInfer', () => {
  it('FP32 typed and raw contents give model.infer()\'s result; id and parameters echo; output selection', async () => {
    const x = new Float32Array(2 * 64);
    x.set(row(1));
    x.set(row(2), 64);
    const expected = (await mlp.infer({ x: new Tensor('float32', x, [2, 64]) })).y.data as Float32Array;
    const typed = await call<{ id: string; model_name: string; model_version: string; outputs: Array<{ name: string; datatype: string; shape: string[] }>; raw_output_contents: Buffer[]; parameters: Record<string, unknown> }>('ModelInfer', {
      model_name: 'mlp_tiny', id: 'r1', parameters: { tag: { string_param: 'hello' } },
      inputs: [{ name: 'x', datatype: 'FP32', shape: [2, 64], contents: { fp32_contents: Array.from(x) } }],
    });
    expect(typed).toMatchObject({ id: 'r1', model_name: 'mlp_tiny', model_version: '1', outputs: [{ name: 'y', datatype: 'FP32', shape: ['2', '10'] }] });
    expect(typed.parameters).toEqual({ tag: { string_param: 'hello', parameter_choice: 'string_param' } });
    expect(maxAbsDiff(f32(typed.raw_output_contents[0]), expected)).toBeLessThan(1e-5);
    const rawRes = await call<{ raw_output_contents: Buffer[] }>('ModelInfer', { model_name: 'mlp_tiny', model_version: '1', inputs: [{ name: 'x', datatype: 'FP32', shape: [2, 64] }], raw_input_contents: [raw(x)] });
    expect(maxAbsDiff(f32(rawRes.raw_output_contents[0]), expected)).toBeLessThan(1e-5);

    const a = Float32Array.from([1, 2, 3, 4]);
    const b = Float32Array.from([5, 6, 7, 8]);
    const sel = await call<{ outputs: Array<{ name: string }>; raw_output_contents: Buffer[] }>('ModelInfer', {
      model_name: 'pair', inputs: [{ name: 'a', datatype: 'FP32', shape: [1, 4] }, { name: 'b', datatype: 'FP32', shape: [1, 4] }],
      outputs: [{ name: 'prod' }], raw_input_contents: [raw(a), raw(b)],
    });
    expect(sel.outputs.map((o) => o.name)).toEqual(['prod']);
    expect(Array.from(f32(sel.raw_output_contents[0]))).toEqual([5, 12, 21, 32]);
  });

  it('INT64 exact beyond 2^53, BYTES, FP16, BF16 and BOOL round-trip through identity models', async () => {
    const big = [2n ** 62n + 1n, -(2n ** 60n) - 3n, 9007199254740993n];
    for (const request of [
      { inputs: [{ name: 'x', datatype: 'INT64', shape: [3], contents: { int64_contents: big.map(String) } }] },
      { inputs: [{ name: 'x', datatype: 'INT64', shape: [3] }], raw_input_contents: [raw(BigInt64Array.from(big))] },
    ]) {
      const r = await call<{ outputs: Array<{ datatype: string }>; raw_output_contents: Buffer[] }>('ModelInfer', { model_name: 'i64', ...request });
      expect(r.outputs[0].datatype).toBe('INT64');
      expect(Array.from(i64(r.raw_output_contents[0]))).toEqual(big);
    }
    const strings = ['héllo', '', 'a\u0000b'];
    const prefixed = Buffer.concat(strings.flatMap((s) => {
      const b = Buffer.from(s);
      const n = Buffer.alloc(4);
      n.writeUInt32LE(b.length);
      return [n, b];
    }));
    for (const request of [
      { inputs: [{ name: 'x', datatype: 'BYTES', shape: [3], contents: { bytes_contents: strings.map((s) => Buffer.from(s)) } }] },
      { inputs: [{ name: 'x', datatype: 'BYTES', shape: [3] }], raw_input_contents: [prefixed] },
    ]) {
      const r = await call<{ outputs: Array<{ datatype: string }>; raw_output_contents: Buffer[] }>('ModelInfer', { model_name: 'str', ...request });
      expect(r.outputs[0].datatype).toBe('BYTES');
      expect(r.raw_output_contents[0]).toEqual(prefixed);
    }
    for (const [model, datatype, bits] of [['f16', 'FP16', [0x3c00, 0xc000, 0x7c00, 0x0001]], ['bf16', 'BF16', [0x3f80, 0xc040, 0x7f80, 0x0001]]] as const) {
      const r = await call<{ outputs: Array<{ datatype: string }>; raw_output_contents: Buffer[] }>('ModelInfer', { model_name: model, inputs: [{ name: 'x', datatype, shape: [4] }], raw_input_contents: [raw(Uint16Array.from(bits))] });
      expect(r.outputs[0].datatype).toBe(datatype);
      expect(Array.from(u16(r.raw_output_contents[0]))).toEqual(bits);
    }
    for (const request of [
      { inputs: [{ name: 'x', datatype: 'BOOL', shape: [3], contents: { bool_contents: [true, false, true] } }] },
      { inputs: [{ name: 'x', datatype: 'BOOL', shape: [3] }], raw_input_contents: [Buffer.from([1, 0, 1])] },
    ]) {
      const r = await call<{ raw_output_contents: Buffer[] }>('ModelInfer', { model_name: 'bool', ...request });
      expect(Array.from(r.raw_output_contents[0])).toEqual([1, 0, 1]);
    }
  });

  it('errors carry the gRPC status of ERROR_TABLE and the nimify code in metadata; the Prometheus counters count gRPC requests', async () => {
    const x = { name: 'x', datatype: 'FP32', shape: [1, 64], contents: { fp32_contents: Array.from(row(3)) } };
    const unknown = await refusal('ModelInfer', { model_name: 'nope', inputs: [x] });
    expect(unknown.code).toBe(grpc.status.NOT_FOUND);
    expect(unknown.metadata.get('nimify-code')).toEqual(['NOT_FOUND']);
    const shape = await refusal('ModelInfer', { model_name: 'mlp_tiny', inputs: [{ ...x, shape: [1, 63] }] });
    expect(shape.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(shape.details).toMatch(/inputs\[0\]\.shape\[1\]: input 'x' needs shape \[-1, 64\]/);
    const wrongField = await refusal('ModelInfer', { model_name: 'mlp_tiny', inputs: [{ ...x, contents: { int_contents: [1] } }] });
    expect(wrongField.code).toBe(grpc.status.INVALID_ARGUMENT);
    const key = await refusal('ModelInfer', { model_name: 'mlp_tiny', inputs: [x] }, auth(''));
    expect(key.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(ERROR_TABLE.UNAUTHORIZED.grpcStatus).toBe('UNAUTHENTICATED');
    // Every code has a gRPC status grpc-js knows (the table is the one mapping).
    for (const [code, row] of Object.entries(ERROR_TABLE)) expect(typeof grpc.status[row.grpcStatus], code).toBe('number');
    const seq = await refusal('ModelInfer', { model_name: 'mlp_tiny', parameters: { sequence_id: { int64_param: 1 } }, inputs: [x] });
    expect(seq.code).toBe(grpc.status.UNIMPLEMENTED);
    // The request's timeout parameter (µs) bounds its run: a long run times out as DEADLINE_EXCEEDED.
    const slow = await refusal('ModelInfer', {
      model_name: 'slow', parameters: { timeout: { int64_param: 20_000 } },
      inputs: [{ name: 'x', datatype: 'FP32', shape: [256, 256] }, { name: 'iters', datatype: 'INT64', shape: [] }],
      raw_input_contents: [Buffer.alloc(256 * 256 * 4), raw(BigInt64Array.from([100000n]))],
    });
    expect(slow.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    expect(slow.metadata.get('nimify-code')).toEqual(['TIMEOUT']);
    await inFlightDrops();
    // Messages are bounded by the server's bodyLimit (2 MiB here, below grpc-js's own 4 MiB default).
    const big = await refusal('ModelInfer', { model_name: 'mlp_tiny', inputs: [{ name: 'x', datatype: 'FP32', shape: [12288, 64] }], raw_input_contents: [Buffer.alloc(12288 * 64 * 4)] });
    expect(big.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    const metrics = (await app.inject({ url: '/metrics', headers: { authorization: `Bearer ${KEY}` } })).body;
    expect(metrics).toMatch(/nv_inference_request_failure\{model="slow",version="1",reason="REJECTED"\} [1-9]/);
    expect(metrics).toMatch(/nimify_unauthorized_total [1-9]|nimify_.*unauthorized.* [1-9]/);
  }, 30_000);
});

describe('client deadline and cancellation', () => {
  it('a unary call whose deadline passes stops its run on the server: in-flight drops to 0 long before the run would end', async () => {
    const served = app.nimify.repository.resolve('slow').model!;
    const before = served.stats();
    const err = await new Promise<grpc.ServiceError>((resolve) => {
      client.ModelInfer(
        { model_name: 'slow', inputs: [{ name: 'x', datatype: 'FP32', shape: [256, 256] }, { name: 'iters', datatype: 'INT64', shape: [] }], raw_input_contents: [Buffer.alloc(256 * 256 * 4), raw(BigInt64Array.from([1_000_000n]))] },
        auth(), { deadline: Date.now() + 300 },
        (e: grpc.ServiceError | null) => resolve(e!),
      );
    });
    expect(err.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    await inFlightDrops();
    const after = served.stats();
    expect(after.succeeded).toBe(before.succeeded);
    expect(after.cancelled + after.expired - before.cancelled - before.expired).toBe(1);
  }, 30_000);
});

type Stream = grpc.ClientDuplexStream<unknown, { error_message: string; infer_response: { id: string; raw_output_contents: Buffer[] } }>;

describe('ModelStreamInfer', () => {
  it('1,000 requests on one stream are answered in order, each with its own result; a bad one answers error_message and the stream goes on', async () => {
    const n = 1000;
    const bad = 500;
    const x = new Float32Array(n * 64);
    for (let k = 0; k < n; k++) x.set(row(k), k * 64);
    const expected = (await mlp.infer({ x: new Tensor('float32', x, [n, 64]) })).y.data as Float32Array;
    const stream = client.ModelStreamInfer(auth()) as unknown as Stream;
    const answers: Array<{ error_message: string; infer_response: { id: string; raw_output_contents: Buffer[] } }> = [];
    const done = new Promise<void>((resolve, reject) => {
      stream.on('data', (m) => answers.push(m));
      stream.on('end', resolve);
      stream.on('error', reject);
    });
    for (let k = 0; k < n; k++) {
      const shape = k === bad ? [1, 65] : [1, 64];
      stream.write({ model_name: 'mlp_tiny', id: String(k), inputs: [{ name: 'x', datatype: 'FP32', shape }], raw_input_contents: [raw(k === bad ? new Float32Array(65) : x.subarray(k * 64, (k + 1) * 64))] });
    }
    stream.end();
    await done;
    expect(answers.map((a) => a.infer_response.id)).toEqual(Array.from({ length: n }, (_, k) => String(k)));
    for (let k = 0; k < n; k++) {
      if (k === bad) {
        expect(answers[k].error_message).toMatch(/inputs\[0\]\.shape/);
        continue;
      }
      expect(answers[k].error_message).toBe('');
      expect(maxAbsDiff(f32(answers[k].infer_response.raw_output_contents[0]), expected.subarray(k * 10, (k + 1) * 10))).toBeLessThan(1e-5);
    }
    await inFlightDrops();
  }, 60_000);

  it('a client that cancels mid-stream cancels its queued and running work; the server stays healthy', async () => {
    const stream = client.ModelStreamInfer(auth()) as unknown as Stream;
    const ended = new Promise<grpc.ServiceError | null>((resolve) => {
      stream.on('error', (e) => resolve(e as grpc.ServiceError));
      stream.on('end', () => resolve(null));
    });
    stream.on('data', () => {});
    const slow = { model_name: 'slow', inputs: [{ name: 'x', datatype: 'FP32', shape: [256, 256] }, { name: 'iters', datatype: 'INT64', shape: [] }], raw_input_contents: [Buffer.alloc(256 * 256 * 4), raw(BigInt64Array.from([1_000_000n]))] };
    for (let k = 0; k < 4; k++) stream.write({ ...slow, id: String(k) });
    const served = app.nimify.repository.resolve('slow').model!;
    for (let i = 0; i < 200 && app.nimify.inFlight < 4; i++) await new Promise((r) => setTimeout(r, 10));
    expect(app.nimify.inFlight).toBe(4);
    const before = served.stats();
    stream.cancel();
    expect((await ended)?.code).toBe(grpc.status.CANCELLED);
    await inFlightDrops();
    const after = served.stats();
    expect(after.cancelled - before.cancelled).toBeGreaterThanOrEqual(3);
    expect(after.succeeded).toBe(before.succeeded);
    expect(await call('ServerLive', {})).toEqual({ live: true });
    const r = await call<{ raw_output_contents: Buffer[] }>('ModelInfer', { model_name: 'mlp_tiny', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 64] }], raw_input_contents: [raw(row(9))] });
    expect(r.raw_output_contents[0].length).toBe(40);
  }, 30_000);

  it('a stream without a key is refused UNAUTHENTICATED', async () => {
    const stream = client.ModelStreamInfer(auth('')) as unknown as Stream;
    const err = await new Promise<grpc.ServiceError>((resolve) => stream.on('error', (e) => resolve(e as grpc.ServiceError)));
    expect(err.code).toBe(grpc.status.UNAUTHENTICATED);
  });
});

describe('shutdown', () => {
  it('app.close() drains gRPC: a request in flight on a stream is answered, then the stream ends and close() resolves', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nimify-grpc-drain-'));
    fs.mkdirSync(path.join(dir, 'slow', '1'), { recursive: true });
    fs.copyFileSync(path.join(MODELS, 'slow.onnx'), path.join(dir, 'slow', '1', 'model.onnx'));
    const a = await buildServer({ repository: dir, logger: false });
    const g = await startGrpcServer(a, { port: 0 });
    await a.ready();
    const c = new Service.GRPCInferenceService(g.address, grpc.credentials.createInsecure()) as unknown as Client;
    try {
      const stream = c.ModelStreamInfer(new grpc.Metadata()) as unknown as Stream;
      const answers: unknown[] = [];
      const ended = new Promise<void>((resolve, reject) => {
        stream.on('data', (m) => answers.push(m));
        stream.on('end', resolve);
        stream.on('error', reject);
      });
      stream.write({ model_name: 'slow', id: 'last', inputs: [{ name: 'x', datatype: 'FP32', shape: [256, 256] }, { name: 'iters', datatype: 'INT64', shape: [] }], raw_input_contents: [Buffer.alloc(256 * 256 * 4), raw(BigInt64Array.from([200n]))] });
      for (let i = 0; i < 200 && a.nimify.inFlight < 1; i++) await new Promise((r) => setTimeout(r, 10));
      expect(a.nimify.inFlight).toBe(1);
      const closed = a.close();
      await ended;
      expect(answers).toEqual([expect.objectContaining({ error_message: '', infer_response: expect.objectContaining({ id: 'last' }) })]);
      await closed;
      expect(g.activeCalls).toBe(0);
    } finally {
      c.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 30_000);
});
