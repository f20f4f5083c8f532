/**
 * The model repository behind the server: layout, config.json and auto-completion, version
 * policy, warmup and readiness, control modes (none, explicit, poll), reload under traffic with
 * no request lost, and refusal of anything that resolves outside the repository.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { buildServer, ModelRepository } from '../../src/server';
import { MODELS, writeFile } from '../helpers';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { encodeModel, mlp } = require('../../scripts/onnx-writer.js') as { encodeModel: (g: unknown) => Buffer; mlp: (name: string, sizes: number[], seed?: number) => unknown };

let root: string;
let apps: FastifyInstance[] = [];

const put = (rel: string, content: Buffer | string): void => writeFile(root, rel, content);
const fixture = (name: string) => fs.readFileSync(path.join(MODELS, name));
/** A 64 → 10 MLP with the given seed: same interface as mlp_tiny, different weights. */
const mlpBytes = (seed: number) => encodeModel(mlp('m', [64, 32, 10], seed));

async function server(options: Record<string, unknown> = {}): Promise<FastifyInstance> {
  const app = await buildServer({ repository: root, logger: false, ...options });
  await app.ready();
  apps.push(app);
  return app;
}
const row = new Array(64).fill(0).map((_, i) => (i % 7) / 7);
const infer = (app: FastifyInstance, url: string) =>
  app.inject({ method: 'POST', url, payload: { inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: row }] } });

beforeEach(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'nimify-repo-'));
});
afterEach(async () => {
  await Promise.all(apps.map((a) => a.close()));
  apps = [];
  fs.rmSync(root, { recursive: true, force: true });
});

describe('layout, config and versions (control mode none)', () => {
  it('loads every model, honours version policies and auto-completes the config', async () => {
    put('mlp/1/model.onnx', mlpBytes(1));
    put('mlp/2/model.onnx', mlpBytes(2));
    put('mlp/config.json', JSON.stringify({ versionPolicy: 'all', instances: 2, batching: { maxBatchSize: 4 } }));
    put('pair/1/model.onnx', fixture('two_inputs.onnx'));
    put('pair/3/model.onnx', fixture('two_inputs.onnx'));
    put('flat/model.onnx', fixture('mlp_tiny.onnx')); // no version directory: version 1
    const app = await server();
    expect((await app.inject({ method: 'POST', url: '/v2/repository/index' })).json()).toEqual([
      { name: 'flat', version: '1', state: 'READY' },
      { name: 'mlp', version: '1', state: 'READY' },
      { name: 'mlp', version: '2', state: 'READY' },
      { name: 'pair', version: '3', state: 'READY' }, // default policy: latest 1
    ]);
    expect((await app.inject('/v2/models/mlp')).json().versions).toEqual(['2', '1']);
    const config = (await app.inject('/v2/models/mlp/versions/1/config')).json();
    expect(config).toMatchObject({ instances: 2, batching: { maxBatchSize: 4, batchDim: true }, versionPolicy: 'all' });
    // Different weights per version: the versioned routes reach different models.
    const v1 = (await infer(app, '/v2/models/mlp/versions/1/infer')).json();
    const v2 = (await infer(app, '/v2/models/mlp/versions/2/infer')).json();
    const latest = (await infer(app, '/v2/models/mlp/infer')).json();
    expect(v1.model_version).toBe('1');
    expect(latest.model_version).toBe('2');
    expect(latest.outputs[0].data).toEqual(v2.outputs[0].data);
    expect(v1.outputs[0].data).not.toEqual(v2.outputs[0].data);
    expect((await app.inject('/v2/models/pair/versions/1')).statusCode).toBe(404);
  });

  it('a model that fails to load or warm up is UNAVAILABLE with its reason; the server is not ready; others serve', async () => {
    put('good/1/model.onnx', fixture('mlp_tiny.onnx'));
    put('garbage/1/model.onnx', Buffer.from('not an onnx model'));
    put('failing/1/model.onnx', fixture('reshape_fail.onnx'));
    // An explicit warmup that fails in ORT (4 elements cannot take shape [3, 3]); a failing
    // automatic warmup is only a warning (test/server/warmup.test.ts).
    put('failing/config.json', JSON.stringify({ warmup: [{ inputs: { x: { shape: [4] }, shape: { shape: [2], data: [3, 3] } } }] }));
    put('badconfig/config.json', '{"instances": 0}');
    put('badconfig/1/model.onnx', fixture('mlp_tiny.onnx'));
    const app = await server();
    const index = (await app.inject({ method: 'POST', url: '/v2/repository/index' })).json() as Array<{ name: string; state: string; reason?: string }>;
    const state = (n: string) => index.find((e) => e.name === n)!;
    expect(state('good').state).toBe('READY');
    expect(state('garbage')).toMatchObject({ state: 'UNAVAILABLE', reason: expect.any(String) });
    expect(state('failing').reason).toContain('warmup');
    expect(state('badconfig').reason).toContain('instances');
    const ready = await app.inject('/v2/health/ready');
    expect(ready.statusCode).toBe(503);
    expect(ready.json().code).toBe('NOT_READY');
    expect(ready.headers['retry-after']).toBeDefined();
    expect((await app.inject('/v2/models/garbage/ready')).statusCode).toBe(503);
    expect((await infer(app, '/v2/models/good/infer')).statusCode).toBe(200);
    expect((await app.inject('/v2/health/ready?ready=true')).statusCode).toBe(503);
    expect((await (await server({ repository: path.join(root, 'good', '1', 'model.onnx') })).inject('/v2/health/ready')).statusCode).toBe(200);
  });

  it('config.json warmup with explicit data; input shape declarations restrict requests', async () => {
    put('m/1/model.onnx', fixture('mlp_tiny.onnx'));
    put('m/config.json', JSON.stringify({
      inputs: [{ name: 'x', shape: [2, 64] }],
      warmup: [{ name: 'ones', inputs: { x: { shape: [2, 64], fill: 'random' } }, count: 3 }],
      batching: false,
    }));
    const app = await server();
    const meta = (await app.inject('/v2/models/m')).json();
    expect(meta.inputs[0].shape).toEqual([2, 64]);
    expect((await infer(app, '/v2/models/m/infer')).statusCode).toBe(400); // batch 1 does not fit [2, 64]
    // The warmup's 3 runs are not counted (zeroed once it settled), nor is the refused request.
    const stats = (await app.inject('/v2/models/m/stats')).json().model_stats[0];
    expect(stats).toMatchObject({ execution_count: 0, inference_stats: { success: { count: 0 }, fail: { count: 0 } } });
  });

  it('config errors name the field', async () => {
    put('m/1/model.onnx', fixture('mlp_tiny.onnx'));
    put('m/config.json', JSON.stringify({ versionPolicy: { newest: 1 } }));
    const app = await server();
    expect((await app.inject({ method: 'POST', url: '/v2/repository/index' })).json()[0].reason).toContain('versionPolicy');
  });

  it('a config.json key __proto__ or constructor.prototype is refused, not turned into a prototype', async () => {
    put('m/1/model.onnx', fixture('mlp_tiny.onnx'));
    put('m/config.json', '{"warmup":[{"inputs":{"__proto__":{"shape":[1,64],"fill":"zero"}}}]}');
    put('n/1/model.onnx', fixture('mlp_tiny.onnx'));
    put('n/config.json', '{"constructor":{"prototype":{"instances":4}}}');
    const app = await server();
    const index = (await app.inject({ method: 'POST', url: '/v2/repository/index' })).json() as Array<{ name: string; state: string; reason: string }>;
    for (const e of index) {
      expect(e.state, e.name).toBe('UNAVAILABLE');
      expect(e.reason, e.name).toMatch(/config\.json: not valid JSON \(.*prototype/);
    }
  });
});

describe('explicit control mode', () => {
  beforeEach(() => {
    put('a/1/model.onnx', fixture('mlp_tiny.onnx'));
    put('b/1/model.onnx', fixture('mlp_tiny.onnx'));
  });

  it('loads only the startup set; load, reload with a config override, unload', async () => {
    const app = await server({ controlMode: 'explicit', startupModels: ['a'] });
    expect((await app.inject({ method: 'POST', url: '/v2/repository/index' })).json()).toEqual([{ name: 'a', version: '1', state: 'READY' }, { name: 'b' }]);
    expect((await app.inject('/v2/health/ready')).statusCode).toBe(200); // b is not in the startup set
    expect((await infer(app, '/v2/models/b/infer')).statusCode).toBe(404);

    const load = await app.inject({ method: 'POST', url: '/v2/repository/models/b/load', payload: { parameters: { config: JSON.stringify({ batching: false }) } } });
    expect(load.statusCode).toBe(200);
    expect((await app.inject('/v2/models/b/config')).json().batching).toBe(false);
    expect((await infer(app, '/v2/models/b/infer')).statusCode).toBe(200);

    expect((await app.inject({ method: 'POST', url: '/v2/repository/models/b/unload' })).statusCode).toBe(200);
    expect((await app.inject({ method: 'POST', url: '/v2/repository/index', payload: { ready: true } })).json()).toEqual([{ name: 'a', version: '1', state: 'READY' }]);
    const gone = await infer(app, '/v2/models/b/infer');
    expect(gone.statusCode).toBe(404);
    expect((await app.inject({ method: 'POST', url: '/v2/repository/models/zzz/load' })).statusCode).toBe(404);
    const badOverride = await app.inject({ method: 'POST', url: '/v2/repository/models/b/load', payload: { parameters: { config: '{"instances": "two"}' } } });
    expect(badOverride.statusCode).toBe(400);
    expect(badOverride.json().error).toContain('instances');
  });

  it('a model that fails to load answers the load request with the reason', async () => {
    put('bad/1/model.onnx', Buffer.from('garbage'));
    const app = await server({ controlMode: 'explicit' });
    const r = await app.inject({ method: 'POST', url: '/v2/repository/models/bad/load' });
    expect(r.statusCode).toBe(400);
    expect(r.json().code).toBe('INVALID_MODEL');
  });

  it('unloading under traffic finishes every accepted request, queued ones included', async () => {
    put('s/1/model.onnx', fixture('slow.onnx')); // x [256,256], iters: each request runs for a while
    const app = await server({ controlMode: 'explicit', startupModels: ['*'], jsonWorkerBytes: 0 });
    const model = app.nimify.repository.resolve('s').model!;
    const body = { inputs: [{ name: 'x', shape: [256, 256], datatype: 'FP32', data: new Array(65536).fill(0.01) }, { name: 'iters', shape: [], datatype: 'INT64', data: 40 }] };
    const inflight = Array.from({ length: 6 }, () => app.inject({ method: 'POST', url: '/v2/models/s/infer', payload: body }));
    while (model.pending < 3) await new Promise((r) => setTimeout(r, 1));
    const reached = model.pending;
    const unload = app.inject({ method: 'POST', url: '/v2/repository/models/s/unload' });
    await new Promise((r) => setTimeout(r, 5));
    const late = await app.inject({ method: 'POST', url: '/v2/models/s/infer', payload: body });
    const results = await Promise.all(inflight);
    expect((await unload).statusCode).toBe(200);
    // Every request the model had accepted when the unload began got its result; any later one
    // was refused cleanly.
    expect(results.filter((r) => r.statusCode === 200).length).toBeGreaterThanOrEqual(reached);
    for (const r of results) expect([200, 404, 503]).toContain(r.statusCode);
    expect([404, 503]).toContain(late.statusCode);
    expect(model.disposed).toBe(true);
  });

  it('load and unload are refused in control mode none', async () => {
    const app = await server();
    const r = await app.inject({ method: 'POST', url: '/v2/repository/models/a/load' });
    expect(r.statusCode).toBe(400);
    expect(r.json().code).toBe('UNSUPPORTED');
  });
});

describe('poll control mode', () => {
  it('picks up new, changed and removed models; a reload under traffic loses no request', async () => {
    put('m/1/model.onnx', mlpBytes(1));
    const app = await server({ controlMode: 'poll', pollIntervalMs: 60_000 });
    const repo = app.nimify.repository;
    const before = (await infer(app, '/v2/models/m/infer')).json().outputs[0].data;

    let stop = false;
    const statuses: number[] = [];
    const failures: string[] = [];
    const traffic = (async () => {
      while (!stop) {
        const r = await infer(app, '/v2/models/m/infer');
        statuses.push(r.statusCode);
        if (r.statusCode !== 200) failures.push(r.body);
      }
    })();
    put('m/1/model.onnx', mlpBytes(5)); // changed in place
    fs.utimesSync(path.join(root, 'm/1/model.onnx'), new Date(), new Date(Date.now() + 5000));
    await repo.pollOnce();
    const after = (await infer(app, '/v2/models/m/infer')).json().outputs[0].data;
    expect(after).not.toEqual(before);

    put('m/2/model.onnx', mlpBytes(6)); // a new version: latest 1 → version 2 replaces 1
    put('n/1/model.onnx', fixture('mlp_tiny.onnx')); // a new model
    await repo.pollOnce();
    stop = true;
    await traffic;
    expect(statuses.length).toBeGreaterThan(5);
    expect(failures).toEqual([]);
    expect((await infer(app, '/v2/models/m/infer')).json().model_version).toBe('2');
    expect((await infer(app, '/v2/models/n/infer')).statusCode).toBe(200);

    fs.rmSync(path.join(root, 'n'), { recursive: true });
    await repo.pollOnce();
    expect((await infer(app, '/v2/models/n/infer')).statusCode).toBe(404);
  });

  it('a broken replacement keeps the previous version serving', async () => {
    put('m/1/model.onnx', mlpBytes(1));
    const app = await server({ controlMode: 'poll', pollIntervalMs: 60_000 });
    put('m/1/model.onnx', Buffer.from('broken'));
    await app.nimify.repository.pollOnce();
    expect((await infer(app, '/v2/models/m/infer')).statusCode).toBe(200);
  });
});

describe('nothing outside the repository', () => {
  it('refuses bad names and symlinks that leave the repository', async () => {
    const outside = fs.mkdtempSync(path.join(os.tmpdir(), 'nimify-outside-'));
    try {
      fs.mkdirSync(path.join(outside, '1'));
      fs.copyFileSync(path.join(MODELS, 'mlp_tiny.onnx'), path.join(outside, '1', 'model.onnx'));
      fs.symlinkSync(outside, path.join(root, 'escape'));
      put('inside/1/model.onnx', fixture('mlp_tiny.onnx'));
      fs.mkdirSync(path.join(root, 'sneaky', '1'), { recursive: true });
      fs.symlinkSync(path.join(outside, '1', 'model.onnx'), path.join(root, 'sneaky', '1', 'model.onnx'));
      const app = await server({ controlMode: 'explicit', startupModels: ['*'] });
      const names = (await app.inject({ method: 'POST', url: '/v2/repository/index' })).json().map((e: { name: string }) => e.name);
      expect(names).not.toContain('escape');
      expect((await infer(app, '/v2/models/escape/infer')).statusCode).toBe(404);
      expect((await infer(app, '/v2/models/sneaky/infer')).statusCode).toBeGreaterThanOrEqual(400);
      for (const evil of ['..', '..%2F..%2Fetc', '%2e%2e', '.hidden', 'a%2Fb']) {
        const r = await app.inject({ method: 'POST', url: `/v2/repository/models/${evil}/load` });
        expect(r.statusCode, evil).toBeGreaterThanOrEqual(400);
        expect(r.statusCode, evil).toBeLessThan(500);
      }
      expect(() => ModelRepository.prototype.resolve.call(app.nimify.repository, '../x')).toThrow();
    } finally {
      fs.rmSync(outside, { recursive: true, force: true });
    }
  });
});

describe('unreadable paths are reported, not skipped or called missing', () => {
  const asRoot = process.getuid?.() === 0; // root reads a chmod 000 folder anyway

  it.skipIf(asRoot)('a model folder that cannot be read (chmod 000) is UNAVAILABLE with EACCES, with a warning; the others serve', async () => {
    put('good/1/model.onnx', fixture('mlp_tiny.onnx'));
    put('locked/1/model.onnx', fixture('mlp_tiny.onnx'));
    fs.chmodSync(path.join(root, 'locked'), 0o000);
    try {
      const warnings: string[] = [];
      const log = { info: () => {}, warn: (_o: object, m?: string) => void warnings.push(m ?? ''), error: () => {} };
      const repo = await ModelRepository.open({ path: root, log });
      try {
        expect(repo.index()).toEqual([
          { name: 'good', version: '1', state: 'READY' },
          { name: 'locked', state: 'UNAVAILABLE', reason: expect.stringContaining('EACCES') },
        ]);
        expect(warnings.join('\n')).toMatch(/locked.*cannot read the model folder.*EACCES/);
        expect(() => repo.resolve('locked')).toThrow(/EACCES/);
        expect(repo.ready()).toBe(false);
      } finally {
        await repo.close();
      }
      // A version folder that cannot be read fails that model with the error, not "no version on disk".
      fs.chmodSync(path.join(root, 'locked'), 0o755);
      fs.chmodSync(path.join(root, 'locked', '1'), 0o000);
      const app = await server();
      const index = (await app.inject({ method: 'POST', url: '/v2/repository/index' })).json();
      expect(index).toContainEqual({ name: 'locked', version: '1', state: 'UNAVAILABLE', reason: expect.stringContaining('EACCES') });
    } finally {
      fs.chmodSync(path.join(root, 'locked'), 0o755);
      if (fs.existsSync(path.join(root, 'locked', '1'))) fs.chmodSync(path.join(root, 'locked', '1'), 0o755);
    }
  });

  it('a model folder that is a symlink loop (unreadable for root too) is UNAVAILABLE with ELOOP; a symlink to a file is not a model', async () => {
    put('good/1/model.onnx', fixture('mlp_tiny.onnx'));
    fs.symlinkSync('loop', path.join(root, 'loop'));
    put('notes.txt', 'not a model');
    fs.symlinkSync('notes.txt', path.join(root, 'notes')); // a file where a folder would be: ignored
    const warnings: string[] = [];
    const repo = await ModelRepository.open({ path: root, log: { info: () => {}, warn: (_o, m) => void warnings.push(m ?? ''), error: () => {} } });
    try {
      expect(repo.index()).toEqual([
        { name: 'good', version: '1', state: 'READY' },
        { name: 'loop', state: 'UNAVAILABLE', reason: expect.stringContaining('ELOOP') },
      ]);
      expect(warnings.join('\n')).toMatch(/'loop'.*ELOOP/);
    } finally {
      await repo.close();
    }
  });

  it('a repository path that cannot be opened says why instead of "does not exist"', async () => {
    put('m.onnx', fixture('mlp_tiny.onnx'));
    // Through a file as if it were a folder: ENOTDIR (any user); through a loop: ELOOP.
    await expect(ModelRepository.open({ path: path.join(root, 'm.onnx', 'x') })).rejects.toThrow(/cannot open .*ENOTDIR/);
    fs.symlinkSync('loop', path.join(root, 'loop'));
    await expect(ModelRepository.open({ path: path.join(root, 'loop') })).rejects.toThrow(/cannot open .*ELOOP/);
    await expect(ModelRepository.open({ path: path.join(root, 'missing') })).rejects.toMatchObject({ code: 'NOT_FOUND', message: expect.stringContaining('does not exist') });
    if (!asRoot) {
      fs.mkdirSync(path.join(root, 'locked'));
      put('locked/m.onnx', fixture('mlp_tiny.onnx'));
      fs.chmodSync(path.join(root, 'locked'), 0o000);
      try {
        await expect(ModelRepository.open({ path: path.join(root, 'locked', 'm.onnx') })).rejects.toThrow(/cannot open .*EACCES/);
      } finally {
        fs.chmodSync(path.join(root, 'locked'), 0o755);
      }
    }
  });
});
