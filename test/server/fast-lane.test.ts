/**
 * The infer fast lane (src/server/fast-lane.ts) on real ports: the same requests sent to a
 * server with the lane and to one without get the same answers — status, body, headers (but
 * Date and a generated X-Request-Id) and what the connection does next — and the same
 * statistics; the lane really serves the requests it is for (a hook on each server counts what
 * Fastify saw) and leaves every other request to Fastify untouched; a client that hangs up is
 * cancelled; refusals (API key, overload, draining) answer as the route does.
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as zlib from 'node:zlib';
import type { FastifyInstance } from 'fastify';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BasicTracerProvider } from '@opentelemetry/sdk-trace-base';
import { serveOptions } from '../../src/cli/serve';
import { buildServer } from '../../src/server';
import { fixtureRepo } from '../helpers';

const tmpDirs: string[] = [];
const makeRepo = (models: Record<string, string>): string => fixtureRepo(models, tmpDirs, 'nimify-lane-');

interface Served {
  app: FastifyInstance;
  port: number;
  /** Requests Fastify answered (a root onResponse hook: it runs for refusals too). */
  fastify: () => number;
}

async function serve(options: Record<string, unknown>): Promise<Served> {
  const app = await buildServer({ logger: false, ...options } as never);
  let seen = 0;
  app.addHook('onResponse', (_request, _reply, done) => {
    seen++;
    done();
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  return { app, port: (app.server.address() as net.AddressInfo).port, fastify: () => seen };
}

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/** One request on a connection of its own; the answer, with the headers that differ by nature (Date, a generated id) removed. */
function send(port: number, method: string, url: string, headers: Record<string, string>, body?: string | Buffer): Promise<Answer> {
  return new Promise((resolve, reject) => {
    // A keep-alive connection of its own: what the answer does to the connection shows.
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const req = http.request({ host: '127.0.0.1', port, method, path: url, headers, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const h = { ...res.headers };
        delete h.date;
        let body = Buffer.concat(chunks);
        // A compressed answer: its content (the route streams it chunked, the lane sends its length).
        const encoding = h['content-encoding'];
        if (encoding !== undefined) {
          body = encoding === 'gzip' ? zlib.gunzipSync(body) : zlib.inflateSync(body);
          delete h['transfer-encoding'];
          delete h['content-length'];
        }
        if (!headers['x-request-id']) {
          expect(h['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
          delete h['x-request-id'];
        }
        agent.destroy();
        resolve({ status: res.statusCode!, headers: h, body });
      });
    });
    req.on('error', (err) => {
      agent.destroy();
      reject(err);
    });
    req.end(body);
  });
}

const X = Array.from({ length: 128 }, (_, i) => Math.round(Math.sin(i) * 1000) / 1000);
/** Eight rows: an answer over 1 KiB, which the route compresses when asked. */
const X8 = Array.from({ length: 512 }, (_, i) => Math.round(Math.cos(i) * 1000) / 1000);
const json = (o: unknown) => JSON.stringify(o);
const BIG = json({ inputs: [{ name: 'x', shape: [8, 64], datatype: 'FP32', data: X8 }] });
const JSON_HEADERS = { 'content-type': 'application/json' };
const f32 = (values: number[]) => Buffer.from(new Float32Array(values).buffer);
function binary(header: object, tail: Buffer): { body: Buffer; headers: Record<string, string> } {
  const head = Buffer.from(JSON.stringify(header));
  return { body: Buffer.concat([head, tail]), headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(head.length) } };
}

interface Case {
  what: string;
  url?: string;
  headers?: Record<string, string>;
  body: string | Buffer;
}

/** Requests the lane takes: valid ones of every shape the route serves, and every kind of refusal the route answers after admission. */
const LANE_CASES: Case[] = [
  { what: 'a valid JSON request', body: json({ inputs: [{ name: 'x', shape: [2, 64], datatype: 'FP32', data: X }] }) },
  { what: 'nested data, an id and parameters', body: json({ id: 'r-1', parameters: { note: 'n', flag: true }, inputs: [{ name: 'x', shape: [2, 64], datatype: 'FP32', data: [X.slice(0, 64), X.slice(64)] }] }) },
  { what: 'a versioned URL', url: '/v2/models/mlp_tiny/versions/1/infer', body: json({ inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: X.slice(0, 64) }] }) },
  { what: 'outputs selected, one of them binary', url: '/v2/models/two_inputs/infer', body: json({ inputs: [{ name: 'a', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }, { name: 'b', shape: [1, 4], datatype: 'FP32', data: [5, 6, 7, 8] }], outputs: [{ name: 'prod', parameters: { binary_data: true } }] }) },
  { what: 'binary_data_output for all outputs', url: '/v2/models/two_inputs/infer', body: json({ parameters: { binary_data_output: true }, inputs: [{ name: 'a', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }, { name: 'b', shape: [1, 4], datatype: 'FP32', data: [5, 6, 7, 8] }] }) },
  { what: 'a binary-extension request', ...binary({ inputs: [{ name: 'x', shape: [2, 64], datatype: 'FP32', parameters: { binary_data_size: 512 } }] }, f32(X)) },
  { what: 'a BYTES tensor', url: '/v2/models/identity_string/infer', body: json({ inputs: [{ name: 'x', shape: [3], datatype: 'BYTES', data: ['a', 'bé', ''] }] }) },
  { what: 'a client request id echoed', headers: { ...JSON_HEADERS, 'x-request-id': 'client-id-7' }, body: json({ inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: X.slice(0, 64) }] }) },
  { what: 'an empty X-Request-Id (one is generated)', headers: { ...JSON_HEADERS, 'x-request-id': '' }, body: json({ inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: X.slice(0, 64) }] }) },
  { what: 'no Content-Type', headers: {}, body: json({ inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: X.slice(0, 64) }] }) },
  { what: 'Accept-Encoding: identity', headers: { ...JSON_HEADERS, 'accept-encoding': 'identity' }, body: json({ inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: X.slice(0, 64) }] }) },
  { what: 'Accept-Encoding: gzip, a small answer (sent as it is)', headers: { ...JSON_HEADERS, 'accept-encoding': 'gzip, deflate' }, body: json({ inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: X.slice(0, 64) }] }) },
  { what: 'Accept-Encoding: gzip, deflate, a large answer (gzip)', headers: { ...JSON_HEADERS, 'accept-encoding': 'gzip, deflate' }, body: BIG },
  { what: 'Accept-Encoding: deflate', headers: { ...JSON_HEADERS, 'accept-encoding': 'deflate' }, body: BIG },
  { what: 'Accept-Encoding: gzip;q=0.5, deflate', headers: { ...JSON_HEADERS, 'accept-encoding': 'gzip;q=0.5, deflate' }, body: BIG },
  { what: 'Accept-Encoding: *', headers: { ...JSON_HEADERS, 'accept-encoding': '*' }, body: BIG },
  { what: 'Accept-Encoding: X-GZIP', headers: { ...JSON_HEADERS, 'accept-encoding': 'X-GZIP' }, body: BIG },
  { what: 'Accept-Encoding: br only (sent as it is)', headers: { ...JSON_HEADERS, 'accept-encoding': 'br' }, body: BIG },
  { what: 'X-No-Compression', headers: { ...JSON_HEADERS, 'accept-encoding': 'gzip', 'x-no-compression': '1' }, body: BIG },
  { what: 'Accept-Encoding: gzip, binary outputs (never compressed)', url: '/v2/models/two_inputs/infer', headers: { ...JSON_HEADERS, 'accept-encoding': 'gzip' }, body: json({ parameters: { binary_data_output: true }, inputs: [{ name: 'a', shape: [64, 4], datatype: 'FP32', data: X8.slice(0, 256) }, { name: 'b', shape: [64, 4], datatype: 'FP32', data: X8.slice(256) }] }) },
  { what: 'an unknown model', url: '/v2/models/nope/infer', body: '{}' },
  { what: 'an unknown version', url: '/v2/models/mlp_tiny/versions/7/infer', body: '{}' },
  { what: "a name with '..'", url: '/v2/models/a..b/infer', body: '{}' },
  { what: 'a name starting with a dot', url: '/v2/models/.x/infer', body: '{}' },
  { what: 'a name of 128 characters (no such model)', url: `/v2/models/${'m'.repeat(128)}/infer`, body: '{}' },
  { what: 'Content-Type: text/plain; charset=utf-8', headers: { 'content-type': 'text/plain; charset=utf-8' }, body: json({ inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: X.slice(0, 64) }] }) },
  { what: "curl's form Content-Type", headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: json({ inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: X.slice(0, 64) }] }) },
  { what: 'malformed JSON (closes the connection)', body: '{"inputs": [' },
  { what: 'a JSON array', body: '[1,2]' },
  { what: 'inputs not an array (schema)', body: json({ inputs: 5 }) },
  { what: 'a negative dimension (schema)', body: json({ inputs: [{ name: 'x', shape: [-1, 64], datatype: 'FP32', data: [] }] }) },
  { what: 'an unknown datatype (schema)', body: json({ inputs: [{ name: 'x', shape: [1, 64], datatype: 'FLOAT', data: X.slice(0, 64) }] }) },
  { what: 'id not a string (schema)', body: json({ id: 5, inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: X.slice(0, 64) }] }) },
  { what: 'the wrong element count', body: json({ inputs: [{ name: 'x', shape: [2, 64], datatype: 'FP32', data: X.slice(0, 100) }] }) },
  { what: 'the wrong datatype for the model', body: json({ inputs: [{ name: 'x', shape: [1, 64], datatype: 'INT32', data: new Array(64).fill(1) }] }) },
  { what: 'the wrong shape for the model', body: json({ inputs: [{ name: 'x', shape: [1, 63], datatype: 'FP32', data: X.slice(0, 63) }] }) },
  { what: 'a missing input', url: '/v2/models/two_inputs/infer', body: json({ inputs: [{ name: 'a', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] }) },
  { what: 'an unknown output', body: json({ inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: X.slice(0, 64) }], outputs: [{ name: 'z' }] }) },
  { what: 'a __proto__ key', body: '{"inputs":[{"name":"x","shape":[1,64],"datatype":"FP32","data":[' + X.slice(0, 64).join(',') + '],"__proto__":{"polluted":1}}]}' },
  { what: 'a string where numbers belong', body: json({ inputs: [{ name: 'x', shape: [1, 2], datatype: 'FP32', data: ['1', '2'] }] }) },
  { what: 'Inference-Header-Content-Length not a number', headers: { 'inference-header-content-length': 'ten' }, body: '{}' },
  { what: 'Inference-Header-Content-Length past the body', headers: { 'inference-header-content-length': '99' }, body: '{}' },
  { what: 'a binary body one byte short', ...binary({ inputs: [{ name: 'x', shape: [2, 64], datatype: 'FP32', parameters: { binary_data_size: 512 } }] }, f32(X).subarray(0, 511)) },
  { what: "a client's timeout parameter", body: json({ parameters: { timeout: 5000 }, inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: X.slice(0, 64) }] }) },
];

/** Requests the lane leaves to Fastify (each for a reason fast-lane.ts names). */
const FASTIFY_CASES: Case[] = [
  { what: 'a query string', url: '/v2/models/mlp_tiny/infer?x=1', body: json({ inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: X.slice(0, 64) }] }) },
  { what: 'percent-encoding', url: '/v2/models/mlp%5Ftiny/infer', body: json({ inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: X.slice(0, 64) }] }) },
  { what: 'Content-Encoding: identity', headers: { ...JSON_HEADERS, 'content-encoding': 'identity' }, body: json({ inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: X.slice(0, 64) }] }) },
  { what: 'an empty body', body: '' },
  { what: 'a body over the limit', body: json({ inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: new Array(80_000).fill(0.25) }] }) },
  { what: 'a trailing slash', url: '/v2/models/mlp_tiny/infer/', body: '{}' },
  { what: 'a name of 129 characters', url: `/v2/models/${'m'.repeat(129)}/infer`, body: '{}' },
  { what: 'an invalid Content-Type (415 in Fastify)', headers: { 'content-type': 'text' }, body: json({ inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: X.slice(0, 64) }] }) },
  { what: 'an empty Content-Type', headers: { 'content-type': '' }, body: json({ inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: X.slice(0, 64) }] }) },
  { what: 'a Content-Type with a space in it', headers: { 'content-type': 'application json' }, body: json({ inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: X.slice(0, 64) }] }) },
  { what: 'an unusual but valid Content-Type', headers: { 'content-type': 'application/vnd.x+json' }, body: json({ inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: X.slice(0, 64) }] }) },
];

const REPO_MODELS = { mlp_tiny: 'mlp_tiny', two_inputs: 'two_inputs', identity_string: 'identity_string' };
let lane: Served;
let route: Served;

beforeAll(async () => {
  const repository = makeRepo(REPO_MODELS);
  const common = { repository, bodyLimit: 256 * 1024, shedding: { maxEventLoopDelayMs: 0 } };
  lane = await serve({ ...common, fastLane: true });
  route = await serve({ ...common, fastLane: false });
});

afterAll(async () => {
  await lane?.app.close();
  await route?.app.close();
  for (const d of tmpDirs) fs.rmSync(d, { recursive: true, force: true });
});

async function both(c: Case): Promise<[Answer, Answer]> {
  const url = c.url ?? '/v2/models/mlp_tiny/infer';
  const headers = c.headers ?? JSON_HEADERS;
  return [await send(lane.port, 'POST', url, headers, c.body), await send(route.port, 'POST', url, headers, c.body)];
}

describe('the fast lane answers as the route does', () => {
  it.each(LANE_CASES.map((c) => [c.what, c] as const))('%s (served by the lane)', async (_what, c) => {
    const before = lane.fastify();
    const [a, b] = await both(c);
    expect(lane.fastify(), 'the lane served it').toBe(before);
    expect(a.status).toBe(b.status);
    expect(a.headers).toEqual(b.headers);
    expect(a.body.toString('latin1')).toBe(b.body.toString('latin1'));
  });

  it.each(FASTIFY_CASES.map((c) => [c.what, c] as const))('%s (left to Fastify)', async (_what, c) => {
    const before = lane.fastify();
    const [a, b] = await both(c);
    expect(lane.fastify(), 'Fastify served it').toBe(before + 1);
    expect(a.status).toBe(b.status);
    expect(a.headers).toEqual(b.headers);
    expect(a.body.equals(b.body)).toBe(true);
  });

  it('the corpus succeeded and failed where expected (the comparison is not between two broken servers)', async () => {
    const [ok] = await both(LANE_CASES[0]);
    expect(ok.status).toBe(200);
    expect(JSON.parse(ok.body.toString())).toMatchObject({ model_name: 'mlp_tiny', model_version: '1', outputs: [{ name: 'y', shape: [2, 10], datatype: 'FP32' }] });
    const [bad] = await both(LANE_CASES.find((c) => c.what.startsWith('inputs not an array'))!);
    expect(bad.status).toBe(400);
    expect(JSON.parse(bad.body.toString())).toEqual({ error: 'body: inputs must be array', code: 'INVALID_ARGUMENT' });
    const [malformed] = await both(LANE_CASES.find((c) => c.what.startsWith('malformed JSON'))!);
    expect(malformed.headers.connection).toBe('close');
    expect(ok.headers.connection).toBe('keep-alive');
    const [unsupported] = await both(FASTIFY_CASES.find((c) => c.what.startsWith('an invalid Content-Type'))!);
    expect(JSON.parse(unsupported.body.toString())).toEqual({ error: 'Unsupported Media Type', code: 'INVALID_ARGUMENT' });
    const [gone] = await both(LANE_CASES.find((c) => c.what === 'an unknown model')!);
    expect(gone.status).toBe(404);
    const [gzip] = await both(LANE_CASES.find((c) => c.what.endsWith('a large answer (gzip)'))!);
    expect(gzip.headers['content-encoding']).toBe('gzip');
    expect(gzip.headers.vary).toBe('accept-encoding');
    const [deflate] = await both(LANE_CASES.find((c) => c.what === 'Accept-Encoding: deflate')!);
    expect(deflate.headers['content-encoding']).toBe('deflate');
    const [plain] = await both(LANE_CASES.find((c) => c.what === 'Accept-Encoding: br only (sent as it is)')!);
    expect(plain.headers['content-encoding']).toBeUndefined();
    expect(plain.body.length).toBeGreaterThan(1024);
  });

  it('keeps the connection for the next request after a success and after a refusal of a received body', async () => {
    for (const s of [lane, route]) {
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      const sockets = new Set<net.Socket>();
      const one = (body: string) =>
        new Promise<number>((resolve, reject) => {
          const req = http.request({ host: '127.0.0.1', port: s.port, method: 'POST', path: '/v2/models/mlp_tiny/infer', headers: JSON_HEADERS, agent }, (res) => {
            sockets.add(res.socket);
            res.resume();
            res.on('end', () => resolve(res.statusCode!));
          });
          req.on('error', reject);
          req.end(body);
        });
      const before = s.fastify();
      expect(await one(LANE_CASES[0].body as string)).toBe(200);
      expect(await one(json({ inputs: 5 }))).toBe(400);
      expect(await one(LANE_CASES[0].body as string)).toBe(200);
      expect(sockets.size).toBe(1);
      expect(s.fastify()).toBe(s === lane ? before : before + 3);
      agent.destroy();
    }
  });

  it('statistics and metrics count the same successes and failures either way', async () => {
    const stats = async (s: Served) => {
      const r = await send(s.port, 'GET', '/v2/models/mlp_tiny/stats', {});
      const m = JSON.parse(r.body.toString()).model_stats[0];
      return { success: m.inference_stats.success.count, fail: m.inference_stats.fail.count, count: m.inference_count, executions: m.execution_count > 0 };
    };
    const metric = async (s: Served) => {
      const text = (await send(s.port, 'GET', '/metrics', {})).body.toString();
      return text.split('\n').filter((l) => l.startsWith('nv_inference_request_') && l.includes('model="mlp_tiny"')).map((l) => l.replace(/ [0-9.e+-]+$/, (v) => (l.startsWith('nv_inference_request_duration') ? ' <time>' : v))).sort();
    };
    const [a, b] = [await stats(lane), await stats(route)];
    expect(a).toEqual(b);
    expect(a.success).toBeGreaterThan(0);
    const lines = await metric(lane);
    expect(lines).toEqual(await metric(route));
    expect(lines.some((l) => l.startsWith('nv_inference_request_failure') && / [1-9][0-9]*$/.test(l))).toBe(true);
  });
});

/** A request of the slow model (~0.14 ms per iteration on the 2-core VM), binary so that any size takes the lane. */
const slowRequest = (iters: number) =>
  binary({ inputs: [{ name: 'x', shape: [256, 256], datatype: 'FP32', parameters: { binary_data_size: 262144 } }, { name: 'iters', shape: [], datatype: 'INT64', data: [iters] }] }, f32(new Array(65536).fill(0.01)));

describe('the fast lane and the rest of the server', () => {
  const body = json({ inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: X.slice(0, 64) }] });

  it('API keys: a valid key is served by the lane; a missing or wrong one gets the auth plugin’s 401', async () => {
    const s = await serve({ repository: makeRepo({ mlp_tiny: 'mlp_tiny' }), apiKeys: ['key-one-1234'], fastLane: true });
    try {
      const before = s.fastify();
      expect((await send(s.port, 'POST', '/v2/models/mlp_tiny/infer', { ...JSON_HEADERS, authorization: 'Bearer key-one-1234' }, body)).status).toBe(200);
      expect(s.fastify()).toBe(before);
      for (const authorization of [undefined, 'Bearer key-two-5678', 'Basic key-one-1234']) {
        const r = await send(s.port, 'POST', '/v2/models/mlp_tiny/infer', authorization === undefined ? JSON_HEADERS : { ...JSON_HEADERS, authorization }, body);
        expect(r.status).toBe(401);
        expect(r.headers['www-authenticate']).toBe('Bearer realm="nimify"');
      }
      expect(s.fastify()).toBe(before + 3);
    } finally {
      await s.app.close();
    }
  });

  it('overload: the concurrency bound refuses with 503 OVERLOADED and Retry-After, as the route does', async () => {
    const repository = makeRepo({ slow: 'slow' });
    const shedding = { maxConcurrentRequests: 1, maxEventLoopDelayMs: 0, retryAfterSeconds: 3 };
    const a = await serve({ repository, shedding, fastLane: true });
    const b = await serve({ repository, shedding, fastLane: false });
    const slow = slowRequest(3000);
    const quick = slowRequest(1);
    try {
      const refused: Answer[] = [];
      for (const s of [a, b]) {
        const before = s.fastify();
        const busy = send(s.port, 'POST', '/v2/models/slow/infer', slow.headers, slow.body);
        await new Promise((r) => setTimeout(r, 150));
        refused.push(await send(s.port, 'POST', '/v2/models/slow/infer', quick.headers, quick.body));
        expect((await busy).status).toBe(200);
        expect(s.fastify()).toBe(s === a ? before : before + 2);
      }
      expect(refused[0].status).toBe(503);
      expect(refused[0].headers['retry-after']).toBe('3');
      expect(JSON.parse(refused[0].body.toString()).code).toBe('OVERLOADED');
      expect(refused[0].headers).toEqual(refused[1].headers);
      expect(refused[0].body.toString()).toBe(refused[1].body.toString());
    } finally {
      await a.app.close();
      await b.app.close();
    }
  });

  it('a client that hangs up before its answer is cancelled: nothing stays in flight, the failure is counted as CANCELED', async () => {
    const s = await serve({ repository: makeRepo({ slow: 'slow' }), shedding: { maxEventLoopDelayMs: 0 }, fastLane: true });
    try {
      const slow = slowRequest(4000);
      // The first runs; the second waits behind it and its client leaves.
      const first = send(s.port, 'POST', '/v2/models/slow/infer', slow.headers, slow.body);
      await new Promise((r) => setTimeout(r, 100));
      const socket = net.connect(s.port, '127.0.0.1');
      await new Promise((r) => socket.once('connect', r));
      socket.write(`POST /v2/models/slow/infer HTTP/1.1\r\nHost: x\r\nInference-Header-Content-Length: ${slow.headers['inference-header-content-length']}\r\nContent-Length: ${slow.body.length}\r\n\r\n`);
      socket.write(slow.body);
      await new Promise((r) => setTimeout(r, 150));
      expect(s.app.nimify.inFlight).toBe(2);
      socket.destroy();
      await new Promise((r) => setTimeout(r, 100));
      expect(s.app.nimify.inFlight).toBe(1);
      expect((await first).status).toBe(200);
      expect(s.app.nimify.inFlight).toBe(0);
      expect(s.fastify()).toBe(0);
      // The abandoned request was taken out of the queue: after one more request (which would
      // have waited behind it on the model's one instance), the model ran two.
      const last = slowRequest(1);
      expect((await send(s.port, 'POST', '/v2/models/slow/infer', last.headers, last.body)).status).toBe(200);
      const stats = JSON.parse((await send(s.port, 'GET', '/v2/models/slow/stats', {})).body.toString()).model_stats[0];
      expect(stats.inference_count).toBe(2);
      const metrics = (await send(s.port, 'GET', '/metrics', {})).body.toString();
      expect(metrics).toMatch(/nv_inference_request_failure\{[^}]*reason="CANCELED"[^}]*\} 1/);
    } finally {
      await s.app.close();
    }
  });

  it('pipelined requests on one connection are answered in order; one cut off mid-body behind a running one ends its admission', async () => {
    const s = await serve({ repository: makeRepo({ slow: 'slow', mlp_tiny: 'mlp_tiny' }), shedding: { maxEventLoopDelayMs: 0 }, fastLane: true });
    try {
      const request = (b: string, id: string) => `POST /v2/models/mlp_tiny/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Request-Id: ${id}\r\nContent-Length: ${Buffer.byteLength(b)}\r\n\r\n${b}`;
      const socket = net.connect(s.port, '127.0.0.1');
      await new Promise((r) => socket.once('connect', r));
      let text = '';
      socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
      socket.write(request(body, 'p-1') + request(json({ inputs: 5 }), 'p-2') + request(body, 'p-3'));
      while ((text.match(/HTTP\/1\.1 /g) ?? []).length < 3) await new Promise((r) => setTimeout(r, 10));
      socket.destroy();
      const answers = text.split(/(?=HTTP\/1\.1 )/);
      expect(answers.map((a) => [a.slice(9, 12), /x-request-id: (\S+)/.exec(a)?.[1]])).toEqual([['200', 'p-1'], ['400', 'p-2'], ['200', 'p-3']]);
      expect(s.fastify()).toBe(0);

      // A slow request runs; a second one pipelined behind it sends half its body; the client hangs up.
      const slow = slowRequest(3000);
      const cut = net.connect(s.port, '127.0.0.1');
      await new Promise((r) => cut.once('connect', r));
      cut.on('error', () => {});
      cut.write(`POST /v2/models/slow/infer HTTP/1.1\r\nHost: x\r\nInference-Header-Content-Length: ${slow.headers['inference-header-content-length']}\r\nContent-Length: ${slow.body.length}\r\n\r\n`);
      cut.write(slow.body);
      cut.write('POST /v2/models/slow/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"inputs":');
      await new Promise((r) => setTimeout(r, 150));
      expect(s.app.nimify.inFlight).toBe(2);
      cut.destroy();
      const deadline = Date.now() + 5000;
      while (s.app.nimify.inFlight > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      expect(s.app.nimify.inFlight).toBe(0);
    } finally {
      await s.app.close();
    }
  });

  it('while the server drains: a running request of the lane answers with Connection: close; a new one on an open connection goes to Fastify', async () => {
    const s = await serve({ repository: makeRepo({ slow: 'slow', mlp_tiny: 'mlp_tiny' }), shedding: { maxEventLoopDelayMs: 0 }, fastLane: true });
    const slow = slowRequest(3000);
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const onOpen = (b: string) =>
      new Promise<Answer>((resolve, reject) => {
        const req = http.request({ host: '127.0.0.1', port: s.port, method: 'POST', path: '/v2/models/mlp_tiny/infer', headers: JSON_HEADERS, agent }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
        });
        req.on('error', reject);
        req.end(b);
      });
    try {
      // A keep-alive connection opened before the drain.
      expect((await onOpen(body)).headers.connection).toBe('keep-alive');
      const before = s.fastify();
      const running = send(s.port, 'POST', '/v2/models/slow/infer', slow.headers, slow.body);
      await new Promise((r) => setTimeout(r, 150));
      const closed = s.app.close();
      await new Promise((r) => setTimeout(r, 50));
      const late = await onOpen(body);
      expect(late.status).toBe(200);
      expect(late.headers.connection).toBe('close');
      expect(s.fastify()).toBe(before + 1);
      const answer = await running;
      expect(answer.status).toBe(200);
      expect(answer.headers.connection).toBe('close');
      expect(s.fastify()).toBe(before + 1);
      await closed;
    } finally {
      agent.destroy();
      await s.app.close();
    }
  });

  it('success and duration counters count every request, those of a version unloaded before the scrape included', async () => {
    const s = await serve({ repository: makeRepo({ mlp_tiny: 'mlp_tiny', two_inputs: 'two_inputs' }), controlMode: 'explicit', startupModels: ['mlp_tiny', 'two_inputs'], fastLane: true });
    const count = (text: string, metric: string, model: string) => Number(new RegExp(`^${metric}\\{model="${model}",version="1"\\} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
    try {
      const scrape = async () => (await send(s.port, 'GET', '/metrics', {})).body.toString();
      // No series before the first request.
      expect(count(await scrape(), 'nv_inference_request_success', 'mlp_tiny')).toBeNaN();
      for (let i = 0; i < 5; i++) expect((await send(s.port, 'POST', '/v2/models/mlp_tiny/infer', JSON_HEADERS, body)).status).toBe(200);
      const pair = json({ inputs: [{ name: 'a', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }, { name: 'b', shape: [1, 4], datatype: 'FP32', data: [5, 6, 7, 8] }] });
      for (let i = 0; i < 3; i++) expect((await send(s.port, 'POST', '/v2/models/two_inputs/infer', JSON_HEADERS, pair)).status).toBe(200);
      expect((await send(s.port, 'POST', '/v2/repository/models/two_inputs/unload', JSON_HEADERS, '{}')).status).toBe(200);
      const text = await scrape();
      expect(count(text, 'nv_inference_request_success', 'mlp_tiny')).toBe(5);
      expect(count(text, 'nv_inference_request_success', 'two_inputs')).toBe(3);
      expect(count(text, 'nv_inference_request_duration_us', 'mlp_tiny')).toBeGreaterThan(0);
      // Counted once: a second scrape adds nothing.
      expect(count(await scrape(), 'nv_inference_request_success', 'mlp_tiny')).toBe(5);
    } finally {
      await s.app.close();
    }
  });

  it('two servers on one prom-client registry: the requests of each are counted', async () => {
    const registry = new Registry();
    const a = await serve({ repository: makeRepo({ mlp_tiny: 'mlp_tiny' }), registry, fastLane: true });
    const b = await serve({ repository: makeRepo({ two_inputs: 'two_inputs' }), registry, fastLane: true });
    try {
      expect((await send(a.port, 'POST', '/v2/models/mlp_tiny/infer', JSON_HEADERS, body)).status).toBe(200);
      const pair = json({ inputs: [{ name: 'a', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }, { name: 'b', shape: [1, 4], datatype: 'FP32', data: [5, 6, 7, 8] }] });
      for (let i = 0; i < 2; i++) expect((await send(b.port, 'POST', '/v2/models/two_inputs/infer', JSON_HEADERS, pair)).status).toBe(200);
      const text = await registry.metrics();
      expect(text).toMatch(/^nv_inference_request_success\{model="mlp_tiny",version="1"\} 1$/m);
      expect(text).toMatch(/^nv_inference_request_success\{model="two_inputs",version="1"\} 2$/m);
      expect(text).toMatch(/^nimify_request_duration_seconds_count\{model="mlp_tiny",version="1"\} 1$/m);
      expect(text).toMatch(/^nimify_request_duration_seconds_bucket\{le="\+Inf",model="two_inputs",version="1"\} 2$/m);
    } finally {
      await a.app.close();
      await b.app.close();
    }
  });

  it('is off with tracing, a rate limit or the access log, and in servers that did not ask for it', async () => {
    const tracing = { tracerProvider: new BasicTracerProvider() };
    for (const options of [{ fastLane: true, tracing }, { fastLane: true, rateLimit: { max: 1000 } }, { fastLane: true, logRequests: true, logger: { level: 'silent' } }, {}]) {
      const s = await serve({ repository: makeRepo({ mlp_tiny: 'mlp_tiny' }), ...options });
      try {
        expect((await send(s.port, 'POST', '/v2/models/mlp_tiny/infer', JSON_HEADERS, body)).status).toBe(200);
        expect(s.fastify(), Object.keys(options).join(', ')).toBe(1);
      } finally {
        await s.app.close();
      }
    }
  });

  it('nimify serve takes the lane unless --no-fast-lane', () => {
    expect(serveOptions(['m.onnx']).options.fastLane).toBe(true);
    expect(serveOptions(['m.onnx', '--no-fast-lane']).options.fastLane).toBe(false);
    expect(serveOptions(['m.onnx'], { NIMIFY_NO_FAST_LANE: '1' }).options.fastLane).toBe(false);
  });

  it('fastLane must be a boolean', async () => {
    await expect(buildServer({ repository: makeRepo({ mlp_tiny: 'mlp_tiny' }), logger: false, fastLane: 'yes' as never })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('options.fastLane') });
  });
});
