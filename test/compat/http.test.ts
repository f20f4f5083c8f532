/**
 * nimify driven over a real HTTP port exactly as Triton's Python HTTP clients drive Triton (issue
 * 16 item 5): the requests below are byte for byte what tritonclient.http builds (captured from
 * the real client): its JSON header written compactly, binary inputs after it with
 * `Inference-Header-Content-Length`, BYTES elements length-prefixed, `binary_data` per output,
 * repository POSTs with an empty or small body, gzip/deflate bodies. Two header sets: the sync
 * client's (geventhttpclient: no Content-Type, no Accept-Encoding) and the asyncio client's
 * (aiohttp: `Content-Type: application/octet-stream` on every POST, `Accept-Encoding: gzip,
 * deflate, br` on every request, responses read without inflating them except on infer).
 * Answers are read the way the client reads them (InferResult.from_response_body).
 */
import * as http from 'node:http';
import * as zlib from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel, Tensor, type Model } from '../../src';
import { maxAbsDiff, model } from '../helpers';
import { KEY, startCompatServer, type CompatServer } from './server';

let s: CompatServer;
let mlp: Model;

beforeAll(async () => {
  s = await startCompatServer();
  mlp = await loadModel(model('mlp_tiny.onnx'));
}, 60_000);
afterAll(async () => {
  await s?.close();
  await mlp?.dispose();
});

const AUTH = { Authorization: `Bearer ${KEY}` };
/** What each client adds to every request (besides Host and Content-Length). */
const CLIENTS = {
  gevent: { get: { 'User-Agent': 'python/gevent-http-client-2.3.1' }, post: { 'User-Agent': 'python/gevent-http-client-2.3.1' } },
  aiohttp: {
    get: { Accept: '*/*', 'Accept-Encoding': 'gzip, deflate, br', 'User-Agent': 'Python/3.11 aiohttp/3.14.3' },
    post: { Accept: '*/*', 'Accept-Encoding': 'gzip, deflate, br', 'User-Agent': 'Python/3.11 aiohttp/3.14.3', 'Content-Type': 'application/octet-stream' },
  },
} as const;
type Flavour = keyof typeof CLIENTS;

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

function send(method: 'GET' | 'POST', url: string, flavour: Flavour, body?: Buffer, extra: Record<string, string> = {}): Promise<Reply> {
  const headers: Record<string, string> = { ...CLIENTS[flavour][method === 'GET' ? 'get' : 'post'], ...AUTH, ...extra };
  if (method === 'POST') headers['Content-Length'] = String(body?.length ?? 0);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: s.httpPort, method, path: url, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** How tritonclient reads a non-infer answer: json.loads of the raw body (the aio client never inflates it). */
function plainJson(r: Reply): any {
  expect(r.headers['content-encoding']).toBeUndefined();
  return JSON.parse(r.body.toString('utf8'));
}

interface In { name: string; datatype: string; shape: number[]; bytes?: Buffer; data?: unknown[]; parameters?: Record<string, unknown> }

/** tritonclient.http's _get_inference_request: compact JSON header, then each binary input's bytes. */
function inferBody(inputs: In[], outputs: Array<{ name: string; binary: boolean }> | undefined, extra: Record<string, unknown> = {}): { body: Buffer; jsonSize: number | null } {
  const header: Record<string, unknown> = { ...extra, inputs: inputs.map((i) => ({ name: i.name, shape: i.shape, datatype: i.datatype, ...(i.bytes ? { parameters: { binary_data_size: i.bytes.length } } : i.parameters ? { parameters: i.parameters } : { data: i.data }) })) };
  if (outputs) header.outputs = outputs.map((o) => ({ name: o.name, parameters: { binary_data: o.binary } }));
  const json = Buffer.from(JSON.stringify(header));
  const bins = inputs.filter((i) => i.bytes).map((i) => i.bytes!);
  return bins.length === 0 ? { body: json, jsonSize: null } : { body: Buffer.concat([json, ...bins]), jsonSize: json.length };
}

/** BYTES elements as tritonclient serializes them (serialize_byte_tensor): 4-byte LE length + bytes each. */
function bytesTensor(items: Buffer[]): Buffer {
  return Buffer.concat(items.flatMap((b) => [Buffer.from(Uint32Array.of(b.length).buffer), b]));
}

/** InferResult.from_response_body: inflate per Content-Encoding, split at Inference-Header-Content-Length, binary outputs in order. */
function readInfer(r: Reply): { header: any; binary: Record<string, Buffer> } {
  expect(r.status, r.body.toString()).toBe(200);
  const enc = r.headers['content-encoding'];
  const body = enc === 'gzip' ? zlib.gunzipSync(r.body) : enc === 'deflate' ? zlib.inflateSync(r.body) : r.body;
  const hl = r.headers['inference-header-content-length'];
  const header = JSON.parse(body.subarray(0, hl === undefined ? body.length : Number(hl)).toString('utf8'));
  const binary: Record<string, Buffer> = {};
  let at = hl === undefined ? body.length : Number(hl);
  for (const o of header.outputs) {
    const size = o.parameters?.binary_data_size;
    if (size !== undefined) {
      binary[o.name] = body.subarray(at, at + size);
      at += size;
    }
  }
  expect(at).toBe(body.length);
  return { header, binary };
}

async function infer(flavour: Flavour, modelName: string, inputs: In[], outputs?: Array<{ name: string; binary: boolean }>, extra: Record<string, unknown> = {}, headers: Record<string, string> = {}, compress?: 'gzip' | 'deflate') {
  const { body, jsonSize } = inferBody(inputs, outputs, extra);
  const h: Record<string, string> = { ...headers };
  let sent = body;
  if (compress) {
    h['Content-Encoding'] = compress;
    sent = compress === 'gzip' ? zlib.gzipSync(body) : zlib.deflateSync(body);
  }
  if (jsonSize !== null) h['Inference-Header-Content-Length'] = String(jsonSize);
  return send('POST', `/v2/models/${modelName}/infer`, flavour, sent, h);
}

const f32 = (b: Buffer) => new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length));
const rows = (n: number) => Float32Array.from({ length: n * 64 }, (_, i) => Math.sin(i / 5));
const raw = (v: ArrayBufferView) => Buffer.from(v.buffer, v.byteOffset, v.byteLength);

describe.each(['gevent', 'aiohttp'] as const)('tritonclient.http (%s) requests', (flavour) => {
  it('health, server metadata, model metadata and readiness, as plain JSON whatever Accept-Encoding says', async () => {
    expect((await send('GET', '/v2/health/live', flavour)).status).toBe(200);
    expect((await send('GET', '/v2/health/ready', flavour)).status).toBe(200);
    expect((await send('GET', '/v2/models/mlp_tiny/ready', flavour)).status).toBe(200);
    expect((await send('GET', '/v2/models/mlp_tiny/versions/1/ready', flavour)).status).toBe(200);
    expect((await send('GET', '/v2/models/nope/ready', flavour)).status).not.toBe(200); // is_model_ready: False
    expect(plainJson(await send('GET', '/v2', flavour))).toMatchObject({ name: 'nimify', extensions: expect.arrayContaining(['binary_tensor_data', 'model_repository', 'statistics']) });
    for (const url of ['/v2/models/mlp_tiny', '/v2/models/mlp_tiny/versions/1']) {
      expect(plainJson(await send('GET', url, flavour))).toEqual({ name: 'mlp_tiny', versions: ['1'], platform: 'onnxruntime_onnx', inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 64] }], outputs: [{ name: 'y', datatype: 'FP32', shape: [-1, 10] }] });
    }
  });

  it('get_model_config: Triton\'s ModelConfig fields (what perf_analyzer reads) beside nimify\'s, uncompressed', async () => {
    const c = plainJson(await send('GET', '/v2/models/mlp_tiny/config', flavour));
    expect(c).toMatchObject({
      name: 'mlp_tiny', platform: 'onnxruntime_onnx', backend: 'onnxruntime', max_batch_size: 32,
      input: [{ name: 'x', data_type: 'TYPE_FP32', dims: [64] }], output: [{ name: 'y', data_type: 'TYPE_FP32', dims: [10] }],
      instance_group: [{ kind: 'KIND_CPU', count: 1 }], dynamic_batching: { max_queue_delay_microseconds: c.batching.maxQueueDelayMicros ?? 500 },
      response_cache: { enable: false }, batching: { maxBatchSize: 32, batchDim: true },
    });
    expect(plainJson(await send('GET', '/v2/models/cached/versions/1/config', flavour)).response_cache).toEqual({ enable: true });
    expect(plainJson(await send('GET', '/v2/models/str/config', flavour)).input[0].data_type).toBe('TYPE_STRING');
  });

  it('get_inference_statistics: every model\'s statistics (over 1 KiB) as plain JSON with Triton\'s fields', async () => {
    const r = await send('GET', '/v2/models/stats', flavour);
    expect(r.body.length).toBeGreaterThan(1024); // over the size from which infer answers are compressed
    const stats = plainJson(r);
    expect(stats.model_stats.map((m: { name: string }) => m.name).sort()).toEqual(['bf16', 'bool', 'cached', 'f16', 'i64', 'mlp_tiny', 'pair', 'str']);
    for (const m of stats.model_stats) {
      for (const k of ['success', 'fail', 'queue', 'compute_input', 'compute_infer', 'compute_output', 'cache_hit', 'cache_miss']) expect(m.inference_stats[k]).toEqual({ count: expect.any(Number), ns: expect.any(Number) });
    }
    expect(plainJson(await send('GET', '/v2/models/mlp_tiny/stats', flavour)).model_stats[0]).toMatchObject({ name: 'mlp_tiny', version: '1' });
    expect(plainJson(await send('GET', '/v2/models/mlp_tiny/versions/1/stats', flavour)).model_stats).toHaveLength(1);
  });

  it('repository: index (empty body), unload with unload_dependents, load with {} and with a config parameter', async () => {
    const index = plainJson(await send('POST', '/v2/repository/index', flavour, Buffer.alloc(0)));
    expect(index).toContainEqual({ name: 'bool', version: '1', state: 'READY' });
    const unload = await send('POST', '/v2/repository/models/bool/unload', flavour, Buffer.from('{"parameters":{"unload_dependents":false}}'));
    expect(unload.status, unload.body.toString()).toBe(200);
    expect((await send('GET', '/v2/models/bool/ready', flavour)).status).not.toBe(200);
    expect((await send('POST', '/v2/repository/models/bool/load', flavour, Buffer.from('{}'))).status).toBe(200);
    expect((await send('GET', '/v2/models/bool/ready', flavour)).status).toBe(200);
    const withConfig = await send('POST', '/v2/repository/models/bool/load', flavour, Buffer.from(JSON.stringify({ parameters: { config: JSON.stringify({ instances: 1 }) } })));
    expect(withConfig.status, withConfig.body.toString()).toBe(200);
    expect((await send('GET', '/v2/models/bool/ready', flavour)).status).toBe(200);
  });

  it('infer FP32: binary in and out (the client default), JSON both ways, mixed; request id, priority, timeout and own parameters', async () => {
    const x = rows(2);
    const want = (await mlp.infer({ x: new Tensor('float32', x, [2, 64]) })).y!.data as Float32Array;
    const bin = readInfer(await infer(flavour, 'mlp_tiny', [{ name: 'x', datatype: 'FP32', shape: [2, 64], bytes: raw(x) }], [{ name: 'y', binary: true }], { id: 'req-7', parameters: { priority: 1, timeout: 10_000_000, my_key: 'v', n: 3 } }));
    expect(bin.header).toMatchObject({ model_name: 'mlp_tiny', model_version: '1', id: 'req-7', parameters: { my_key: 'v', n: 3 }, outputs: [{ name: 'y', datatype: 'FP32', shape: [2, 10], parameters: { binary_data_size: 80 } }] });
    expect(maxAbsDiff(f32(bin.binary.y), want)).toBeLessThan(1e-6);
    const js = readInfer(await infer(flavour, 'mlp_tiny', [{ name: 'x', datatype: 'FP32', shape: [2, 64], data: Array.from(x) }], [{ name: 'y', binary: false }]));
    expect(maxAbsDiff(Float32Array.from(js.header.outputs[0].data), want)).toBeLessThan(1e-6);
    const mixed = readInfer(await infer(flavour, 'mlp_tiny', [{ name: 'x', datatype: 'FP32', shape: [2, 64], data: Array.from(x) }], [{ name: 'y', binary: true }]));
    expect(maxAbsDiff(f32(mixed.binary.y), want)).toBeLessThan(1e-6);
    const versioned = await send('POST', '/v2/models/mlp_tiny/versions/1/infer', flavour, inferBody([{ name: 'x', datatype: 'FP32', shape: [2, 64], data: Array.from(x) }], undefined).body);
    expect(readInfer(versioned).header.outputs[0].shape).toEqual([2, 10]);
  });

  it('infer INT64, BYTES, FP16, BF16, BOOL, two inputs: binary, element for element', async () => {
    const i64 = BigInt64Array.of(1n, -2n, 2n ** 62n);
    expect(readInfer(await infer(flavour, 'i64', [{ name: 'x', datatype: 'INT64', shape: [3], bytes: raw(i64) }], [{ name: 'y', binary: true }])).binary.y).toEqual(raw(i64));
    const strs = bytesTensor([Buffer.from('hello'), Buffer.from('wörld'), Buffer.alloc(0)]);
    const str = readInfer(await infer(flavour, 'str', [{ name: 'x', datatype: 'BYTES', shape: [3], bytes: strs }], [{ name: 'y', binary: true }]));
    expect(str.header.outputs[0]).toMatchObject({ datatype: 'BYTES', shape: [3] });
    expect(str.binary.y).toEqual(strs);
    const half = Uint16Array.of(0x3e00, 0xc080, 0x7bff);
    expect(readInfer(await infer(flavour, 'f16', [{ name: 'x', datatype: 'FP16', shape: [3], bytes: raw(half) }], [{ name: 'y', binary: true }])).binary.y).toEqual(raw(half));
    const bf = Uint16Array.of(0x3f80, 0x4000); // 1.0, 2.0 as the client's BF16 (top halves of FP32)
    expect(readInfer(await infer(flavour, 'bf16', [{ name: 'x', datatype: 'BF16', shape: [2], bytes: raw(bf) }], [{ name: 'y', binary: true }])).binary.y).toEqual(raw(bf));
    const bools = Uint8Array.of(1, 0, 1);
    expect(readInfer(await infer(flavour, 'bool', [{ name: 'x', datatype: 'BOOL', shape: [3], bytes: raw(bools) }], [{ name: 'y', binary: true }])).binary.y).toEqual(raw(bools));
    expect(readInfer(await infer(flavour, 'bool', [{ name: 'x', datatype: 'BOOL', shape: [2], data: [true, false] }], [{ name: 'y', binary: false }])).header.outputs[0].data).toEqual([true, false]);
    const a = Float32Array.of(1, 2, 3, 4);
    const b = Float32Array.of(2, 2, 2, 2);
    const pair = readInfer(await infer(flavour, 'pair', [{ name: 'a', datatype: 'FP32', shape: [1, 4], bytes: raw(a) }, { name: 'b', datatype: 'FP32', shape: [1, 4], bytes: raw(b) }], [{ name: 'prod', binary: true }, { name: 'sum', binary: true }]));
    expect(pair.header.outputs.map((o: { name: string }) => o.name)).toEqual(['prod', 'sum']);
    expect(Array.from(f32(pair.binary.prod))).toEqual([2, 4, 6, 8]);
    expect(Array.from(f32(pair.binary.sum))).toEqual([3, 4, 5, 6]);
  });

  it('request_compression_algorithm and response_compression_algorithm (gzip, deflate), binary and JSON', async () => {
    const x = rows(32);
    const want = (await mlp.infer({ x: new Tensor('float32', x, [32, 64]) })).y!.data as Float32Array;
    for (const enc of ['gzip', 'deflate'] as const) {
      const r = await infer(flavour, 'mlp_tiny', [{ name: 'x', datatype: 'FP32', shape: [32, 64], bytes: raw(x) }], [{ name: 'y', binary: true }], {}, { 'Accept-Encoding': enc }, enc);
      expect(r.headers['content-encoding']).toBe(enc);
      expect(maxAbsDiff(f32(readInfer(r).binary.y), want)).toBeLessThan(1e-6);
      const j = await infer(flavour, 'mlp_tiny', [{ name: 'x', datatype: 'FP32', shape: [32, 64], data: Array.from(x) }], [{ name: 'y', binary: false }], {}, { 'Accept-Encoding': enc }, enc);
      expect(maxAbsDiff(Float32Array.from(readInfer(j).header.outputs[0].data), want)).toBeLessThan(1e-6);
    }
  });

  it('errors the client raises as InferenceServerException: JSON {error} with Triton\'s statuses; unsupported features refused by name', async () => {
    const x = { name: 'x', datatype: 'FP32', shape: [1, 64], bytes: raw(rows(1)) };
    const err = (r: Reply) => JSON.parse(r.body.toString('utf8')).error as string;
    const unknown = await infer(flavour, 'nope', [x], [{ name: 'y', binary: true }]);
    expect([unknown.status, err(unknown)]).toEqual([404, "unknown model 'nope'"]);
    const shape = await infer(flavour, 'mlp_tiny', [{ ...x, shape: [1, 63], bytes: raw(rows(1)).subarray(0, 252) }]);
    expect(shape.status).toBe(400);
    expect(err(shape)).toMatch(/inputs\[0\]\.shape\[1\]/);
    const noKey = await send('GET', '/v2/models/mlp_tiny', flavour, undefined, { Authorization: '' });
    expect(noKey.status).toBe(401);
    // class_count: the classification extension is not served (and not listed in /v2 extensions).
    const { body, jsonSize } = inferBody([x], undefined);
    const header = JSON.parse(body.subarray(0, jsonSize!).toString());
    header.outputs = [{ name: 'y', parameters: { binary_data: true, classification: 3 } }];
    const hj = Buffer.from(JSON.stringify(header));
    const cls = await send('POST', '/v2/models/mlp_tiny/infer', flavour, Buffer.concat([hj, x.bytes]), { 'Inference-Header-Content-Length': String(hj.length) });
    expect([cls.status, err(cls)]).toEqual([400, 'outputs[0].parameters.classification: the classification extension is not supported']);
    const seq = await infer(flavour, 'mlp_tiny', [x], undefined, { parameters: { sequence_id: 3, sequence_start: true, sequence_end: false } });
    expect(seq.status).toBe(400);
    expect(err(seq)).toMatch(/sequence batching/);
    const shm = await infer(flavour, 'mlp_tiny', [{ name: 'x', datatype: 'FP32', shape: [1, 64], parameters: { shared_memory_region: 'r', shared_memory_byte_size: 256 } }]);
    expect([shm.status, err(shm)]).toEqual([400, 'inputs[0].parameters.shared_memory_region: shared memory is not supported']);
    for (const url of ['/v2/systemsharedmemory/status', '/v2/cudasharedmemory/status', '/v2/trace/setting', '/v2/logging']) {
      const r = await send('GET', url, flavour);
      expect(r.status).toBe(404);
      expect(err(r)).toMatch(/no route/);
    }
  });
});
