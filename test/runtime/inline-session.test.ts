// The single-threaded session that runs on the JS thread use (native/session_core.h
// SessionCore::inline_session, made by the load: session.cc InlineSessionWanted): when it is
// made, that inline runs and inline batches go through it with the results of the model's own
// session, and when it is not.
import { describe, expect, it } from 'vitest';
import { loadModel, Tensor } from '../../src';
import { model } from '../helpers';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { encodeModel, mlp } = require('../../scripts/onnx-writer') as {
  encodeModel: (g: unknown) => Buffer;
  mlp: (name: string, sizes: number[], seed?: number) => unknown;
};

const x1 = (seed: number) => new Tensor('float32', Float32Array.from({ length: 64 }, (_, i) => Math.sin(i * 0.37 + seed)), [1, 64]);

describe('the inline session', () => {
  it('a small CPU model gets one by default, with or without batching, loaded from a path or from bytes', async () => {
    const bytes = encodeModel(mlp('small', [64, 32, 10], 3));
    for (const [source, options] of [
      [model('mlp_tiny.onnx'), {}],
      [model('mlp_tiny.onnx'), { batching: { maxBatchSize: 8 } }],
      [new Uint8Array(bytes), {}],
    ] as const) {
      const m = await loadModel(source, options);
      try {
        expect(m.stats().inlineSingleThreaded).toBe(true);
      } finally {
        await m.dispose();
      }
      expect(m.stats().inlineSingleThreaded).toBe(false);
    }
  });

  it('none where nothing runs on the JS thread, where the caller chose the threading, or for a model over 16 MiB', async () => {
    for (const options of [{ inlineBelowMicros: 0 }, { intraOpNumThreads: 2 }, { intraOpNumThreads: 0 }, { batching: { maxBatchSize: 4 }, intraOpNumThreads: 1 }, { interOpNumThreads: 1 }, { executionMode: 'parallel' as const }]) {
      const m = await loadModel(model('mlp_tiny.onnx'), options);
      try {
        expect(m.stats().inlineSingleThreaded).toBe(false);
        // Runs on the JS thread go on, on the model's own session.
        const x = x1(1);
        expect((await m.infer({ x })).y.data).toEqual(m.inferSync({ x }).y.data);
      } finally {
        await m.dispose();
      }
    }
    // 64 × 2048 + 2048 × 2048 float weights: 17 MB.
    const big = encodeModel(mlp('big', [64, 2048, 2048], 5));
    expect(big.length).toBeGreaterThan(16 << 20);
    const m = await loadModel(new Uint8Array(big), { batching: { maxBatchSize: 8 } });
    try {
      expect(m.stats().inlineSingleThreaded).toBe(false);
    } finally {
      await m.dispose();
    }
  });

  it('lone inline runs give the results of the model\'s own session', async () => {
    const m = await loadModel(model('mlp_tiny.onnx'), { inlineBelowMicros: 1_000_000 });
    try {
      expect(m.stats().inlineSingleThreaded).toBe(true);
      await m.infer({ x: x1(0) }); // measured, on an executor thread
      for (let i = 0; i < 20; i++) {
        const x = x1(i);
        // inferSync() runs on the model's own session, never the inline one.
        expect((await m.infer({ x })).y.data).toEqual(m.inferSync({ x }).y.data);
      }
      expect(m.stats().inlineBatches).toBe(20);
    } finally {
      await m.dispose();
    }
  });

  it('inline batches of 64 in flight give every request the results of the model\'s own session', async () => {
    const m = await loadModel(model('mlp_tiny.onnx'), { batching: { maxBatchSize: 64, maxQueueDelayMicros: 2000 }, inlineBelowMicros: 1_000_000 });
    try {
      const xs = Array.from({ length: 64 }, (_, i) => x1(i));
      const expected = xs.map((x) => m.inferSync({ x }).y.data);
      for (let round = 0; round < 5; round++) {
        const outs = await Promise.all(xs.map((x) => m.infer({ x })));
        outs.forEach((o, i) => expect(o.y.data).toEqual(expected[i]));
      }
      const s = m.stats();
      expect(s.inlineSingleThreaded).toBe(true);
      expect(s.inlineBatches).toBeGreaterThan(0);
      expect(s.succeeded).toBe(5 * 64);
    } finally {
      await m.dispose();
    }
  });
});
