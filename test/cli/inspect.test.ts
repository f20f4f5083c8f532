/**
 * `nimify inspect`: real fixture models through the real command (main() with captured io), the
 * JSON document's fields, the human tables, the ONNX header reader, and the error exits.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { main } from '../../src/cli/index';
import { readOnnxHeader } from '../../src/cli/onnx-header';
import type { ModelReport } from '../../src/cli/inspect';
import { MODELS, ROOT } from '../helpers';
import { capture } from './capture';

async function json(args: string[]): Promise<{ code: number; models: ModelReport[] }> {
  const io = capture();
  const code = await main(['inspect', ...args, '--json'], io);
  return { code, models: (JSON.parse(io.stdout()) as { models: ModelReport[] }).models };
}

describe('nimify inspect', () => {
  it('tiny MLP: I/O with symbolic dims, metadata, opset/producer from the file, batch dim, config, latency at 1, 8, 32', async () => {
    const { code, models } = await json([path.join(MODELS, 'mlp_tiny.onnx'), '--latency-ms', '20']);
    expect(code).toBe(0);
    expect(models).toHaveLength(1);
    const m = models[0]!;
    expect(m).toMatchObject({ name: 'mlp_tiny', version: '1', state: 'READY', reason: null });
    expect(m.inputs).toEqual([{ name: 'x', type: 'float32', datatype: 'FP32', shape: ['batch', 64] }]);
    expect(m.outputs).toEqual([{ name: 'y', type: 'float32', datatype: 'FP32', shape: ['batch', 10] }]);
    expect(m.onnx).toEqual({ irVersion: 8, producerName: 'nimify-fixtures', producerVersion: '1.0', domain: 'ai.nimify.test', modelVersion: 3, opsets: [{ domain: 'ai.onnx', version: 17 }] });
    expect(m.metadata).toMatchObject({ producerName: 'nimify-fixtures', graphName: 'mlp_tiny', version: 3, custom: { license: 'MIT', author: 'nimify' } });
    expect(m.batchDim).toEqual({ detected: true, name: 'batch', maxBatchSize: 32 });
    expect(m.config).toMatchObject({ name: 'mlp_tiny', inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 64] }], batching: { maxBatchSize: 32, batchDim: true } });
    expect(m.latency!.rows.map((r) => r.batch)).toEqual([1, 8, 32]);
    for (const r of m.latency!.rows) {
      expect(r).not.toHaveProperty('skipped');
      if (!('skipped' in r)) {
        expect(r.runs).toBeGreaterThanOrEqual(3);
        expect(r.p50Us).toBeGreaterThan(0);
      }
    }
  });

  it('a model with two symbolic dims keeps their names; a model without batch dim measures its own shape and skips 8 and 32', async () => {
    const e = (await json([path.join(MODELS, 'embed_int64.onnx'), '--no-latency'])).models[0]!;
    expect(e.inputs).toEqual([{ name: 'ids', type: 'int64', datatype: 'INT64', shape: ['batch', 'seq'] }]);
    expect(e.latency).toBeNull();
    const s = (await json([path.join(MODELS, 'slow.onnx'), '--latency-ms', '10'])).models[0]!;
    expect(s.batchDim).toMatchObject({ detected: false });
    expect(s.latency!.rows).toEqual([
      expect.objectContaining({ batch: null }),
      { batch: 8, skipped: 'dim 0 is fixed: the model has no batch dim' },
      { batch: 32, skipped: 'dim 0 is fixed: the model has no batch dim' },
    ]);
  });

  it('a repository with config.json: every model in turn, the config completed with its preprocess and its maxBatchSize obeyed', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nimify-inspect-'));
    fs.mkdirSync(path.join(dir, 'tiny', '1'), { recursive: true });
    fs.copyFileSync(path.join(MODELS, 'mlp_tiny.onnx'), path.join(dir, 'tiny', '1', 'model.onnx'));
    fs.writeFileSync(path.join(dir, 'tiny', 'config.json'), JSON.stringify({ batching: { maxBatchSize: 8 } }));
    fs.cpSync(path.join(ROOT, 'examples', 'digits', 'digits'), path.join(dir, 'digits'), { recursive: true });
    const { code, models } = await json([dir, '--latency-ms', '10']);
    expect(code).toBe(0);
    expect(models.map((m) => m.name).sort()).toEqual(['digits', 'tiny']);
    const digits = models.find((m) => m.name === 'digits')!;
    expect(digits.config!.preprocess).toMatchObject({ type: 'image', width: 8, height: 8, color: 'grayscale' });
    expect(digits.config!.postprocess).toMatchObject({ softmax: true, topK: 3 });
    const tiny = models.find((m) => m.name === 'tiny')!;
    expect(tiny.batchDim).toEqual({ detected: true, name: 'batch', maxBatchSize: 8 });
    expect(tiny.latency!.rows[2]).toEqual({ batch: 32, skipped: 'over maxBatchSize 8' });

    const io = capture();
    expect(await main(['inspect', dir, '--no-latency'], io)).toBe(0);
    expect(io.stdout()).toMatch(/model digits version 1 {2}\(/);
    expect(io.stdout()).toMatch(/ {4}image +float32 +FP32 +\[batch, 1, 8, 8\]/);
    expect(io.stdout()).toContain('onnx       IR version 8; opset ai.onnx 17; producer nimify scripts/digits/train.py');
    expect(io.stdout()).toContain('batch dim  dim 0 ("batch") of every input and output; requests are batched up to 8 rows');
    expect(io.stdout()).not.toContain('latency');
  });

  it('human output has the latency table', async () => {
    const io = capture();
    expect(await main(['inspect', path.join(MODELS, 'two_inputs.onnx'), '--latency-ms', '10'], io)).toBe(0);
    expect(io.stdout()).toMatch(/ {4}batch +runs +p50 +mean +samples\/s\n {4}1 +\d+ +[\d.]+ (µs|ms)/);
    expect(io.stdout()).toMatch(/ {4}sum +float32 +FP32 +\[batch, 4\]/);
  });

  it('errors: a missing file (exit 1, NOT_FOUND), a file that is not ONNX (exit 1, INVALID_MODEL), no argument (exit 2)', async () => {
    const missing = capture();
    expect(await main(['inspect', path.join(MODELS, 'missing.onnx')], missing)).toBe(1);
    expect(missing.stderr()).toContain('NOT_FOUND');
    const notOnnx = capture();
    expect(await main(['inspect', path.join(ROOT, 'examples', 'digits', 'samples', 'digit-1.png')], notOnnx)).toBe(1);
    expect(notOnnx.stderr()).toMatch(/INVALID_MODEL: model: '.*digit-1.png' is not an ONNX model/);
    expect(() => readOnnxHeader(path.join(ROOT, 'package.json'))).toThrow(/is not an ONNX model/);
    const none = capture();
    expect(await main(['inspect'], none)).toBe(2);
  });
});
