/**
 * Every route through inject(), then each area once more over a real listening port with a real
 * HTTP client (fetch). Model: mlp_tiny (x FP32 [-1,64] → y FP32 [-1,10]), compared with the
 * runtime API's own result for the same input.
 */
import * as path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel, type Model } from '../../src';
import { buildServer } from '../../src/server';
import { MODELS, maxAbsDiff } from '../helpers';

let app: FastifyInstance;
let direct: Model;
const input = Float32Array.from({ length: 2 * 64 }, (_, i) => Math.sin(i));

beforeAll(async () => {
  app = await buildServer({ repository: path.join(MODELS, 'mlp_tiny.onnx'), logger: false });
  await app.ready();
  direct = await loadModel(path.join(MODELS, 'mlp_tiny.onnx'));
});
afterAll(async () => {
  await app.close();
  await direct.dispose();
});

const jsonInfer = (body: unknown, url = '/v2/models/mlp_tiny/infer') => app.inject({ method: 'POST', url, payload: body as object });

describe('health and metadata', () => {
  it('live, ready, model ready (with and without version)', async () => {
    expect((await app.inject('/v2/health/live')).json()).toEqual({ live: true });
    expect((await app.inject('/v2/health/ready')).json()).toEqual({ ready: true });
    expect((await app.inject('/v2/models/mlp_tiny/ready')).json()).toEqual({ name: 'mlp_tiny', ready: true });
    expect((await app.inject('/v2/models/mlp_tiny/versions/1/ready')).statusCode).toBe(200);
    const missing = await app.inject('/v2/models/mlp_tiny/versions/7/ready');
    expect(missing.statusCode).toBe(404);
    expect(missing.json().code).toBe('NOT_FOUND');
    expect((await app.inject('/v2/models/other/ready')).statusCode).toBe(404);
  });

  it('server metadata at /v2 and /v2/', async () => {
    for (const url of ['/v2', '/v2/']) {
      const r = await app.inject(url);
      expect(r.statusCode).toBe(200);
      expect(r.json()).toMatchObject({ name: 'nimify', extensions: expect.arrayContaining(['binary_tensor_data', 'model_repository']) });
      expect(typeof r.json().version).toBe('string');
    }
  });

  it('model metadata, config and stats', async () => {
    for (const url of ['/v2/models/mlp_tiny', '/v2/models/mlp_tiny/versions/1']) {
      expect((await app.inject(url)).json()).toEqual({
        name: 'mlp_tiny',
        versions: ['1'],
        platform: 'onnxruntime_onnx',
        inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 64] }],
        outputs: [{ name: 'y', datatype: 'FP32', shape: [-1, 10] }],
      });
    }
    const config = (await app.inject('/v2/models/mlp_tiny/config')).json();
    expect(config).toMatchObject({ name: 'mlp_tiny', instances: 1, batching: { maxBatchSize: 32, batchDim: true }, versionPolicy: { latest: 1 }, runtime: { allowSpinning: false, inlineBelowMicros: 100 } });
    expect(config.warmup).toHaveLength(1);
    // Batches cheap enough run on the event loop itself once the model's cost is measured (the
    // warmup measured it): sequential requests do, with the scheduler's thread left asleep. A
    // generous bound here, so that a loaded machine's slow runs cannot change where they run.
    const inl = await buildServer({ repository: path.join(MODELS, 'mlp_tiny.onnx'), logger: false, modelDefaults: { runtime: { inlineBelowMicros: 1_000_000 }, batching: { maxBatchSize: 32 } } });
    try {
      const served = inl.nimify.repository.resolve('mlp_tiny').model!;
      const before = served.stats();
      for (let i = 0; i < 20; i++) {
        await new Promise((r) => setTimeout(r, 5));
        expect((await inl.inject({ method: 'POST', url: '/v2/models/mlp_tiny/infer', payload: { inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: new Array(64).fill(i) }] } })).statusCode).toBe(200);
      }
      expect(served.stats().inlineBatches - before.inlineBatches).toBe(20);
      expect(served.stats().wakes).toBe(before.wakes);
    } finally {
      await inl.close();
    }
    const stats = (await app.inject('/v2/models/mlp_tiny/stats')).json();
    expect(stats.model_stats[0]).toMatchObject({ name: 'mlp_tiny', version: '1' });
    // The warmup ran (config.warmup above) and is not counted: no request has been served yet.
    expect(stats.model_stats[0]).toMatchObject({ inference_count: 0, execution_count: 0, inference_stats: { success: { count: 0 }, fail: { count: 0 } } });
    expect((await app.inject('/v2/models/stats')).json().model_stats).toHaveLength(1);
    expect((await app.inject('/v2/models/nope')).statusCode).toBe(404);
  });

  it('unknown routes answer 404 in the error shape', async () => {
    const r = await app.inject('/v3/whatever');
    expect(r.statusCode).toBe(404);
    expect(r.json()).toMatchObject({ code: 'NOT_FOUND', error: expect.any(String) });
  });

  it('OpenAPI document lists the protocol routes; the UI is served', async () => {
    const doc = (await app.inject('/documentation/json')).json();
    expect(doc.openapi).toMatch(/^3\./);
    for (const p of ['/v2/health/live', '/v2/health/ready', '/v2', '/v2/models/{model_name}', '/v2/models/{model_name}/infer', '/v2/models/{model_name}/versions/{model_version}/infer', '/v2/repository/index', '/v2/repository/models/{model_name}/load', '/metrics']) {
      expect(Object.keys(doc.paths)).toContain(p);
    }
    expect((await app.inject('/documentation')).statusCode).toBeLessThan(400);
  });
});

describe('inference (JSON)', () => {
  it('matches the runtime API, echoes id and parameters, versioned and unversioned', async () => {
    const want = (await direct.infer({ x: { type: 'float32', data: input, dims: [2, 64] } })).y.data as Float32Array;
    for (const url of ['/v2/models/mlp_tiny/infer', '/v2/models/mlp_tiny/versions/1/infer']) {
      const r = await jsonInfer({ id: 'req-7', parameters: { tenant: 'a', n: 3 }, inputs: [{ name: 'x', shape: [2, 64], datatype: 'FP32', data: Array.from(input) }] }, url);
      expect(r.statusCode).toBe(200);
      const body = r.json();
      expect(body).toMatchObject({ model_name: 'mlp_tiny', model_version: '1', id: 'req-7', parameters: { tenant: 'a', n: 3 } });
      expect(body.outputs).toHaveLength(1);
      expect(body.outputs[0]).toMatchObject({ name: 'y', datatype: 'FP32', shape: [2, 10] });
      expect(maxAbsDiff(body.outputs[0].data, want)).toBeLessThan(1e-6);
    }
  });

  it('nested data equals flat data', async () => {
    const nested = [Array.from(input.subarray(0, 64)), Array.from(input.subarray(64))];
    const a = (await jsonInfer({ inputs: [{ name: 'x', shape: [2, 64], datatype: 'FP32', data: nested }] })).json();
    const b = (await jsonInfer({ inputs: [{ name: 'x', shape: [2, 64], datatype: 'FP32', data: Array.from(input) }] })).json();
    expect(a.outputs[0].data).toEqual(b.outputs[0].data);
  });

  it('client errors are 400 with a code and the server keeps serving', async () => {
    const cases: Array<[unknown, string]> = [
      [{ inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: [1, 2] }] }, 'needs 64 elements'],
      [{ inputs: [{ name: 'x', shape: [1, 63], datatype: 'FP32', data: new Array(63).fill(0) }] }, 'needs shape'],
      [{ inputs: [{ name: 'x', shape: [1, 64], datatype: 'INT32', data: new Array(64).fill(0) }] }, 'is FP32'],
      [{ inputs: [{ name: 'q', shape: [1, 64], datatype: 'FP32', data: new Array(64).fill(0) }] }, "unexpected input 'q'"],
      [{ inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: new Array(64).fill(0) }], outputs: [{ name: 'z' }] }, 'unknown output'],
      [{ inputs: 'x' }, 'inputs'],
      [{}, 'inputs'],
    ];
    for (const [body, text] of cases) {
      const r = await jsonInfer(body);
      expect(r.statusCode, JSON.stringify(body).slice(0, 80)).toBe(400);
      expect(r.json().code).toBe('INVALID_ARGUMENT');
      expect(r.json().error).toContain(text);
    }
    expect((await jsonInfer({ inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: new Array(64).fill(0) }] })).statusCode).toBe(200);
  });

  it('unknown model is 404, unknown version is 404', async () => {
    const body = { inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: new Array(64).fill(0) }] };
    expect((await jsonInfer(body, '/v2/models/none/infer')).json().code).toBe('NOT_FOUND');
    expect((await jsonInfer(body, '/v2/models/mlp_tiny/versions/2/infer')).statusCode).toBe(404);
    expect((await jsonInfer(body, '/v2/models/mlp_tiny/versions/x/infer')).statusCode).toBe(400);
  });
});

describe('inference (binary tensor data extension)', () => {
  const header = (h: object) => Buffer.from(JSON.stringify(h));

  it('binary input and binary output round-trip the same numbers as JSON', async () => {
    const h = header({ inputs: [{ name: 'x', shape: [2, 64], datatype: 'FP32', parameters: { binary_data_size: input.byteLength } }], outputs: [{ name: 'y', parameters: { binary_data: true } }] });
    const r = await app.inject({
      method: 'POST',
      url: '/v2/models/mlp_tiny/infer',
      headers: { 'inference-header-content-length': String(h.length), 'content-type': 'application/octet-stream' },
      payload: Buffer.concat([h, Buffer.from(input.buffer)]),
    });
    expect(r.statusCode).toBe(200);
    expect(r.headers['content-type']).toBe('application/octet-stream');
    const n = Number(r.headers['inference-header-content-length']);
    const raw = r.rawPayload;
    const meta = JSON.parse(raw.subarray(0, n).toString());
    expect(meta.outputs[0]).toMatchObject({ name: 'y', shape: [2, 10], parameters: { binary_data_size: 80 } });
    const out = new Float32Array(raw.buffer.slice(raw.byteOffset + n, raw.byteOffset + n + 80));
    const json = (await jsonInfer({ inputs: [{ name: 'x', shape: [2, 64], datatype: 'FP32', data: Array.from(input) }] })).json();
    expect(Array.from(out)).toEqual(json.outputs[0].data.map((v: number) => Math.fround(v)));
  });

  it('binary_data_output for all outputs; raw binary request (header length 0)', async () => {
    const h = header({ parameters: { binary_data_output: true }, inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: Array.from(input.subarray(0, 64)) }] });
    const r = await app.inject({ method: 'POST', url: '/v2/models/mlp_tiny/infer', headers: { 'inference-header-content-length': String(h.length) }, payload: h });
    expect(r.statusCode).toBe(200);
    const n = Number(r.headers['inference-header-content-length']);
    expect(r.rawPayload.length).toBe(n + 40);

    const rawReq = await app.inject({ method: 'POST', url: '/v2/models/mlp_tiny/infer', headers: { 'inference-header-content-length': '0', 'content-type': 'application/octet-stream' }, payload: Buffer.from(input.buffer, 0, 256) });
    expect(rawReq.statusCode).toBe(200);
    const m = Number(rawReq.headers['inference-header-content-length']);
    expect(JSON.parse(rawReq.rawPayload.subarray(0, m).toString()).outputs[0].shape).toEqual([1, 10]);
    expect(rawReq.rawPayload.subarray(m)).toEqual(r.rawPayload.subarray(n));
  });

  it('a header length beyond the body is 400', async () => {
    const r = await app.inject({ method: 'POST', url: '/v2/models/mlp_tiny/infer', headers: { 'inference-header-content-length': '9999' }, payload: '{"inputs":[]}' });
    expect(r.statusCode).toBe(400);
    expect(r.json().code).toBe('INVALID_ARGUMENT');
  });
});

describe('metrics', () => {
  it('Triton metric names with model and version labels, and process metrics', async () => {
    await jsonInfer({ inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: new Array(64).fill(0) }] });
    await jsonInfer({ inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: [1] }] });
    const r = await app.inject('/metrics');
    expect(r.statusCode).toBe(200);
    expect(r.headers['content-type']).toContain('text/plain');
    const text = r.body;
    for (const name of [
      'nv_inference_request_success', 'nv_inference_request_failure', 'nv_inference_count', 'nv_inference_exec_count',
      'nv_inference_request_duration_us', 'nv_inference_queue_duration_us', 'nv_inference_compute_input_duration_us',
      'nv_inference_compute_infer_duration_us', 'nv_inference_compute_output_duration_us', 'nv_inference_pending_request_count',
      'nimify_batch_executions_total', 'nimify_model_ready', 'nimify_circuit_breaker_state', 'nodejs_eventloop_lag_p99_seconds', 'process_resident_memory_bytes',
    ]) {
      expect(text, name).toContain(`# TYPE ${name} `);
    }
    const value = (re: RegExp) => Number(re.exec(text)?.[1]);
    expect(value(/^nv_inference_request_success\{model="mlp_tiny",version="1"\} (\d+)/m)).toBeGreaterThanOrEqual(1);
    expect(value(/^nv_inference_request_failure\{model="mlp_tiny",version="1",reason="OTHER"\} (\d+)/m)).toBeGreaterThanOrEqual(1);
    // Rows counted by the scheduler ≥ the successful requests (plus warmup); executions ≤ rows.
    const count = value(/^nv_inference_count\{model="mlp_tiny",version="1"\} (\d+)/m);
    const exec = value(/^nv_inference_exec_count\{model="mlp_tiny",version="1"\} (\d+)/m);
    expect(count).toBeGreaterThanOrEqual(exec);
    expect(exec).toBeGreaterThanOrEqual(1);
    expect(value(/^nimify_model_ready\{model="mlp_tiny",version="1"\} (\d+)/m)).toBe(1);
  });

  it('counters never go backwards between scrapes', async () => {
    const read = async () => Number(/^nv_inference_count\{model="mlp_tiny",version="1"\} (\d+)/m.exec((await app.inject('/metrics')).body)?.[1]);
    const a = await read();
    await jsonInfer({ inputs: [{ name: 'x', shape: [3, 64], datatype: 'FP32', data: new Array(192).fill(0) }] });
    await new Promise((r) => setTimeout(r, 30));
    const b = await read();
    expect(b).toBe(a + 3);
  });
});

describe('over a real port', () => {
  let server: FastifyInstance;
  let base: string;
  beforeAll(async () => {
    server = await buildServer({ repository: path.join(MODELS, 'mlp_tiny.onnx'), logger: false });
    base = await server.listen({ port: 0, host: '127.0.0.1' });
  });
  afterAll(async () => {
    await server.close();
  });

  it('health, metadata, JSON and binary inference, repository index, metrics, docs', async () => {
    expect((await fetch(`${base}/v2/health/live`)).status).toBe(200);
    expect(await (await fetch(`${base}/v2/health/ready`)).json() as unknown).toEqual({ ready: true });
    expect(((await (await fetch(`${base}/v2/models/mlp_tiny`)).json()) as { name: string }).name).toBe('mlp_tiny');
    const r = await fetch(`${base}/v2/models/mlp_tiny/infer`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-request-id': 'abc-123' },
      body: JSON.stringify({ id: '1', inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: Array.from(input.subarray(0, 64)) }] }),
    });
    expect(r.status).toBe(200);
    expect(r.headers.get('x-request-id')).toBe('abc-123');
    const json = (await r.json()) as { outputs: Array<{ shape: number[]; data: number[] }> };
    expect(json.outputs[0].shape).toEqual([1, 10]);

    const h = Buffer.from(JSON.stringify({ inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', parameters: { binary_data_size: 256 } }], outputs: [{ name: 'y', parameters: { binary_data: true } }] }));
    const b = await fetch(`${base}/v2/models/mlp_tiny/infer`, { method: 'POST', headers: { 'inference-header-content-length': String(h.length), 'content-type': 'application/octet-stream' }, body: Buffer.concat([h, Buffer.from(input.buffer, 0, 256)]) });
    expect(b.status).toBe(200);
    const bytes = Buffer.from(await b.arrayBuffer());
    const n = Number(b.headers.get('inference-header-content-length'));
    const out = new Float32Array(bytes.buffer.slice(bytes.byteOffset + n, bytes.byteOffset + n + 40));
    expect(maxAbsDiff(out, json.outputs[0].data)).toBeLessThan(1e-6);

    const index = await fetch(`${base}/v2/repository/index`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(await index.json()).toEqual([{ name: 'mlp_tiny', version: '1', state: 'READY' }]);
    const unload = await fetch(`${base}/v2/repository/models/mlp_tiny/unload`, { method: 'POST' });
    expect(unload.status).toBe(400); // control mode none
    expect(((await unload.json()) as { code: string }).code).toBe('UNSUPPORTED');
    expect(await (await fetch(`${base}/metrics`)).text()).toContain('nv_inference_request_success{model="mlp_tiny",version="1"}');
    expect((await fetch(`${base}/documentation/json`)).status).toBe(200);
  });

  it('concurrent requests are all answered correctly (batched by the scheduler)', async () => {
    const rows = Array.from({ length: 48 }, (_, k) => Array.from({ length: 64 }, (_, i) => Math.cos(i + k)));
    const answers = await Promise.all(rows.map((row) => fetch(`${base}/v2/models/mlp_tiny/infer`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: row }] }) }).then((r) => r.json() as Promise<{ outputs: Array<{ data: number[] }> }>)));
    for (const [k, a] of answers.entries()) {
      const want = (await direct.infer({ x: { type: 'float32', data: Float32Array.from(rows[k]), dims: [1, 64] } })).y.data as Float32Array;
      expect(maxAbsDiff(a.outputs[0].data, want)).toBeLessThan(1e-5);
    }
  });
});
