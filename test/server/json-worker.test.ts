/**
 * Large JSON bodies are decoded in a worker thread: same answers as the in-thread decode, the
 * same 400s for bad data, and the event loop stays free while a big body decodes.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildServer } from '../../src/server';
import { MODELS } from '../helpers';

let offloaded: FastifyInstance;
let inThread: FastifyInstance;
const repository = path.join(MODELS, 'convnet.onnx'); // x [batch, 3, 32, 32]

beforeAll(async () => {
  offloaded = await buildServer({ repository, logger: false, jsonWorkerBytes: 1024 });
  inThread = await buildServer({ repository, logger: false, jsonWorkerBytes: 0 });
  await Promise.all([offloaded.ready(), inThread.ready()]);
});
afterAll(async () => {
  await Promise.all([offloaded.close(), inThread.close()]);
});

const image = (batch: number) => Array.from({ length: batch }, (_, b) => Array.from({ length: 3 }, (_, c) => Array.from({ length: 32 }, (_, y) => Array.from({ length: 32 }, (_, x) => Math.sin(b + c * 7 + y * 0.3 + x * 0.1)))));
const infer = (app: FastifyInstance, payload: unknown) => app.inject({ method: 'POST', url: '/v2/models/convnet/infer', headers: { 'content-type': 'application/json' }, payload: JSON.stringify(payload) });

describe('JSON decode worker', () => {
  it('gives the same outputs as the in-thread decode (nested data, batch 4)', async () => {
    const body = { id: 'w', inputs: [{ name: 'x', shape: [4, 3, 32, 32], datatype: 'FP32', data: image(4) }] };
    const a = await infer(offloaded, body);
    const b = await infer(inThread, body);
    expect(a.statusCode).toBe(200);
    expect(a.json()).toEqual(b.json());
    expect(offloaded.nimify.jsonPool!.completed).toBeGreaterThan(0);
    expect(inThread.nimify.jsonPool).toBeNull();
  });

  it('bad data in a large body is the same 400 as in-thread', async () => {
    const data = image(1).flat(3) as unknown[];
    data[1234] = 'oops';
    const body = { inputs: [{ name: 'x', shape: [1, 3, 32, 32], datatype: 'FP32', data }] };
    const a = await infer(offloaded, body);
    const b = await infer(inThread, body);
    expect(a.statusCode).toBe(400);
    expect(a.json()).toEqual(b.json());
    expect(a.json().error).toContain('element 1234');
    const proto = await offloaded.inject({ method: 'POST', url: '/v2/models/convnet/infer', headers: { 'content-type': 'application/json' }, payload: `{"inputs":[],"pad":"${'x'.repeat(2000)}","__proto__":{"a":1}}` });
    expect(proto.statusCode).toBe(400);
    const short = await infer(offloaded, { inputs: [{ name: 'x', shape: [1, 3, 32, 32], datatype: 'FP32', data: data.slice(0, 3000).map(() => 1) }] });
    expect(short.statusCode).toBe(400);
    expect(short.json().error).toContain('needs 3072 elements, received 3000');
  });

  it('keeps the event loop responsive while large bodies decode', async () => {
    const big = JSON.stringify({ inputs: [{ name: 'x', shape: [16, 3, 32, 32], datatype: 'FP32', data: image(16) }] });
    const run = async (app: FastifyInstance) => {
      // The longest gap between 1 ms ticks = the longest the loop was blocked.
      let last = performance.now();
      let worst = 0;
      const tick = setInterval(() => {
        const now = performance.now();
        worst = Math.max(worst, now - last);
        last = now;
      }, 1);
      const rs = await Promise.all(Array.from({ length: 8 }, () => app.inject({ method: 'POST', url: '/v2/models/convnet/infer', headers: { 'content-type': 'application/json' }, payload: big })));
      clearInterval(tick);
      expect(rs.every((r) => r.statusCode === 200)).toBe(true);
      return worst;
    };
    // Behaviour, not timing: both answer; the numbers are printed for the curious.
    const off = await run(offloaded);
    const on = await run(inThread);
    console.log(`longest event-loop block while decoding 8 × ${(big.length / 1e6).toFixed(1)} MB: worker ${off.toFixed(1)} ms, in-thread ${on.toFixed(1)} ms`);
  });
});

describe('JSON decode worker: the same answer as the in-thread decode for every datatype and refusal', () => {
  // Identity models of several datatypes; every body is offloaded by one server (jsonWorkerBytes 1)
  // and decoded in-thread by the other (test/protocol/infer-json.test.ts holds that one to the
  // plain JSON.parse path). The worker's typed arrays and plain values cross a structured clone.
  const kinds: Array<[string, string]> = [['f32', 'identity_float32'], ['i8', 'identity_int8'], ['f16', 'identity_float16'], ['str', 'identity_string'], ['b', 'identity_bool'], ['i64', 'identity_int64']];
  let root: string;
  let worker: FastifyInstance;
  let local: FastifyInstance;
  beforeAll(async () => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'nimify-json-worker-'));
    for (const [name, file] of kinds) {
      fs.mkdirSync(path.join(root, name, '1'), { recursive: true });
      fs.copyFileSync(path.join(MODELS, `${file}.onnx`), path.join(root, name, '1', 'model.onnx'));
    }
    worker = await buildServer({ repository: root, logger: false, jsonWorkerBytes: 1 });
    local = await buildServer({ repository: root, logger: false, jsonWorkerBytes: 0 });
    await Promise.all([worker.ready(), local.ready()]);
  });
  afterAll(async () => {
    await Promise.all([worker.close(), local.close()]);
    fs.rmSync(root, { recursive: true, force: true });
  });

  it('answers alike, byte for byte', async () => {
    const ten = '[1,2,3,4,5,6,7,8,9,10]';
    const cases: Array<[string, string]> = [
      ['f32', `{"inputs":[{"name":"x","datatype":"FP32","shape":[10],"data":[0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1e-3]}]}`],
      ['f32', `{"inputs":[{"name":"x","datatype":"FP32","shape":[2,5],"data":[[1.5,2.5,3.5,4.5,5.5],[6.5,7.5,8.5,9.5,10.5]]}]}`],
      ['f32', `{"inputs":[{"name":"x","datatype":"FP32","shape":[10],"data":[[1.5,2.5,3.5,4.5,5.5],[6.5,7.5,8.5,9.5,10.5]]}]}`],
      ['f32', `{"inputs":[{"name":"x","datatype":"FP32","shape":[9],"data":${ten}}]}`],
      ['f32', `{"inputs":[{"name":"x","datatype":"FP32","shape":[-1],"data":${ten}}]}`],
      ['f32', `{"inputs":[{"name":"x","datatype":"FP33","shape":[10],"data":${ten}}]}`],
      ['f32', `{"inputs":[{"name":"x","datatype":"FP64","shape":[10],"data":${ten}}]}`],
      ['i8', `{"inputs":[{"name":"x","datatype":"INT8","shape":[10],"data":[1,2,3,4,5,6,7,8,9,128]}]}`],
      ['i8', `{"inputs":[{"name":"x","datatype":"INT8","shape":[10],"data":[1,2,3,4,5,6,7,8,9,-128]}]}`],
      ['f16', `{"inputs":[{"name":"x","datatype":"FP16","shape":[10],"data":[0.1,65504,65520,1e-8,5,6,7,8,9,10]}]}`],
      ['str', `{"inputs":[{"name":"x","datatype":"BYTES","shape":[10],"data":${ten}}]}`],
      ['str', `{"inputs":[{"name":"x","datatype":"BYTES","shape":[3],"data":${ten}}]}`],
      ['str', `{"inputs":[{"name":"x","datatype":"BYTES","shape":[2],"data":["abc","de"]}]}`],
      ['b', `{"inputs":[{"name":"x","datatype":"BOOL","shape":[10],"data":${ten}}]}`],
      ['i64', `{"inputs":[{"name":"x","datatype":"INT64","shape":[10],"data":[9007199254740991,2,3,4,5,6,7,8,9,-9007199254740991]}]}`],
      ['i64', `{"inputs":[{"name":"x","datatype":"INT64","shape":[10],"data":[9007199254740992,2,3,4,5,6,7,8,9,10]}]}`],
      ['f32', `{"inputs":[{"name":"x","datatype":"FP32","shape":[10],"data":${ten},"d\\u0061ta":"\\u00000"}]}`],
    ];
    for (const [name, body] of cases) {
      const send = (app: FastifyInstance) => app.inject({ method: 'POST', url: `/v2/models/${name}/infer`, headers: { 'content-type': 'application/json' }, payload: body });
      const [a, b] = await Promise.all([send(worker), send(local)]);
      expect([a.statusCode, a.body], body).toEqual([b.statusCode, b.body]);
    }
  });
});
