/**
 * POST /v1/models/{m}/predict: image bytes in, ranked predictions out, with the demo model in
 * examples/digits (its config.json declares the image pipeline and top-3 with labels). Also the
 * README's quickstart, exactly: `nimify serve examples/digits` on a real port and a sample PNG
 * posted to it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildServer } from '../../src/server';
import { MODELS, ROOT } from '../helpers';

const DIGITS = path.join(ROOT, 'examples', 'digits');
const sample = (d: number) => fs.readFileSync(path.join(DIGITS, 'samples', `digit-${d}.png`));

let app: FastifyInstance;
beforeAll(async () => {
  app = await buildServer({ repository: DIGITS, logger: false });
});
afterAll(() => app.close());

const post = (body: Buffer | string, type = 'image/png', url = '/v1/models/digits/predict') =>
  app.inject({ method: 'POST', url, headers: { 'content-type': type }, payload: body });

describe('predict', () => {
  it('classifies every sample digit, best first, with labels and softmax scores', async () => {
    for (let d = 0; d < 10; d++) {
      const r = await post(sample(d));
      expect(r.statusCode).toBe(200);
      const body = r.json();
      expect(body).toMatchObject({ model_name: 'digits', model_version: '1' });
      expect(body.predictions).toHaveLength(3);
      expect(body.predictions[0]).toMatchObject({ label: String(d), index: d });
      const scores = body.predictions.map((p: { score: number }) => p.score);
      expect([...scores].sort((a, b) => b - a)).toEqual(scores);
      expect(scores[0]).toBeGreaterThan(0.5);
      expect(scores.reduce((a: number, b: number) => a + b, 0)).toBeLessThanOrEqual(1 + 1e-9);
    }
    expect((await post(sample(4), 'image/png', '/v1/models/digits/versions/1/predict')).json().predictions[0].label).toBe('4');
  });

  it('bad requests get 400/404 with a clear error and the server keeps serving', async () => {
    let r = await post(Buffer.from('not an image at all'));
    expect(r.statusCode).toBe(400);
    expect(r.json()).toMatchObject({ code: 'INVALID_ARGUMENT', error: expect.stringMatching(/image: not a JPEG, PNG or WebP file/) });
    r = await post(sample(3).subarray(0, 60));
    expect(r.statusCode).toBe(400);
    r = await post(Buffer.alloc(0));
    expect(r.statusCode).toBe(400);
    r = await post(sample(3), 'image/png', '/v1/models/nope/predict');
    expect(r.statusCode).toBe(404);
    r = await post('{"text":"seven"}', 'application/json');
    expect(r.statusCode).toBe(400);
    expect(r.json()).toMatchObject({ code: 'INVALID_ARGUMENT', error: expect.stringMatching(/model 'digits' takes images: send the image bytes/) });
    r = await post('seven', 'text/plain');
    expect(r.statusCode).toBe(400);
    expect(r.json()).toMatchObject({ code: 'INVALID_ARGUMENT', error: expect.stringMatching(/Content-Type text\/plain is not accepted here; send an image file's bytes/) });
    await expect(buildServer({ repository: DIGITS, logger: false, preprocess: { threads: 0 } })).rejects.toThrow(/options\.preprocess\.threads: expected an integer in \[1, 256\]/);
    const plain = await buildServer({ repository: path.join(MODELS, 'mlp_tiny.onnx'), logger: false, preprocess: { threads: 1, maxQueue: 4 } });
    try {
      const p = await plain.inject({ method: 'POST', url: '/v1/models/mlp_tiny/predict', headers: { 'content-type': 'image/png' }, payload: sample(1) });
      expect(p.statusCode).toBe(400);
      expect(p.json().error).toMatch(/model 'mlp_tiny' has no preprocess section in its config\.json/);
    } finally {
      await plain.close();
    }
    expect((await post(sample(8))).json().predictions[0].label).toBe('8');
  });
});

describe('the README quickstart', () => {
  let child: ChildProcess | null = null;
  afterAll(() => {
    child?.kill('SIGKILL');
  });

  it('`nimify serve examples/digits`, then a sample PNG posted over HTTP, answers its digit', async () => {
    child = spawn(process.execPath, [path.join(ROOT, 'dist', 'cli', 'index.js'), 'serve', 'examples/digits', '--port', '0'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const url = await new Promise<string>((resolve, reject) => {
      child!.stdout!.on('data', (d: Buffer) => {
        out += d;
        const m = /serving .* at (http:\/\/\S+)/.exec(out);
        if (m) resolve(m[1]);
      });
      child!.stderr!.on('data', (d: Buffer) => (out += d));
      child!.on('exit', (code) => reject(new Error(`exited ${code}:\n${out}`)));
    });
    const res = await fetch(`${url}/v1/models/digits/predict`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: sample(7) });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { predictions: { label: string; score: number }[] };
    // What the README shows.
    expect(body.predictions.map((p) => p.label)).toEqual(['7', '9', '3']);
    expect(body.predictions[0].score).toBeCloseTo(0.9586, 4);
    child.kill('SIGTERM');
    expect(await new Promise((r) => child!.once('exit', r))).toBe(0);
    child = null;
  }, 60_000);
});
