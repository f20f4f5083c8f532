/**
 * POST /v1/models/{m}/predict beyond one image: texts as JSON (`text`, `texts`, `text_pair`,
 * `text_pairs`) and batches of images as multipart/form-data, served from a temporary model
 * repository built from test/fixtures/text and examples/digits.
 *
 * - scores equal the Python reference logits of test/fixtures/text/reference.json (softmax off),
 *   for the dynamic-length classifier, pairs, the fixed-length [batch, 16] model, and raw outputs;
 * - multipart: one list per file in order; chunks of at most the model's maxBatchSize rows;
 * - every malformed body is a 400 INVALID_ARGUMENT naming the problem, and serving goes on;
 * - load-time validation of text pipelines through the repository API (explicit mode);
 * - metrics (items, preprocessing time, Triton success/failure counters), admission (concurrency
 *   shedding, circuit breaker), the OpenAPI document, and poll-mode reload of an edited labels file.
 *
 * Event-loop-delay shedding is off (maxEventLoopDelayMs 0): on a loaded machine a late tick would
 * turn an expected status into 503. No assertion depends on timing.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import sharp from 'sharp';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildServer } from '../../src/server';
import { MODELS, ROOT } from '../helpers';

const TEXT = path.join(ROOT, 'test', 'fixtures', 'text');
const DIGITS = path.join(ROOT, 'examples', 'digits');
const CLASSIFIER = path.join(TEXT, 'text_classifier.onnx');
const FIXED16 = path.join(TEXT, 'text_fixed16.onnx');
const LABELS = ['negative', 'neutral', 'positive'];
const png = (d: number): Buffer => fs.readFileSync(path.join(DIGITS, 'samples', `digit-${d}.png`));

interface RefModel { model: string; texts: string[]; pairs: string[] | null; maxLength: number; padding: string; logits: number[][] }
interface Prediction { label: string; index: number; score: number }
const REF = (JSON.parse(fs.readFileSync(path.join(TEXT, 'reference.json'), 'utf8')) as { models: RefModel[] }).models;
const refCase = (model: string, pick: (m: RefModel) => boolean): RefModel => REF.find((m) => m.model === model && pick(m))!;
const SINGLE = refCase('text_classifier.onnx', (m) => m.pairs === null && m.maxLength === 32 && m.padding === 'longest');
const PAIRS = refCase('text_classifier.onnx', (m) => m.pairs !== null && m.maxLength === 16);
const PADDED = refCase('text_classifier.onnx', (m) => m.pairs === null && m.maxLength === 24 && m.padding === 'max_length');
const FIXED = REF.filter((m) => m.model === 'text_fixed16.onnx');

/** A model folder: its ONNX file (a path or bytes), config.json, and files copied beside config.json (name → source). */
interface ModelSpec { onnx: string | Buffer; config?: unknown; files?: Record<string, string> }
const roots: string[] = [];
function makeRepo(models: Record<string, ModelSpec>): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'nimify-predict-batch-'));
  roots.push(root);
  for (const [name, m] of Object.entries(models)) {
    fs.mkdirSync(path.join(root, name, '1'), { recursive: true });
    const file = path.join(root, name, '1', 'model.onnx');
    if (Buffer.isBuffer(m.onnx)) fs.writeFileSync(file, m.onnx);
    else fs.copyFileSync(m.onnx, file);
    if (m.config !== undefined) fs.writeFileSync(path.join(root, name, 'config.json'), JSON.stringify(m.config));
    for (const [dest, src] of Object.entries(m.files ?? {})) fs.copyFileSync(src, path.join(root, name, dest));
  }
  return root;
}
const RANKED = { labels: 'labels3.txt', topK: 3, softmax: false };
/** A text model: `tokenizer` (a fixture file) and labels3.txt beside its config.json. */
function textModel(pre: Record<string, unknown>, post: Record<string, unknown> | null = RANKED, onnx: string | Buffer = CLASSIFIER, tokenizer = 'wordpiece.json'): ModelSpec {
  return {
    onnx,
    config: { preprocess: { type: 'text', tokenizer, ...pre }, ...(post === null ? {} : { postprocess: post }) },
    files: { [tokenizer]: path.join(TEXT, tokenizer), 'labels3.txt': path.join(TEXT, 'labels3.txt') },
  };
}
function digitsModel(extra: Record<string, unknown> = {}): ModelSpec {
  const config = { ...JSON.parse(fs.readFileSync(path.join(DIGITS, 'digits', 'config.json'), 'utf8')), ...extra };
  return { onnx: path.join(DIGITS, 'digits', '1', 'model.onnx'), config, files: { 'labels.txt': path.join(DIGITS, 'digits', 'labels.txt') } };
}

/**
 * input_ids int64 [batch, seq] → logits = Reshape(Cast(input_ids), [batch, 3]): ORT fails the run
 * (RUNTIME_ERROR, a model fault for the breaker) unless seq is 3 — e.g. '[CLS] a [SEP]' runs,
 * '[CLS] a b [SEP]' fails. Written with scripts/onnx-writer.js, which declares inputs float.
 */
function reshapeModel(): Buffer {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { encodeModel } = require('../../scripts/onnx-writer') as { encodeModel: (g: unknown) => Buffer };
  const bytes = encodeModel({
    name: 'reshape3',
    initializers: [],
    nodes: [
      { op: 'Cast', inputs: ['input_ids'], outputs: ['f'], attrs: { to: 1 } },
      { op: 'Constant', inputs: [], outputs: ['shape'], attrs: { value_ints: [0, 3] } },
      { op: 'Reshape', inputs: ['f', 'shape'], outputs: ['logits'] },
    ],
    inputs: [{ name: 'input_ids', dims: ['batch', 'seq'] }],
    outputs: [{ name: 'logits', dims: ['batch', 3] }],
  });
  // The graph input's ValueInfo: name, then type { tensor_type { elem_type: 1 (FLOAT) → 7 (INT64) } }.
  const at = bytes.lastIndexOf('input_ids') + 'input_ids'.length + 5;
  if (bytes[at - 1] !== 0x08 || bytes[at] !== 1) throw new Error('unexpected onnx-writer encoding');
  bytes[at] = 7;
  return bytes;
}

const apps: FastifyInstance[] = [];
async function serve(repository: string, options: Record<string, unknown> = {}): Promise<FastifyInstance> {
  const app = await buildServer({ repository, logger: false, ...options, shedding: { maxEventLoopDelayMs: 0, ...(options.shedding as object) } });
  apps.push(app);
  await app.ready();
  return app;
}
afterAll(async () => {
  await Promise.all(apps.map((a) => a.close()));
  for (const r of roots) fs.rmSync(r, { recursive: true, force: true });
});

const predict = (app: FastifyInstance, model: string, payload: unknown, type = 'application/json') =>
  app.inject({ method: 'POST', url: `/v1/models/${model}/predict`, headers: { 'content-type': type }, payload: typeof payload === 'string' || Buffer.isBuffer(payload) ? payload : JSON.stringify(payload) });

/** Predictions ranked by the reference logits: every class (topK = classes), scores = logits (softmax off). */
function expectRanked(preds: Prediction[], logits: number[], labels: string[] | null): void {
  expect(preds).toHaveLength(logits.length);
  expect(preds.map((p) => p.index)).toEqual([...logits.keys()].sort((a, b) => logits[b] - logits[a]));
  for (const p of preds) {
    expect(Math.abs(p.score - logits[p.index])).toBeLessThan(1e-4);
    expect(p.label).toBe(labels === null ? String(p.index) : labels[p.index]);
  }
}

/** A multipart/form-data body by hand: file parts (with a filename) and plain fields. */
function multipart(parts: Array<{ name: string; data: Buffer | string; file?: string }>): { payload: Buffer; type: string } {
  const boundary = 'nimifyBoundary7MA4YWxkTrZu0gW';
  const chunks: Buffer[] = [];
  for (const p of parts) {
    const head = `--${boundary}\r\nContent-Disposition: form-data; name="${p.name}"${p.file ? `; filename="${p.file}"\r\nContent-Type: image/png` : ''}\r\n\r\n`;
    chunks.push(Buffer.from(head), Buffer.from(p.data), Buffer.from('\r\n'));
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`));
  return { payload: Buffer.concat(chunks), type: `multipart/form-data; boundary=${boundary}` };
}

/** Sum of a metric's samples whose labels include `labels`, from GET /metrics. */
async function metric(app: FastifyInstance, name: string, labels: Record<string, string> = {}): Promise<number> {
  let sum = 0;
  for (const line of (await app.inject('/metrics')).body.split('\n')) {
    const m = /^([A-Za-z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (m === null || m[1] !== name) continue;
    const have = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) sum += Number(m[3]);
  }
  return sum;
}

let app: FastifyInstance;
let url: string;
beforeAll(async () => {
  const root = makeRepo({
    sentiment: textModel({ maxLength: 32 }),
    pairs: textModel({ maxLength: 16 }),
    raw: textModel({ maxLength: 24, padding: 'max_length' }, null),
    fixed: textModel({}, { topK: 2, softmax: false }, FIXED16, 'bytelevel.json'),
    strict: textModel({ maxLength: 8, truncation: false }),
    digits: digitsModel(),
    digits2: digitsModel({ batching: { maxBatchSize: 2 } }),
  });
  app = await serve(root);
  url = await app.listen({ host: '127.0.0.1', port: 0 });
});

describe('text models: JSON texts in, reference logits out', () => {
  it('{text} over a real port: one ranked list, labels from labels3.txt, scores = reference logits', async () => {
    for (const [i, text] of SINGLE.texts.entries()) {
      const res = await fetch(`${url}/v1/models/sentiment/predict`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ text }) });
      expect(res.status).toBe(200);
  const body = (await res.json()) as { predictions: Prediction[] };
      expect(body).toMatchObject({ model_name: 'sentiment', model_version: '1' });
      expectRanked(body.predictions, SINGLE.logits[i], LABELS);
    }
  });

  it('{texts} → one list per text, in order (also on the versioned path)', async () => {
    for (const u of ['/v1/models/sentiment/predict', '/v1/models/sentiment/versions/1/predict']) {
      const r = await app.inject({ method: 'POST', url: u, payload: { texts: SINGLE.texts } });
      expect(r.statusCode).toBe(200);
      const preds = r.json().predictions as Prediction[][];
      expect(preds).toHaveLength(SINGLE.texts.length);
      preds.forEach((p, i) => expectRanked(p, SINGLE.logits[i], LABELS));
    }
    // The same texts reversed: each list follows its text.
    const reversed = (await predict(app, 'sentiment', { texts: [...SINGLE.texts].reverse() })).json().predictions as Prediction[][];
    reversed.forEach((p, i) => expectRanked(p, SINGLE.logits[SINGLE.texts.length - 1 - i], LABELS));
  });

  it('{text, text_pair} and {texts, text_pairs} (pairs cut to maxLength 16)', async () => {
    const pairs = PAIRS.pairs!;
    for (const [i, text] of PAIRS.texts.entries()) {
      const r = await predict(app, 'pairs', { text, text_pair: pairs[i] });
      expect(r.statusCode).toBe(200);
      expectRanked(r.json().predictions, PAIRS.logits[i], LABELS);
    }
    const res = await fetch(`${url}/v1/models/pairs/predict`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ texts: PAIRS.texts, text_pairs: pairs }) });
    expect(res.status).toBe(200);
    const preds = ((await res.json()) as { predictions: Prediction[][] }).predictions;
    expect(preds).toHaveLength(PAIRS.texts.length);
    preds.forEach((p, i) => expectRanked(p, PAIRS.logits[i], LABELS));
  });

  it('the fixed [batch, 16] model: padding max_length 16 resolved by default, reference logits', async () => {
    expect((await app.inject('/v2/models/fixed/config')).json().preprocess).toMatchObject({ type: 'text', padding: 'max_length', maxLength: 16 });
    for (const c of FIXED) {
      const r = await predict(app, 'fixed', { texts: c.texts });
      expect(r.statusCode).toBe(200);
      const preds = r.json().predictions as Prediction[][];
      expect(preds).toHaveLength(c.texts.length);
      preds.forEach((p, i) => expectRanked(p, c.logits[i], null));
    }
  });

  it('without postprocess: the raw outputs, joined on the batch dim', async () => {
    const r = await predict(app, 'raw', { texts: PADDED.texts });
    expect(r.statusCode).toBe(200);
    const body = r.json();
    expect(body.predictions).toBeUndefined();
    expect(Object.keys(body.outputs)).toEqual(['logits']);
    expect(body.outputs.logits.shape).toEqual([PADDED.texts.length, 3]);
    const want = PADDED.logits.flat();
    expect(body.outputs.logits.data).toHaveLength(want.length);
    (body.outputs.logits.data as number[]).forEach((x, i) => expect(Math.abs(x - want[i])).toBeLessThan(1e-4));
    const one = (await predict(app, 'raw', { text: PADDED.texts[1] })).json().outputs.logits;
    expect(one.shape).toEqual([1, 3]);
  });
});

describe('multipart image batches', () => {
  const digits = [3, 1, 4, 1, 5, 9, 2, 6, 8, 7, 0];
  const labelsOf = (preds: Prediction[][]) => preds.map((p) => p[0].label);

  it('FormData over a real port and a hand-built body: one list per file, in order', async () => {
    const form = new FormData();
    for (const [i, d] of digits.entries()) form.append(`image${i}`, new Blob([png(d)], { type: 'image/png' }), `digit-${d}.png`);
    const res = await fetch(`${url}/v1/models/digits/predict`, { method: 'POST', body: form });
    expect(res.status).toBe(200);
    const preds = ((await res.json()) as { predictions: Prediction[][] }).predictions;
    expect(preds).toHaveLength(digits.length);
    expect(preds.every((p) => p.length === 3)).toBe(true);
    expect(labelsOf(preds)).toEqual(digits.map(String));

    const body = multipart([{ name: 'a', file: 'seven.png', data: png(7) }, { name: 'b', file: 'two.png', data: png(2) }]);
    const r = await predict(app, 'digits', body.payload, body.type);
    expect(r.statusCode).toBe(200);
    expect(labelsOf(r.json().predictions)).toEqual(['7', '2']);
    // One file is still a batch: a list of one list.
    const single = multipart([{ name: 'a', file: 'zero.png', data: png(0) }]);
    expect(labelsOf((await predict(app, 'digits', single.payload, single.type)).json().predictions)).toEqual(['0']);
  });

  it('files adding up to more than bodyLimit are a 413; formats other than JPEG/PNG/WebP a 400', async () => {
    const small = await serve(makeRepo({ digits: digitsModel() }), { bodyLimit: 1024 });
    const one = png(3);
    const parts = Array.from({ length: Math.ceil(1100 / one.length) + 1 }, (_, i) => ({ name: `f${i}`, file: `d${i}.png`, data: one }));
    const body = multipart(parts);
    const r = await predict(small, 'digits', body.payload, body.type);
    expect(r.statusCode).toBe(413);
    expect(r.json()).toMatchObject({ code: 'PAYLOAD_TOO_LARGE', error: expect.stringMatching(/multipart: the files add up to more than the server's bodyLimit \(1024 bytes\)/) });
    const ok = multipart([{ name: 'a', file: 'a.png', data: one }]);
    expect(labelsOf((await predict(small, 'digits', ok.payload, ok.type)).json().predictions)).toEqual(['3']);
    const svg = await predict(app, 'digits', '<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"/>', 'image/svg+xml');
    expect(svg.statusCode).toBe(400);
    expect(svg.json().error).toMatch(/image: not a JPEG, PNG or WebP file/);
  });

  it('preprocessing runs under the model\'s timeoutMs: 504 TIMEOUT, and the server keeps serving', async () => {
    const s = await serve(makeRepo({ quick: digitsModel({ timeoutMs: 1 }), digits: digitsModel() }));
    const big = await sharp({ create: { width: 2048, height: 1536, channels: 3, background: { r: 200, g: 40, b: 90 } } }).png().toBuffer();
    const r = await predict(s, 'quick', big, 'image/png');
    expect(r.statusCode).toBe(504);
    expect(r.json().code).toBe('TIMEOUT');
    expect((await predict(s, 'digits', png(2), 'image/png')).json().predictions[0].label).toBe('2');
  });

  it('a body without file parts is a 400 saying so', async () => {
    const none = multipart([]);
    const r = await predict(app, 'digits', none.payload, none.type);
    expect(r.statusCode).toBe(400);
    expect(r.json()).toMatchObject({ code: 'INVALID_ARGUMENT', error: expect.stringMatching(/multipart: no file parts/) });
    const one = multipart([{ name: 'x', file: 'x.png', data: png(5) }]);
    expect(labelsOf((await predict(app, 'digits', one.payload, one.type)).json().predictions)).toEqual(['5']);
  });

  it('a non-file field is a 400 naming the field', async () => {
    for (const parts of [[{ name: 'a', file: 'one.png', data: png(1) }, { name: 'note', data: 'hello' }], [{ name: 'note', data: 'hello' }]]) {
      const field = multipart(parts);
      const r = await predict(app, 'digits', field.payload, field.type);
      expect(r.statusCode).toBe(400);
      expect(r.json()).toMatchObject({ code: 'INVALID_ARGUMENT', error: expect.stringMatching(/multipart field 'note': not a file/) });
    }
  });

  it('more files than maxBatchSize (2): cut into runs of at most 2 rows, all answered in order', async () => {
    const model = app.nimify.repository.resolve('digits2').model!;
    expect(model.maxBatchRows).toBe(2);
    const before = model.stats();
    const files = [9, 8, 7, 6, 5];
    const body = multipart(files.map((d, i) => ({ name: `f${i}`, file: `d${d}.png`, data: png(d) })));
    const r = await predict(app, 'digits2', body.payload, body.type);
    expect(r.statusCode).toBe(200);
    expect(labelsOf(r.json().predictions)).toEqual(files.map(String));
    const after = model.stats();
    const sizes = Object.keys(after.batchSizeHistogram).map(Number);
    expect(Math.max(...sizes)).toBeLessThanOrEqual(2);
    let rows = 0;
    for (const [size, n] of Object.entries(after.batchSizeHistogram)) rows += Number(size) * (n - (before.batchSizeHistogram[size] ?? 0));
    expect(rows).toBe(files.length);
    expect(after.batches - before.batches).toBeGreaterThanOrEqual(3);
  });
});

describe('bad requests: 400 INVALID_ARGUMENT naming the problem; serving goes on', () => {
  it.each([
    ['sentiment', '{}', /exactly one of `text` \(a string\) or `texts`/],
    ['sentiment', '{"text":"a","texts":["b"]}', /exactly one of `text`/],
    ['sentiment', '{"texts":[]}', /texts must NOT have fewer than 1 items/],
    ['sentiment', '{"texts":["a",2]}', /texts\/1 must be string/],
    ['pairs', '{"texts":["a","b"],"text_pairs":["x"]}', /text_pairs has 1 items; texts has 2/],
    ['pairs', '{"texts":["a"],"text_pair":"x"}', /`text_pair` goes with `text`/],
    ['pairs', '{"text":"a","text_pairs":["x"]}', /`text_pairs` goes with `texts`/],
    ['sentiment', '{"text":"a","label":"x"}', /must NOT have additional properties/],
    ['sentiment', '{"text": "a"', /not valid JSON/],
    ['sentiment', '{"text":"a","__proto__":{"x":1}}', /not valid JSON.*prototype/],
    ['sentiment', 'null', /body: +must be object/],
    ['digits', '{"text":"seven"}', /model 'digits' takes images/],
    ['strict', '{"texts":["fine","I really loved this movie and the soup was great"]}', /texts\[1\]: \d+ tokens, more than maxLength 8 \(truncation is off/],
  ])('%s ← %s', async (model, body, reason) => {
    const r = await predict(app, model, body);
    expect(r.statusCode).toBe(400);
    expect(r.json()).toMatchObject({ code: 'INVALID_ARGUMENT', error: expect.stringMatching(reason) });
    expect((await predict(app, 'sentiment', { text: 'It is fine.' })).statusCode).toBe(200);
  });

  it('an image sent to a text model', async () => {
    const r = await predict(app, 'sentiment', png(3), 'image/png');
    expect(r.statusCode).toBe(400);
    expect(r.json()).toMatchObject({ code: 'INVALID_ARGUMENT', error: expect.stringMatching(/model 'sentiment' takes texts: send JSON/) });
    const m = multipart([{ name: 'a', file: 'a.png', data: png(3) }]);
    expect((await predict(app, 'sentiment', m.payload, m.type)).json().error).toMatch(/takes texts/);
    expect((await predict(app, 'strict', { text: 'fine' })).statusCode).toBe(200); // within maxLength
  });
});

describe('load-time validation of text pipelines (repository API)', () => {
  it('each mistake fails the load with a 400 giving the reason', async () => {
    const outside = fs.mkdtempSync(path.join(os.tmpdir(), 'nimify-outside-'));
    roots.push(outside);
    fs.copyFileSync(path.join(TEXT, 'wordpiece.json'), path.join(outside, 'tok.json'));
    const root = makeRepo({
      missing: { onnx: CLASSIFIER, config: { preprocess: { type: 'text', tokenizer: 'wordpiece.json' } } },
      nottok: { onnx: CLASSIFIER, config: { preprocess: { type: 'text', tokenizer: 'tok.json' } }, files: { 'tok.json': path.join(TEXT, 'labels3.txt') } },
      nopad: textModel({ padToken: '[NOPE]' }),
      floats: textModel({}, null, path.join(MODELS, 'mlp_tiny.onnx')),
      twoin: textModel({}, null, path.join(MODELS, 'two_inputs.onnx')),
      longest16: textModel({ padding: 'longest' }, null, FIXED16, 'bytelevel.json'),
      wrong16: textModel({ maxLength: 32 }, null, FIXED16, 'bytelevel.json'),
      escape: { onnx: CLASSIFIER, config: { preprocess: { type: 'text', tokenizer: 'tok.json' } } },
      good: textModel({ maxLength: 32 }),
    });
    fs.symlinkSync(path.join(outside, 'tok.json'), path.join(root, 'escape', 'tok.json'));
    const repo = await serve(root, { controlMode: 'explicit' });
    const cases: Array<[string, RegExp]> = [
      ['missing', /config\.preprocess\.tokenizer: cannot read wordpiece\.json in \S+ \(ENOENT\)/],
      ['nottok', /config\.preprocess\.tokenizer: cannot load \S+tok\.json as a tokenizer\.json/],
      ['nopad', /config\.preprocess\.padToken: "\[NOPE\]" is not in the tokenizer's vocabulary/],
      ['floats', /input 'x' is float32; token tensors are int64 or int32/],
      ['twoin', /config\.preprocess\.inputs\.ids: the model has no 'input_ids' \(it has 'a', 'b'\)/],
      ['longest16', /sequence dim is fixed at 16; use padding 'max_length' with maxLength 16/],
      ['wrong16', /sequence dim is fixed at 16; use padding 'max_length' with maxLength 16/],
      ['escape', /config\.preprocess\.tokenizer: tok\.json resolves outside the repository/],
    ];
    for (const [name, reason] of cases) {
      const r = await repo.inject({ method: 'POST', url: `/v2/repository/models/${name}/load` });
      expect(r.statusCode, name).toBe(400);
      expect(r.json().error, name).toMatch(reason);
      expect((await predict(repo, name, { text: 'hi' })).json().code, name).toBe('NOT_READY');
    }
    expect((await repo.inject({ method: 'POST', url: '/v2/repository/models/good/load' })).statusCode).toBe(200);
    expect((await predict(repo, 'good', { text: 'It is fine.' })).json().predictions[0].label).toBe('neutral');
  });
});

describe('metrics', () => {
  it('items, preprocessing time, and Triton success/failure counters count predict requests', async () => {
    const v = { model: 'sentiment', version: '1' };
    const items0 = await metric(app, 'nimify_predict_items_total', v);
    const ok0 = await metric(app, 'nv_inference_request_success', v);
    const pre0 = await metric(app, 'nimify_preprocess_duration_us', v);
    const bad0 = await metric(app, 'nv_inference_request_failure', { model: 'strict', version: '1', reason: 'OTHER' });
    expect((await predict(app, 'sentiment', { texts: SINGLE.texts })).statusCode).toBe(200);
    expect((await predict(app, 'sentiment', { text: 'hello' })).statusCode).toBe(200);
    expect((await predict(app, 'sentiment', { texts: ['a', 'b', 'c', 'd'] })).statusCode).toBe(200);
    expect((await predict(app, 'strict', { text: 'this text is far too long for a maxLength of eight tokens' })).statusCode).toBe(400);
    expect((await metric(app, 'nimify_predict_items_total', v)) - items0).toBe(SINGLE.texts.length + 1 + 4);
    expect((await metric(app, 'nv_inference_request_success', v)) - ok0).toBe(3);
    expect(await metric(app, 'nimify_preprocess_duration_us', v)).toBeGreaterThan(pre0);
    expect((await metric(app, 'nv_inference_request_failure', { model: 'strict', version: '1', reason: 'OTHER' })) - bad0).toBe(1);
    expect((await app.inject('/metrics')).body).toMatch(/^nimify_preprocess_queue_size \d+$/m);
  });
});

describe('admission', () => {
  const slowBody = (iters: number) => ({ inputs: [{ name: 'x', shape: [256, 256], datatype: 'FP32', data: new Array(65536).fill(0.01) }, { name: 'iters', shape: [], datatype: 'INT64', data: iters }] });

  it('maxConcurrentRequests: predict is shed with 503 OVERLOADED while another request is in flight', async () => {
    const root = makeRepo({ slow: { onnx: path.join(MODELS, 'slow.onnx') }, sentiment: textModel({ maxLength: 32 }) });
    const s = await serve(root, { shedding: { maxConcurrentRequests: 1, retryAfterSeconds: 3 } });
    const slow = s.inject({ method: 'POST', url: '/v2/models/slow/infer', payload: slowBody(10_000) });
    for (let i = 0; s.nimify.inFlight === 0 && i < 6000; i++) await new Promise((r) => setTimeout(r, 5));
    expect(s.nimify.inFlight).toBe(1);
    const shed = await predict(s, 'sentiment', { texts: ['a', 'b'] });
    expect(shed.statusCode).toBe(503);
    expect(shed.json().code).toBe('OVERLOADED');
    expect(shed.headers['retry-after']).toBe('3');
    expect((await slow).statusCode).toBe(200);
    expect((await predict(s, 'sentiment', { texts: ['a', 'b'] })).statusCode).toBe(200);
    expect(await metric(s, 'nimify_requests_shed_total', { reason: 'concurrency' })).toBe(1);
  }, 120_000);

  it('circuit breaker: model faults on predict open it; an open breaker (from infer faults) refuses predict', async () => {
    const reshape = textModel({ maxLength: 32, truncation: false }, RANKED, reshapeModel());
    // The automatic warmup (seq 1) would fail: warm up with seq 3.
    Object.assign(reshape.config as object, { warmup: [{ inputs: { input_ids: { shape: [1, 3] } } }] });
    const root = makeRepo({ r1: reshape, r2: reshape, sentiment: textModel({ maxLength: 32 }) });
    const s = await serve(root, { breaker: { failureThreshold: 2, resetTimeoutMs: 600_000 } });
    // Client errors do not count, even past admission (too many tokens); a success resets the count.
    for (let i = 0; i < 3; i++) expect((await predict(s, 'r1', { text: 'a '.repeat(40) })).json().error).toMatch(/more than maxLength 32/);
    expect((await predict(s, 'r1', { text: 'a b' })).json().code).toBe('RUNTIME_ERROR');
    const ok = await predict(s, 'r1', { text: 'a' });
    expect(ok.statusCode).toBe(200);
    expect(ok.json().predictions.map((p: Prediction) => p.score)).toEqual([43, 3, 2]); // the ids [CLS]=2 a=43 [SEP]=3, ranked
    for (let i = 0; i < 2; i++) {
      const r = await predict(s, 'r1', { texts: ['a b', 'a b'] });
      expect(r.statusCode).toBe(500);
      expect(r.json().code).toBe('RUNTIME_ERROR');
    }
    let r = await predict(s, 'r1', { text: 'a' });
    expect(r.statusCode).toBe(503);
    expect(r.json()).toMatchObject({ code: 'CIRCUIT_OPEN', error: expect.stringMatching(/model 'r1': circuit breaker is open/) });
    expect(Number(r.headers['retry-after'])).toBeGreaterThan(0);
    expect(await metric(s, 'nimify_circuit_breaker_state', { model: 'r1' })).toBe(2);
    expect((await predict(s, 'sentiment', { text: 'It is fine.' })).statusCode).toBe(200); // other models unaffected

    // Faults of infer requests open r2's breaker: predict is refused too.
    expect((await predict(s, 'r2', { text: 'a' })).statusCode).toBe(200);
    const bad = { inputs: [{ name: 'input_ids', shape: [1, 4], datatype: 'INT64', data: [2, 43, 44, 3] }] };
    for (let i = 0; i < 2; i++) expect((await s.inject({ method: 'POST', url: '/v2/models/r2/infer', payload: bad })).statusCode).toBe(500);
    r = await predict(s, 'r2', { text: 'a' });
    expect(r.statusCode).toBe(503);
    expect(r.json().code).toBe('CIRCUIT_OPEN');
  });
});

describe('a tokenizer that does not belong to the model', () => {
  it('is a server-side fault (500 RUNTIME_ERROR naming the pipeline), not the client\'s', async () => {
    // bytelevel.json's ids reach 479; text_classifier's embedding table has 300 rows.
    const s = await serve(makeRepo({ wrong: textModel({ maxLength: 32 }, RANKED, CLASSIFIER, 'bytelevel.json') }));
    try {
      const r = await predict(s, 'wrong', { text: 'zebra quantum xylophone' });
      expect(r.statusCode).toBe(500);
      expect(r.json()).toMatchObject({ code: 'RUNTIME_ERROR', error: expect.stringMatching(/the model refused the tensors its pipeline made \(check config\.json's preprocess against the model\)/) });
      expect(await metric(s, 'nv_inference_request_failure', { model: 'wrong', reason: 'BACKEND' })).toBe(1);
    } finally {
      await s.close();
    }
  });
});

describe('OpenAPI', () => {
  it('documents predict: JSON text body schema and examples, 200 response with examples', async () => {
    const doc = (await app.inject('/documentation/json')).json();
    for (const p of ['/v1/models/{model_name}/predict', '/v1/models/{model_name}/versions/{model_version}/predict']) {
      const op = doc.paths[p]?.post;
      expect(op, p).toBeDefined();
      const json = op.requestBody.content['application/json'];
      expect(Object.keys(json.schema.properties).sort()).toEqual(['text', 'text_pair', 'text_pairs', 'texts']);
      expect(json.schema.additionalProperties).toBe(false);
      expect(json.schema.properties.texts).toMatchObject({ type: 'array', items: { type: 'string' }, minItems: 1 });
      expect(Object.values(json.examples ?? {}).map((e) => (e as { value: unknown }).value)).toContainEqual({ text: 'What a lovely day' });
      const ok = op.responses['200'].content['application/json'];
      expect(ok.schema.properties).toHaveProperty('predictions');
      expect(ok.schema.properties).toHaveProperty('outputs');
      const examples = Object.values(ok.examples ?? {}).map((e) => (e as { value: { model_name: string } }).value.model_name);
      expect(examples).toEqual(expect.arrayContaining(['digits', 'sentiment']));
      expect(op.responses).toHaveProperty('400');
      // Every accepted body type is listed, not only JSON.
      expect(Object.keys(op.requestBody.content).sort()).toEqual(['application/json', 'image/jpeg', 'image/png', 'image/webp', 'multipart/form-data']);
      expect(op.requestBody.content['multipart/form-data'].schema.description).toMatch(/one per file part/);
    }
  });
});

describe('poll mode', () => {
  it('editing only the labels file reloads the model: the served labels change', async () => {
    const root = makeRepo({ sentiment: textModel({ maxLength: 32 }) });
    const s = await serve(root, { controlMode: 'poll', pollIntervalMs: 50 });
    const ask = async () => {
      const r = await predict(s, 'sentiment', { text: SINGLE.texts[0] });
      expect(r.statusCode).toBe(200);
      return r.json().predictions as Prediction[];
    };
    expectRanked(await ask(), SINGLE.logits[0], LABELS);
    const renamed = ['bad', 'so-so', 'good'];
    fs.writeFileSync(path.join(root, 'sentiment', 'labels3.txt'), `${renamed.join('\n')}\n`);
    let preds = await ask();
    for (let i = 0; preds[0].label !== renamed[preds[0].index] && i < 600; i++) {
      await new Promise((r) => setTimeout(r, 100));
      preds = await ask();
    }
    expectRanked(preds, SINGLE.logits[0], renamed);
  }, 120_000);
});
