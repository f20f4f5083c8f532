// The response cache in the server (issue 16 item 3): a repeated request is answered without
// reaching the model, distinct inputs never share an answer, a reloaded version never serves the
// old version's answers, failures are not cached, and the counts show in Triton's statistics and
// metrics. Real HTTP on a real port for the hit path; inject() for the rest.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel, Tensor, type Model } from '../../src';
import { buildServer } from '../../src/server';
import { MODELS, maxAbsDiff } from '../helpers';

let app: FastifyInstance;
let direct: Model;
let repo: string;

beforeAll(async () => {
  repo = fs.mkdtempSync(path.join(os.tmpdir(), 'nimify-cache-'));
  for (const [name, file, config] of [['cached', 'mlp_tiny.onnx', { responseCache: { enable: true } }], ['plain', 'mlp_tiny.onnx', {}], ['two', 'two_inputs.onnx', { responseCache: { enable: true } }]] as const) {
    fs.mkdirSync(path.join(repo, name, '1'), { recursive: true });
    fs.copyFileSync(path.join(MODELS, file), path.join(repo, name, '1', 'model.onnx'));
    fs.writeFileSync(path.join(repo, name, 'config.json'), JSON.stringify({ ...config, warmup: [] }));
  }
  app = await buildServer({ repository: repo, controlMode: 'explicit', startupModels: ['cached', 'plain', 'two'], logger: false, responseCacheBytes: 1 << 20 });
  await app.listen({ port: 0, host: '127.0.0.1' });
  direct = await loadModel(path.join(MODELS, 'mlp_tiny.onnx'));
});
afterAll(async () => {
  await app.close();
  await direct.dispose();
});

const row = (seed: number) => Array.from({ length: 64 }, (_, i) => Math.sin(i + seed));
const body = (seed: number) => ({ inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: row(seed) }] });
const infer = (model: string, payload: unknown) => app.inject({ method: 'POST', url: `/v2/models/${model}/infer`, payload: payload as object });
const stats = async (model: string) => (await app.inject(`/v2/models/${model}/stats`)).json().model_stats[0];
const expected = async (seed: number) => (await direct.infer({ x: new Tensor('float32', Float32Array.from(row(seed)), [1, 64]) })).y!.data as Float32Array;

describe('response cache', () => {
  it('a repeated request over HTTP is a hit: same answer, the model does not run again', async () => {
    const url = `http://127.0.0.1:${(app.server.address() as { port: number }).port}/v2/models/cached/infer`;
    const post = async () => (await (await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body(1)) })).json()) as { outputs: Array<{ data: number[] }> };
    const first = await post();
    const executions = (await stats('cached')).execution_count;
    const second = await post();
    expect(second).toEqual(first);
    expect(maxAbsDiff(Float32Array.from(second.outputs[0].data), await expected(1))).toBeLessThan(1e-6);
    const s = await stats('cached');
    expect(s.execution_count).toBe(executions); // never reached the model
    expect(s.inference_stats.cache_hit.count).toBe(1);
    expect(s.inference_stats.cache_miss.count).toBe(1);
    expect(s.inference_stats.cache_hit.ns).toBeGreaterThan(0);
    expect(s.inference_stats.success.count).toBe(2);
  });

  it('distinct inputs and distinct output selections never share an answer', async () => {
    for (const seed of [2, 3, 4]) {
      const r = (await infer('cached', body(seed))).json();
      expect(maxAbsDiff(Float32Array.from(r.outputs[0].data), await expected(seed))).toBeLessThan(1e-6);
    }
    // The same rows sent as 1 × 64 and as a batch of 2 (with another row): different shapes, different entries.
    const two = (await infer('cached', { inputs: [{ name: 'x', shape: [2, 64], datatype: 'FP32', data: [...row(2), ...row(3)] }] })).json();
    expect(two.outputs[0].shape).toEqual([2, 10]);
    const s = await stats('cached');
    expect(s.inference_stats.cache_hit.count).toBe(1);
  });

  it('a model whose config does not enable it is never cached', async () => {
    await infer('plain', body(1));
    await infer('plain', body(1));
    const s = await stats('plain');
    expect(s.inference_stats.cache_hit.count).toBe(0);
    expect(s.inference_stats.cache_miss.count).toBe(0);
    expect(s.execution_count).toBeGreaterThanOrEqual(2);
  });

  it('a reloaded version never serves the answers of the one it replaced', async () => {
    const first = (await infer('cached', body(7))).json();
    expect((await infer('cached', body(7))).json()).toEqual(first); // a hit
    // New weights under the same name and version, then a load: the same request must be answered by the new model.
    const { encodeModel, mlp } = require('../../scripts/onnx-writer.js') as { encodeModel: (g: unknown) => Buffer; mlp: (n: string, s: number[], seed: number) => unknown };
    const file = path.join(repo, 'cached', '1', 'model.onnx');
    const bytes = encodeModel(mlp('mlp_tiny', [64, 256, 10], 12345));
    fs.writeFileSync(file, bytes);
    fs.utimesSync(file, new Date(), new Date(Date.now() + 5000));
    expect((await app.inject({ method: 'POST', url: '/v2/repository/models/cached/load' })).statusCode).toBe(200);
    expect((await stats('cached')).inference_stats.cache_hit.count).toBe(0); // a new version: its own counts
    const after = (await infer('cached', body(7))).json();
    const reloaded = await loadModel(new Uint8Array(bytes));
    const want = (await reloaded.infer({ x: new Tensor('float32', Float32Array.from(row(7)), [1, 64]) })).y!.data as Float32Array;
    await reloaded.dispose();
    expect(maxAbsDiff(Float32Array.from(after.outputs[0].data), want)).toBeLessThan(1e-6);
    expect(maxAbsDiff(Float32Array.from(after.outputs[0].data), Float32Array.from(first.outputs[0].data))).toBeGreaterThan(1e-3);
    expect((await stats('cached')).inference_stats.cache_miss.count).toBe(1);
  });

  it('refused requests are neither counted nor cached; the metrics carry Triton\'s cache counters', async () => {
    const bad = { inputs: [{ name: 'x', shape: [1, 63], datatype: 'FP32', data: row(0).slice(0, 63) }] };
    // One of a model's two inputs missing: the model's own check answers 400 (the cache key skips it, never crashes).
    const missing = await infer('two', { inputs: [{ name: 'a', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] });
    expect(missing.statusCode).toBe(400);
    expect(missing.json()).toMatchObject({ code: 'INVALID_ARGUMENT', error: expect.stringMatching(/missing input 'b'/) });
    expect((await infer('cached', bad)).statusCode).toBe(400);
    expect((await infer('cached', bad)).statusCode).toBe(400);
    await infer('cached', body(8));
    await infer('cached', body(8));
    const text = (await app.inject('/metrics')).body;
    expect(text).toMatch(/nv_cache_num_hits_per_model\{model="cached",version="1"\} 1/);
    expect(text).toMatch(/nv_cache_num_misses_per_model\{model="cached",version="1"\} [1-9]/);
    expect(text).toMatch(/nv_cache_hit_duration_per_model\{model="cached",version="1"\} /);
  });
});

describe('response cache options', () => {
  it('config.json responseCache and responseCacheBytes are validated', async () => {
    const { parseModelConfig } = await import('../../src/repository/config');
    expect(parseModelConfig('m', { responseCache: { enable: true } }).responseCache).toEqual({ enable: true });
    expect(() => parseModelConfig('m', { responseCache: { enable: 'yes' } })).toThrow(/m\.responseCache\.enable: expected true or false/);
    expect(() => parseModelConfig('m', { responseCache: { enabled: true } })).toThrow(/m\.responseCache: unknown option 'enabled'/);
    await expect(buildServer({ repository: repo, logger: false, responseCacheBytes: -1 })).rejects.toThrow(/options\.responseCacheBytes: expected an integer/);
  });
});
