// infer() on the JS thread for models without a scheduler (LoadOptions.inlineBelowMicros, default
// 100): a lone request predicted cheap runs inside infer(); others of the turn at its end
// (native/run_job.cc RunJob::Submit, RunDeferred). The scheduler's inline batches are tested in
// scheduler.test.ts.
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { loadModel, NimifyError, Tensor } from '../../src';
import { iterationsDuring, model } from '../helpers';

const x1 = (seed: number, rows = 1) => new Tensor('float32', Float32Array.from({ length: 64 * rows }, (_, i) => Math.sin(i * 0.37 + seed)), [rows, 64]);

async function rejectsWith(p: Promise<unknown>, code: string): Promise<void> {
  const err = await p.then(() => null, (e: unknown) => e);
  expect(err).toBeInstanceOf(NimifyError);
  expect((err as NimifyError).code).toBe(code);
}

describe('inline runs without a scheduler', () => {
  it('by default a sequential client of a tiny model runs on the JS thread after the first, measured run, with the same results', async () => {
    const m = await loadModel(model('mlp_tiny.onnx'));
    try {
      const x = x1(1);
      const expected = m.inferSync({ x }).y.data;
      expect(m.stats().scheduled).toBe(false);
      expect(m.stats().inlineBatches).toBe(0);
      // The first infer() has nothing measured to predict from: it runs on an executor thread.
      expect((await m.infer({ x })).y.data).toEqual(expected);
      expect(m.stats().inlineBatches).toBe(0);
      const outs = [];
      for (let i = 0; i < 30; i++) outs.push((await m.infer({ x: x1(i) })).y.data);
      outs.forEach((o, i) => expect(o).toEqual(m.inferSync({ x: x1(i) }).y.data));
      // (Past 100 µs of a loop turn the next request waits for the turn's end, and runs inline
      // there; a slow moment on a busy machine may predict one above 100 µs: it takes a thread.)
      expect(m.stats().inlineBatches).toBeGreaterThanOrEqual(15);
      const s = m.stats();
      expect(s.requests).toBe(31);
      expect(s.succeeded).toBe(31);
      expect(s.runs).toBe(31 + 31); // and the 31 inferSync() calls
      m.resetStats();
      expect(m.stats().inlineBatches).toBe(0);
    } finally {
      await m.dispose();
    }
  });

  it('a lone request settles inside infer(): the event loop does not turn between request and result', async () => {
    // A bound no run on a loaded machine exceeds: where the request runs does not depend on its speed.
    const m = await loadModel(model('mlp_tiny.onnx'), { inlineBelowMicros: 1_000_000 });
    try {
      const x = x1(2);
      await m.infer({ x });
      let y: unknown;
      expect(await iterationsDuring(async () => (y = (await m.infer({ x })).y.data))).toBe(0);
      expect(y).toEqual(m.inferSync({ x }).y.data);
      expect(m.stats().inlineBatches).toBe(1);
    } finally {
      await m.dispose();
    }
  });

  it('inlineBelowMicros 0 never runs infer() on the JS thread; a model slower than the bound does not either', async () => {
    const off = await loadModel(model('mlp_tiny.onnx'), { inlineBelowMicros: 0 });
    const slow = await loadModel(model('slow.onnx'), { inlineBelowMicros: 1 });
    try {
      for (let i = 0; i < 20; i++) await off.infer({ x: x1(i) });
      expect(off.stats().inlineBatches).toBe(0);
      const feeds = { x: new Tensor('float32', new Float32Array(256 * 256).fill(0.01), [256, 256]), iters: new Tensor('int64', new BigInt64Array([2n]), []) };
      for (let i = 0; i < 3; i++) await slow.infer(feeds);
      expect(slow.stats().inlineBatches).toBe(0);
    } finally {
      await Promise.all([off.dispose(), slow.dispose()]);
    }
  });

  it('an input much larger than the measured ones runs off the JS thread (its cost is not extrapolated), and is measured there', async () => {
    const m = await loadModel(model('mlp_tiny.onnx'), { inlineBelowMicros: 1_000_000 });
    try {
      for (let i = 0; i < 3; i++) await m.infer({ x: x1(i) });
      const before = m.stats().inlineBatches;
      expect(before).toBe(2);
      const big = x1(7, 256);
      const out = await m.infer({ x: big });
      expect(out.y.data).toEqual(m.inferSync({ x: big }).y.data);
      expect(m.stats().inlineBatches).toBe(before);
    } finally {
      await m.dispose();
    }
  });

  it('a burst from one stretch of JS: the first runs inline, the rest at the end of the turn (not one long callback), all right', async () => {
    // Two bounds: one no run on a loaded machine exceeds (where requests run does not depend on
    // its speed), and 300 µs, where the end of the turn runs about that much and threads the rest.
    const wide = await loadModel(model('mlp_tiny.onnx'), { inlineBelowMicros: 1_000_000 });
    const tight = await loadModel(model('mlp_tiny.onnx'), { inlineBelowMicros: 300 });
    try {
      const xs = Array.from({ length: 200 }, (_, i) => x1(i));
      const expected = xs.map((x) => wide.inferSync({ x }).y.data);
      for (const m of [wide, tight]) {
        for (let i = 0; i < 3; i++) await m.infer({ x: x1(0) }); // measured (a slow first run replaced)
        const before = m.stats().inlineBatches;
        let settledInTurn = 0;
        const ps = xs.map((x) => m.infer({ x }).then((r) => (settledInTurn++, r)));
        // Only the first settled inside infer(); the others wait for the end of the turn.
        await Promise.resolve();
        expect(settledInTurn).toBeLessThanOrEqual(1);
        const outs = await Promise.all(ps);
        outs.forEach((o, i) => expect(o.y.data).toEqual(expected[i]));
        const inline = m.stats().inlineBatches - before;
        if (m === wide) expect(inline).toBe(200); // the first inside infer(), 199 at the end of the turn
        else expect(inline).toBeLessThan(200); // about 300 µs of them; the rest on threads
      }
    } finally {
      await Promise.all([wide.dispose(), tight.dispose()]);
    }
  });

  it('a sequential client yields to the event loop every inlineBelowMicros of runs, and goes on running inline', async () => {
    const m = await loadModel(model('mlp_tiny.onnx'), { inlineBelowMicros: 300 });
    try {
      for (let i = 0; i < 3; i++) await m.infer({ x: x1(0) });
      const x = x1(3);
      const expected = m.inferSync({ x }).y.data;
      const before = m.stats().inlineBatches;
      expect(await iterationsDuring(async () => {
        for (let i = 0; i < 3000; i++) expect((await m.infer({ x })).y.data).toEqual(expected);
      })).toBeGreaterThanOrEqual(3);
      // Past each turn's budget the next request waits for the end of the turn and runs inline
      // there: (nearly) none takes a thread.
      expect(m.stats().inlineBatches - before).toBeGreaterThan(2000);
    } finally {
      await m.dispose();
    }
  });

  it('a request with an AbortSignal or timeoutMs runs off the JS thread, where both can end it', async () => {
    // slow: a Loop whose count is an input: a cheap measured run predicts nothing about a long one.
    const slow = await loadModel(model('slow.onnx'), { inlineBelowMicros: 1_000_000 });
    const tiny = await loadModel(model('mlp_tiny.onnx'), { inlineBelowMicros: 1_000_000 });
    try {
      const x = new Tensor('float32', new Float32Array(256 * 256).fill(0.01), [256, 256]);
      const iters = (n: bigint) => new Tensor('int64', new BigInt64Array([n]), []);
      await slow.infer({ x, iters: iters(1n) });
      await slow.infer({ x, iters: iters(1n) });
      expect(slow.stats().inlineBatches).toBe(1); // measured cheap: it would run inline
      // The same element count, a million iterations: the timer and the signal still end it.
      await rejectsWith(slow.infer({ x, iters: iters(1_000_000n) }, { timeoutMs: 50 }), 'TIMEOUT');
      const ac = new AbortController();
      const aborted = slow.infer({ x, iters: iters(1_000_000n) }, { signal: ac.signal });
      setTimeout(() => ac.abort(), 50);
      await rejectsWith(aborted, 'ABORTED');
      expect(slow.stats().inlineBatches).toBe(1);
      // A tiny model's request with either option, alone or in a burst, takes a thread too.
      await tiny.infer({ x: x1(0) });
      const before = tiny.stats().inlineBatches;
      expect((await tiny.infer({ x: x1(1) }, { timeoutMs: 60_000 })).y.data).toEqual(tiny.inferSync({ x: x1(1) }).y.data);
      await Promise.all([0, 1, 2].map((k) => tiny.infer({ x: x1(k) }, { signal: new AbortController().signal })));
      expect(tiny.stats().inlineBatches).toBe(before);
      expect(slow.stats()).toMatchObject({ expired: 1, cancelled: 1 });
    } finally {
      await Promise.all([slow.dispose(), tiny.dispose()]);
    }
  });

  it('with a scheduler, a run on the JS thread that takes longer than predicted is still ended at its deadline (the watchdog)', async () => {
    // allowSpinning false and a pause between runs: an instance thread still spinning after a run
    // would take the next request itself instead of leaving it to run inline.
    const slow = await loadModel(model('slow.onnx'), { allowSpinning: false, inlineBelowMicros: 1_000_000, batching: {} });
    try {
      const x = new Tensor('float32', new Float32Array(256 * 256).fill(0.01), [256, 256]);
      const iters = (n: bigint) => new Tensor('int64', new BigInt64Array([n]), []);
      for (let i = 0; i < 3; i++) {
        await slow.infer({ x, iters: iters(1n) });
        await new Promise((r) => setTimeout(r, 20));
      }
      const before = slow.stats().inlineBatches;
      expect(before).toBeGreaterThan(0);
      // Runs inline (predicted cheap), for a million iterations: the JS thread is blocked, the
      // scheduler's watchdog thread is not, and terminates the run at the deadline.
      const t0 = Date.now();
      await rejectsWith(slow.infer({ x, iters: iters(1_000_000n) }, { timeoutMs: 50 }), 'TIMEOUT');
      expect(Date.now() - t0).toBeLessThan(10_000);
      expect(slow.stats().inlineBatches).toBe(before + 1);
    } finally {
      await slow.dispose();
    }
  });

  it('an ORT failure on the JS thread counts as failed, rejects with the same error, and the model goes on', async () => {
    // reshape_fail: Reshape(x [n], shape [2]) fails in ORT when the shape does not fit n.
    const m = await loadModel(model('reshape_fail.onnx'), { inlineBelowMicros: 1_000_000 });
    const off = await loadModel(model('reshape_fail.onnx'), { inlineBelowMicros: 0 });
    try {
      const feeds = (fits: boolean) => ({
        x: new Tensor('float32', new Float32Array(6), [6]),
        shape: new Tensor('int64', new BigInt64Array(fits ? [2n, 3n] : [4n, 4n]), [2]),
      });
      await m.infer(feeds(true));
      const err = await m.infer(feeds(false)).then(() => null, (e: unknown) => e as NimifyError);
      const offErr = await off.infer(feeds(false)).then(() => null, (e: unknown) => e as NimifyError);
      expect(err?.code).toBe('RUNTIME_ERROR');
      expect(err?.message).toBe(offErr?.message);
      expect((await m.infer(feeds(true))).y.dims).toEqual([2, 3]);
      const s = m.stats();
      expect({ requests: s.requests, succeeded: s.succeeded, failed: s.failed, runs: s.runs, failures: s.failures, inline: s.inlineBatches }).toEqual({ requests: 3, succeeded: 2, failed: 1, runs: 3, failures: 1, inline: 2 });
    } finally {
      await Promise.all([m.dispose(), off.dispose()]);
    }
  });

  it('dispose() waits for requests deferred to the end of the turn, which then succeed', async () => {
    const m = await loadModel(model('mlp_tiny.onnx'), { inlineBelowMicros: 1_000_000 });
    await m.infer({ x: x1(0) });
    // The first runs inside infer(); the other nine wait for the end of this turn.
    const ps = Array.from({ length: 10 }, (_, i) => m.infer({ x: x1(i) }));
    const stats = m.stats();
    expect(stats.inlineBatches).toBe(1);
    expect(stats.inFlight).toBe(9); // (the first one's promise settled inside infer())
    await m.dispose();
    const outs = await Promise.allSettled(ps);
    expect(outs.every((o) => o.status === 'fulfilled')).toBe(true);
  });

  it('a worker that exits with requests waiting for the end of its turn exits cleanly', async () => {
    for (let i = 0; i < 3; i++) {
      const worker = new Worker(path.join(__dirname, 'worker-script.js'), { workerData: { model: model('mlp_tiny.onnx'), options: { inlineBelowMicros: 1_000_000 }, mode: 'burst-exit', burst: 50 } });
      const message = new Promise<Record<string, unknown>>((resolve) => worker.once('message', resolve));
      const exited = new Promise<number>((resolve, reject) => {
        worker.once('exit', resolve);
        worker.once('error', reject);
      });
      const msg = await message;
      // 4 of the 5 measured runs and the burst's first ran inline (its promise settled inside
      // infer()); 49 were waiting for the turn's end (inFlight: infer() promises not yet settled).
      expect(msg).toEqual({ inlineBatches: 5, inFlight: 49 });
      expect(await exited).toBe(0);
    }
    // This thread goes on inferring.
    const m = await loadModel(model('mlp_tiny.onnx'));
    await m.infer({ x: x1(1) });
    await m.dispose();
  });
});

