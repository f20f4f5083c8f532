/**
 * The demo model in examples/digits (trained by scripts/digits/train.py on scikit-learn's digits):
 * nimify loads the committed ONNX file, and on the held-out sample digits gives the logits ONNX
 * Runtime gave in Python when the model was exported, and the right labels. Served as a model
 * repository, it answers over the inference protocol.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadModel, Tensor } from '../../src';
import { buildServer } from '../../src/server';
import { ROOT } from '../helpers';

const DIR = path.join(ROOT, 'examples', 'digits');
const training = JSON.parse(fs.readFileSync(path.join(DIR, 'training.json'), 'utf8')) as {
  accuracy: { test: number };
  samples: { file: string; label: number; input: number[]; logits: number[] }[];
};

describe('examples/digits', () => {
  it('the committed model reproduces its recorded logits and labels', async () => {
    expect(training.accuracy.test).toBeGreaterThanOrEqual(0.95);
    expect(training.samples).toHaveLength(10);
    const m = await loadModel(path.join(DIR, 'digits', '1', 'model.onnx'));
    expect(m.inputs).toEqual([{ name: 'image', type: 'float32', shape: ['batch', 1, 8, 8] }]);
    const batch = new Float32Array(training.samples.flatMap((s) => s.input));
    const out = (await m.infer({ image: new Tensor('float32', batch, [10, 1, 8, 8]) })).logits;
    expect(out.dims).toEqual([10, 10]);
    for (const [i, s] of training.samples.entries()) {
      const row = Array.from(out.data as Float32Array).slice(i * 10, i * 10 + 10);
      for (let j = 0; j < 10; j++) expect(row[j]).toBeCloseTo(s.logits[j], 3);
      expect(row.indexOf(Math.max(...row))).toBe(s.label);
      expect(fs.existsSync(path.join(DIR, s.file))).toBe(true);
    }
    await m.dispose();
  });

  it('serves as a model repository over the inference protocol', async () => {
    const app = await buildServer({ repository: DIR, logger: false });
    try {
      const s = training.samples[3];
      const r = await app.inject({ method: 'POST', url: '/v2/models/digits/infer', payload: { inputs: [{ name: 'image', datatype: 'FP32', shape: [1, 1, 8, 8], data: s.input }] } });
      expect(r.statusCode).toBe(200);
      const logits = r.json().outputs[0].data as number[];
      expect(logits.indexOf(Math.max(...logits))).toBe(s.label);
    } finally {
      await app.close();
    }
  });
});
