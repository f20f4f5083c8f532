/**
 * Buffers detached while a call is in flight (issue 14, item 1). A reference keeps a buffer from
 * the GC, not from being transferred: postMessage(buf, [buf]), structuredClone(buf, { transfer })
 * and ArrayBuffer.prototype.transfer() detach it here and hand its memory to a new owner, which
 * here overwrites it at once. The rule under test: small inputs are the run's own copy, so the
 * result is right whatever happens to the caller's buffer; larger inputs and supplied output
 * buffers make the call reject with BUFFER_DETACHED; never wrong data silently, never a crash.
 *
 * Runs are held in flight without timing: an unscheduled run waits in the executor's queue behind
 * a slow run on its only thread (NIMIFY_THREADS=1 below), then the slow run is aborted; a
 * scheduled one waits in its batcher for company (a long queue delay) until a second request
 * fills the batch.
 */
import * as fs from 'node:fs';
import { Worker } from 'node:worker_threads';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel, NimifyError, Tensor, type Model } from '../../src';
import { forceGC, model } from '../helpers';

// The executor reads this when it starts, at this file's first infer() (vitest runs each test
// file in a process of its own).
process.env.NIMIFY_THREADS = '1';

// A worker that takes ownership of transferred buffers, overwrites them (0xff bytes: NaN floats)
// and keeps them alive, as a real consumer might.
const SCRIBBLER = `
const { parentPort } = require('node:worker_threads');
const kept = [];
parentPort.on('message', (buf) => { new Uint8Array(buf).fill(0xff); kept.push(buf); parentPort.postMessage(buf.byteLength); });
`;

type Move = 'postMessage' | 'structuredClone' | 'transfer' | 'structuredClone, then collected';
const hasTransfer = typeof (ArrayBuffer.prototype as { transfer?: unknown }).transfer === 'function';
const MOVES: Move[] = ['postMessage', 'structuredClone', ...(hasTransfer ? (['transfer'] as Move[]) : [])];

let worker: Worker;
const kept: ArrayBuffer[] = [];

/** Detaches the buffer of `t`'s data in this thread the way `how` says; its memory is overwritten by its new owner. */
async function move(t: Tensor, how: Move): Promise<void> {
  const ab = (t.data as Float32Array).buffer as ArrayBuffer;
  const before = ab.byteLength;
  if (how === 'postMessage') {
    const reply = new Promise((resolve) => worker.once('message', resolve));
    worker.postMessage(ab, [ab]);
    expect(await reply).toBe(before);
  } else if (how === 'structuredClone, then collected') {
    // Nothing keeps the new owner: the memory is freed by the GC mid-run.
    (() => new Uint8Array(structuredClone(ab, { transfer: [ab] })).fill(0xff))();
    forceGC();
  } else {
    const moved: ArrayBuffer = how === 'transfer' ? (ab as unknown as { transfer(): ArrayBuffer }).transfer() : structuredClone(ab, { transfer: [ab] });
    new Uint8Array(moved).fill(0xff);
    kept.push(moved);
  }
  expect(ab.byteLength).toBe(0); // detached
}

const tiny = (rows: number, seed: number): Tensor => new Tensor('float32', Float32Array.from({ length: rows * 64 }, (_, i) => Math.sin(i * 0.37 + seed)), [rows, 64]);
const slowFeeds = (iters: bigint) => ({
  x: new Tensor('float32', Float32Array.from({ length: 256 * 256 }, (_, i) => Math.cos(i * 0.001)), [256, 256]),
  iters: new Tensor('int64', new BigInt64Array([iters]), []),
});

let plain: Model; // mlp_tiny, no scheduler: runs go to the executor
let batched: Model; // mlp_tiny behind a batcher that waits for a full batch of 301 rows
let slow: Model;

beforeAll(async () => {
  worker = new Worker(SCRIBBLER, { eval: true });
  // Every run off the JS thread (inlineBelowMicros 0): a request must still be queued or running
  // while the test detaches its buffers.
  plain = await loadModel(model('mlp_tiny.onnx'), { inlineBelowMicros: 0 });
  batched = await loadModel(model('mlp_tiny.onnx'), { inlineBelowMicros: 0, batching: { maxBatchSize: 301, maxQueueDelayMicros: 60_000_000, adaptive: false } });
  slow = await loadModel(model('slow.onnx'), { inlineBelowMicros: 0 });
  // What the tests rely on: mlp_tiny's x is [batch, 64] float32 (256 B a row: 1 row is a small
  // input, at most 2 KiB: the run's own copy; 300 rows = 76,800 B a large one, borrowed);
  // slow.onnx's x is a fixed [256, 256] float32 (256 KiB).
  expect(plain.inputs).toEqual([{ name: 'x', type: 'float32', shape: ['batch', 64] }]);
  expect(slow.inputs[0]).toEqual({ name: 'x', type: 'float32', shape: [256, 256] });
});

afterAll(async () => {
  await Promise.all([plain?.dispose(), batched?.dispose(), slow?.dispose()]);
  await worker?.terminate();
});

/** Runs `submit` while the executor's only thread is busy, so its run is still queued when `during` moves buffers. */
async function behindBlocker<T>(submit: () => Promise<T>, during: () => Promise<void>): Promise<PromiseSettledResult<T>> {
  const ac = new AbortController();
  const blocker = slow.infer(slowFeeds(1_000_000_000n), { signal: ac.signal });
  const pending = submit();
  const settled = Promise.allSettled([pending]);
  await during();
  ac.abort();
  await expect(blocker).rejects.toMatchObject({ code: 'ABORTED' });
  return (await settled)[0];
}

/** Runs `submit` on the batcher, which holds it until `filler` (the rest of the 301 rows) arrives after `during`. */
async function inBatch<T>(submit: () => Promise<T>, during: () => Promise<void>, fillerRows: number): Promise<PromiseSettledResult<T>> {
  const settled = Promise.allSettled([submit()]);
  await during();
  expect(batched.pending).toBe(1); // still queued: the batch is not full
  const filler = tiny(fillerRows, 99);
  const out = await batched.infer({ x: filler });
  // The other request of the batch is unaffected.
  expect(Array.from(out.y.data as Float32Array)).toEqual(Array.from(plain.inferSync({ x: filler }).y.data as Float32Array));
  return (await settled)[0];
}

function expectDetached(r: PromiseSettledResult<unknown>, what: string): void {
  expect(r.status).toBe('rejected');
  const err = (r as PromiseRejectedResult).reason;
  expect(err).toBeInstanceOf(NimifyError);
  expect(err.code).toBe('BUFFER_DETACHED');
  expect(err.message).toContain(`${what}: its buffer was transferred or detached`);
  expect(err.message).toContain('the result was discarded');
}

describe('an input buffer detached mid-run', () => {
  for (const how of [...MOVES, 'structuredClone, then collected' as Move]) {
    it(`small input (owned by the run), unscheduled, ${how}: the result is right`, async () => {
      const x = tiny(1, 1);
      const expected = Array.from(plain.inferSync({ x }).y.data as Float32Array);
      const r = await behindBlocker(() => plain.infer({ x }), () => move(x, how));
      expect(r.status).toBe('fulfilled');
      expect(Array.from((r as PromiseFulfilledResult<Record<string, Tensor>>).value.y.data as Float32Array)).toEqual(expected);
    });

    it(`small input (owned by the run), batched, ${how}: the result is right`, async () => {
      const x = tiny(1, 2);
      const expected = Array.from(plain.inferSync({ x }).y.data as Float32Array);
      const r = await inBatch(() => batched.infer({ x }), () => move(x, how), 300);
      expect(r.status).toBe('fulfilled');
      expect(Array.from((r as PromiseFulfilledResult<Record<string, Tensor>>).value.y.data as Float32Array)).toEqual(expected);
    });
  }

  for (const how of MOVES) {
    it(`large input (borrowed), unscheduled, ${how}: rejects with BUFFER_DETACHED`, async () => {
      const feeds = slowFeeds(1n);
      const r = await behindBlocker(() => slow.infer(feeds), () => move(feeds.x, how));
      expectDetached(r, "input 'x'");
    });

    it(`large input (borrowed), batched, ${how}: rejects with BUFFER_DETACHED`, async () => {
      const x = tiny(300, 3);
      const r = await inBatch(() => batched.infer({ x }), () => move(x, how), 1);
      expectDetached(r, "input 'x'");
    });
  }
});

describe('a supplied output buffer detached mid-run', () => {
  for (const how of MOVES) {
    it(`unscheduled, ${how}: rejects with BUFFER_DETACHED`, async () => {
      const y = new Tensor('float32', new Float32Array(256 * 256), [256, 256]);
      const r = await behindBlocker(() => slow.infer(slowFeeds(1n), { outputs: { y } }), () => move(y, how));
      expectDetached(r, "output 'y'");
    });

    it(`batched, small output, ${how}: rejects with BUFFER_DETACHED`, async () => {
      const y = new Tensor('float32', new Float32Array(10), [1, 10]);
      const r = await inBatch(() => batched.infer({ x: tiny(1, 4) }, { outputs: { y } }), () => move(y, how), 300);
      expectDetached(r, "output 'y'");
    });
  }

  it('a buffer that is not transferred still comes back written in place (the check costs no false alarms)', async () => {
    const y = new Tensor('float32', new Float32Array(10), [1, 10]);
    const x = tiny(1, 5);
    const r = await inBatch(() => batched.infer({ x }, { outputs: { y } }), async () => {}, 300);
    expect(r.status).toBe('fulfilled');
    expect((r as PromiseFulfilledResult<Record<string, Tensor>>).value.y).toBe(y);
    expect(Array.from(y.data as Float32Array)).toEqual(Array.from(plain.inferSync({ x }).y.data as Float32Array));
  });
});

describe('model bytes detached while loading', () => {
  it('loadModel(bytes) rejects with BUFFER_DETACHED when the bytes are transferred before it settles', async () => {
    const bytes = new Uint8Array(fs.readFileSync(model('mlp_tiny.onnx')));
    const loading = loadModel(bytes);
    const moved = structuredClone(bytes.buffer, { transfer: [bytes.buffer] });
    expect(bytes.byteLength).toBe(0);
    await expect(loading).rejects.toMatchObject({ code: 'BUFFER_DETACHED', message: expect.stringContaining('transferred or detached while the model was loading') });
    // Loading from bytes left alone still works.
    const again = await loadModel(new Uint8Array(moved));
    expect(again.inputs[0].name).toBe('x');
    await again.dispose();
  });
});
