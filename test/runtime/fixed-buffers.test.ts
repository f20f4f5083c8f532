/**
 * Fixed buffers (issue 15 item 3, CUDA graphs): a model whose provider replays CUDA graphs runs
 * every batch on device tensors allocated once per batch size — the addresses a captured graph
 * replays on — uploading the gathered batch into them and downloading the results out of them
 * (native/instance.cc ExecuteFixed). No GPU here: NIMIFY_IO_BINDING=fixed (read at load) runs
 * the same path on a CPU model, where "device" memory is host memory. What is checked: results
 * equal the default path's whatever the batch size, padding and reuse of a size's buffers by
 * later batches (no stale rows of an earlier batch leak into a result, and a device-resident
 * result does not change when the next batch overwrites the buffers); the load refuses models
 * and options the path cannot serve, naming why; requests that cannot be gathered fail alone.
 * Behaviour only, never timings.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DeviceTensor, loadModel, NimifyError, Tensor, type LoadOptions, type Model } from '../../src';
import { model, unaryModel, withIoBinding } from '../helpers';

const MLP = model('mlp_tiny.onnx'); // x float32 [batch, 64] → y float32 [batch, 10]
const { encodeModel } = require('../../scripts/onnx-writer.js') as { encodeModel: (g: unknown) => Buffer };
/** pass: x float32 [batch, 64] → y = x: makes DeviceTensors that fit MLP's input. */
const PASS = unaryModel('pass', 'Identity', ['batch', 64], ['batch', 64]);

const loadFixed = (source: string | Uint8Array, options?: LoadOptions, knob = 'fixed'): Promise<Model> => withIoBinding(knob, () => loadModel(source, options));

const rows = (n: number, seed: number) => new Tensor('float32', Float32Array.from({ length: 64 * n }, (_, i) => Math.sin(i * 0.37 + seed * 1.9)), [n, 64]);

let ref: Model;
beforeAll(async () => {
  ref = await loadModel(MLP);
});
afterAll(async () => {
  await ref.dispose();
});

/** y of `x` run alone on the default path (compared with a tolerance: a batch's GEMM may round differently). */
function expected(x: Tensor): Float32Array {
  return ref.inferSync({ x }).y.data as Float32Array;
}

function expectClose(got: ArrayLike<number>, want: ArrayLike<number>, what: string): void {
  expect(got.length, what).toBe(want.length);
  for (let i = 0; i < want.length; i++) {
    if (Math.abs(got[i] - want[i]) > 1e-5 * (1 + Math.abs(want[i]))) {
      throw new Error(`${what}: element ${i} is ${got[i]}, expected ${want[i]}`);
    }
  }
}

describe('fixed buffers (NIMIFY_IO_BINDING=fixed, the CUDA-graph path on the CPU)', () => {
  it('batches of every size give the default path\'s results; a size\'s buffers are reused without stale rows', async () => {
    const m = await loadFixed(MLP, { batching: { maxBatchSize: 8, maxQueueDelayMicros: 20_000, adaptive: false } });
    try {
      // Round 1 fills the size-5 buffers with one set of rows; round 2 runs size 5 again with
      // other rows, then size 2: each result must be its own rows' result.
      for (const [round, sizes] of [[1, [1, 1, 2, 1]], [2, [2, 1, 1, 1]], [3, [1, 1]], [4, [3, 2, 3]]] as const) {
        const xs = sizes.map((n, k) => rows(n, round * 10 + k));
        const outs = await Promise.all(xs.map((x) => m.infer({ x })));
        xs.forEach((x, k) => expectClose(outs[k].y.data as Float32Array, expected(x), `round ${round} request ${k}`));
      }
      const s = m.stats();
      expect(s.batches).toBeGreaterThanOrEqual(4);
      expect(Object.keys(s.batchSizeHistogram).length).toBeGreaterThan(1); // several sizes, several buffer sets
    } finally {
      await m.dispose();
    }
  });

  it('padding to preferred sizes: padding rows never reach callers, a padded size shares its buffers with full batches', async () => {
    const m = await loadFixed(MLP, { batching: { maxBatchSize: 8, maxQueueDelayMicros: 20_000, adaptive: false, preferredBatchSizes: [4, 8], padToPreferred: true } });
    try {
      for (const sizes of [[1, 2], [4], [1, 1, 1], [2, 2, 2, 2], [3]]) {
        const xs = sizes.map((n, k) => rows(n, sizes.length * 7 + k));
        const outs = await Promise.all(xs.map((x) => m.infer({ x })));
        xs.forEach((x, k) => {
          expect(outs[k].y.dims).toEqual([x.dims[0], 10]);
          expectClose(outs[k].y.data as Float32Array, expected(x), `sizes ${sizes} request ${k}`);
        });
      }
      expect(Object.keys(m.stats().batchSizeHistogram).every((k) => Number(k) <= 8)).toBe(true);
      expect(m.stats().paddingRows).toBeGreaterThan(0);
    } finally {
      await m.dispose();
    }
  });

  it('device-resident results are copies out of the fixed buffers: the next batch of the same size does not change them', async () => {
    const m = await loadFixed(MLP, { batching: { maxBatchSize: 4, maxQueueDelayMicros: 20_000, adaptive: false } });
    try {
      const a = [rows(1, 1), rows(1, 2)];
      const da = await Promise.all(a.map((x) => m.infer({ x }, { outputLocation: 'device' })));
      // Same size again, other rows: overwrites the size-2 buffers.
      const b = [rows(1, 3), rows(1, 4)];
      const hb = await Promise.all(b.map((x) => m.infer({ x })));
      for (let k = 0; k < 2; k++) {
        expect(da[k].y).toBeInstanceOf(DeviceTensor);
        expectClose((await da[k].y.download()).data as Float32Array, expected(a[k]), `device result ${k}`);
        expectClose(hb[k].y.data as Float32Array, expected(b[k]), `host result ${k}`);
      }
      // Supplied output buffers are written in place on this path too.
      const y = new Tensor('float32', new Float32Array(10), [1, 10]);
      const out = await m.infer({ x: rows(1, 5) }, { outputs: { y } });
      expect(out.y).toBe(y);
      expectClose(y.data as Float32Array, expected(rows(1, 5)), 'supplied buffer');
    } finally {
      await m.dispose();
    }
  });

  it('a request that is not gathered (a DeviceTensor feed) runs alone on its size\'s buffers; inputs that disagree on the first dim fail alone', async () => {
    const m = await loadFixed(MLP, { batching: { maxBatchSize: 4, maxQueueDelayMicros: 1000 } });
    const pass = await loadModel(PASS);
    try {
      const x = rows(2, 8);
      const onDevice = (await pass.infer({ x }, { outputLocation: 'device' })).y;
      expect(onDevice.dims).toEqual([2, 64]);
      // Uploaded from where it is into the size-2 buffers (here through the copy session).
      expectClose((await m.infer({ x: onDevice })).y.data as Float32Array, expected(x), 'a DeviceTensor feed');
      const devOut = await m.infer({ x: onDevice }, { outputLocation: 'device' });
      expectClose((await devOut.y.download()).data as Float32Array, expected(x), 'a DeviceTensor feed, device result');
      expectClose((await m.infer({ x: rows(2, 11) })).y.data as Float32Array, expected(rows(2, 11)), 'a gathered batch after it');
    } finally {
      await Promise.all([m.dispose(), pass.dispose()]);
    }
    const two = await loadFixed(model('two_inputs.onnx'), { batching: { maxBatchSize: 4 } });
    try {
      const t = (n: number) => new Tensor('float32', new Float32Array(4 * n).fill(1), [n, 4]);
      await expect(two.infer({ a: t(2), b: t(3) })).rejects.toMatchObject({
        code: 'UNSUPPORTED',
        message: expect.stringMatching(/runs on fixed buffers: the inputs' dynamic first dims must agree and not be 0, but input 'b' is \[3, 4\]/),
      });
      const ok = await two.infer({ a: t(2), b: t(2) });
      expect(Array.from(ok.sum.data as Float32Array)).toEqual(new Array(8).fill(2));
      expect(two.stats()).toMatchObject({ failed: 1, succeeded: 1 });
    } finally {
      await two.dispose();
    }
  });

  it('the load refuses what fixed buffers cannot serve: a dynamic dim besides the first, strings', async () => {
    await expect(loadFixed(model('embed_int64.onnx'), { batching: {} })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: expect.stringMatching(/^NIMIFY_IO_BINDING=fixed run on fixed buffers, which need fixed dims besides the first, but input 'ids' is int64 \[batch, seq\]$/),
    });
    await expect(loadFixed(model('identity_string.onnx'), { batching: {} })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/input 'x' is string/) });
    // Buffers for at most 16 sizes: padding to more is refused at load, not per request.
    const many = { batching: { maxBatchSize: 32, preferredBatchSizes: Array.from({ length: 16 }, (_, i) => i + 1), padToPreferred: true } };
    await expect(loadFixed(MLP, many)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: 'NIMIFY_IO_BINDING=fixed run on fixed buffers, at most 16 batch sizes, but padToPreferred pads to 17 (preferredBatchSizes and maxBatchSize)' });
    await (await loadFixed(MLP, { batching: { ...many.batching, maxBatchSize: 16 } })).dispose();
  });

  it('without batching (and without a batch dim) each request runs alone on the buffers of its size', async () => {
    // No options: the model gets a scheduler of one instance; sizes 1, 3, 1 reuse and add buffers.
    const m = await loadFixed(MLP);
    try {
      for (const n of [1, 3, 1, 3, 2]) {
        const x = rows(n, n * 3);
        expectClose((await m.infer({ x })).y.data as Float32Array, expected(x), `alone, ${n} rows`);
      }
      const y = new Tensor('float32', new Float32Array(20), [2, 10]);
      expect((await m.infer({ x: rows(2, 4) }, { outputs: { y } })).y).toBe(y);
      expectClose(y.data as Float32Array, expected(rows(2, 4)), 'supplied buffer, alone');
      const dev = await m.infer({ x: rows(2, 5) }, { outputLocation: 'device' });
      await m.infer({ x: rows(2, 6) }); // overwrites the size-2 buffers
      expectClose((await dev.y.download()).data as Float32Array, expected(rows(2, 5)), 'device result, alone');
    } finally {
      await m.dispose();
    }
    // A model whose every dim is fixed, so it has no batch dim (the usual CUDA-graph model): its
    // declared shapes, an output's first dim included (y is [3, 2] for x [2, 3]).
    const transpose = unaryModel('static', 'Transpose', [2, 3], [3, 2], { perm: [1, 0] });
    for (const options of [undefined, { batching: {} }, { batching: { maxBatchSize: 4, padToPreferred: true } }] as const) {
      const s = await loadFixed(transpose, options);
      try {
        for (const seed of [1, 2, 3]) {
          const x = new Tensor('float32', Float32Array.from({ length: 6 }, (_, i) => i * seed), [2, 3]);
          const { y } = await s.infer({ x });
          expect(y.dims, JSON.stringify(options)).toEqual([3, 2]);
          expect(Array.from(y.data as Float32Array)).toEqual([0, 3, 1, 4, 2, 5].map((i) => i * seed));
        }
      } finally {
        await s.dispose();
      }
    }
  });

  it('a model on the device path never runs on the JS thread: inlineBelowMicros does not apply (the GPU rule)', async () => {
    const options = { allowSpinning: false, inlineBelowMicros: 1e6, batching: { maxBatchSize: 8 } };
    const inlineBatches = async (m: Model) => {
      try {
        await m.infer({ x: rows(1, 1) }); // measured on the instance thread; inline from here on, if allowed
        await new Promise((r) => setTimeout(r, 50));
        for (let i = 0; i < 4; i++) expectClose((await m.infer({ x: rows(1, i) })).y.data as Float32Array, expected(rows(1, i)), `run ${i}`);
        return m.stats().inlineBatches;
      } finally {
        await m.dispose();
      }
    };
    expect(await inlineBatches(await loadModel(MLP, options))).toBeGreaterThan(0); // the CPU path inlines
    expect(await inlineBatches(await loadFixed(MLP, options, 'always'))).toBe(0);
    expect(await inlineBatches(await loadFixed(MLP, options, 'fixed'))).toBe(0);
    // Nor a model without a scheduler (the executor's lone runs).
    const unscheduled = { allowSpinning: false, inlineBelowMicros: 1e6 };
    expect(await inlineBatches(await loadModel(MLP, unscheduled))).toBeGreaterThan(0);
    expect(await inlineBatches(await loadFixed(MLP, unscheduled, 'always'))).toBe(0);
  });

  it('inferSync() is refused (the runs belong to the scheduler\'s instance); inputs whose first dims are declared may differ', async () => {
    const m = await loadFixed(MLP, { batching: { maxBatchSize: 4 } });
    try {
      expect(() => m.inferSync({ x: rows(1, 1) })).toThrow(/^inferSync\(\): this model runs on fixed buffers, owned by its scheduler's thread: use infer\(\)$/);
    } finally {
      await m.dispose();
    }
    // a [3, 4] and b [5, 4], every dim declared: one set of buffers of the declared shapes.
    const pair = encodeModel({
      name: 'pair',
      nodes: [
        { op: 'ReduceSum', inputs: ['a'], outputs: ['sa'], attrs: { keepdims: 1 } },
        { op: 'ReduceSum', inputs: ['b'], outputs: ['sb'], attrs: { keepdims: 1 } },
        { op: 'Add', inputs: ['sa', 'sb'], outputs: ['y'] },
      ],
      initializers: [],
      inputs: [{ name: 'a', dims: [3, 4] }, { name: 'b', dims: [5, 4] }],
      outputs: [{ name: 'y', dims: [1, 1] }],
    });
    const p = await loadFixed(pair);
    try {
      for (const k of [1, 2]) {
        const { y } = await p.infer({ a: new Tensor('float32', new Float32Array(12).fill(k), [3, 4]), b: new Tensor('float32', new Float32Array(20).fill(1), [5, 4]) });
        expect(Array.from(y.data as Float32Array)).toEqual([12 * k + 20]);
      }
    } finally {
      await p.dispose();
    }
    // An output whose dynamic first dim no input's first dim names cannot be sized before a lone run.
    const renamed = unaryModel('renamed', 'Identity', ['n', 4], ['m', 4]);
    await expect(loadFixed(renamed)).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: "NIMIFY_IO_BINDING=fixed run on fixed buffers, but output 'y' has a first dim (m) that no input's first dim names, so its size is not known before the run",
    });
  });

  it('NIMIFY_IO_BINDING takes always, fixed or nothing; anything else fails the load naming it', async () => {
    await expect(loadFixed(MLP, undefined, 'yes')).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: "NIMIFY_IO_BINDING: expected one of 'always', 'fixed', received the string \"yes\"" });
    const m = await loadFixed(MLP, undefined, '');
    expectClose(m.inferSync({ x: rows(1, 3) }).y.data as Float32Array, expected(rows(1, 3)), 'unset');
    await m.dispose();
  });
});
