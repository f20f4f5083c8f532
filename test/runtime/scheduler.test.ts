/**
 * The native scheduler: dynamic batching, queue policy, instances (native/scheduler.h).
 * Behaviour only, never timings. Queue-policy tests block the model's one instance with a
 * long run of the `slow` fixture (a Loop of 256×256 MatMuls; no batch dim, so every request
 * runs alone through the same queue) and end it with an AbortSignal.
 */
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadModel, NimifyError, Tensor, type Model } from '../../src';
import { iterationsDuring, model, ROOT } from '../helpers';

async function rejectsWith(p: Promise<unknown>, code: string, pattern?: RegExp): Promise<void> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(NimifyError);
  expect((err as NimifyError).code).toBe(code);
  if (pattern) expect((err as Error).message).toMatch(pattern);
}

async function waitFor(cond: () => boolean, what: string): Promise<void> {
  const end = Date.now() + 20_000;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

/** Deterministic pseudo-random floats (a test that fails must fail the same way again). */
function random(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.5;
  };
}

const mlpInput = (rnd: () => number, rows: number) => new Tensor('float32', Float32Array.from({ length: rows * 64 }, rnd), [rows, 64]);

const slowFeeds = (iters: bigint) => ({
  x: new Tensor('float32', new Float32Array(256 * 256).fill(0.01), [256, 256]),
  iters: new Tensor('int64', new BigInt64Array([iters]), []),
});

/** Starts a run that occupies one instance until `stop()` aborts it. */
async function block(m: Model): Promise<{ stop: () => Promise<void> }> {
  const ac = new AbortController();
  const before = m.stats().inFlight;
  const run = m.infer(slowFeeds(1_000_000n), { signal: ac.signal }).catch((e: NimifyError) => e.code);
  await waitFor(() => m.stats().inFlight > before, 'the blocking run to start');
  return {
    stop: async () => {
      ac.abort();
      expect(await run).toBe('ABORTED');
    },
  };
}

describe('dynamic batching: results', () => {
  it('gives every caller exactly its own rows, identical to unbatched runs, for batch sizes 1..maxBatchSize', async () => {
    const maxBatchSize = 16;
    const batched = await loadModel(model('mlp_tiny.onnx'), { batching: { maxBatchSize, maxQueueDelayMicros: 5000 } });
    const plain = await loadModel(model('mlp_tiny.onnx'));
    const rnd = random(7);
    let rowsTotal = 0;
    for (let round = 0; round < 6; round++) {
      // A burst of requests of 1..4 rows: batches of every size form from them.
      const inputs = Array.from({ length: 10 + round * 7 }, (_, i) => mlpInput(rnd, 1 + ((i * 7 + round) % 4)));
      const results = await Promise.all(inputs.map((x) => batched.infer({ x })));
      inputs.forEach((x, i) => {
        const expected = plain.inferSync({ x }).y;
        expect(results[i].y.dims).toEqual(expected.dims);
        expect(Array.from(results[i].y.data as Float32Array)).toEqual(Array.from(expected.data as Float32Array));
        rowsTotal += x.dims[0];
      });
    }
    const s = batched.stats();
    const sizes = Object.keys(s.batchSizeHistogram).map(Number);
    expect(Math.max(...sizes)).toBeLessThanOrEqual(maxBatchSize);
    expect(sizes.some((n) => n > 4)).toBe(true); // requests really were combined
    // Stats add up: rows over all batches = rows submitted; one ORT run per batch.
    expect(sizes.reduce((sum, n) => sum + n * s.batchSizeHistogram[n], 0)).toBe(rowsTotal);
    expect(Object.values(s.batchSizeHistogram).reduce((a, b) => a + b, 0)).toBe(s.batches);
    expect(s.runs).toBe(s.batches);
    expect(s.requests).toBe(s.queueTimeUs.count);
    expect(s.computeTimeUs.count).toBe(s.batches);
    expect(s.queueDepth).toBe(0);
    expect(s.inFlight).toBe(0);
    expect(s.bytesGathered).toBeGreaterThan(0);
    expect(s.bytesScattered).toBeGreaterThan(0);
    expect(s.scheduled).toBe(true);
    await batched.dispose();
    await plain.dispose();
  });

  it('honours maxBatchSize and, once the delay is over, the largest preferred size it can fill', async () => {
    const m = await loadModel(model('mlp_tiny.onnx'), {
      batching: { maxBatchSize: 8, preferredBatchSizes: [4], maxQueueDelayMicros: 1_000_000, adaptive: false },
    });
    const rnd = random(1);
    // (Delays of 1 s here and below: the requests of one synchronous loop must all be queued
    // before the delay ends even when CI's loaded machine deschedules this thread between two
    // infer() calls — with 100 ms the first request once ran alone, and the model, measured,
    // ran the second inline.)
    // 6 rows: the batch reaches the preferred 4 (runs at once, or when the delay ends), then the 2 left wait out the delay.
    await Promise.all(Array.from({ length: 6 }, () => m.infer({ x: mlpInput(rnd, 1) })));
    expect(m.stats().batchSizeHistogram).toEqual({ 4: 1, 2: 1 });
    await m.dispose();

    const big = await loadModel(model('mlp_tiny.onnx'), { batching: { maxBatchSize: 8, maxQueueDelayMicros: 1_000_000, adaptive: false } });
    await Promise.all(Array.from({ length: 20 }, () => big.infer({ x: mlpInput(rnd, 1) })));
    expect(big.stats().batchSizeHistogram).toEqual({ 8: 2, 4: 1 });
    // A request larger than maxBatchSize is refused up front (it could never run).
    await rejectsWith(big.infer({ x: mlpInput(rnd, 9) }), 'INVALID_ARGUMENT', /batch dim holds 9 rows; batching.maxBatchSize is 8/);
    await big.dispose();
  });

  it('runs a request larger than every preferred size it could fill (never an empty batch)', async () => {
    // Once the delay is over a 3-row request cannot make the preferred 2 without being split: it
    // runs whole. (Formation used to pick an empty batch here, which crashed the instance thread.)
    const m = await loadModel(model('mlp_tiny.onnx'), { batching: { maxBatchSize: 8, preferredBatchSizes: [2], maxQueueDelayMicros: 1000, adaptive: false } });
    const plain = await loadModel(model('mlp_tiny.onnx'));
    const x = mlpInput(random(4), 3);
    expect(Array.from((await m.infer({ x })).y.data as Float32Array)).toEqual(Array.from(plain.inferSync({ x }).y.data as Float32Array));
    expect(m.stats().batchSizeHistogram).toEqual({ 3: 1 });
    await m.dispose();
    await plain.dispose();
  });

  it('never mixes requests whose non-batch dims differ', async () => {
    const m = await loadModel(model('embed_int64.onnx'), { batching: { maxBatchSize: 32, maxQueueDelayMicros: 1_000_000, adaptive: false } });
    const plain = await loadModel(model('embed_int64.onnx'));
    const ids = (seq: number, k: number) => new Tensor('int64', BigInt64Array.from({ length: seq }, (_, j) => BigInt((k * 7 + j * 3) % 16)), [1, seq]);
    const inputs = Array.from({ length: 12 }, (_, k) => ids(k % 2 ? 5 : 3, k));
    const results = await Promise.all(inputs.map((x) => m.infer({ ids: x })));
    inputs.forEach((x, k) => {
      const e = plain.inferSync({ ids: x });
      expect(Array.from(results[k].pooled.data as Float32Array)).toEqual(Array.from(e.pooled.data as Float32Array));
      expect(Array.from(results[k].argmax.data as BigInt64Array)).toEqual(Array.from(e.argmax.data as BigInt64Array));
    });
    // One batch per sequence length.
    expect(m.stats().batchSizeHistogram).toEqual({ 6: 2 });
    await m.dispose();
    await plain.dispose();
  });

  it('an ORT failure fails every request of that batch only; a bad request is refused before it can join one', async () => {
    // (inlineBelowMicros 0: batches form off the JS thread over the 1 s delay, whatever the machine's speed)
    const m = await loadModel(model('embed_int64.onnx'), { inlineBelowMicros: 0, batching: { maxBatchSize: 8, maxQueueDelayMicros: 1_000_000, adaptive: false } });
    const ids = (v: bigint) => new Tensor('int64', new BigInt64Array([v, 1n, 2n]), [1, 3]);
    // Out of the embedding table's range: ORT's Gather fails the whole run.
    const batch = [ids(1n), ids(2n), ids(99999n), ids(3n)].map((x) => m.infer({ ids: x }));
    // Wrong type and wrong rank: rejected synchronously, never queued.
    await rejectsWith(m.infer({ ids: new Tensor('int32', new Int32Array(3), [1, 3]) }), 'INVALID_ARGUMENT', /expected type int64/);
    await rejectsWith(m.infer({ ids: new Tensor('int64', new BigInt64Array(3), [3]) }), 'INVALID_ARGUMENT', /expected shape/);
    // ORT reports the bad index as an invalid argument; every request of the run gets it.
    for (const p of batch) await rejectsWith(p, 'INVALID_ARGUMENT', /running a batch of 4 requests: .*indices/i);
    // The scheduler keeps running: the next requests succeed.
    const ok = await Promise.all([ids(1n), ids(2n)].map((x) => m.infer({ ids: x })));
    expect(ok.map((o) => o.pooled.dims)).toEqual([[1, 8], [1, 8]]);
    const s = m.stats();
    expect(s.failed).toBe(4);
    expect(s.requests).toBe(6);
    expect(s.batchSizeHistogram).toEqual({ 4: 1, 2: 1 });
    await m.dispose();
  });

  it('an adaptive scheduler runs a lone request without waiting out maxQueueDelayMicros', async () => {
    // 10 s cap: a sequential caller would take minutes if the scheduler waited for company.
    const m = await loadModel(model('mlp_tiny.onnx'), { batching: { maxBatchSize: 64, maxQueueDelayMicros: 10_000_000, adaptive: true } });
    const rnd = random(3);
    for (let i = 0; i < 20; i++) {
      await m.infer({ x: mlpInput(rnd, 1) });
      await new Promise((r) => setTimeout(r, 5));
    }
    expect(m.stats().batches).toBe(20);
    expect(m.stats().delayUs).toBe(0);
    // A burst still forms batches.
    await Promise.all(Array.from({ length: 64 }, () => m.infer({ x: mlpInput(rnd, 1) })));
    expect(m.stats().batches).toBeLessThan(20 + 64);
    await m.dispose();
  }, 60_000);

  it('wakes the scheduler once per event-loop turn: requests submitted in one turn form one batch', async () => {
    // No spinning and no delay: the instance thread sleeps until woken and then runs whatever is
    // queued. The requests of one synchronous burst are all queued before the turn's one wake.
    const m = await loadModel(model('mlp_tiny.onnx'), { allowSpinning: false, batching: { maxBatchSize: 16, maxQueueDelayMicros: 0 } });
    const rnd = random(5);
    for (let round = 1; round <= 5; round++) {
      await new Promise((r) => setTimeout(r, 20)); // the instance thread is asleep
      const outs = await Promise.all(Array.from({ length: 12 }, () => m.infer({ x: mlpInput(rnd, 1) })));
      expect(outs.every((o) => o.y.dims[0] === 1)).toBe(true);
      expect(m.stats().batchSizeHistogram).toEqual({ 12: round });
    }
    await m.dispose();
  });

  it('inlineBelowMicros: cheap batches run on the JS thread with the same results, no instance thread woken', async () => {
    const rnd = random(11);
    const ref = await loadModel(model('mlp_tiny.onnx'));
    // A generous bound: what is tested here is where batches run, not the cost model's accuracy
    // (a first run that allocates can cost milliseconds on a busy machine).
    const m = await loadModel(model('mlp_tiny.onnx'), { allowSpinning: false, inlineBelowMicros: 200_000, batching: { maxBatchSize: 16 } });
    // The first runs measure the model's cost on the instance thread; nothing is inlined before.
    // (Each step waits until that thread is asleep again: an awake instance thread takes
    // requests itself, no wake needed, and these counts would vary.)
    const asleep = () => new Promise((r) => setTimeout(r, 20));
    await m.infer({ x: mlpInput(rnd, 1) });
    await asleep();
    const before = m.stats();
    expect(before.inlineBatches).toBe(0);
    // A lone request runs inline within infer() itself (the first of its loop turn) …
    const x1 = mlpInput(rnd, 1);
    expect((await m.infer({ x: x1 })).y.data).toEqual(ref.inferSync({ x: x1 }).y.data);
    // … a burst of one (later) turn: the first inline at once, the rest as one inline batch at the
    // turn's end.
    await asleep();
    const xs = Array.from({ length: 9 }, () => mlpInput(rnd, 1));
    const outs = await Promise.all(xs.map((x) => m.infer({ x })));
    for (let i = 0; i < xs.length; i++) expect(outs[i].y.data).toEqual(ref.inferSync({ x: xs[i] }).y.data);
    // Multi-row requests too.
    const x3 = mlpInput(rnd, 3);
    expect((await m.infer({ x: x3 })).y.data).toEqual(ref.inferSync({ x: x3 }).y.data);
    const after = m.stats();
    expect(after.inlineBatches - before.inlineBatches).toBe(4);
    expect(after.batchSizeHistogram).toMatchObject({ 1: 3, 8: 1, 3: 1 });
    expect(after.wakes).toBe(before.wakes);
    // A failure in an inline batch rejects its own requests and nothing else.
    const e = await loadModel(model('embed_int64.onnx'), { allowSpinning: false, inlineBelowMicros: 200_000, batching: { maxBatchSize: 8 } });
    const ids = (v: bigint) => new Tensor('int64', new BigInt64Array([v, 1n, 2n]), [1, 3]);
    await e.infer({ ids: ids(1n) });
    await asleep();
    const mixed = [ids(1n), ids(99999n), ids(2n)].map((x) => e.infer({ ids: x }));
    await rejectsWith(mixed[1], 'INVALID_ARGUMENT', /indices/i); // the first ran alone, the other two together
    await rejectsWith(mixed[2], 'INVALID_ARGUMENT', /indices/i);
    expect((await mixed[0]).pooled.dims).toEqual([1, 8]);
    expect((await e.infer({ ids: ids(3n) })).pooled.dims).toEqual([1, 8]);
    expect(e.stats().inlineBatches).toBe(3);
    // A model slower than the bound never runs inline.
    const slow = await loadModel(model('slow.onnx'), { allowSpinning: false, inlineBelowMicros: 1, batching: {} });
    await Promise.all([1n, 2n].map((n) => slow.infer(slowFeeds(n))));
    await slow.infer(slowFeeds(1n));
    expect(slow.stats().inlineBatches).toBe(0);
    await rejectsWith(loadModel(model('mlp_tiny.onnx'), { inlineBelowMicros: -1, batching: {} }), 'INVALID_ARGUMENT', /options\.inlineBelowMicros: expected an integer in \[0, 1000000\], received number -1/);
    await Promise.all([ref, m, e, slow].map((x) => x.dispose()));
  });

  it.each([true, false])('inlineBelowMicros: requests that come in groups run as one inline batch, the first not alone (adaptive: %s)', async (adaptive) => {
    const rnd = random(12);
    const ref = await loadModel(model('mlp_tiny.onnx'));
    const m = await loadModel(model('mlp_tiny.onnx'), { allowSpinning: false, inlineBelowMicros: 200_000, batching: { maxBatchSize: 16, adaptive } });
    // Eight clients in a closed loop: each round's eight requests arrive in one turn. Once recent
    // batches hold several requests, the first request of a round no longer runs alone (which
    // would split every round into 1 + 7 rows).
    const round = async () => {
      const xs = Array.from({ length: 8 }, () => mlpInput(rnd, 1));
      const outs = await Promise.all(xs.map((x) => m.infer({ x })));
      for (let i = 0; i < xs.length; i++) expect(outs[i].y.data).toEqual(ref.inferSync({ x: xs[i] }).y.data);
    };
    for (let r = 0; r < 6; r++) await round();
    // Five rounds, five inline batches of 8. On a loaded machine the JS thread can be descheduled
    // past the batching delay after queuing a round, and an instance thread then takes the batch
    // (correctly): up to three tries of five rounds, one of which must be exact.
    let outcome: { delta: Record<string, number>; inline: number; wakes: number } | undefined;
    for (let attempt = 0; attempt < 3; attempt++) {
      const before = m.stats();
      for (let r = 0; r < 5; r++) await round();
      const after = m.stats();
      const delta = Object.fromEntries(Object.entries(after.batchSizeHistogram).map(([k, v]) => [k, v - (before.batchSizeHistogram[k] ?? 0)]).filter(([, v]) => v !== 0));
      outcome = { delta, inline: after.inlineBatches - before.inlineBatches, wakes: after.wakes - before.wakes };
      if (outcome.inline === 5) break;
    }
    expect(outcome).toEqual({ delta: { 8: 5 }, inline: 5, wakes: 0 });
    // A lone client afterwards: its requests are alone again (inside infer(), no loop iteration
    // passes) once recent batches hold one request — two rows each, to tell requests from rows.
    for (let i = 0; i < 16; i++) await m.infer({ x: mlpInput(rnd, 2) });
    const lone = m.stats();
    const x2 = mlpInput(rnd, 2);
    let y: Float32Array | undefined;
    expect(await iterationsDuring(async () => (y = (await m.infer({ x: x2 })).y.data as Float32Array))).toBe(0);
    expect(y).toEqual(ref.inferSync({ x: x2 }).y.data);
    expect(m.stats().inlineBatches - lone.inlineBatches).toBe(1);
    expect(m.stats().wakes).toBe(lone.wakes);
    await Promise.all([ref, m].map((x) => x.dispose()));
  });

  it('inlineBelowMicros: a sequential client runs inline request after request, for at most the bound per loop turn', async () => {
    const rnd = random(14);
    const x = mlpInput(rnd, 1);
    const ref = await loadModel(model('mlp_tiny.onnx'));
    const expected = ref.inferSync({ x }).y.data;
    const sequential = (m: Awaited<ReturnType<typeof loadModel>>, n: number) => async () => {
      for (let i = 0; i < n; i++) expect((await m.infer({ x })).y.data).toEqual(expected);
    };
    // A generous bound: each result reaches the client, whose next request runs inline at once
    // (the results of the previous one have been delivered: not a burst), all in one stretch.
    const wide = await loadModel(model('mlp_tiny.onnx'), { allowSpinning: false, inlineBelowMicros: 200_000, batching: { maxBatchSize: 16 } });
    // Measured: inline from now on, once the instance thread that ran this is asleep again (an
    // awake one takes the next request itself).
    const asleep = () => new Promise((r) => setTimeout(r, 20));
    await wide.infer({ x });
    await asleep();
    let before = wide.stats();
    expect(await iterationsDuring(sequential(wide, 30))).toBeLessThanOrEqual(2);
    let after = wide.stats();
    expect(after.inlineBatches - before.inlineBatches).toBe(30);
    expect(after.batchSizeHistogram[1] - before.batchSizeHistogram[1]).toBe(30);
    expect(after.wakes).toBe(before.wakes);
    // A tight bound (µs of lone requests per loop turn): the same client now yields to the loop
    // every few hundred µs — 3,000 requests take milliseconds on any machine — and still runs
    // its requests inline (all but those a slow moment on a busy machine predicts above 300 µs).
    const tight = await loadModel(model('mlp_tiny.onnx'), { allowSpinning: false, inlineBelowMicros: 300, batching: { maxBatchSize: 16 } });
    await tight.infer({ x });
    await asleep();
    before = tight.stats();
    expect(await iterationsDuring(sequential(tight, 3000))).toBeGreaterThanOrEqual(3);
    after = tight.stats();
    expect(after.inlineBatches - before.inlineBatches).toBeGreaterThan(2500);
    // Requests from separate callbacks of one loop phase (as from several sockets) are not a
    // sequential client: the first runs alone, the others are batched at the end of the turn.
    await asleep();
    before = wide.stats();
    const fromCallbacks = await new Promise<Array<Promise<unknown>>>((resolve) => {
      const ps: Array<Promise<unknown>> = [];
      for (let k = 0; k < 3; k++) setImmediate(() => ps.push(wide.infer({ x })) === 3 && resolve(ps));
    });
    await Promise.all(fromCallbacks);
    after = wide.stats();
    expect(after.batchSizeHistogram[1] - before.batchSizeHistogram[1]).toBe(1);
    expect((after.batchSizeHistogram[2] ?? 0) - (before.batchSizeHistogram[2] ?? 0)).toBe(1);
    expect(after.inlineBatches - before.inlineBatches).toBe(2);
    await Promise.all([ref, wide, tight].map((m) => m.dispose()));
  });

  it('inlineBelowMicros: one end-of-turn wake runs about that much inline, the rest of a deep queue on the instance thread', async () => {
    // One row per batch, a 1 ms bound, 2,000 requests queued in one turn (each run some µs):
    // without the wake's budget all of them ran inline in that one callback (milliseconds).
    const m = await loadModel(model('mlp_tiny.onnx'), { allowSpinning: false, inlineBelowMicros: 1000, batching: { maxBatchSize: 1, maxQueueSize: 4096 } });
    const rnd = random(15);
    await m.infer({ x: mlpInput(rnd, 1) });
    await new Promise((r) => setTimeout(r, 20)); // the instance thread asleep again
    const before = m.stats();
    const xs = Array.from({ length: 2000 }, () => mlpInput(rnd, 1));
    const outs = await Promise.all(xs.map((x) => m.infer({ x })));
    for (let i = 0; i < xs.length; i += 97) expect(outs[i].y.data).toEqual(m.inferSync({ x: xs[i] }).y.data);
    const ranInline = m.stats().inlineBatches - before.inlineBatches;
    expect(ranInline).toBeGreaterThan(1); // the lone first request, and the wake's share
    expect(ranInline).toBeLessThan(2000);
    expect(m.stats().batches - before.batches).toBe(2000);
    await m.dispose();
  });

  it('inlineBelowMicros: a closed loop of clients on inline batches still lets the event loop turn', async () => {
    // Clients that answer every result with a new request: each settlement brings the next
    // turn's deferred wake. Settled inside that wake's own callback, the batches chained back to
    // back inside one loop phase (Node dispatches up to 1,000 threadsafe-function messages per
    // callback) and timers waited for all of them. Counted in loop iterations, not time: the
    // inline batches that run between two consecutive check phases (setImmediate).
    const m = await loadModel(model('mlp_tiny.onnx'), { allowSpinning: false, inlineBelowMicros: 200_000, batching: { maxBatchSize: 16 } });
    const rnd = random(13);
    const xs = Array.from({ length: 16 }, () => mlpInput(rnd, 1));
    await Promise.all(xs.map((x) => m.infer({ x }))); // measured: inline from now on
    let stop = false;
    const clients = xs.map(async (x) => {
      while (!stop) await m.infer({ x });
    });
    let last = m.stats().inlineBatches;
    let most = 0;
    let turns = 0;
    await new Promise<void>((resolve) => {
      const check = () => {
        const now = m.stats().inlineBatches;
        most = Math.max(most, now - last);
        last = now;
        if (++turns < 200) setImmediate(check);
        else resolve();
      };
      setImmediate(check);
    });
    stop = true;
    await Promise.all(clients);
    expect(m.stats().inlineBatches).toBeGreaterThan(50); // the clients did run inline meanwhile
    expect(most).toBeLessThanOrEqual(4);
    await m.dispose();
  });

  it('a request submitted from any loop phase runs, and the process exits when it is done', async () => {
    // A child process with nothing else to keep its loop alive: timers, immediates, close
    // callbacks, microtasks and nextTick each submit; a lost wake would hang it until the timeout.
    const script = `
      const net = require('node:net');
      const { loadModel, Tensor } = require(${JSON.stringify(path.join(ROOT, 'dist'))});
      (async () => {
        const m = await loadModel(${JSON.stringify(model('mlp_tiny.onnx'))}, { allowSpinning: false, batching: { maxBatchSize: 8, maxQueueDelayMicros: 0 } });
        const x = () => ({ x: new Tensor('float32', new Float32Array(64).fill(0.5), [1, 64]) });
        const via = {
          timer: (f) => setTimeout(f, 1),
          immediate: (f) => setImmediate(f),
          immediateAfterImmediate: (f) => setImmediate(() => setImmediate(f)),
          nextTick: (f) => process.nextTick(f),
          microtask: (f) => queueMicrotask(f),
          close: (f) => { const s = net.createServer(); s.listen(0, '127.0.0.1', () => s.close(f)); },
        };
        const done = [];
        for (const [name, schedule] of Object.entries(via)) {
          const y = await new Promise((resolve, reject) => schedule(() => m.infer(x()).then(resolve, reject)));
          done.push(name + ':' + y.y.dims.join('x'));
        }
        console.log(done.join(' '));
        // The last request is left for exit: the pending wake must not hold the process open.
        m.infer(x()).then(() => console.log('last done'));
      })().catch((e) => { console.error(e); process.exit(1); });
    `;
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 30_000 });
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('timer:1x10 immediate:1x10 immediateAfterImmediate:1x10 nextTick:1x10 microtask:1x10 close:1x10\nlast done\n');
    expect(r.status).toBe(0);
  }, 40_000);

  it('runs models without a batch dim unbatched through the same queue', async () => {
    const m = await loadModel(model('slow.onnx'), { batching: { maxBatchSize: 8 } });
    const outs = await Promise.all([1n, 2n, 3n].map((n) => m.infer(slowFeeds(n))));
    expect(outs.map((o) => o.y.dims)).toEqual([[256, 256], [256, 256], [256, 256]]);
    expect(m.stats().batchSizeHistogram).toEqual({ 1: 3 });
    await m.dispose();
    await rejectsWith(loadModel(model('slow.onnx'), { batching: { batchDim: true } }), 'INVALID_ARGUMENT', /batchDim is true but input 'x' has a fixed first dim \(256\)/);
  });
});

describe('queue policy', () => {
  it('rejects with QUEUE_FULL beyond maxQueueSize and keeps serving', async () => {
    const m = await loadModel(model('slow.onnx'), { batching: { maxQueueSize: 2 } });
    const blocker = await block(m);
    const queued = [m.infer(slowFeeds(1n)), m.infer(slowFeeds(1n))];
    expect(m.stats().queueDepth).toBe(2);
    await rejectsWith(m.infer(slowFeeds(1n)), 'QUEUE_FULL', /queue full: 2 requests are waiting/);
    expect(m.stats().rejected).toBe(1);
    await blocker.stop();
    expect((await Promise.all(queued)).length).toBe(2);
    expect((await m.infer(slowFeeds(1n))).y.dims).toEqual([256, 256]);
    await m.dispose();
  });

  it('expires a queued request at its timeoutMs without running it', async () => {
    const m = await loadModel(model('slow.onnx'), { batching: {} });
    const blocker = await block(m);
    const t0 = Date.now();
    await rejectsWith(m.infer(slowFeeds(1n), { timeoutMs: 30 }), 'TIMEOUT', /dropped before it ran/);
    expect(Date.now() - t0).toBeLessThan(10_000); // it did not wait for the blocker
    expect(m.stats().expired).toBe(1);
    expect(m.stats().queueDepth).toBe(0);
    await blocker.stop();
    await m.infer(slowFeeds(1n));
    // Runs: the blocker and the last request. The expired one never reached ORT.
    expect(m.stats().runs).toBe(2);
    await m.dispose();
  });

  it('ends a running request at its timeoutMs natively, with no JS timer, even while the JS thread is blocked', async () => {
    const m = await loadModel(model('slow.onnx'), { batching: {} });
    const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    const before = timers();
    const t0 = Date.now();
    const late = m.infer(slowFeeds(1_000_000n), { timeoutMs: 100 }).catch((e: NimifyError) => e);
    // No timer per request: the scheduler's watchdog thread holds the deadline.
    expect(timers()).toBe(before);
    await waitFor(() => m.stats().inFlight === 1, 'the run to start');
    // The JS thread is busy past the deadline: a JS timer could not fire, the watchdog can.
    while (Date.now() - t0 < 600) { /* busy */ }
    expect(m.stats().inFlight).toBe(0); // terminated while this thread was blocked (the run takes many seconds)
    const err = await late;
    expect(err).toBeInstanceOf(NimifyError);
    expect((err as NimifyError).code).toBe('TIMEOUT');
    expect(m.stats().expired).toBe(1);
    // A request that completes after its deadline is a TIMEOUT too; one within it is not.
    expect((await m.infer(slowFeeds(1n), { timeoutMs: 60_000 })).y.dims).toEqual([256, 256]);
    await m.dispose();
  });

  // Two requests in one batch of convnet_bench (a 64-row run takes ~0.5 s on the 2-core VM):
  // `a`, 1 row with a deadline, and `b`, 63 rows without one. A fixed delay makes `a` wait for
  // `b` (an idle instance thread may see `a` before `b` is submitted).
  async function sharedBatch(aOptions: { timeoutMs: number; signal?: AbortSignal }) {
    const m = await loadModel(model('convnet_bench.onnx'), { batching: { maxBatchSize: 64, maxQueueDelayMicros: 2_000_000, adaptive: false } });
    const rows = (n: number) => ({ x: new Tensor('float32', new Float32Array(n * 3 * 112 * 112).fill(0.5), [n, 3, 112, 112]) });
    const [one, rest] = [rows(1), rows(63)];
    const a = m.infer(one, aOptions).then(() => 'ok', (e: NimifyError) => e.code);
    const b = m.infer(rest).then((r) => r.y.dims, (e: NimifyError) => e.code);
    await waitFor(() => m.stats().inFlight === 2, 'the batch of both to start');
    return { m, a, b };
  }

  it('a request whose deadline passes inside a shared batch settles TIMEOUT; the batch runs on for the others', async () => {
    const { m, a, b } = await sharedBatch({ timeoutMs: 60 });
    expect(await a).toBe('TIMEOUT');
    expect(await b).toEqual([63, 10]);
    expect(m.stats()).toMatchObject({ expired: 1, succeeded: 1, inFlight: 0 });
    expect(m.stats().batchSizeHistogram).toEqual({ 64: 1 });
    await m.dispose();
  });

  it('an aborted request of a shared batch counts once when its deadline passes too: the batch is not ended', async () => {
    const ac = new AbortController();
    const { m, a, b } = await sharedBatch({ timeoutMs: 80, signal: ac.signal });
    ac.abort();
    // Its deadline passes while `b` still runs; counted twice, the batch would be terminated.
    expect(await a).toBe('ABORTED');
    expect(await b).toEqual([63, 10]);
    expect(m.stats()).toMatchObject({ cancelled: 1, expired: 0, succeeded: 1, inFlight: 0 });
    await m.dispose();
  });

  it('refuses at once with QUEUE_FULL a request whose predicted queue wait exceeds its timeoutMs, and admits one that fits', async () => {
    const m = await loadModel(model('slow.onnx'), { batching: {} });
    // Measures the compute per row (slow runs alone: one row per run) that admission predicts with.
    await m.infer(slowFeeds(20n));
    await m.infer(slowFeeds(20n));
    const blocker = await block(m);
    const queued = Array.from({ length: 4 }, () => m.infer(slowFeeds(20n)));
    expect(m.stats().queueDepth).toBe(4);
    // 4 rows ahead × a measured run of 20 steps: far more than 1 ms. Refused in the same turn:
    // before any timer (or the native deadline) could have expired it.
    const refused = m.infer(slowFeeds(1n), { timeoutMs: 1 });
    const first = await Promise.race([refused.catch((e: unknown) => e), new Promise((r) => setImmediate(() => r('still pending')))]);
    expect(first).toBeInstanceOf(NimifyError);
    expect((first as NimifyError).code).toBe('QUEUE_FULL');
    expect((first as NimifyError).message).toMatch(/^queue full: the predicted queue wait \([\d.]+ ms for 4 rows ahead\) exceeds the request's timeoutMs \(1\.0 ms\); retry later$/);
    // The predicted wait, for the server's Retry-After.
    const retryAfterMs = (first as NimifyError & { retryAfterMs?: number }).retryAfterMs;
    expect(typeof retryAfterMs).toBe('number');
    expect(retryAfterMs).toBeGreaterThan(1);
    expect(m.stats().rejected).toBe(1);
    expect(m.stats().queueDepth).toBe(4);
    // A long timeout fits the prediction: admitted.
    const admitted = m.infer(slowFeeds(1n), { timeoutMs: 600_000 });
    // Only high-priority rows are ahead of a high-priority request: none here, so it is admitted
    // (and then expires behind the running blocker: TIMEOUT, not QUEUE_FULL).
    const high = m.infer(slowFeeds(1n), { timeoutMs: 1, priority: 1 });
    expect(m.stats().queueDepth).toBe(6);
    await rejectsWith(high, 'TIMEOUT');
    await blocker.stop();
    expect((await admitted).y.dims).toEqual([256, 256]);
    expect((await Promise.all(queued)).length).toBe(4);
    expect(m.stats()).toMatchObject({ rejected: 1, expired: 1, requests: 9 });
    await m.dispose();
  });

  it('serves high priority first, FIFO within a level', async () => {
    const m = await loadModel(model('slow.onnx'), { batching: {} });
    const blocker = await block(m);
    const order: string[] = [];
    const submit = (name: string, priority: 0 | 1) => m.infer(slowFeeds(1n), { priority }).then(() => order.push(name));
    const all = [submit('a', 0), submit('b', 0), submit('c', 1), submit('d', 1), submit('e', 0)];
    await blocker.stop();
    await Promise.all(all);
    expect(order).toEqual(['c', 'd', 'a', 'b', 'e']);
    await m.dispose();
  });

  it('an AbortSignal removes a queued request at once', async () => {
    const m = await loadModel(model('slow.onnx'), { batching: {} });
    const blocker = await block(m);
    const ac = new AbortController();
    const p = m.infer(slowFeeds(1n), { signal: ac.signal });
    expect(m.stats().queueDepth).toBe(1);
    ac.abort();
    await rejectsWith(p, 'ABORTED');
    expect(m.stats().queueDepth).toBe(0);
    expect(m.stats().cancelled).toBe(1);
    await blocker.stop();
    await m.dispose();
  });

  it('dispose() rejects a full queue with DISPOSED and waits for the running request', async () => {
    const m = await loadModel(model('slow.onnx'), { batching: { maxQueueSize: 4 } });
    // Long enough (~0.2 s here) that the queue is still full when dispose() comes, even on a
    // loaded machine where the polling below runs late (40 iterations, ~17 ms, was flaky in CI).
    const running = m.infer(slowFeeds(1000n));
    await waitFor(() => m.stats().inFlight === 1, 'the run to start');
    const queued = Array.from({ length: 4 }, () => m.infer(slowFeeds(1n)));
    const settled = queued.map((p) => p.catch((e: unknown) => e));
    let runningDone = false;
    running.then(() => (runningDone = true));
    await m.dispose();
    expect(runningDone).toBe(true);
    expect((await running).y.dims).toEqual([256, 256]);
    for (const e of await Promise.all(settled)) {
      expect((e as NimifyError).code).toBe('DISPOSED');
      expect((e as NimifyError).message).toMatch(/disposed before this request ran/);
    }
    await rejectsWith(m.infer(slowFeeds(1n)), 'DISPOSED');
  });

  it('validates batching options and priority, naming the field', async () => {
    await rejectsWith(loadModel(model('mlp_tiny.onnx'), { batching: { maxBatchSize: 0 } }), 'INVALID_ARGUMENT', /options.batching.maxBatchSize: expected an integer in \[1, 1048576\], received number 0/);
    await rejectsWith(loadModel(model('mlp_tiny.onnx'), { batching: { preferredBatchSizes: [4, 16], maxBatchSize: 8 } }), 'INVALID_ARGUMENT', /preferredBatchSizes\[1\]: expected an integer in \[1, 8\], received number 16/);
    await rejectsWith(loadModel(model('mlp_tiny.onnx'), { batching: { maxDelay: 5 } as never }), 'INVALID_ARGUMENT', /maxDelay/);
    await rejectsWith(loadModel(model('mlp_tiny.onnx'), { batching: { adaptive: 'yes' } as never }), 'INVALID_ARGUMENT', /adaptive: expected true or false/);
    await rejectsWith(loadModel(model('mlp_tiny.onnx'), { instances: 0 }), 'INVALID_ARGUMENT', /options.instances/);
    const m = await loadModel(model('mlp_tiny.onnx'), { batching: {} });
    await rejectsWith(m.infer({ x: mlpInput(random(1), 1) }, { priority: 2 as never }), 'INVALID_ARGUMENT', /options.priority: expected 0 \(normal\) or 1 \(high\), received number 2/);
    await m.dispose();
  });
});

describe('instances', () => {
  it('runs as many requests concurrently as there are instances', async () => {
    const m = await loadModel(model('slow.onnx'), { instances: 2 });
    const a = await block(m);
    const b = await block(m);
    expect(m.stats().inFlight).toBe(2);
    expect(m.stats().instances).toBe(2);
    // A third waits for an instance.
    const c = m.infer(slowFeeds(1n));
    expect(m.stats().queueDepth).toBe(1);
    await a.stop();
    expect((await c).y.dims).toEqual([256, 256]);
    await b.stop();
    await m.dispose();
  });

  it('batches across instances with correct results', async () => {
    const m = await loadModel(model('mlp_tiny.onnx'), { instances: 2, batching: { maxBatchSize: 8, maxQueueDelayMicros: 1000 } });
    const plain = await loadModel(model('mlp_tiny.onnx'));
    const rnd = random(11);
    const inputs = Array.from({ length: 200 }, (_, i) => mlpInput(rnd, 1 + (i % 2)));
    const results = await Promise.all(inputs.map((x) => m.infer({ x })));
    inputs.forEach((x, i) => expect(Array.from(results[i].y.data as Float32Array)).toEqual(Array.from(plain.inferSync({ x }).y.data as Float32Array)));
    expect(m.stats().requests).toBe(200);
    await m.dispose();
    await plain.dispose();
  });
});
