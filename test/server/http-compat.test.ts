/**
 * What Triton's HTTP clients send that a plain JSON server refuses (issue 16 item 1), over a real
 * port with node:http (so the exact headers go on the wire): repository POSTs with an empty body
 * and no or any Content-Type; request bodies compressed with gzip or deflate (JSON and binary
 * extension); compressed responses when Accept-Encoding asks; the body limit on the inflated size.
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel, Tensor, type Model } from '../../src';
import { buildServer } from '../../src/server';
import { MODELS, maxAbsDiff } from '../helpers';

let app: FastifyInstance;
let port: number;
let direct: Model;
const input = Float32Array.from({ length: 64 }, (_, i) => Math.cos(i / 7));
let expected: Float32Array;

beforeAll(async () => {
  // A repository of one model in explicit mode: the repository routes are open.
  const repo = fs.mkdtempSync(path.join(os.tmpdir(), 'nimify-compat-'));
  fs.mkdirSync(path.join(repo, 'mlp_tiny', '1'), { recursive: true });
  fs.copyFileSync(path.join(MODELS, 'mlp_tiny.onnx'), path.join(repo, 'mlp_tiny', '1', 'model.onnx'));
  app = await buildServer({ repository: repo, controlMode: 'explicit', startupModels: ['mlp_tiny'], logger: false, bodyLimit: 64 * 1024, maxInflatedBytes: 80 * 1024 });
  await app.listen({ port: 0, host: '127.0.0.1' });
  port = (app.server.address() as { port: number }).port;
  direct = await loadModel(path.join(MODELS, 'mlp_tiny.onnx'));
  expected = (await direct.infer({ x: new Tensor('float32', input, [1, 64]) })).y!.data as Float32Array;
});
afterAll(async () => {
  await app.close();
  await direct.dispose();
});

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

function send(method: string, url: string, headers: Record<string, string>, body?: Buffer): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path: url, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

const json = (r: Reply) => JSON.parse(r.body.toString('utf8'));
const inferJson = Buffer.from(JSON.stringify({ inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: Array.from(input) }] }));

describe('repository routes with the bodies Triton clients send', () => {
  it.each([
    ['no body, no Content-Type', {}],
    ['Content-Length 0, no Content-Type', { 'content-length': '0' }],
    ["libcurl's default type", { 'content-length': '0', 'content-type': 'application/x-www-form-urlencoded' }],
    ['octet-stream', { 'content-length': '0', 'content-type': 'application/octet-stream' }],
    ['text/plain', { 'content-length': '0', 'content-type': 'text/plain' }],
  ])('index, load and unload answer 200 with %s', async (_label, headers) => {
    const index = await send('POST', '/v2/repository/index', headers);
    expect(index.status).toBe(200);
    expect(json(index)).toEqual(expect.arrayContaining([expect.objectContaining({ name: 'mlp_tiny' })]));
    const load = await send('POST', '/v2/repository/models/mlp_tiny/load', headers);
    expect(load.status).toBe(200);
    expect(json(load)).toEqual({});
  });

  it('a non-empty body is read as JSON whatever its type; bad JSON is a 400', async () => {
    const ready = await send('POST', '/v2/repository/index', { 'content-type': 'application/x-www-form-urlencoded' }, Buffer.from('{"ready":true}'));
    expect(ready.status).toBe(200);
    expect(json(ready).every((m: { state: string }) => m.state === 'READY')).toBe(true);
    const bad = await send('POST', '/v2/repository/index', { 'content-type': 'text/plain' }, Buffer.from('{ready'));
    expect(bad.status).toBe(400);
    expect(json(bad).code).toBe('INVALID_ARGUMENT');
    // Unload then load back with an empty body (the model stays served for the other tests).
    expect((await send('POST', '/v2/repository/models/mlp_tiny/unload', {})).status).toBe(200);
    expect((await send('POST', '/v2/repository/models/mlp_tiny/load', { 'content-length': '0' })).status).toBe(200);
  });
});

describe('compressed request bodies (Content-Encoding)', () => {
  it.each([
    ['gzip', zlib.gzipSync],
    ['deflate', zlib.deflateSync],
  ])('%s JSON inference gives the same numbers', async (encoding, compress) => {
    const r = await send('POST', '/v2/models/mlp_tiny/infer', { 'content-type': 'application/json', 'content-encoding': encoding }, compress(inferJson));
    expect(r.status).toBe(200);
    expect(maxAbsDiff(Float32Array.from(json(r).outputs[0].data as number[]), expected)).toBeLessThan(1e-6);
  });

  it('a gzip binary-extension body: Inference-Header-Content-Length counts the uncompressed JSON header', async () => {
    const header = Buffer.from(JSON.stringify({ inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', parameters: { binary_data_size: 256 } }], outputs: [{ name: 'y', parameters: { binary_data: true } }] }));
    const body = zlib.gzipSync(Buffer.concat([header, Buffer.from(input.buffer, input.byteOffset, input.byteLength)]));
    const r = await send('POST', '/v2/models/mlp_tiny/infer', { 'content-type': 'application/octet-stream', 'content-encoding': 'gzip', 'inference-header-content-length': String(header.length) }, body);
    expect(r.status).toBe(200);
    const jsonLength = Number(r.headers['inference-header-content-length']);
    const y = new Float32Array(r.body.buffer.slice(r.body.byteOffset + jsonLength, r.body.byteOffset + r.body.length));
    expect(maxAbsDiff(y, expected)).toBeLessThan(1e-6);
  });

  it('the body limit applies to the inflated size: a small gzip bomb gets 413 and the server stays up', async () => {
    const bomb = zlib.gzipSync(Buffer.alloc(4 * 1024 * 1024, 0x20)); // 4 MiB of spaces in ~4 KiB
    expect(bomb.length).toBeLessThan(64 * 1024);
    const r = await send('POST', '/v2/models/mlp_tiny/infer', { 'content-type': 'application/json', 'content-encoding': 'gzip' }, bomb);
    expect(r.status).toBe(413);
    expect(json(r).code).toBe('PAYLOAD_TOO_LARGE');
    expect((await send('POST', '/v2/models/mlp_tiny/infer', { 'content-type': 'application/json' }, inferJson)).status).toBe(200);
  });

  it('inflated bytes held at once are bounded server-wide: a body that would pass maxInflatedBytes while another holds it gets 503 + Retry-After', async () => {
    // 50 KiB of JSON whitespace before the request: two such bodies inflated at once pass 80 KiB.
    const padded = Buffer.concat([Buffer.alloc(50 * 1024, 0x20), inferJson]);
    const gz = zlib.gzipSync(padded);
    // A: all but its last bytes sent (its inflated whitespace is held), then held open.
    let resolveA!: (r: Reply) => void;
    const doneA = new Promise<Reply>((r) => (resolveA = r));
    const a = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/v2/models/mlp_tiny/infer', headers: { 'content-type': 'application/json', 'content-encoding': 'gzip', 'content-length': String(gz.length) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolveA({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    a.write(gz.subarray(0, gz.length - 16));
    await new Promise((r) => setTimeout(r, 150));
    const b = await send('POST', '/v2/models/mlp_tiny/infer', { 'content-type': 'application/json', 'content-encoding': 'gzip' }, gz);
    expect(b.status).toBe(503);
    expect(json(b).code).toBe('OVERLOADED');
    expect(b.headers['retry-after']).toBe('1');
    a.end(gz.subarray(gz.length - 16));
    expect((await doneA).status).toBe(200);
    // A's response is sent: its bytes no longer count.
    expect((await send('POST', '/v2/models/mlp_tiny/infer', { 'content-type': 'application/json', 'content-encoding': 'gzip' }, gz)).status).toBe(200);
  });

  it('corrupt compressed data is a 400; an unknown encoding is refused with 400 naming it', async () => {
    const corrupt = await send('POST', '/v2/models/mlp_tiny/infer', { 'content-type': 'application/json', 'content-encoding': 'gzip' }, Buffer.from('definitely not gzip'));
    expect(corrupt.status).toBe(400);
    expect(json(corrupt).error).toMatch(/not valid gzip data/);
    const br = await send('POST', '/v2/models/mlp_tiny/infer', { 'content-type': 'application/json', 'content-encoding': 'br' }, inferJson);
    expect(br.status).toBe(400);
    expect(json(br).error).toMatch(/Content-Encoding: expected gzip, deflate or identity, received "br"/);
    expect((await send('POST', '/v2/models/mlp_tiny/infer', { 'content-type': 'application/json', 'content-encoding': 'identity' }, inferJson)).status).toBe(200);
  });
});

describe('compressed responses (Accept-Encoding)', () => {
  // 16 rows: the JSON response (160 numbers) is over the 1 KiB below which nothing is compressed.
  const rows = (n: number) => Array.from({ length: n }, () => Array.from(input)).flat();
  const twoRows = Buffer.from(JSON.stringify({ inputs: [{ name: 'x', shape: [16, 64], datatype: 'FP32', data: rows(16) }] }));

  it.each([
    ['gzip', zlib.gunzipSync],
    ['deflate', zlib.inflateSync],
  ])('%s when asked, the same JSON once inflated', async (encoding, inflate) => {
    const r = await send('POST', '/v2/models/mlp_tiny/infer', { 'content-type': 'application/json', 'accept-encoding': encoding }, twoRows);
    expect(r.status).toBe(200);
    expect(r.headers['content-encoding']).toBe(encoding);
    const out = JSON.parse(inflate(r.body).toString('utf8'));
    expect(maxAbsDiff(Float32Array.from((out.outputs[0].data as number[]).slice(0, 10)), expected)).toBeLessThan(1e-6);
  });

  it('binary-extension responses too, with the header length of the uncompressed JSON; nothing compressed unless asked', async () => {
    const header = Buffer.from(JSON.stringify({ inputs: [{ name: 'x', shape: [32, 64], datatype: 'FP32', data: rows(32) }], outputs: [{ name: 'y', parameters: { binary_data: true } }] }));
    const r = await send('POST', '/v2/models/mlp_tiny/infer', { 'content-type': 'application/json', 'accept-encoding': 'gzip' }, header);
    expect(r.status).toBe(200);
    // 32 × 10 FP32 = 1280 bytes of tensor data after the JSON header: over the threshold.
    expect(r.headers['content-encoding']).toBe('gzip');
    const raw = zlib.gunzipSync(r.body);
    const jsonLength = Number(r.headers['inference-header-content-length']);
    expect(JSON.parse(raw.subarray(0, jsonLength).toString('utf8')).outputs[0].parameters.binary_data_size).toBe(1280);
    expect(raw.length).toBe(jsonLength + 1280);
    const y = new Float32Array(raw.buffer.slice(raw.byteOffset + jsonLength, raw.byteOffset + jsonLength + 40));
    expect(maxAbsDiff(y, expected)).toBeLessThan(1e-6);
    const plain = await send('POST', '/v2/models/mlp_tiny/infer', { 'content-type': 'application/json' }, twoRows);
    expect(plain.headers['content-encoding']).toBeUndefined();
    expect(json(plain).outputs[0].shape).toEqual([16, 10]);
  });
});
