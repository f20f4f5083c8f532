/**
 * model.predict() in the library (src/pipeline/pipeline.ts, src/runtime/model.ts): a pipeline given to
 * loadModel() is resolved against the model (names, types, fixed dims, tokenizer, labels) with
 * errors naming the field; predict() runs preprocess (worker pool) → model → postprocess and
 * matches the Python reference end to end (tokenizer ids → ONNX Runtime logits); batches are cut
 * to maxBatchSize; image bytes are copied unless `transfer` is asked for.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadModel, NimifyError, type Model } from '../../src';
import { PreprocessPool, sharedPreprocessPool } from '../../src/pipeline/pool';
import { ROOT, MODELS } from '../helpers';
import { reference, TEXT } from './text-fixtures';

const DIGITS = path.join(ROOT, 'examples', 'digits', 'digits');
const DIGITS_CONFIG = JSON.parse(fs.readFileSync(path.join(DIGITS, 'config.json'), 'utf8'));
const sample = (n: number) => fs.readFileSync(path.join(ROOT, 'examples', 'digits', 'samples', `digit-${n}.png`));

const pool = new PreprocessPool({ threads: 2 });
const models: Model[] = [];
afterAll(async () => {
  await Promise.all(models.map((m) => m.dispose()));
  await pool.close();
});
async function load(file: string, options: Parameters<typeof loadModel>[1]): Promise<Model> {
  const m = await loadModel(file, options);
  models.push(m);
  return m;
}
async function fails(p: Promise<unknown>, code: string, pattern: RegExp): Promise<void> {
  const err = await p.then(() => null, (e: unknown) => e);
  expect(err).toBeInstanceOf(NimifyError);
  expect(err).toMatchObject({ code, message: expect.stringMatching(pattern) });
}

describe('text models: predict() equals tokenizer ids → ONNX Runtime logits computed in Python', () => {
  it.each(reference.models.map((c, i) => [i, c.model, c] as const))('case %i (%s)', async (_i, file, c) => {
    const labels = file === 'text_classifier.onnx' ? 'labels3.txt' : undefined;
    const model = await load(path.join(TEXT, file), {
      pipeline: { preprocess: { type: 'text', tokenizer: c.tokenizer, maxLength: c.maxLength, padding: c.padding }, postprocess: { softmax: false, topK: 100, ...(labels && { labels }) } },
    });
    const items = c.pairs === null ? c.texts : c.texts.map((text, i) => ({ text, pair: c.pairs![i] }));
    const predictions = await model.predict(items, { pool });
    const names = labels ? fs.readFileSync(path.join(TEXT, labels), 'utf8').trim().split('\n') : null;
    expect(predictions).toHaveLength(c.texts.length);
    predictions.forEach((row, r) => {
      // Every class, best first; the scores are the logits (softmax off).
      expect(row.map((p) => p.index).sort()).toEqual(c.logits[r].map((_, k) => k));
      for (const p of row) {
        expect(p.score).toBeCloseTo(c.logits[r][p.index], 4);
        expect(p.label).toBe(names ? names[p.index] : String(p.index));
      }
      expect(row.map((p) => p.score)).toEqual([...row.map((p) => p.score)].sort((a, b) => b - a));
    });
    // The raw outputs of the same pipeline.
    const [out] = await model.runPipeline(items, { pool });
    expect(out.logits.dims).toEqual([c.texts.length, c.logits[0].length]);
    Array.from(out.logits.data as Float32Array).forEach((x, k) => expect(x).toBeCloseTo(c.logits.flat()[k], 4));
  });

  it('a text batch larger than maxBatchSize runs in chunks (row views of one tokenization) with the same logits', async () => {
    const c = reference.models.find((m) => m.model === 'text_classifier.onnx' && m.pairs === null && m.texts.length >= 3)!;
    const texts = [...c.texts, ...c.texts];
    const model = await load(path.join(TEXT, c.model), {
      batching: { maxBatchSize: 2 },
      pipeline: { preprocess: { type: 'text', tokenizer: c.tokenizer, maxLength: c.maxLength, padding: c.padding }, postprocess: { softmax: false, topK: 3 } },
    });
    const runs = await model.runPipeline(texts, { pool });
    expect(runs.map((r) => r.logits.dims[0])).toEqual([2, 2, 2].slice(0, Math.ceil(texts.length / 2)).map((n, i) => Math.min(n, texts.length - 2 * i)));
    const logits = runs.flatMap((r) => Array.from(r.logits.data as Float32Array));
    [...c.logits, ...c.logits].flat().forEach((x, k) => expect(logits[k]).toBeCloseTo(x, 4));
    expect((await model.predict(texts, { pool })).map((r) => r[0].index)).toEqual([...c.logits, ...c.logits].map((row) => row.indexOf(Math.max(...row))));
  });

  it('an aborted signal stops before preprocessing; a tiny maxLength is named, not blamed on truncation', async () => {
    const model = await load(path.join(TEXT, 'text_classifier.onnx'), { pipeline: { preprocess: { type: 'text', tokenizer: 'wordpiece.json', maxLength: 2 }, postprocess: {} } });
    const ac = new AbortController();
    ac.abort();
    await fails(model.predict('hello', { pool, signal: ac.signal }), 'ABORTED', /aborted during preprocessing/);
    await fails(model.predict({ text: 'a', pair: 'b' }, { pool }), 'INVALID_ARGUMENT', /^input: 5 tokens even after truncation: maxLength 2 is smaller than the tokenizer's special tokens/);
  });

  it('resolves names, padding and length from the model (fixed sequence dim → max_length)', async () => {
    // The tokenizer is loaded and checked in a pool worker, not on the event loop.
    const before = sharedPreprocessPool().completed;
    const fixed = await load(path.join(TEXT, 'text_fixed16.onnx'), { pipeline: { preprocess: { type: 'text', tokenizer: 'bytelevel.json' } } });
    expect(fixed.pipeline!.preprocess).toMatchObject({ padding: 'max_length', maxLength: 16, padToken: '<pad>', padId: 1, dtype: 'int64', inputs: { ids: 'input_ids', attentionMask: 'attention_mask', typeIds: null } });
    expect(sharedPreprocessPool().completed).toBeGreaterThan(before);
    const dyn = await load(path.join(TEXT, 'text_classifier.onnx'), { pipeline: { preprocess: { type: 'text', tokenizer: 'wordpiece.json' } } });
    expect(dyn.pipeline!.preprocess).toMatchObject({ padding: 'longest', maxLength: 512, padToken: '[PAD]', inputs: { ids: 'input_ids', attentionMask: 'attention_mask', typeIds: 'token_type_ids' } });
    // Without postprocess there are no predictions, but runPipeline gives the outputs.
    await fails(dyn.predict('hello'), 'INVALID_ARGUMENT', /predict\(\): the model has no postprocess section/);
    expect((await dyn.runPipeline(['a', 'b c d'], { pool }))[0].logits.dims).toEqual([2, 3]);
  });

  it('refuses pipelines that do not fit the model, naming the field', async () => {
    const cases: [string, Record<string, unknown>, RegExp][] = [
      ['text_fixed16.onnx', { preprocess: { type: 'text', tokenizer: 'bytelevel.json', padding: 'longest' } }, /options\.pipeline\.preprocess: the model's sequence dim is fixed at 16; use padding 'max_length' with maxLength 16/],
      ['text_fixed16.onnx', { preprocess: { type: 'text', tokenizer: 'bytelevel.json', maxLength: 20 } }, /fixed at 16/],
      ['text_classifier.onnx', { preprocess: { type: 'text', tokenizer: 'missing.json' } }, /options\.pipeline\.preprocess\.tokenizer: cannot read missing\.json in .* \(ENOENT\)/],
      ['text_classifier.onnx', { preprocess: { type: 'text', tokenizer: 'labels3.txt' } }, /options\.pipeline\.preprocess\.tokenizer: cannot load .* as a tokenizer\.json/],
      ['text_classifier.onnx', { preprocess: { type: 'text', tokenizer: 'wordpiece.json', padToken: '<pad>' } }, /options\.pipeline\.preprocess\.padToken: "<pad>" is not in the tokenizer's vocabulary/],
      ['text_classifier.onnx', { preprocess: { type: 'text', tokenizer: 'wordpiece.json', inputs: { typeIds: 'segments' } } }, /options\.pipeline\.preprocess\.inputs\.typeIds: the model has no 'segments'/],
      ['text_classifier.onnx', { preprocess: { type: 'text', tokenizer: 'wordpiece.json', inputs: { typeIds: 'attention_mask' } } }, /model input 'token_type_ids' is not fed by the text preprocessing/],
      ['text_classifier.onnx', { preprocess: { type: 'image', width: 8, height: 8 } }, /options\.pipeline\.preprocess\.input: the model has 3/],
      ['text_classifier.onnx', { postprocess: { labels: 'wordpiece.json' } }, /options\.pipeline\.postprocess\.labels: wordpiece\.json has \d+ labels; output 'logits' has 3 classes/],
      ['text_classifier.onnx', { preprocess: { type: 'audio' } }, /options\.pipeline\.preprocess\.type: expected 'image' or 'text'/],
      ['text_classifier.onnx', { extra: 1 }, /options\.pipeline: unknown option 'extra'/],
    ];
    for (const [file, pipeline, pattern] of cases) await fails(loadModel(path.join(TEXT, file), { pipeline: pipeline as never }), 'INVALID_ARGUMENT', pattern);
    await fails(loadModel(path.join(MODELS, 'mlp_tiny.onnx'), { pipeline: { preprocess: { type: 'text', tokenizer: 'wordpiece.json' }, dir: TEXT } }), 'INVALID_ARGUMENT', /options\.pipeline\.preprocess\.inputs\.ids: input 'x' is float32; token tensors are int64 or int32/);
  });
});

describe('image models: predict() in the library', () => {
  const digits = (extra: Record<string, unknown> = {}) => load(path.join(DIGITS, '1', 'model.onnx'), { ...extra, pipeline: { ...DIGITS_CONFIG, dir: DIGITS } });

  it('classifies one image, or a batch (one list per image), with labels', async () => {
    const model = await digits();
    const top = await model.predict(sample(7), { pool });
    expect(top).toHaveLength(3);
    expect(top[0]).toMatchObject({ label: '7', index: 7 });
    const batch = await model.predict([sample(3), sample(9), sample(0)], { pool });
    expect(batch.map((r) => r[0].label)).toEqual(['3', '9', '0']);
    // The shared default pool serves calls that name none.
    expect((await model.predict(sample(4)))[0].label).toBe('4');
  });

  it('cuts a batch to maxBatchSize rows per run', async () => {
    const model = await digits({ batching: { maxBatchSize: 2 } });
    const before = model.stats().batches;
    const out = await model.predict([0, 1, 2, 3, 4].map(sample), { pool });
    expect(out.map((r) => r[0].label)).toEqual(['0', '1', '2', '3', '4']);
    const s = model.stats();
    expect(s.batches - before).toBeGreaterThanOrEqual(3);
    expect(Math.max(...Object.keys(s.batchSizeHistogram).map(Number))).toBeLessThanOrEqual(2);
  });

  it('a model whose batch dim is fixed at 1 gets one run per item', async () => {
    const model = await digits({ freeDimensionOverrides: { batch: 1 } });
    expect(model.inputs[0].shape).toEqual([1, 1, 8, 8]);
    expect(model.pipeline!.mode).toBe('single');
    const runs = await model.runPipeline([3, 9, 0].map(sample), { pool });
    expect(runs.map((r) => r.logits.dims)).toEqual([[1, 10], [1, 10], [1, 10]]);
    expect((await model.predict([3, 9, 0].map(sample), { pool })).map((r) => r[0].label)).toEqual(['3', '9', '0']);
  });

  it('runs each chunk as soon as it is ready, with at most two chunks in flight', async () => {
    const model = await digits({ batching: { maxBatchSize: 2 } });
    const gates: Array<() => void> = [];
    const started: number[] = [];
    const run = model.pipeline!.run([0, 1, 2, 3, 4, 5].map(sample), pool, {
      maxRows: 2,
      transfer: false,
      infer: (feeds) => {
        started.push(feeds.image.dims[0]);
        return new Promise<void>((resolve) => gates.push(resolve)).then(() => model.infer(feeds));
      },
    });
    const until = async (ok: () => boolean) => {
      for (let i = 0; !ok() && i < 600; i++) await new Promise((r) => setTimeout(r, 10));
    };
    await until(() => started.length === 2);
    // The third chunk waits for the first run to finish, however long the pool is idle.
    await new Promise((r) => setTimeout(r, 300));
    expect(started).toEqual([2, 2]);
    gates[0]();
    await until(() => started.length === 3);
    expect(started).toEqual([2, 2, 2]);
    gates[1]();
    gates[2]();
    const { runs } = await run;
    expect(model.pipeline!.classify(runs, 6).map((r) => r[0].label)).toEqual(['0', '1', '2', '3', '4', '5']);
  });

  it('copies image bytes by default; transfer: true moves them (the buffer is detached)', async () => {
    const model = await digits();
    const kept = new Uint8Array(sample(5));
    expect((await model.predict(kept, { pool }))[0].label).toBe('5');
    expect(kept.byteLength).toBeGreaterThan(0);
    const moved = new Uint8Array(sample(5));
    expect((await model.predict(moved, { pool, transfer: true }))[0].label).toBe('5');
    expect(moved.byteLength).toBe(0);
    expect(moved.buffer.byteLength).toBe(0);
    // The same buffer twice: moved once, copied the second time.
    const twice = new Uint8Array(sample(6));
    expect((await model.predict([twice, twice], { pool, transfer: true })).map((r) => r[0].label)).toEqual(['6', '6']);
  });

  it('bad inputs and options fail with a clear error; the model keeps serving', async () => {
    const model = await digits();
    await fails(model.predict('seven' as never, { pool }), 'INVALID_ARGUMENT', /^input: expected the bytes of an image/);
    await fails(model.predict([sample(1), 42] as never, { pool }), 'INVALID_ARGUMENT', /^input\[1\]: expected the bytes of an image .*received number 42/);
    await fails(model.predict([], { pool }), 'INVALID_ARGUMENT', /^input: expected 1 to 1024 items/);
    await fails(model.predict(new Uint8Array(0), { pool }), 'INVALID_ARGUMENT', /^input: empty/);
    await fails(model.predict(Buffer.from('not an image'), { pool }), 'INVALID_ARGUMENT', /image: not a JPEG, PNG or WebP file/);
    await fails(model.predict(sample(1), { pool: {} as never }), 'INVALID_ARGUMENT', /options\.pool: expected a PreprocessPool/);
    await fails(model.predict(sample(1), { pool, transfer: 1 as never }), 'INVALID_ARGUMENT', /options\.transfer: expected true or false/);
    await fails(model.predict(sample(1), { pool, timeoutMs: -1 }), 'INVALID_ARGUMENT', /options\.timeoutMs/);
    const text = await load(path.join(TEXT, 'text_classifier.onnx'), { pipeline: { preprocess: { type: 'text', tokenizer: 'wordpiece.json' }, postprocess: {} } });
    await fails(text.predict(sample(1) as never, { pool }), 'INVALID_ARGUMENT', /^input: expected a string or \{ text, pair\? \}/);
    await fails(text.predict({ text: 'a', pair: 3 } as never, { pool }), 'INVALID_ARGUMENT', /^input\.pair: expected a string/);
    const plain = await load(path.join(MODELS, 'mlp_tiny.onnx'), {});
    await fails(plain.predict(sample(1)), 'INVALID_ARGUMENT', /predict\(\): the model was loaded without a preprocess section/);
    expect((await model.predict(sample(2), { pool }))[0].label).toBe('2');
    await model.dispose();
    await fails(model.predict(sample(2), { pool }), 'DISPOSED', /disposed/);
  });
});
