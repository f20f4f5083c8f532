/**
 * infer()'s internal per-request timing (the `timing` option tracing uses; binding.ts RUN_TIMING,
 * filled by native/run_job.cc WriteTrace): on the executor (no scheduler), through the batching
 * scheduler (a batch of several requests reports its rows, requests and instance on each), for a
 * request cancelled while queued (it never ran), recycled jobs (a traced job's array is not
 * written by a later untraced run of the same recycled job), and its validation.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { loadModel, Tensor, type Model } from '../../src';
import { RUN_TIMING as T, RUN_TIMING_LENGTH } from '../../src/runtime/binding';
import { model } from '../helpers';

const x = (k: number) => ({ x: new Tensor('float32', Float32Array.from({ length: 64 }, (_, i) => Math.sin(i + k)), [1, 64]) });
const models: Model[] = [];
afterAll(async () => {
  for (const m of models) await m.dispose();
});

/** The slots of a run that happened: in order on one clock, after the submit. */
function expectRan(t: Float64Array): void {
  expect(t[T.RAN]).toBe(1);
  expect(t[T.SUBMITTED_MS]).toBeGreaterThan(0);
  expect(t[T.SUBMITTED_MS]).toBeLessThanOrEqual(performance.now());
  expect(t[T.START_US]).toBeGreaterThanOrEqual(0);
  expect(t[T.INPUT_END_US]).toBeGreaterThanOrEqual(t[T.START_US]);
  expect(t[T.RUN_END_US]).toBeGreaterThanOrEqual(t[T.INPUT_END_US]);
  expect(t[T.END_US]).toBeGreaterThanOrEqual(t[T.RUN_END_US]);
}

describe('infer() timing', () => {
  it('on the executor: one request, no instance', async () => {
    const m = await loadModel(model('mlp_tiny.onnx'));
    models.push(m);
    const t = new Float64Array(RUN_TIMING_LENGTH);
    const out = await m.infer(x(1), { timing: t });
    expect(out.y.dims).toEqual([1, 10]);
    expectRan(t);
    expect([t[T.BATCH_ROWS], t[T.BATCH_REQUESTS], t[T.INSTANCE]]).toEqual([1, 1, -1]);
  });

  it('through the scheduler: requests batched together report the batch, on the instance that ran it', async () => {
    const m = await loadModel(model('mlp_tiny.onnx'), { instances: 2, batching: { maxBatchSize: 8, maxQueueDelayMicros: 100_000, adaptive: false } });
    models.push(m);
    const ts = [0, 1, 2, 3].map(() => new Float64Array(RUN_TIMING_LENGTH));
    await Promise.all(ts.map((t, k) => m.infer(x(k), { timing: t })));
    for (const t of ts) {
      expectRan(t);
      expect(t[T.BATCH_ROWS]).toBe(t[T.BATCH_REQUESTS]);
      expect([0, 1]).toContain(t[T.INSTANCE]);
    }
    expect(Math.max(...ts.map((t) => t[T.BATCH_ROWS]))).toBeGreaterThan(1);
    // Requests that shared a batch waited in the queue until the same start.
    const shared = ts.filter((t) => t[T.BATCH_ROWS] > 1);
    const starts = shared.map((t) => t[T.SUBMITTED_MS] + t[T.START_US] / 1000);
    expect(Math.max(...starts) - Math.min(...starts)).toBeLessThan(1);

    // A recycled job that runs untraced leaves an earlier request's array alone.
    const snapshot = Float64Array.from(ts[0]);
    await Promise.all([0, 1, 2, 3].map((k) => m.infer(x(k))));
    expect(ts[0]).toEqual(snapshot);
  });

  it('a request cancelled while queued never ran: only the submit time is set', async () => {
    const m = await loadModel(model('mlp_tiny.onnx'), { batching: { maxBatchSize: 8, maxQueueDelayMicros: 2_000_000, adaptive: false } });
    models.push(m);
    const t = new Float64Array(RUN_TIMING_LENGTH).fill(7);
    const controller = new AbortController();
    const p = m.infer(x(1), { timing: t, signal: controller.signal });
    controller.abort();
    await expect(p).rejects.toMatchObject({ code: 'ABORTED' });
    expect(t[T.SUBMITTED_MS]).toBeGreaterThan(0);
    expect(Array.from(t.subarray(T.RAN))).toEqual(new Array(RUN_TIMING_LENGTH - 1).fill(0));
  });

  it('is validated', async () => {
    const m = models[0];
    await expect(m.infer(x(1), { timing: new Float64Array(3) })).rejects.toThrow(/options\.timing: expected a Float64Array of at least 9 elements, received a Float64Array/);
    await expect(m.infer(x(1), { timing: new Float32Array(9) as never })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });
});
