// batching.padToPreferred (issue 15 item 3: the batcher pads to a preferred batch size so CUDA
// graphs and TensorRT profiles see only those shapes). The model reports the batch size it was
// run with: y = x + (rows × 2) where rows is dim 0 of the tensor the model actually received, so
// a padded run is visible in every request's result, and padding rows never reach a caller.
import { describe, expect, it } from 'vitest';
import { loadModel, NimifyError, Tensor, type LoadOptions } from '../../src';

const { encodeModel } = require('../../scripts/onnx-writer.js') as { encodeModel: (g: unknown) => Buffer };

/** x float32 [batch, 2] → y = x + ReduceSum(ones like x): x + 2 × (the rows the model saw). */
const sizeModel = encodeModel({
  name: 'sees_batch_size',
  nodes: [
    { op: 'Shape', inputs: ['x'], outputs: ['shape'] },
    { op: 'ConstantOfShape', inputs: ['shape'], outputs: ['zeros'] },
    { op: 'Add', inputs: ['zeros', 'one'], outputs: ['ones'] },
    { op: 'ReduceSum', inputs: ['ones'], outputs: ['count'] },
    { op: 'Add', inputs: ['x', 'count'], outputs: ['y'] },
  ],
  initializers: [{ name: 'one', dims: [1], data: new Float32Array([1]) }],
  inputs: [{ name: 'x', dims: ['batch', 2] }],
  outputs: [{ name: 'y', dims: ['batch', 2] }],
});

const x = (rows: number, seed: number) => new Tensor('float32', Float32Array.from({ length: rows * 2 }, (_, i) => seed * 10 + i), [rows, 2]);
/** What the model returns for `input` when it ran a batch of `seenRows`. */
const expected = (input: Tensor, seenRows: number) => Array.from(input.data as Float32Array, (v) => v + 2 * seenRows);
const values = (t: Tensor) => Array.from(t.data as Float32Array);

// A long fixed delay and no adaptive tuning: requests of one tick always form one batch, which
// runs when the delay is over (no preferred size is reached).
const batching = (extra: object) => ({ maxBatchSize: 8, preferredBatchSizes: [4, 8], adaptive: false, maxQueueDelayMicros: 500_000, ...extra }) as LoadOptions['batching'];

describe('batching.padToPreferred', () => {
  it('pads a batch of 3 to 4 rows and a lone request to 4; callers get only their own rows', async () => {
    const m = await loadModel(new Uint8Array(sizeModel), { batching: batching({ padToPreferred: true }) });
    try {
      const inputs = [x(1, 1), x(1, 2), x(1, 3)];
      const outs = await Promise.all(inputs.map((t) => m.infer({ x: t })));
      outs.forEach((o, i) => {
        expect(o.y!.dims).toEqual([1, 2]);
        expect(values(o.y!)).toEqual(expected(inputs[i]!, 4));
      });
      const lone = x(1, 9);
      expect(values((await m.infer({ x: lone })).y!)).toEqual(expected(lone, 4));
      const s = m.stats();
      expect(s.batchSizeHistogram).toEqual({ 1: 1, 3: 1 });
      expect(s.paddingRows).toBe(1 + 3);
      // 5 rows: past the preferred 4, padded to the next one (8).
      const five = x(5, 4);
      const r = await m.infer({ x: five });
      expect(r.y!.dims).toEqual([5, 2]);
      expect(values(r.y!)).toEqual(expected(five, 8));
      expect(m.stats().paddingRows).toBe(4 + 3);
    } finally {
      await m.dispose();
    }
  });

  it('without it the model sees the batch as formed (the control), and rows past every preferred size pad to maxBatchSize', async () => {
    const plain = await loadModel(new Uint8Array(sizeModel), { batching: batching({}) });
    const inputs = [x(1, 1), x(1, 2), x(1, 3)];
    const outs = await Promise.all(inputs.map((t) => plain.infer({ x: t })));
    outs.forEach((o, i) => expect(values(o.y!)).toEqual(expected(inputs[i]!, 3)));
    expect(plain.stats().paddingRows).toBe(0);
    await plain.dispose();

    const m = await loadModel(new Uint8Array(sizeModel), { batching: { maxBatchSize: 6, preferredBatchSizes: [2], adaptive: false, maxQueueDelayMicros: 500_000, padToPreferred: true } });
    const three = x(3, 5);
    expect(values((await m.infer({ x: three })).y!)).toEqual(expected(three, 6));
    await m.dispose();
  });

  it('is validated', async () => {
    await expect(loadModel(new Uint8Array(sizeModel), { batching: { padToPreferred: 'yes' } } as never)).rejects.toThrow(NimifyError);
    await expect(loadModel(new Uint8Array(sizeModel), { batching: { padToPreferred: 'yes' } } as never)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/options\.batching\.padToPreferred: expected true or false/) });
  });
});
