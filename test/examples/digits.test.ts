/**
 * The demo model in examples/digits (trained by scripts/digits/train.py on scikit-learn's digits):
 * nimify loads the committed ONNX file, and on the held-out sample digits gives the logits ONNX
 * Runtime gave in Python when the model was exported, and the right labels. Served as a model
 * repository, it answers over the inference protocol.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
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

/** A repository holding the digits model with the given config.json and extra files. */
function repoWith(config: unknown, files: Record<string, string> = {}): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'nimify-digits-'));
  fs.mkdirSync(path.join(root, 'd', '1'), { recursive: true });
  fs.copyFileSync(path.join(DIR, 'digits', '1', 'model.onnx'), path.join(root, 'd', '1', 'model.onnx'));
  fs.writeFileSync(path.join(root, 'd', 'config.json'), JSON.stringify(config));
  for (const [name, text] of Object.entries(files)) fs.writeFileSync(path.join(root, name), text);
  return root;
}

describe('pre/postprocess in config.json', () => {
  it('a pipeline that does not fit the model, or labels that cannot be read, fail the load with the reason', async () => {
    const cases: [unknown, Record<string, string>, RegExp][] = [
      [{ preprocess: { type: 'image', width: 9, height: 8, color: 'grayscale' } }, {}, /config\.preprocess: makes \[1, 1, 8, 9\] \(NCHW\), which input 'image' \[batch, 1, 8, 8\] does not take/],
      [{ preprocess: { type: 'image', width: 8, height: 8 } }, {}, /does not take/], // RGB: 3 channels
      [{ preprocess: { type: 'image', width: 8, height: 8, color: 'grayscale', dtype: 'uint8' } }, {}, /config\.preprocess\.dtype: input 'image' is float32; the preprocessing makes uint8/],
      [{ preprocess: { type: 'image', width: 8, height: 8, color: 'grayscale', input: 'pixels' } }, {}, /config\.preprocess\.input: the model has no 'pixels'/],
      [{ postprocess: { labels: 'labels.txt' } }, {}, /config\.postprocess\.labels: cannot read labels\.txt in \S+ \(ENOENT\)/],
      [{ postprocess: { labels: 'labels.txt' } }, { 'd/labels.txt': 'a\nb\n' }, /labels\.txt has 2 labels; output 'logits' has 10 classes/],
    ];
    for (const [config, files, reason] of cases) {
      const app = await buildServer({ repository: repoWith(config, files), logger: false, controlMode: 'explicit' });
      try {
        const r = await app.inject({ method: 'POST', url: '/v2/repository/models/d/load' });
        expect(r.statusCode).toBe(400);
        expect(r.json().error).toMatch(reason);
      } finally {
        await app.close();
      }
    }
    // Structural mistakes are refused when config.json is read, naming the field.
    const app = await buildServer({ repository: repoWith({ postprocess: { labels: '../../etc/passwd' } }), logger: false, controlMode: 'explicit' });
    try {
      const r = await app.inject({ method: 'POST', url: '/v2/repository/models/d/load' });
      expect(r.statusCode).toBe(400);
      expect(r.json().error).toMatch(/postprocess\.labels: expected a file name in the model's folder/);
    } finally {
      await app.close();
    }
  });
});

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
      // Its config.json declares the image preprocessing and the postprocessing (labels loaded).
      const config = (await app.inject('/v2/models/digits/config')).json();
      expect(config.preprocess).toMatchObject({ type: 'image', input: 'image', width: 8, height: 8, color: 'grayscale', layout: 'NCHW', dtype: 'float32' });
      expect(config.postprocess).toEqual({ output: 'logits', softmax: true, topK: 3, labels: 'labels.txt' });
      expect(app.nimify.repository.resolve('digits').labels).toEqual(['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']);
      // samples/ holds neither a config.json nor a version folder: not a model, ignored.
      expect((await app.inject({ method: 'POST', url: '/v2/repository/index' })).json().map((e: { name: string }) => e.name)).toEqual(['digits']);
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
