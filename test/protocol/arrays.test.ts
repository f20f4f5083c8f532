/**
 * requestArray (src/protocol/arrays.ts): a request's small typed arrays are views of shared,
 * zero-filled, untransferable blocks on the event loop; large ones, and any made in a worker
 * thread, have an ArrayBuffer of their own. Decoding goes through it (request.ts, infer-json.ts),
 * so these check what a decoded request holds too: each request's values are its own, and a
 * later request never writes over an earlier one's.
 */
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { requestArray } from '../../src/protocol/arrays';
import { parseInferJson } from '../../src/protocol/infer-json';
import { decodeInferRequest, type WireModel } from '../../src/protocol/request';
import { OutputPool } from '../../src/runtime/io-plan';

const BLOCK = OutputPool.BLOCK_BYTES;
const model: WireModel = { inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 64] }], outputs: [], batched: true };
const body = (values: number[]) => Buffer.from(JSON.stringify({ inputs: [{ name: 'x', shape: [1, values.length], datatype: 'FP32', data: values }] }));

describe('requestArray', () => {
  it('gives small arrays as zero-filled views of one shared block, each in its own bytes', () => {
    const a = requestArray<Float32Array>(Float32Array, 64);
    const b = requestArray<Float64Array>(Float64Array, 3);
    const c = requestArray<Uint8Array>(Uint8Array, 5);
    for (const v of [a, b, c]) {
      expect(v.buffer.byteLength).toBe(BLOCK);
      expect([...v].every((x) => x === 0)).toBe(true);
    }
    expect(a).toBeInstanceOf(Float32Array);
    expect(b).toBeInstanceOf(Float64Array);
    expect(a.length).toBe(64);
    expect(b.length).toBe(3);
    expect(b.byteOffset % 8).toBe(0);
    // Consecutive arrays come from one block without overlapping.
    const spans = [a, b, c].filter((v) => v.buffer === a.buffer).map((v) => [v.byteOffset, v.byteOffset + v.byteLength]);
    spans.sort((x, y) => x[0] - y[0]);
    for (let i = 1; i < spans.length; i++) expect(spans[i][0]).toBeGreaterThanOrEqual(spans[i - 1][1]);
    a.fill(7);
    b.fill(8);
    expect([...c]).toEqual([0, 0, 0, 0, 0]);
  });

  it('gives an array of half a block or more an ArrayBuffer of its own', () => {
    const big = requestArray<Float32Array>(Float32Array, BLOCK / 2 / 4);
    expect(big.buffer.byteLength).toBe(BLOCK / 2);
    expect(big.byteOffset).toBe(0);
    const empty = requestArray<Float32Array>(Float32Array, 0);
    expect(empty.length).toBe(0);
  });

  it('refuses to let a block be transferred (no caller can move the memory of another request)', () => {
    const a = requestArray<Float32Array>(Float32Array, 4);
    try {
      const buffer = a.buffer as ArrayBuffer;
      structuredClone(buffer, { transfer: [buffer] });
    } catch {
      // Refused (Node 21 and later); Node 20 copies instead.
    }
    expect(a.buffer.byteLength).toBe(BLOCK);
  });

  it('gives a worker thread arrays of their own (the JSON decode worker transfers them)', async () => {
    // The compiled module: the worker runs plain Node.
    const dist = path.join(__dirname, '..', '..', 'dist', 'protocol', 'arrays.js');
    const w = new Worker(`const { requestArray } = require(${JSON.stringify(dist)}); const a = requestArray(Float32Array, 4); require('node:worker_threads').parentPort.postMessage(a.buffer.byteLength, []);`, { eval: true });
    const got = await new Promise((resolve, reject) => {
      w.once('message', resolve);
      w.once('error', reject);
    });
    await w.terminate();
    expect(got).toBe(16);
  });
});

describe('decoded requests', () => {
  it('keep their own values when later requests are scanned and decoded', () => {
    const first = Array.from({ length: 64 }, (_, i) => i + 0.5);
    const x1 = decodeInferRequest(model, parseInferJson('request body', body(first)), null).feeds.x;
    const parsed2 = parseInferJson('request body', body(first.map((v) => -v)));
    const x2 = decodeInferRequest(model, parsed2, null).feeds.x;
    for (let r = 0; r < 300; r++) decodeInferRequest(model, parseInferJson('request body', body(first.map((v) => v * r))), null);
    expect(Array.from(x1.data as Float32Array)).toEqual(first);
    expect(Array.from(x2.data as Float32Array)).toEqual(first.map((v) => -v));
    expect((x1.data as Float32Array).buffer.byteLength).toBe(BLOCK);
  });

  it('keep the scanned numbers of a body that is decoded after others were scanned', () => {
    const early = parseInferJson('request body', body([1.25, 2.5, 3.75]));
    for (let r = 0; r < 300; r++) parseInferJson('request body', body([r, r, r]));
    const m: WireModel = { inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 3] }], outputs: [], batched: true };
    expect(Array.from(decodeInferRequest(m, early, null).feeds.x.data as Float32Array)).toEqual([1.25, 2.5, 3.75]);
  });
});
