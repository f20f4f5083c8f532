/**
 * Model.stats() request counts (src/runtime/binding.ts RequestStats, native/request_counts.h)
 * against known sequences of successes, ORT failures, rejections, timeouts and cancellations,
 * on a batching model and on an unscheduled one, and Model.resetStats(). Behaviour only: every
 * step waits for its own outcome, no timing is measured.
 */

// One executor thread in this test process (read when the first unscheduled run starts; vitest
// runs each test file in its own child process): a long run of `slow` then holds back the
// unscheduled requests behind it, so their timeouts and aborts happen before they run.
process.env.NIMIFY_THREADS = '1';

import { describe, expect, it } from 'vitest';
import { loadModel, NimifyError, Tensor, type Model, type ModelStats } from '../../src';
import { model } from '../helpers';

async function outcome(p: Promise<unknown>): Promise<string> {
  return p.then(
    () => 'ok',
    (e: unknown) => (e instanceof NimifyError ? e.code : `not a NimifyError: ${String(e)}`),
  );
}

const counts = (s: ModelStats) => ({
  requests: s.requests, rejected: s.rejected, succeeded: s.succeeded, failed: s.failed, expired: s.expired, cancelled: s.cancelled,
});

/** Every cumulative figure of stats() (queueDepth and inFlight are current, not counters). */
function cumulative(s: ModelStats): Record<string, unknown> {
  return {
    ...counts(s), runs: s.runs, failures: s.failures, batches: s.batches, inlineBatches: s.inlineBatches, wakes: s.wakes,
    batchSizeHistogram: s.batchSizeHistogram, queueTimeUs: s.queueTimeUs.count, queueTimeUsSum: s.queueTimeUs.sum,
    computeTimeUs: s.computeTimeUs.count, computeInputUs: s.computeInputUs, computeInferUs: s.computeInferUs, computeOutputUs: s.computeOutputUs,
    outputsZeroCopy: s.outputsZeroCopy, outputsCopied: s.outputsCopied, bytesCopied: s.bytesCopied, shapeFallbacks: s.shapeFallbacks,
    bytesGathered: s.bytesGathered, bytesScattered: s.bytesScattered,
  };
}

const zeros = {
  requests: 0, rejected: 0, succeeded: 0, failed: 0, expired: 0, cancelled: 0, runs: 0, failures: 0, batches: 0, inlineBatches: 0, wakes: 0,
  batchSizeHistogram: {}, queueTimeUs: 0, queueTimeUsSum: 0, computeTimeUs: 0, computeInputUs: 0, computeInferUs: 0, computeOutputUs: 0,
  outputsZeroCopy: 0, outputsCopied: 0, bytesCopied: 0, shapeFallbacks: 0, bytesGathered: 0, bytesScattered: 0,
};

// embed_int64: ids int64 [batch, seq]; an id outside the 100-row table fails ORT's Gather.
const ids = (rows: number, bad = false) =>
  new Tensor('int64', BigInt64Array.from({ length: rows * 3 }, (_, i) => (bad && i === 0 ? 99_999n : BigInt(i % 100))), [rows, 3]);

describe('stats: a batching model', () => {
  it('counts each outcome once, by definition, and resetStats() zeroes everything', async () => {
    // A 10 s delay and no adaptive policy: requests wait in the queue until a batch of 8 rows is
    // full, so the queue holds exactly what this test put there (and no batch runs inline).
    const m = await loadModel(model('embed_int64.onnx'), { inlineBelowMicros: 0, batching: { maxBatchSize: 8, maxQueueDelayMicros: 10_000_000, adaptive: false, maxQueueSize: 4 } });
    const ac = new AbortController();
    const expires = m.infer({ ids: ids(1) }, { timeoutMs: 50 });
    const aborted = m.infer({ ids: ids(1) }, { signal: ac.signal });
    const bad = m.infer({ ids: ids(1, true) });
    const good = m.infer({ ids: ids(1) });
    expect(await outcome(m.infer({ ids: ids(1) }))).toBe('QUEUE_FULL'); // maxQueueSize 4
    expect(counts(m.stats())).toEqual({ requests: 4, rejected: 1, succeeded: 0, failed: 0, expired: 0, cancelled: 0 });
    ac.abort();
    expect(await outcome(aborted)).toBe('ABORTED');
    expect(await outcome(expires)).toBe('TIMEOUT');
    // 1 + 1 + 6 rows: a full batch runs at once; the bad id fails ORT's run for all three.
    const six = m.infer({ ids: ids(6) });
    expect(await Promise.all([bad, good, six].map(outcome))).toEqual(['INVALID_ARGUMENT', 'INVALID_ARGUMENT', 'INVALID_ARGUMENT']);
    // 4 × 2 rows: one full batch that succeeds.
    expect(await Promise.all(Array.from({ length: 4 }, () => outcome(m.infer({ ids: ids(2) }))))).toEqual(['ok', 'ok', 'ok', 'ok']);
    const s = m.stats();
    // Triton: success = succeeded; failure = rejected + failed + expired + cancelled. Every
    // admitted request is accounted for once (none pending), the rejected one was never admitted.
    expect(counts(s)).toEqual({ requests: 9, rejected: 1, succeeded: 4, failed: 3, expired: 1, cancelled: 1 });
    expect(s.succeeded + s.failed + s.expired + s.cancelled).toBe(s.requests);
    expect(s.batchSizeHistogram).toEqual({ 8: 2 });
    expect(s.runs).toBe(2);
    expect(s.failures).toBe(1);
    expect(s.queueTimeUs.count).toBe(7); // the requests that reached a batch
    expect(s.queueDepth).toBe(0);

    m.resetStats();
    expect(cumulative(m.stats())).toEqual(zeros);
    // Counting starts again from zero.
    await Promise.all(Array.from({ length: 4 }, () => m.infer({ ids: ids(2) })));
    expect(counts(m.stats())).toEqual({ requests: 4, rejected: 0, succeeded: 4, failed: 0, expired: 0, cancelled: 0 });
    expect(m.stats().batchSizeHistogram).toEqual({ 8: 1 });
    await m.dispose();
  });
});

describe('stats: an unscheduled model', () => {
  it('counts ORT failures as failed (not successes), timeouts and aborts, and resetStats() zeroes everything', async () => {
    // reshape_fail: Reshape(x [n], shape [2]): fails in ORT when the shape does not fit n.
    // Every run on the executor (inlineBelowMicros 0): requests queue behind `slow` below.
    const m = await loadModel(model('reshape_fail.onnx'), { inlineBelowMicros: 0 });
    const slow = await loadModel(model('slow.onnx'));
    expect(m.stats().scheduled).toBe(false);
    const feeds = (fits: boolean) => ({
      x: new Tensor('float32', new Float32Array(6), [6]),
      shape: new Tensor('int64', new BigInt64Array(fits ? [2n, 3n] : [4n, 4n]), [2]),
    });
    for (let i = 0; i < 3; i++) expect(await outcome(m.infer(feeds(true)))).toBe('ok');
    for (let i = 0; i < 2; i++) expect(await outcome(m.infer(feeds(false)))).toBe('RUNTIME_ERROR');
    expect(counts(m.stats())).toEqual({ requests: 5, rejected: 0, succeeded: 3, failed: 2, expired: 0, cancelled: 0 });

    // The one executor thread runs a long `slow` run; requests behind it time out or are aborted
    // before they run.
    const stop = new AbortController();
    const blocker = slow.infer({ x: new Tensor('float32', new Float32Array(256 * 256).fill(0.01), [256, 256]), iters: new Tensor('int64', new BigInt64Array([1_000_000n]), []) }, { signal: stop.signal });
    const ac = new AbortController();
    const late = m.infer(feeds(true), { timeoutMs: 20 });
    const aborted = m.infer(feeds(true), { signal: ac.signal });
    ac.abort();
    await new Promise((r) => setTimeout(r, 60)); // the 20 ms timer has fired
    stop.abort();
    expect(await outcome(blocker)).toBe('ABORTED');
    expect(await outcome(late)).toBe('TIMEOUT');
    expect(await outcome(aborted)).toBe('ABORTED');
    // A run terminated by its timeout counts as expired too.
    expect(await outcome(slow.infer({ x: new Tensor('float32', new Float32Array(256 * 256), [256, 256]), iters: new Tensor('int64', new BigInt64Array([1_000_000n]), []) }, { timeoutMs: 30 }))).toBe('TIMEOUT');

    const s = m.stats();
    expect(counts(s)).toEqual({ requests: 7, rejected: 0, succeeded: 3, failed: 2, expired: 1, cancelled: 1 });
    expect(s.runs).toBe(5); // the timed-out and aborted requests never ran
    expect(s.failures).toBe(2);
    expect(s.batches).toBe(5);
    expect(s.inFlight).toBe(0);
    expect(counts(slow.stats())).toEqual({ requests: 2, rejected: 0, succeeded: 0, failed: 0, expired: 1, cancelled: 1 });

    m.resetStats();
    expect(cumulative(m.stats())).toEqual(zeros);
    expect(await outcome(m.infer(feeds(false)))).toBe('RUNTIME_ERROR');
    expect(counts(m.stats())).toEqual({ requests: 1, rejected: 0, succeeded: 0, failed: 1, expired: 0, cancelled: 0 });
    expect(m.stats().runs).toBe(1);
    // inferSync() calls are not requests: they count as runs only.
    m.inferSync(feeds(true));
    expect(counts(m.stats())).toEqual({ requests: 1, rejected: 0, succeeded: 0, failed: 1, expired: 0, cancelled: 0 });
    expect(m.stats().runs).toBe(2);
    await Promise.all([m, slow].map((x: Model) => x.dispose()));
    // A disposed model reports zeros and resetStats() is harmless.
    m.resetStats();
    expect(m.stats().requests).toBe(0);
  });
});
