/**
 * `nimify inspect`: real fixture models through the real command (main() with captured io), the
 * JSON document's fields, the human tables, the ONNX header reader, and the error exits.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { main } from '../../src/cli/index';
import { readOnnxHeader } from '../../src/cli/onnx-header';
import type { ModelReport } from '../../src/cli/inspect';
import { autoWarmup, WARMUP_DIM } from '../../src/repository/config';
import { MODELS, ROOT } from '../helpers';
import { capture } from './capture';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { encodeModel } = require('../../scripts/onnx-writer.js') as { encodeModel: (g: unknown) => Buffer };

let silero: string;
beforeAll(() => {
  // silero VAD v5 (a real model whose STFT refuses length-1 axes); about 6 MB from the registry once, cached after.
  silero = execFileSync(process.execPath, [path.join(ROOT, 'scripts', 'fetch-test-models.js'), 'silero_vad_v5'], { encoding: 'utf8', timeout: 180_000, stdio: ['ignore', 'pipe', 'inherit'] }).trim();
}, 200_000);

/** [batch, n] + a [1, 3] constant: loads, and fails at run time for every n but 1 and 3 (ORT refuses the broadcast). */
const broadcastOnly3 = () =>
  encodeModel({
    name: 'broadcast3',
    nodes: [{ op: 'Add', inputs: ['x', 'c'], outputs: ['y'] }],
    initializers: [{ name: 'c', dims: [1, 3], data: Float32Array.from([1, 2, 3]) }],
    inputs: [{ name: 'x', dims: ['batch', 'n'] }],
    outputs: [{ name: 'y', dims: ['batch', 3] }],
  });

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

  it('silero VAD v5: the full report, latency measured on the automatic warmup\'s shapes (not 1), exit 0', async () => {
    const { code, models } = await json([silero, '--latency-ms', '20']);
    expect(code).toBe(0);
    const m = models[0]!;
    expect(m).toMatchObject({ name: 'silero_vad', state: 'READY', reason: null });
    expect(m.inputs!.map((t) => t.name)).toEqual(['input', 'state', 'sr']);
    expect(m.config).toMatchObject({ name: 'silero_vad' });
    expect(m.batchDim).toMatchObject({ detected: false });
    const rows = m.latency!.rows;
    expect(rows.map((r) => r.batch)).toEqual([null, 8, 32]);
    // The size the model has is measured (or, should a future ORT refuse it, skipped with its message).
    const first = rows[0]!;
    if ('skipped' in first) expect(first.skipped).toMatch(/failed: .+/);
    else {
      expect(first.shapes).toEqual({ input: [WARMUP_DIM, WARMUP_DIM], state: [2, WARMUP_DIM, 128], sr: [] });
      expect(first.runs).toBeGreaterThanOrEqual(3);
    }
    const io = capture();
    expect(await main(['inspect', silero, '--latency-ms', '10'], io)).toBe(0);
    expect(io.stdout()).toMatch(/ {4}state +float32 +FP32 +\[2, \?, 128\]/);
    expect(io.stdout()).toContain(`fed: input [${WARMUP_DIM}, ${WARMUP_DIM}], state [2, ${WARMUP_DIM}, 128], sr []`);
  }, 60_000);

  it('the latency feeds are the automatic warmup\'s requests, batch dim set to each size', async () => {
    const { models } = await json([path.join(MODELS, 'embed_int64.onnx'), '--latency-ms', '10']);
    const m = models[0]!;
    const shapes = m.latency!.rows.map((r) => ('shapes' in r ? r.shapes : r.skipped));
    const io = m.config!.inputs;
    const expected = [1, 8, 32].map((b) => ({ ids: (autoWarmup(io, [{ name: 'ids', type: 'int64', shape: ['batch', 'seq'] }], true, b)[0]!.inputs.ids!).shape }));
    expect(shapes).toEqual(expected);
    expect(expected[2]).toEqual({ ids: [32, WARMUP_DIM] });
  });

  it('a size whose run fails is skipped with ORT\'s message; the rest of the report and the other models\' reports stay (exit 0)', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nimify-inspect-'));
    fs.mkdirSync(path.join(dir, 'bad', '1'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'bad', '1', 'model.onnx'), broadcastOnly3());
    fs.mkdirSync(path.join(dir, 'tiny', '1'), { recursive: true });
    fs.copyFileSync(path.join(MODELS, 'mlp_tiny.onnx'), path.join(dir, 'tiny', '1', 'model.onnx'));
    fs.mkdirSync(path.join(dir, 'vad', '1'), { recursive: true });
    fs.copyFileSync(silero, path.join(dir, 'vad', '1', 'model.onnx'));
    const { code, models } = await json([dir, '--latency-ms', '10']);
    expect(code).toBe(0);
    expect(models.map((m) => m.name).sort()).toEqual(['bad', 'tiny', 'vad']);
    const bad = models.find((m) => m.name === 'bad')!;
    expect(bad.state).toBe('READY');
    expect(bad.inputs).toEqual([{ name: 'x', type: 'float32', datatype: 'FP32', shape: ['batch', 'n'] }]);
    expect(bad.config).toMatchObject({ name: 'bad', batching: { batchDim: true } });
    expect(bad.latency!.rows).toEqual([1, 8, 32].map((b) => ({ batch: b, skipped: expect.stringMatching(new RegExp(`^the run on x \\[${b}, ${WARMUP_DIM}\\] failed: .*(broadcast|Broadcast)`)) })));
    const tiny = models.find((m) => m.name === 'tiny')!;
    expect(tiny.latency!.rows.every((r) => !('skipped' in r))).toBe(true);
    expect(models.find((m) => m.name === 'vad')!.inputs).toHaveLength(3);

    const io = capture();
    expect(await main(['inspect', dir, '--latency-ms', '10'], io)).toBe(0);
    expect(io.stdout()).toMatch(/model bad version 1[^]*inputs[^]*config {5}\{[^]*\n {4}1 +skipped: the run on x \[1, 128\] failed: /);
    expect(io.stdout()).toMatch(/model tiny version 1[^]*\n {4}32 +\d+ +[\d.]+ (µs|ms)/);
    fs.rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  it('exit 1 only when a model failed to load; the models that loaded are still reported', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nimify-inspect-'));
    fs.mkdirSync(path.join(dir, 'broken', '1'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'broken', '1', 'model.onnx'), 'not a model');
    fs.mkdirSync(path.join(dir, 'tiny', '1'), { recursive: true });
    fs.copyFileSync(path.join(MODELS, 'mlp_tiny.onnx'), path.join(dir, 'tiny', '1', 'model.onnx'));
    const { code, models } = await json([dir, '--latency-ms', '10']);
    expect(code).toBe(1);
    expect(models.find((m) => m.name === 'broken')).toMatchObject({ state: 'UNAVAILABLE', reason: expect.any(String) });
    expect(models.find((m) => m.name === 'tiny')).toMatchObject({ state: 'READY', latency: { rows: expect.any(Array) } });
    fs.rmSync(dir, { recursive: true, force: true });
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
