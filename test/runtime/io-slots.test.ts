/**
 * A request's tensors in every form the addon keeps them in (native/run_job.h, IoSlot): an
 * OrtValue (unscheduled runs; scheduled tensors of rank > 8) or a checked view of the caller's
 * memory (scheduled tensors of rank <= 8), and outputs with no buffer (ORT or the batch scatter
 * allocates them). Each route must read inputs and fill outputs alike whatever the form: a batch
 * gathers from and scatters into both forms, a request that runs alone turns views into
 * OrtValues, and a wrong predicted output shape falls back to the copy path in every route.
 *
 * Models are written on the fly (scripts/onnx-writer.js). `zeros` = ConstantOfShape(Shape(x))
 * is declared with last dim 3 while it really has x's last dim 2: ORT's shape inference cannot
 * see through it, so the declaration stands and TypeScript allocates a wrong predicted buffer.
 * `copied` = Identity(x) is declared with last dim 3 too; there ORT's inference disagrees, so the
 * dim is unknown and the output takes the copy path (no buffer at all). Behaviour only.
 */
import { describe, expect, it } from 'vitest';
import { loadModel, NimifyError, Tensor, type LoadOptions } from '../../src';
import { slotModel } from '../helpers';

const { encodeModel } = require('../../scripts/onnx-writer.js') as { encodeModel: (g: unknown) => Buffer };

/** 17 inputs x0..x16 [batch, 1] → 17 outputs y_i = Identity(x_i): more than the addon lays out inline. */
function wideModel(n: number): Buffer {
  const idx = Array.from({ length: n }, (_, i) => i);
  return encodeModel({
    name: 'wide',
    nodes: idx.map((i) => ({ op: 'Identity', inputs: [`x${i}`], outputs: [`y${i}`] })),
    initializers: [],
    inputs: idx.map((i) => ({ name: `x${i}`, dims: ['batch', 1] })),
    outputs: idx.map((i) => ({ name: `y${i}`, dims: ['batch', 1] })),
  });
}

/** `rows` rows of x for a model of `rank`, distinct per `seed`. */
function xOf(rank: number, rows: number, seed: number): Tensor {
  const dims = [rows, ...Array.from({ length: rank - 2 }, () => 1), 2];
  return new Tensor('float32', Float32Array.from({ length: rows * 2 }, (_, i) => seed * 100 + i + 0.5), dims);
}

const valuesOf = (t: Tensor): number[] => Array.from(t.data as Float32Array);

async function rejection(p: Promise<unknown>): Promise<NimifyError> {
  const e = await p.then(
    () => null,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(NimifyError);
  return e as NimifyError;
}

/** What every route must return for x: `same` and `copied` equal x, `zeros` has x's dims. */
function expectResult(out: Record<string, Tensor>, x: Tensor): void {
  expect(out.same.dims).toEqual(x.dims);
  expect(valuesOf(out.same)).toEqual(valuesOf(x));
  expect(out.copied.dims).toEqual(x.dims);
  expect(valuesOf(out.copied)).toEqual(valuesOf(x));
  expect(out.zeros.dims).toEqual(x.dims);
  expect(valuesOf(out.zeros)).toEqual(new Array(x.dims[0] * 2).fill(0));
}

// Rank 2: scheduled tensors are views; rank 9: OrtValues even when scheduled.
describe.each([2, 9])('tensors of rank %i', (rank) => {
  it('are gathered into a batch and scattered back (in place, copied, and after a wrong predicted shape)', async () => {
    const rows = [1, 2, 1, 3];
    const total = rows.reduce((a, b) => a + b, 0);
    // Full at exactly `total` rows: the batch runs when the last request arrives, never on a timer.
    const m = await loadModel(slotModel(rank), { batching: { maxBatchSize: total, maxQueueDelayMicros: 60_000_000, adaptive: false } });
    const xs = rows.map((r, i) => xOf(rank, r, i + 1));
    const outs = await Promise.all(xs.map((x) => m.infer({ x })));
    outs.forEach((out, i) => expectResult(out, xs[i]));
    const s = m.stats();
    expect(s.batchSizeHistogram).toEqual({ [total]: 1 });
    expect(s.runs).toBe(1);
    // Every request's `zeros` had a wrong predicted buffer; `copied` and the replacements for
    // `zeros` were allocated by the scatter and copied to JS.
    expect(s.shapeFallbacks).toBe(rows.length);
    expect(s.outputsCopied).toBe(2 * rows.length);
    expect(s.outputsZeroCopy).toBe(0); // scattered, not written in place by ORT
    expect(s.bytesGathered).toBe(total * 2 * 4);
    expect(s.bytesScattered).toBe(3 * total * 2 * 4);
    expect(s.failed).toBe(0);
    await m.dispose();
  });

  it('fails only the request whose supplied output buffer does not fit its rows, and writes the others in place', async () => {
    const m = await loadModel(slotModel(rank), { batching: { maxBatchSize: 5, maxQueueDelayMicros: 60_000_000, adaptive: false } });
    const a = xOf(rank, 2, 1);
    const b = xOf(rank, 1, 2);
    const c = xOf(rank, 2, 3);
    const own = new Tensor('float32', new Float32Array(4).fill(-1), a.dims);
    const tooBig = new Tensor('float32', new Float32Array(4), xOf(rank, 2, 0).dims); // b has 1 row
    const [ra, rb, rc] = [
      m.infer({ x: a }, { outputs: { same: own } }),
      m.infer({ x: b }, { outputs: { same: tooBig } }),
      m.infer({ x: c }, { outputs: { same: null } }),
    ];
    const outA = await ra;
    expect(outA.same).toBe(own);
    expect(valuesOf(own)).toEqual(valuesOf(a));
    const e = await rejection(rb);
    expect(e.code).toBe('INVALID_ARGUMENT');
    expect(e.message).toMatch(/output 'same': the supplied buffer does not match the result's shape/);
    expect(valuesOf(tooBig)).toEqual([0, 0, 0, 0]);
    const outC = await rc;
    expect(outC.same.dims).toEqual(c.dims);
    expect(valuesOf(outC.same)).toEqual(valuesOf(c));
    expect(m.stats()).toMatchObject({ runs: 1, batches: 1, failed: 1, succeeded: 2, shapeFallbacks: 0 });
    await m.dispose();
  });

  it('run the same in every route that runs a request alone', async () => {
    const routes: [string, LoadOptions, boolean][] = [
      ['unscheduled, inferSync', {}, true],
      ['unscheduled, infer', {}, false],
      // Two instances and no batching: scheduled requests that always run alone (views are
      // turned into OrtValues on the instance thread).
      ['scheduled alone', { instances: 2 }, false],
    ];
    for (const [route, options, sync] of routes) {
      const m = await loadModel(slotModel(rank), options);
      const x = xOf(rank, 3, 4);
      const out = sync ? m.inferSync({ x }) : await m.infer({ x });
      expectResult(out, x);
      // The wrong predicted `zeros` made the run fail once; the retry let ORT allocate every
      // predicted output (`same` too), so all three were copied to JS.
      expect(m.stats(), route).toMatchObject({ runs: 1, shapeFallbacks: 1, outputsCopied: 3, outputsZeroCopy: 0 });
      // A buffer that fits is written in place by ORT (zero-copy) whatever the route.
      const own = new Tensor('float32', new Float32Array(6), x.dims);
      const only = sync ? m.inferSync({ x }, { outputs: { same: own } }) : await m.infer({ x }, { outputs: { same: own } });
      expect(only.same, route).toBe(own);
      expect(valuesOf(own), route).toEqual(valuesOf(x));
      expect(m.stats().outputsZeroCopy, route).toBe(0); // supplied by the caller: not a prediction
      await m.dispose();
    }
  });
});

describe('a model with more inputs and outputs than the addon lays out inline', () => {
  it('gets every input to its output in every route', async () => {
    const n = 17;
    const bytes = wideModel(n);
    const feeds = (rows: number, seed: number): Record<string, Tensor> =>
      Object.fromEntries(Array.from({ length: n }, (_, i) => [`x${i}`, new Tensor('float32', Float32Array.from({ length: rows }, (_, r) => seed * 1000 + i * 10 + r), [rows, 1])]));
    const check = (out: Record<string, Tensor>, f: Record<string, Tensor>, route: string): void => {
      for (let i = 0; i < n; i++) {
        expect(out[`y${i}`].dims, route).toEqual(f[`x${i}`].dims);
        expect(valuesOf(out[`y${i}`]), route).toEqual(valuesOf(f[`x${i}`]));
      }
    };
    const plain = await loadModel(bytes);
    const f1 = feeds(2, 1);
    check(plain.inferSync(f1), f1, 'inferSync');
    check(await plain.infer(f1), f1, 'infer');
    const alone = await loadModel(bytes, { instances: 2 });
    check(await alone.infer(f1), f1, 'scheduled alone');
    const batched = await loadModel(bytes, { batching: { maxBatchSize: 3, maxQueueDelayMicros: 60_000_000, adaptive: false } });
    const f2 = feeds(1, 2);
    const [o1, o2] = await Promise.all([batched.infer(f1), batched.infer(f2)]);
    check(o1, f1, 'batched');
    check(o2, f2, 'batched');
    expect(batched.stats().batchSizeHistogram).toEqual({ 3: 1 });
    for (const m of [plain, alone, batched]) await m.dispose();
  });
});
