/**
 * Small predicted outputs share pooled blocks (src/runtime/io-plan.ts OutputPool): views of an
 * 8 KiB ArrayBuffer, 16-byte aligned, below half a block; larger outputs get memory of their own.
 * The blocks cannot be detached (other requests' runs may still be writing into them), and
 * neighbouring views never spill into each other, whichever path wrote them (executor, batch
 * scatter, inferSync). On a Node where an untransferable buffer can still be detached (Node 20
 * and 22: web byte streams; 22: ArrayBuffer.prototype.transfer()), there is no pool: every output
 * has its own ArrayBuffer. Outputs of at most 64 bytes are copies of their own on every Node
 * (ORT writes them into an internal block that no caller ever sees).
 */
import { markAsUntransferable } from 'node:worker_threads';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel, Tensor, type Model } from '../../src';
import { HEAP_COPY_BYTES, OutputPool } from '../../src/runtime/io-plan';
import { f32, maxAbsDiff, model } from '../helpers';

const BLOCK = 8 * 1024;
// What this Node allows, found out here independently of the pool's own probe: a marked buffer
// detached by transfer() (Node 22) or by a byte stream it is enqueued into (Node 20 and 22).
const detachedBy = (attempt: (b: ArrayBuffer) => unknown): boolean => {
  const b = new ArrayBuffer(8);
  markAsUntransferable(b);
  try {
    attempt(b);
  } catch {
    // refused
  }
  return b.byteLength === 0;
};
const detachable =
  detachedBy((b) => (b as unknown as { transfer?: () => ArrayBuffer }).transfer?.call(b)) ||
  detachedBy((b) => new ReadableStream({ type: 'bytes', start: (c) => c.enqueue(new Uint8Array(b)) }));
const pooled = !detachable;
const x = (rows: number, seed: number): Tensor => new Tensor('float32', Float32Array.from({ length: rows * 64 }, (_, i) => Math.sin(i * 0.11 + seed)), [rows, 64]);

let plain: Model;
let batched: Model;

beforeAll(async () => {
  plain = await loadModel(model('mlp_tiny.onnx'));
  batched = await loadModel(model('mlp_tiny.onnx'), { batching: { maxBatchSize: 64, maxQueueDelayMicros: 2000 } });
});

afterAll(async () => {
  await plain?.dispose();
  await batched?.dispose();
});

describe('pooled outputs', () => {
  it('is used exactly where pooled blocks cannot be detached', () => {
    expect(OutputPool.LIMIT).toBe(pooled ? BLOCK / 2 : 0);
  });

  it.runIf(!pooled)('gives every output its own ArrayBuffer where a block could be detached', async () => {
    for (const rows of [1, 2, 50]) {
      const d = f32((await plain.infer({ x: x(rows, 1) })).y);
      expect(d.byteOffset).toBe(0);
      expect(d.buffer.byteLength).toBe(rows * 40);
    }
  });

  it(`gives outputs of at most ${HEAP_COPY_BYTES} bytes a copy of their own on every Node, whatever path wrote them`, async () => {
    // ORT writes them into an internal block; the caller gets `slice()` of it: memory of its own,
    // which can be transferred without touching any other result.
    expect(HEAP_COPY_BYTES).toBe(64);
    const want = (seed: number) => f32(plain.inferSync({ x: x(1, seed) }).y);
    const outs = [
      f32((await plain.infer({ x: x(1, 11) })).y),
      f32(plain.inferSync({ x: x(1, 12) }).y),
      ...(await Promise.all([13, 14, 15].map((k) => batched.infer({ x: x(1, k) })))).map((o) => f32(o.y)),
    ];
    for (const d of outs) {
      expect(d.length).toBe(10);
      expect(d.byteOffset).toBe(0);
      expect(d.buffer.byteLength).toBe(40);
    }
    const before = outs.map((d) => Array.from(d));
    const own = outs[0].buffer as ArrayBuffer;
    const moved = structuredClone(own, { transfer: [own] });
    expect(outs[0].byteLength).toBe(0);
    expect(Array.from(new Float32Array(moved))).toEqual(before[0]);
    expect(outs.slice(1).map((d) => Array.from(d))).toEqual(before.slice(1));
    expect([11, 12, 13, 14, 15].map((k, i) => maxAbsDiff(new Float32Array(before[i]), want(k)) < 1e-5)).toEqual([true, true, true, true, true]);
    // A supplied output of that size is still written in place and returned as the same object.
    const y = new Tensor('float32', new Float32Array(10), [1, 10]);
    const out = await plain.infer({ x: x(1, 16) }, { outputs: { y } });
    expect(out.y).toBe(y);
    expect(maxAbsDiff(f32(y), want(16))).toBeLessThan(1e-5);
  });

  it.runIf(pooled)('gives small outputs aligned, non-overlapping views of shared 8 KiB blocks', async () => {
    const outs = [await plain.infer({ x: x(2, 1) }), plain.inferSync({ x: x(3, 2) }), await plain.infer({ x: x(2, 3) })].map((o) => f32(o.y));
    expect(outs.map((d) => d.length)).toEqual([20, 30, 20]);
    for (const d of outs) {
      expect(d.buffer.byteLength).toBe(BLOCK);
      expect(d.byteOffset % 16).toBe(0);
    }
    // Views of one block never overlap.
    for (let i = 0; i < outs.length; i++) {
      for (let j = i + 1; j < outs.length; j++) {
        const [a, b] = [outs[i], outs[j]];
        if (a.buffer !== b.buffer) continue;
        expect(a.byteOffset + a.byteLength <= b.byteOffset || b.byteOffset + b.byteLength <= a.byteOffset).toBe(true);
      }
    }
    // Consecutive small outputs come from the same block until it is full.
    expect(outs[1].buffer).toBe(outs[0].buffer);
  });

  it.runIf(pooled)('gives outputs of half a block or more memory of their own', async () => {
    // 102 rows × 10 float32 = 4,080 B (pooled); 103 rows = 4,120 B (its own ArrayBuffer).
    const small = f32((await plain.infer({ x: x(102, 4) })).y);
    const large = f32((await plain.infer({ x: x(103, 5) })).y);
    expect(small.buffer.byteLength).toBe(BLOCK);
    expect(large.byteOffset).toBe(0);
    expect(large.buffer.byteLength).toBe(103 * 10 * 4);
  });

  it.runIf(pooled)('refuses to detach a pooled block: other outputs in it keep their values', async () => {
    let a = f32((await plain.infer({ x: x(2, 6) })).y);
    let b = f32((await plain.infer({ x: x(2, 7) })).y);
    if (b.buffer !== a.buffer) [a, b] = [b, f32((await plain.infer({ x: x(2, 8) })).y)]; // a block ended between them
    expect(b.buffer).toBe(a.buffer);
    const before = Array.from(a);
    const buf = b.buffer as ArrayBuffer;
    // Refused (DataCloneError) where the pool is used.
    try {
      structuredClone(buf, { transfer: [buf] });
    } catch (err) {
      expect((err as Error).name).toBe('DataCloneError');
    }
    const transfer = (buf as unknown as { transfer?: () => ArrayBuffer }).transfer;
    if (typeof transfer === 'function') expect(() => transfer.call(buf)).toThrow(TypeError);
    // A byte stream transfers what is enqueued into it: refused for a pooled block.
    expect(() => new ReadableStream({ type: 'bytes', start: (c) => c.enqueue(b) })).toThrow(TypeError);
    expect(buf.byteLength).toBe(BLOCK);
    expect(Array.from(a)).toEqual(before);
  });

  it('keeps every request of concurrent batches to its own rows', async () => {
    const n = 300;
    const feeds = Array.from({ length: n }, (_, k) => x(1 + (k % 3), 100 + k));
    const results = await Promise.all(feeds.map((f) => batched.infer({ x: f })));
    expect(batched.stats().batches).toBeLessThan(n); // they did share batches
    for (let k = 0; k < n; k++) {
      const want = f32(plain.inferSync({ x: feeds[k] }).y);
      const got = f32(results[k].y);
      expect(got.length).toBe(want.length);
      expect(maxAbsDiff(got, want)).toBeLessThan(1e-5);
    }
  });
});
