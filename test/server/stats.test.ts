/**
 * GET /v2/models/{m}/stats against a known sequence of requests over a real port (issue 14 item
 * 2), on a batching model and an unscheduled one: after the warmup every count is 0; then each
 * success, ONNX Runtime failure, queue-full rejection and timeout the clients saw is counted once,
 * in Triton's success / fail split (src/server/routes/metadata.ts says how each field is defined).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildServer } from '../../src/server';
import { MODELS, writeFile } from '../helpers';

let root: string;
let app: FastifyInstance;
let base: string;

const put = (rel: string, content: Buffer | string): void => writeFile(root, rel, content);

beforeAll(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'nimify-stats-'));
  // reshape_fail: x [n], shape [2] → Reshape fails in ONNX Runtime unless the shape fits n.
  const flakyWarmup = [{ count: 3, inputs: { x: { shape: [4] }, shape: { shape: [2], data: [2, 2] } } }];
  for (const [name, batching] of [['flaky_b', { maxBatchSize: 4 }], ['flaky_u', false]] as const) {
    put(`${name}/1/model.onnx`, fs.readFileSync(path.join(MODELS, 'reshape_fail.onnx')));
    put(`${name}/config.json`, JSON.stringify({ batching, warmup: flakyWarmup }));
  }
  // slow: x [256,256], iters → runs `iters` matmuls. One queued request at most on slow_b.
  for (const [name, batching] of [['slow_b', { maxBatchSize: 1, maxQueueSize: 1 }], ['slow_u', false]] as const) {
    put(`${name}/1/model.onnx`, fs.readFileSync(path.join(MODELS, 'slow.onnx')));
    put(`${name}/config.json`, JSON.stringify({ batching, warmup: [{ count: 2, inputs: { x: { shape: [256, 256] }, iters: { shape: [], data: 1 } } }] }));
  }
  // No breaker, no shedding: every request reaches the model, whose counts are under test.
  app = await buildServer({ repository: root, logger: false, breaker: false, shedding: { maxPendingPerModel: 1000, maxEventLoopDelayMs: 0 } });
  base = await app.listen({ port: 0, host: '127.0.0.1' });
});
afterAll(async () => {
  await app?.close();
  fs.rmSync(root, { recursive: true, force: true });
});

interface Stats {
  last_inference: number;
  inference_count: number;
  execution_count: number;
  inference_stats: { success: { count: number; ns: number }; fail: { count: number; ns: number }; queue: { count: number } };
  fail_reasons: { rejected: number; failed: number; expired: number; cancelled: number };
}
const stats = async (model: string): Promise<Stats> => {
  const r = await fetch(`${base}/v2/models/${model}/stats`);
  expect(r.status).toBe(200);
  return ((await r.json()) as { model_stats: Stats[] }).model_stats[0];
};
const post = async (model: string, inputs: unknown[], parameters?: Record<string, unknown>): Promise<{ status: number; code?: string }> => {
  const r = await fetch(`${base}/v2/models/${model}/infer`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ inputs, ...(parameters ? { parameters } : {}) }) });
  const body = (await r.json()) as { code?: string };
  return { status: r.status, code: body.code };
};
const flaky = (model: string, ok: boolean) =>
  post(model, [{ name: 'x', shape: [4], datatype: 'FP32', data: [1, 2, 3, 4] }, { name: 'shape', shape: [2], datatype: 'INT64', data: ok ? [2, 2] : [3, 3] }]);
const slow = (model: string, iters: number, timeoutUs?: number) =>
  post(model, [{ name: 'x', shape: [256, 256], datatype: 'FP32', data: new Array(65536).fill(0.01) }, { name: 'iters', shape: [], datatype: 'INT64', data: iters }], timeoutUs ? { timeout: timeoutUs } : undefined);

/** What the clients saw, in the stats' terms. */
function tally(results: Array<{ status: number; code?: string }>) {
  const by = (code: string) => results.filter((r) => r.code === code).length;
  const success = results.filter((r) => r.status === 200).length;
  return { success, fail: results.length - success, rejected: by('QUEUE_FULL'), failed: by('RUNTIME_ERROR'), expired: by('TIMEOUT') };
}

describe('model statistics over HTTP', () => {
  it('after the warmup every count is 0 (the warmup ran 3 and 2 inferences per model)', async () => {
    for (const model of ['flaky_b', 'flaky_u', 'slow_b', 'slow_u']) {
      const s = await stats(model);
      expect({ model, inference_count: s.inference_count, execution_count: s.execution_count, success: s.inference_stats.success.count, fail: s.inference_stats.fail.count, queue: s.inference_stats.queue.count })
        .toEqual({ model, inference_count: 0, execution_count: 0, success: 0, fail: 0, queue: 0 });
      expect(s.last_inference, model).toBe(0); // the warmup is no inference

    }
  });

  for (const model of ['flaky_b', 'flaky_u']) {
    it(`${model}: successes and ONNX Runtime failures are counted apart (failures were counted as successes when unscheduled)`, async () => {
      const results = [];
      const t0 = Date.now();
      for (const ok of [true, false, true, true, false]) results.push(await flaky(model, ok));
      const t1 = Date.now();
      expect(tally(results)).toEqual({ success: 3, fail: 2, rejected: 0, failed: 2, expired: 0 });
      const s = await stats(model);
      expect(s.inference_stats.success.count).toBe(3);
      expect(s.inference_stats.fail.count).toBe(2);
      expect(s.fail_reasons).toEqual({ failed: 2, rejected: 0, expired: 0, cancelled: 0 });
      // Triton's {count, ns}: receipt-to-outcome time of the 3 successes and the 2 failures.
      expect(Object.keys(s.inference_stats.success).sort()).toEqual(['count', 'ns']);
      expect(Object.keys(s.inference_stats.fail).sort()).toEqual(['count', 'ns']);
      expect(s.inference_stats.success.ns).toBeGreaterThan(0);
      expect(s.inference_stats.fail.ns).toBeGreaterThan(0);
      expect(s.execution_count).toBe(5); // failed runs are executions too
      // Triton's last_inference: ms since the epoch when the last one (here a failure) ended.
      expect(s.last_inference).toBeGreaterThanOrEqual(t0);
      expect(s.last_inference).toBeLessThanOrEqual(t1);
      expect(s.last_inference).toBeGreaterThan(t0 + (t1 - t0) / 5 - 1);
    });
  }

  it('slow_b (scheduled, queue of 1): queue-full rejections and queued timeouts are failures; success excludes them', async () => {
    const results: Array<{ status: number; code?: string }> = [];
    // One running, one queued, the rest refused (QUEUE_FULL) while both wait.
    const running = slow('slow_b', 2000);
    await new Promise((r) => setTimeout(r, 100));
    const queued = slow('slow_b', 1);
    await new Promise((r) => setTimeout(r, 20));
    results.push(...(await Promise.all([slow('slow_b', 1), slow('slow_b', 1), slow('slow_b', 1)])));
    results.push(await running, await queued);
    // A request with a 20 ms timeout behind a long run: it times out in the queue, or is refused
    // at once when its predicted wait is longer than its timeout.
    const long = slow('slow_b', 2000);
    await new Promise((r) => setTimeout(r, 100));
    results.push(await slow('slow_b', 1, 20_000));
    results.push(await long);
    const seen = tally(results);
    expect(seen.rejected).toBeGreaterThanOrEqual(3);
    expect(seen.rejected + seen.expired).toBe(4);
    expect(seen.success).toBe(3);
    const s = await stats('slow_b');
    expect(s.inference_stats.success.count).toBe(seen.success);
    expect(s.inference_stats.fail.count).toBe(seen.fail);
    expect(s.fail_reasons).toEqual({ rejected: seen.rejected, expired: seen.expired, failed: 0, cancelled: 0 });
  });

  it('slow_u (unscheduled): a run cut by its timeout is a failure, not a success', async () => {
    const results = [await slow('slow_u', 1), await slow('slow_u', 2000, 30_000), await slow('slow_u', 1)];
    expect(tally(results)).toEqual({ success: 2, fail: 1, rejected: 0, failed: 0, expired: 1 });
    const s = await stats('slow_u');
    expect(s.inference_stats.success.count).toBe(2);
    expect(s.inference_stats.fail.count).toBe(1);
    expect(s.fail_reasons).toMatchObject({ expired: 1, rejected: 0, failed: 0 });
  });

  it('Prometheus counters skip the warmup too', async () => {
    const text = await (await fetch(`${base}/metrics`)).text();
    // slow_u ran 3 requests after its warmup of 2; its executions counter shows the 3 only.
    expect(text).toMatch(/nv_inference_exec_count\{model="slow_u",version="1"\} 3\n/);
  });
});
