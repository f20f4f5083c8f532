/**
 * Native requests (RunJobs) are recycled through a per-env free list (native/run_job.h,
 * RunJob::Recycle) rather than freed, and every model of the env draws from the same list. A job
 * that ended in TIMEOUT, ABORTED, a run-time failure, a detached buffer or a refused submit must
 * serve the next request — of any model, with or without a scheduler — exactly like a new one:
 * no deadline, cancel reason, failure, output kind, batch key or reference may carry over.
 * Behaviour only, never timings.
 */
import { describe, expect, it } from 'vitest';
import { loadModel, NimifyError, Tensor, type Model } from '../../src';
import { model } from '../helpers';

const slowFeeds = (iters: bigint) => ({
  x: new Tensor('float32', new Float32Array(256 * 256).fill(0.01), [256, 256]),
  iters: new Tensor('int64', new BigInt64Array([iters]), []),
});

const codeOf = (p: Promise<unknown>): Promise<string> =>
  p.then(
    () => 'ok',
    (e: unknown) => (e instanceof NimifyError ? e.code : String(e)),
  );

async function waitFor(cond: () => boolean, what: string): Promise<void> {
  const end = Date.now() + 20_000;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

function rows(seed: number, n: number): Tensor[] {
  return Array.from({ length: n }, (_, k) => new Tensor('float32', Float32Array.from({ length: 64 }, (_, i) => Math.sin(seed * 31 + k * 7 + i)), [1, 64]));
}

/** Fills the env's free list with jobs that ended every way but success. */
/** Returns 1 when plain's detached-buffer request failed (BUFFER_DETACHED), else 0 (it settled first). */
async function failEveryWay(slow: Model, failing: Model, plain: Model, round: number): Promise<number> {
  // Blocks slow's one instance, then queues requests that expire (deadline set), that are aborted
  // while queued (cancel reason set). Once a run of slow has been measured, admission refuses
  // the expiring ones at once (QUEUE_FULL: a job prepared, then dropped before Attach).
  const blockAc = new AbortController();
  const before = slow.stats().inFlight;
  const blocker = codeOf(slow.infer(slowFeeds(1_000_000n), { signal: blockAc.signal }));
  await waitFor(() => slow.stats().inFlight > before, 'the blocking run to start');
  const expiring = Array.from({ length: 4 }, () => codeOf(slow.infer(slowFeeds(1n), { timeoutMs: 5 })));
  const abortAc = new AbortController();
  const aborted = Array.from({ length: 4 }, () => codeOf(slow.infer(slowFeeds(1n), { signal: abortAc.signal })));
  const expired = await Promise.all(expiring);
  if (round === 0) expect(expired).toEqual(['TIMEOUT', 'TIMEOUT', 'TIMEOUT', 'TIMEOUT']);
  for (const c of expired) expect(['TIMEOUT', 'QUEUE_FULL']).toContain(c);
  abortAc.abort();
  expect(await Promise.all(aborted)).toEqual(['ABORTED', 'ABORTED', 'ABORTED', 'ABORTED']);
  blockAc.abort();
  expect(await blocker).toBe('ABORTED');
  // A run-time ORT failure (the job holds a failure and ORT-allocated outputs).
  const x = new Tensor('float32', new Float32Array(6), [6]);
  const bad = Array.from({ length: 4 }, () => codeOf(failing.infer({ x, shape: new Tensor('int64', new BigInt64Array([4n, 4n]), [2]) })));
  expect(await Promise.all(bad)).toEqual(['RUNTIME_ERROR', 'RUNTIME_ERROR', 'RUNTIME_ERROR', 'RUNTIME_ERROR']);
  // A caller-supplied output buffer detached mid-run (the job holds a checked reference).
  const out = new Tensor('float32', new Float32Array(10), [1, 10]);
  const detached = codeOf(plain.infer({ x: rows(99, 1)[0] }, { outputs: { y: out } }));
  structuredClone(out.data.buffer, { transfer: [out.data.buffer as ArrayBuffer] });
  const d = await detached;
  expect(['BUFFER_DETACHED', 'ok']).toContain(d);
  return d === 'BUFFER_DETACHED' ? 1 : 0;
}

describe('recycled requests', () => {
  it('a job that timed out, was aborted, failed or lost its buffer serves the next request of any model like a new one', async () => {
    const slow = await loadModel(model('slow.onnx'), { batching: {} });
    const failing = await loadModel(model('reshape_fail.onnx'));
    const plain = await loadModel(model('mlp_tiny.onnx'));
    const batched = await loadModel(model('mlp_tiny.onnx'), { batching: { maxBatchSize: 8, maxQueueDelayMicros: 500 } });
    const inline = await loadModel(model('mlp_tiny.onnx'), { inlineBelowMicros: 1_000_000, batching: { maxBatchSize: 8 } });

    let plainFailed = 0;
    for (let round = 0; round < 3; round++) {
      plainFailed += await failEveryWay(slow, failing, plain, round);
      const xs = rows(round, 24);
      const want = xs.map((x) => Array.from(plain.inferSync({ x }).y.data as Float32Array));
      // Every engine at once, so recycled jobs of every kind are drawn by every route.
      const [a, b, c] = await Promise.all([
        Promise.all(xs.map((x) => plain.infer({ x }))),
        Promise.all(xs.map((x) => batched.infer({ x }))),
        Promise.all(xs.map((x) => inline.infer({ x }, { outputs: ['y'] }))),
      ]);
      for (const got of [a, b, c]) {
        expect(got.map((o) => Array.from(o.y.data as Float32Array))).toEqual(want);
        for (const o of got) expect(o.y.dims).toEqual([1, 10]);
      }
      // inferSync after async failures: borrowed, never referenced, same results.
      expect(xs.map((x) => Array.from(plain.inferSync({ x }).y.data as Float32Array))).toEqual(want);
    }
    for (const m of [plain, batched, inline]) {
      const s = m.stats();
      expect(s.failed).toBe(m === plain ? plainFailed : 0);
      expect(s.expired).toBe(0);
      expect(s.cancelled).toBe(0);
    }
    expect(batched.stats().succeeded).toBe(72);
    await Promise.all([slow, failing, plain, batched, inline].map((m) => m.dispose()));
  });

  it('a model with two inputs and two outputs, after jobs of a one-input model', async () => {
    const two = await loadModel(model('two_inputs.onnx'));
    const plain = await loadModel(model('mlp_tiny.onnx'));
    const d = two.inputs.map((i) => i.name);
    expect(d.length).toBe(2);
    // Jobs with one input/one output go back to the free list first.
    await Promise.all(rows(5, 16).map((x) => plain.infer({ x })));
    const desc = two.inputs.map((i) => ({ name: i.name, dims: (i.shape ?? []).map((s) => (typeof s === 'number' && s > 0 ? s : 2)) }));
    const feeds = Object.fromEntries(desc.map((i, k) => [i.name, new Tensor('float32', Float32Array.from({ length: i.dims.reduce((a, b) => a * b, 1) }, (_, j) => j + k), i.dims)]));
    const want = two.inferSync(feeds);
    const got = await Promise.all(Array.from({ length: 16 }, () => two.infer(feeds)));
    for (const g of got) {
      expect(Object.keys(g)).toEqual(Object.keys(want));
      for (const k of Object.keys(want)) expect(Array.from(g[k].data as Float32Array)).toEqual(Array.from(want[k].data as Float32Array));
    }
    await Promise.all([two, plain].map((m) => m.dispose()));
  });
});
