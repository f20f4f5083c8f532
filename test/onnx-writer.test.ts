/**
 * scripts/onnx-writer.js generates the benchmark models without Python. These tests prove the
 * bytes are a valid ONNX model that computes what it says: a small MLP against a plain JS
 * forward pass, and a small ResNet-18-shaped net for loadability and output shape.
 */
import { describe, expect, it } from 'vitest';
import { loadModel, Tensor } from '../src';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { encodeModel, mlp, resnet18 } = require('../scripts/onnx-writer') as {
  encodeModel: (g: unknown) => Buffer;
  mlp: (name: string, sizes: number[], seed?: number) => { initializers: { name: string; dims: number[]; data: Float32Array }[] };
  resnet18: (name: string, o: { size: number; classes: number; seed?: number }) => unknown;
};

describe('scripts/onnx-writer', () => {
  it('writes an MLP that ONNX Runtime runs and that matches a JS forward pass', async () => {
    const sizes = [8, 16, 4];
    const graph = mlp('t', sizes, 5);
    const m = await loadModel(encodeModel(graph));
    expect(m.inputs).toEqual([{ name: 'x', type: 'float32', shape: ['batch', 8] }]);
    expect(m.outputs).toEqual([{ name: 'y', type: 'float32', shape: ['batch', 4] }]);
    const w = Object.fromEntries(graph.initializers.map((t) => [t.name, t.data]));
    const x = Float32Array.from({ length: 2 * 8 }, (_, i) => Math.sin(i));
    const y = (await m.infer({ x: new Tensor('float32', x, [2, 8]) })).y.data as Float32Array;
    for (let r = 0; r < 2; r++) {
      let h = Array.from(x.subarray(r * 8, r * 8 + 8));
      for (let l = 0; l + 1 < sizes.length; l++) {
        const [n, k] = [sizes[l], sizes[l + 1]];
        const next = Array.from({ length: k }, (_, j) => h.reduce((s, v, i) => s + v * w[`W${l}`][i * k + j], 0) + w[`b${l}`][j]);
        h = l + 2 < sizes.length ? next.map((v) => Math.max(0, v)) : next;
        void n;
      }
      h.forEach((v, j) => expect(y[r * 4 + j]).toBeCloseTo(v, 4));
    }
    await m.dispose();
  });

  it('writes a ResNet-18-shaped conv net that loads and classifies a batch', async () => {
    const m = await loadModel(encodeModel(resnet18('r', { size: 32, classes: 10 })));
    const x = new Tensor('float32', Float32Array.from({ length: 2 * 3 * 32 * 32 }, (_, i) => Math.cos(i)), [2, 3, 32, 32]);
    const { y } = await m.infer({ x });
    expect(y.dims).toEqual([2, 10]);
    expect(Array.from(y.data as Float32Array).every(Number.isFinite)).toBe(true);
    await m.dispose();
  });
});
