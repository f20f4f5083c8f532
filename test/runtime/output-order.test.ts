/**
 * The order a request names its outputs in (options.outputs as an array or an object) does not
 * change which requests it batches with: the fetched outputs go to the addon in model order (the
 * batch key holds them), and the result object keeps the caller's order. two_inputs: a, b
 * float32 [batch, 4] → sum, prod. Behaviour only.
 */
import { describe, expect, it } from 'vitest';
import { loadModel, Tensor } from '../../src';
import { model } from '../helpers';

const t = (v: number) => new Tensor('float32', new Float32Array(4).fill(v), [1, 4]);
const values = (x: Tensor) => Array.from(x.data as Float32Array);

describe('options.outputs in any order', () => {
  it('requests naming the same outputs in different orders share one batch; results keep each caller\'s order', async () => {
    const m = await loadModel(model('two_inputs.onnx'), { batching: { maxBatchSize: 4, maxQueueDelayMicros: 2_000_000, adaptive: false } });
    try {
      const own = new Tensor('float32', new Float32Array(4), [1, 4]);
      const [r1, r2, r3, r4] = await Promise.all([
        m.infer({ a: t(1), b: t(2) }, { outputs: ['prod', 'sum'] }),
        m.infer({ a: t(3), b: t(4) }, { outputs: ['sum', 'prod'] }),
        m.infer({ a: t(5), b: t(6) }, { outputs: { prod: own, sum: null } }),
        m.infer({ a: t(7), b: t(8) }), // every output, model order: the fourth row fills the batch
      ]);
      expect(m.stats().batchSizeHistogram).toEqual({ 4: 1 });
      expect(Object.keys(r1)).toEqual(['prod', 'sum']);
      expect(Object.keys(r2)).toEqual(['sum', 'prod']);
      expect(Object.keys(r3)).toEqual(['prod', 'sum']);
      expect([values(r1.prod), values(r1.sum)]).toEqual([[2, 2, 2, 2], [3, 3, 3, 3]]);
      expect([values(r2.sum), values(r2.prod)]).toEqual([[7, 7, 7, 7], [12, 12, 12, 12]]);
      expect(r3.prod).toBe(own); // the supplied buffer, written in place
      expect([values(own), values(r3.sum)]).toEqual([[30, 30, 30, 30], [11, 11, 11, 11]]);
      expect([values(r4.sum), values(r4.prod)]).toEqual([[15, 15, 15, 15], [56, 56, 56, 56]]);
    } finally {
      await m.dispose();
    }
  });

  it('device-resident results in the caller\'s order too', async () => {
    const m = await loadModel(model('two_inputs.onnx'), { batching: { maxBatchSize: 2, maxQueueDelayMicros: 2_000_000, adaptive: false } });
    try {
      const [d1, d2] = await Promise.all([
        m.infer({ a: t(1), b: t(2) }, { outputs: ['prod', 'sum'], outputLocation: 'device' }),
        m.infer({ a: t(3), b: t(4) }, { outputs: ['sum', 'prod'], outputLocation: 'device' }),
      ]);
      expect(m.stats().batchSizeHistogram).toEqual({ 2: 1 });
      expect(Object.keys(d1)).toEqual(['prod', 'sum']);
      expect(values(await d1.prod.download())).toEqual([2, 2, 2, 2]);
      expect(values(await d2.sum.download())).toEqual([7, 7, 7, 7]);
    } finally {
      await m.dispose();
    }
  });
});
