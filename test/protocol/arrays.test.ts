/**
 * requestArray (src/protocol/arrays.ts): a request's small typed arrays are views of shared,
 * zero-filled, untransferable blocks on the event loop; large ones, and any made in a worker
 * thread, have an ArrayBuffer of their own. The scanner's numbers always go through it; decoded
 * inputs only for the server's routes and only when infer() copies them, so no run reads a
 * block. These check what a decoded request holds too: each request's values are its own, a later
 * request never writes over an earlier one's, and a detached block (Node 20/22 allow it through a
 * byte stream) changes no result and fails what is decoded from it afterwards as malformed.
 */
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { copiedAtInfer, requestArray } from '../../src/protocol/arrays';
import { parseInferJson } from '../../src/protocol/infer-json';
import { decodeInferRequest, type WireModel } from '../../src/protocol/request';
import { loadModel, Tensor } from '../../src/index';
import { addonIfLoadable } from '../../src/runtime/binding';
import { OutputPool } from '../../src/runtime/io-plan';
import { MODELS } from '../helpers';

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

  it('marks blocks untransferable: a transfer list leaves a block attached (byte streams can still detach one on Node 20 and 22: below)', () => {
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

/** Detaches `buffer` where Node allows it for an untransferable one (a web byte stream: Node 20 and 22); a no-op on Node 24. */
function tryDetach(buffer: ArrayBuffer): void {
  try {
    new ReadableStream({ type: 'bytes', start: (c) => c.enqueue(new Uint8Array(buffer)) });
  } catch {
    // Refused (Node 24): the block stays attached.
  }
}

describe('decoded requests', () => {
  it('get arrays of their own from the public codec, shared ones only when the server asks and infer() copies them', () => {
    const values = Array.from({ length: 64 }, (_, i) => i + 0.5);
    const own = decodeInferRequest(model, parseInferJson('request body', body(values)), null).feeds.x.data as Float32Array;
    expect(own.buffer.byteLength).toBe(256);
    const shared = decodeInferRequest(model, parseInferJson('request body', body(values)), null, false, true).feeds.x.data as Float32Array;
    expect(shared.buffer.byteLength).toBe(BLOCK);
    expect(Array.from(shared)).toEqual(values);
    // 600 floats (2,400 bytes): more than infer() copies, so the model would read the array itself.
    const big: WireModel = { inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 600] }], outputs: [], batched: true };
    const wide = Array.from({ length: 600 }, (_, i) => i);
    const x = decodeInferRequest(big, parseInferJson('request body', body(wide)), null, false, true).feeds.x.data as Float32Array;
    expect(x.buffer.byteLength).toBe(2400);
    // Two inputs that fit one by one but not together.
    const two: WireModel = { inputs: [{ name: 'a', datatype: 'FP32', shape: [-1, 300] }, { name: 'b', datatype: 'FP32', shape: [-1, 300] }], outputs: [], batched: true };
    const pair = (n: number) => ({ inputs: ['a', 'b'].map((name) => ({ name, datatype: 'FP32', shape: [1, n], data: Array.from({ length: n }, (_, i) => i) })) });
    const d = decodeInferRequest(two, pair(300), null, false, true).feeds;
    expect((d.a.data as Float32Array).buffer.byteLength).toBe(1200);
    expect((d.b.data as Float32Array).buffer.byteLength).toBe(1200);
  });

  it('counts what infer() copies as the addon does: each input rounded up to its alignment, at most ownedInputBytes in all', () => {
    const addon = addonIfLoadable()!;
    expect(addon.ownedInputBytes).toBe(2048);
    expect(addon.ownedInputAlign).toBe(64);
    expect(copiedAtInfer([2048])).toBe(true);
    expect(copiedAtInfer([2049])).toBe(false);
    expect(copiedAtInfer([1984, 64])).toBe(true);
    expect(copiedAtInfer([1, 1985])).toBe(false);
    expect(copiedAtInfer([])).toBe(true);
  });

  it('keep their own values when later requests are scanned and decoded', () => {
    const first = Array.from({ length: 64 }, (_, i) => i + 0.5);
    const x1 = decodeInferRequest(model, parseInferJson('request body', body(first)), null, false, true).feeds.x;
    const parsed2 = parseInferJson('request body', body(first.map((v) => -v)));
    const x2 = decodeInferRequest(model, parsed2, null, false, true).feeds.x;
    for (let r = 0; r < 300; r++) decodeInferRequest(model, parseInferJson('request body', body(first.map((v) => v * r))), null, false, true);
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

  it('run on what infer() copied: a shared block detached while the run is pending changes nothing', async () => {
    const m = await loadModel(path.join(MODELS, 'mlp_tiny.onnx'));
    try {
      const values = Array.from({ length: 64 }, (_, i) => Math.sin(i));
      const expected = (await m.infer({ x: new Tensor('float32', Float32Array.from(values), [1, 64]) })).y.data;
      for (let r = 0; r < 20; r++) {
        const feeds = decodeInferRequest(model, parseInferJson('request body', body(values)), null, false, true).feeds;
        const data = feeds.x.data as Float32Array;
        expect(data.buffer.byteLength).toBe(BLOCK);
        const pending = m.infer(feeds);
        tryDetach(data.buffer as ArrayBuffer);
        expect((await pending).y.data).toEqual(expected);
      }
    } finally {
      await m.dispose();
    }
  });

  it('fail as malformed, not with another request\'s memory, when their block was detached before decoding', () => {
    const parsed = parseInferJson('request body', body(Array.from({ length: 64 }, (_, i) => i)));
    const numbers = (parsed as { inputs: { data: { values: Float64Array } }[] }).inputs[0].data.values;
    expect(numbers.buffer.byteLength).toBe(BLOCK);
    tryDetach(numbers.buffer as ArrayBuffer);
    if (numbers.buffer.byteLength !== 0) return; // Node 24: untransferable blocks cannot be detached at all
    expect(() => decodeInferRequest(model, parsed, null, false, true)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('needs 64 elements, received 0') }));
  });
});
