/**
 * Overload behaviour of the inference routes on a real port (issue 14 items 3, 5, 6, 11):
 * admission before the body is read (and counted in flight while it arrives), refusals that do
 * not read a large body and close its connection, the JSON decode pool's queue bound, requests
 * cancelled when their client hangs up, Retry-After from one source, and the bounded worker pool
 * both worker pools share.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { fromNative, NimifyError } from '../../src/runtime/errors';
import { WorkerPool } from '../../src/runtime/worker-pool';
import { BREAKER_DEFAULTS, CircuitBreaker } from '../../src/server/breaker';
import { retryLater, toHttpError } from '../../src/server/errors';
import { buildServer } from '../../src/server/build';
import { checkPluginOptions } from '../../src/server/options';
import { MODELS, ROOT } from '../helpers';

let root: string;
const apps: FastifyInstance[] = [];
const sockets: net.Socket[] = [];

beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'nimify-overload-'));
  const put = (rel: string, content: Buffer | string) => {
    fs.mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
    fs.writeFileSync(path.join(root, rel), content);
  };
  put('tiny/1/model.onnx', fs.readFileSync(path.join(MODELS, 'mlp_tiny.onnx')));
  put('slow/1/model.onnx', fs.readFileSync(path.join(MODELS, 'slow.onnx')));
});
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await Promise.all(apps.splice(0).map((a) => a.close()));
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

async function listen(options: Record<string, unknown>): Promise<{ app: FastifyInstance; port: number }> {
  const app = await buildServer({ repository: root, logger: false, ...options });
  apps.push(app);
  await app.listen({ port: 0, host: '127.0.0.1' });
  return { app, port: (app.server.address() as net.AddressInfo).port };
}

async function waitFor(what: string, cond: () => boolean, ms = 20_000): Promise<void> {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** A raw HTTP/1.1 connection: what the server sent so far, and whether it closed. */
function connect(port: number): { socket: net.Socket; text: () => string; closed: Promise<void> } {
  const socket = net.connect(port, '127.0.0.1');
  sockets.push(socket);
  let received = '';
  socket.on('data', (d) => (received += d.toString('latin1')));
  socket.on('error', () => {}); // a reset after the server closed is expected in some tests
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  return { socket, text: () => received, closed };
}

const head = (url: string, length: number, extra = '') => `POST ${url} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: ${length}\r\n${extra}\r\n`;
const responses = (text: string) => text.match(/HTTP\/1\.1 \d{3}(?= )/g) ?? [];
const tinyBody = Buffer.from(JSON.stringify({ inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: new Array(64).fill(0.5) }] }));
const slowJson = (iters: number, timeoutUs?: number) =>
  Buffer.from(JSON.stringify({ ...(timeoutUs ? { parameters: { timeout: timeoutUs } } : {}), inputs: [{ name: 'x', shape: [256, 256], datatype: 'FP32', data: new Array(65536).fill(0.01) }, { name: 'iters', shape: [], datatype: 'INT64', data: iters }] }));

async function metric(app: FastifyInstance, name: string, labels = ''): Promise<number> {
  const text = (await app.inject('/metrics')).body;
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels} `));
  return line === undefined ? 0 : Number(line.split(' ').pop());
}

describe('admission before the body (item 3)', () => {
  it('counts a request in flight while its body arrives; at the limit a large upload is refused 503 before it is sent, and its connection closes', async () => {
    const { app, port } = await listen({ shedding: { maxConcurrentRequests: 1, maxEventLoopDelayMs: 0, retryAfterSeconds: 2 } });
    // The holder: admitted, its body only partly sent.
    const holder = connect(port);
    holder.socket.write(head('/v2/models/tiny/infer', tinyBody.length) + tinyBody.subarray(0, 10).toString('latin1'));
    await waitFor('the holder to be admitted', () => app.nimify.inFlight === 1);
    expect(await metric(app, 'nimify_inference_in_flight')).toBe(1);

    // A 32 MiB upload while the server is at its limit: only its first 64 KiB are ever sent.
    const big = connect(port);
    big.socket.write(head('/v2/models/tiny/infer', 32 * 1024 * 1024));
    big.socket.write(Buffer.alloc(64 * 1024, 0x20));
    await big.closed; // the server answered and closed without waiting for the rest
    const answer = big.text();
    expect(answer).toMatch(/^HTTP\/1\.1 503 /);
    expect(answer).toMatch(/\r\nretry-after: 2\r\n/i);
    expect(answer).toMatch(/\r\nconnection: close\r\n/i);
    expect(answer).toContain('"code":"OVERLOADED"');
    expect(app.nimify.inFlight).toBe(1);

    holder.socket.write(tinyBody.subarray(10));
    await waitFor('the holder to be answered', () => responses(holder.text()).length === 1);
    expect(holder.text()).toMatch(/^HTTP\/1\.1 200 /);
    await waitFor('in-flight back to 0', () => app.nimify.inFlight === 0);
    expect(await metric(app, 'nimify_requests_shed_total', '{reason="concurrency"}')).toBe(1);
  });

  it('a refused request whose small body is all there keeps its keep-alive connection: the next request on it is answered', async () => {
    const { app, port } = await listen({ shedding: { maxConcurrentRequests: 1, maxEventLoopDelayMs: 0 } });
    const holder = connect(port);
    holder.socket.write(head('/v2/models/tiny/infer', tinyBody.length) + tinyBody.subarray(0, 10).toString('latin1'));
    await waitFor('the holder to be admitted', () => app.nimify.inFlight === 1);
    // Pipelined: the refused request's body must not be parsed as a request of its own.
    const c = connect(port);
    c.socket.write(head('/v2/models/tiny/infer', tinyBody.length) + tinyBody.toString('latin1') + 'GET /v2/health/live HTTP/1.1\r\nHost: localhost\r\n\r\n');
    await waitFor('two answers', () => responses(c.text()).length === 2);
    expect(responses(c.text())).toEqual(['HTTP/1.1 503', 'HTTP/1.1 200']);
    expect(c.text()).not.toMatch(/connection: close/i);
    holder.socket.write(tinyBody.subarray(10));
    await waitFor('the holder to be answered', () => responses(holder.text()).length === 1);
    expect(holder.text()).toMatch(/^HTTP\/1\.1 200 /);
  });

  it('a version reloaded while an admitted request\'s body arrives is not used: the request runs on the one serving now', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nimify-swap-'));
    try {
      fs.mkdirSync(path.join(dir, 'm', '1'), { recursive: true });
      fs.copyFileSync(path.join(MODELS, 'mlp_tiny.onnx'), path.join(dir, 'm', '1', 'model.onnx'));
      const app = await buildServer({ repository: dir, logger: false, controlMode: 'explicit', startupModels: ['m'], shedding: { maxEventLoopDelayMs: 0 } });
      apps.push(app);
      await app.listen({ port: 0, host: '127.0.0.1' });
      const port = (app.server.address() as net.AddressInfo).port;
      const c = connect(port);
      c.socket.write(head('/v2/models/m/infer', tinyBody.length) + tinyBody.subarray(0, 10).toString('latin1'));
      await waitFor('admission', () => app.nimify.inFlight === 1);
      const before = app.nimify.repository.resolve('m');
      // A changed config reloads the version: the new one is swapped in, the old one disposed
      // once its model has nothing pending (this request has not reached it yet).
      const load = await app.inject({ method: 'POST', url: '/v2/repository/models/m/load', payload: { parameters: { config: JSON.stringify({ timeoutMs: 20_000 }) } } });
      expect(load.statusCode).toBe(200);
      expect(app.nimify.repository.resolve('m')).not.toBe(before);
      expect(before.model).toBeNull();
      c.socket.write(tinyBody.subarray(10));
      await waitFor('the answer', () => responses(c.text()).length === 1);
      expect(c.text()).toMatch(/^HTTP\/1\.1 200 /);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a model that does not exist is refused 404 before its body is read', async () => {
    const { port } = await listen({ shedding: false });
    const c = connect(port);
    c.socket.write(head('/v2/models/nope/infer', 32 * 1024 * 1024));
    await c.closed;
    expect(c.text()).toMatch(/^HTTP\/1\.1 404 /);
    expect(c.text()).toContain('"code":"NOT_FOUND"');
  });

  it('errors answered after admission (bad JSON, body over the limit) end it: nothing stays in flight, the failure is counted', async () => {
    const { app, port } = await listen({ shedding: { maxConcurrentRequests: 1, maxEventLoopDelayMs: 0 }, bodyLimit: 4096 });
    const bad = await fetch(`http://127.0.0.1:${port}/v2/models/tiny/infer`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"inputs": [' });
    expect(bad.status).toBe(400);
    const large = await fetch(`http://127.0.0.1:${port}/v2/models/tiny/infer`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: 'x'.repeat(8192) });
    expect(large.status).toBe(413);
    expect(app.nimify.inFlight).toBe(0);
    // The limit is 1: had either stayed in flight, this one would be shed.
    const ok = await fetch(`http://127.0.0.1:${port}/v2/models/tiny/infer`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: tinyBody });
    expect(ok.status).toBe(200);
    expect(await metric(app, 'nv_inference_request_failure', '{model="tiny",version="1",reason="OTHER"}')).toBe(2);
  });

  it("the JSON decode pool's queue is bounded: 503 QUEUE_FULL with Retry-After, the others are served", async () => {
    const { app } = await listen({ shedding: false, jsonWorkerBytes: 1024, jsonWorkerMaxQueue: 0 });
    const body = JSON.stringify({ inputs: [{ name: 'x', shape: [16, 64], datatype: 'FP32', data: new Array(1024).fill(0.25) }] });
    const threads = (app.nimify.jsonPool as unknown as { maxThreads: number }).maxThreads;
    const n = threads + 8;
    const rs = await Promise.all(Array.from({ length: n }, () => app.inject({ method: 'POST', url: '/v2/models/tiny/infer', headers: { 'content-type': 'application/json' }, payload: body })));
    const full = rs.filter((r) => r.statusCode === 503);
    expect(rs.filter((r) => r.statusCode === 200).length).toBeGreaterThanOrEqual(1);
    expect(full.length).toBeGreaterThanOrEqual(1);
    expect(full.length + rs.filter((r) => r.statusCode === 200).length).toBe(n);
    for (const r of full) {
      expect(r.json().code).toBe('QUEUE_FULL');
      expect(r.json().error).toMatch(/JSON decode queue full/);
      expect(r.headers['retry-after']).toBe('1');
    }
    expect(app.nimify.jsonPool!.outstanding).toBe(0);
    expect(app.nimify.inFlight).toBe(0);
    expect(await metric(app, 'nv_inference_request_failure', '{model="tiny",version="1",reason="REJECTED"}')).toBe(full.length);
    expect(() => checkPluginOptions({ repository: root, jsonWorkerMaxQueue: -1 })).toThrow(/options\.jsonWorkerMaxQueue: expected an integer/);
  });

  it('large JSON bodies still on the wire count against the decode pool: one more is refused QUEUE_FULL before it is sent; the place comes back', async () => {
    const { app, port } = await listen({ shedding: false, jsonWorkerBytes: 1024, jsonWorkerMaxQueue: 0 });
    const pool = app.nimify.jsonPool!;
    const places = pool.maxThreads; // capacity (one decode per worker) + maxQueue 0
    const body = Buffer.from(JSON.stringify({ inputs: [{ name: 'x', shape: [16, 64], datatype: 'FP32', data: new Array(1024).fill(0.25) }] }));
    // Holders: admitted, their large bodies only partly sent.
    const holders = Array.from({ length: places }, () => connect(port));
    for (const h of holders) h.socket.write(head('/v2/models/tiny/infer', body.length) + body.subarray(0, 10).toString('latin1'));
    await waitFor('the holders to hold every place', () => pool.incoming === places);
    // One more large body: refused from its headers alone, its connection closed.
    const late = connect(port);
    late.socket.write(head('/v2/models/tiny/infer', 8 * 1024 * 1024));
    await late.closed;
    expect(late.text()).toMatch(/^HTTP\/1\.1 503 /);
    expect(late.text()).toContain('"code":"QUEUE_FULL"');
    expect(late.text()).toMatch(/\r\nretry-after: 1\r\n/i);
    // A small body does not need the pool: served meanwhile.
    expect((await app.inject({ method: 'POST', url: '/v2/models/tiny/infer', headers: { 'content-type': 'application/json' }, payload: tinyBody })).statusCode).toBe(200);
    // A holder that hangs up gives its place back; the others finish and are served.
    holders[0].socket.destroy();
    await waitFor('the abandoned place to come back', () => pool.incoming === places - 1);
    for (const h of holders.slice(1)) h.socket.write(body.subarray(10));
    await waitFor('the holders to be answered', () => holders.slice(1).every((h) => responses(h.text()).length === 1));
    for (const h of holders.slice(1)) expect(h.text()).toMatch(/^HTTP\/1\.1 200 /);
    expect(pool.incoming).toBe(0);
    const again = await app.inject({ method: 'POST', url: '/v2/models/tiny/infer', headers: { 'content-type': 'application/json' }, payload: body });
    expect(again.statusCode).toBe(200);
    await waitFor('in-flight back to 0', () => app.nimify.inFlight === 0);
  });
});

describe('the decode pool holds bodies by bytes too', () => {
  it('bodies on their way count by their Content-Length: one that would pass the byte budget is refused from its headers; a single body larger than the budget is taken alone', async () => {
    const body = Buffer.from(JSON.stringify({ inputs: [{ name: 'x', shape: [16, 64], datatype: 'FP32', data: new Array(1024).fill(0.25) }] }));
    // Room for two such bodies, not three; plenty of places by count.
    const { app, port } = await listen({ shedding: false, jsonWorkerBytes: 1024, jsonWorkerMaxQueue: 100, jsonWorkerMaxQueueBytes: 2 * body.length + 100 });
    const pool = app.nimify.jsonPool!;
    const holders = [connect(port), connect(port)];
    for (const h of holders) h.socket.write(head('/v2/models/tiny/infer', body.length) + body.subarray(0, 10).toString('latin1'));
    await waitFor('two places held', () => pool.incoming === 2);
    expect(pool.heldBytes).toBe(2 * body.length);
    // A third announcing the same size does not fit (the answer comes from its headers; the
    // connection stays open to discard its small body, so wait for the answer, not the close).
    const third = connect(port);
    third.socket.write(head('/v2/models/tiny/infer', body.length));
    await waitFor('the third to be answered', () => responses(third.text()).length === 1);
    expect(third.text()).toMatch(/^HTTP\/1\.1 503 /);
    expect(third.text()).toContain('"code":"QUEUE_FULL"');
    expect(third.text()).toMatch(/JSON decode queue full: .*\d+ of \d+ bytes/);
    for (const h of holders) h.socket.write(body.subarray(10));
    await waitFor('the holders to be answered', () => holders.every((h) => responses(h.text()).length === 1));
    for (const h of holders) expect(h.text()).toMatch(/^HTTP\/1\.1 200 /);
    expect(pool.heldBytes).toBe(0);
    // Larger than the whole budget, with nothing else held: taken (else it could never be served).
    const big = Buffer.from(JSON.stringify({ inputs: [{ name: 'x', shape: [32, 64], datatype: 'FP32', data: new Array(2048).fill(0.125) }] }));
    expect(big.length).toBeGreaterThan(2 * body.length + 100);
    const r = await app.inject({ method: 'POST', url: '/v2/models/tiny/infer', headers: { 'content-type': 'application/json' }, payload: big });
    expect(r.statusCode).toBe(200);
    expect(() => checkPluginOptions({ repository: root, jsonWorkerMaxQueueBytes: 0 })).toThrow(/options\.jsonWorkerMaxQueueBytes: expected an integer/);
  });
});

describe('abandoned requests (item 5)', () => {
  it('a client that hangs up while queued is cancelled, not run; a running one is stopped; the next request is served at once', async () => {
    const { app, port } = await listen({ shedding: { maxEventLoopDelayMs: 0 }, inferTimeoutMs: 60_000 });
    const slow = app.nimify.repository.resolve('slow').model!;
    const before = slow.stats();
    // A run that would take far longer than the test: its client goes away too.
    const blocker = connect(port);
    const long = slowJson(1_000_000);
    blocker.socket.write(head('/v2/models/slow/infer', long.length));
    blocker.socket.write(long);
    await waitFor('the blocker to run', () => slow.stats().inFlight === 1);
    const clients = Array.from({ length: 5 }, () => {
      const c = connect(port);
      const b = slowJson(1);
      c.socket.write(head('/v2/models/slow/infer', b.length));
      c.socket.write(b);
      return c;
    });
    await waitFor('five queued', () => slow.stats().queueDepth === 5);
    for (const c of clients) c.socket.destroy();
    await waitFor('the five to be cancelled', () => slow.stats().cancelled - before.cancelled === 5 && slow.stats().queueDepth === 0);
    blocker.socket.destroy();
    await waitFor('the running one to stop', () => slow.stats().inFlight === 0);
    await waitFor('nothing in flight', () => app.nimify.inFlight === 0);

    const next = await fetch(`http://127.0.0.1:${port}/v2/models/slow/infer`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: slowJson(1) });
    expect(next.status).toBe(200);
    const after = slow.stats();
    expect(after.requests - before.requests).toBe(7);
    // Runs: the blocker (stopped) and the last request. The five never reached ORT.
    expect(after.batches - before.batches).toBe(2);
    expect(await metric(app, 'nv_inference_request_success', '{model="slow",version="1"}')).toBe(1);
    expect(await metric(app, 'nv_inference_request_failure', '{model="slow",version="1",reason="CANCELED"}')).toBe(6);
  }, 60_000);
});

describe('Retry-After from one source (items 6, 11)', () => {
  it("a QUEUE_FULL carrying the scheduler's predicted wait answers Retry-After = ceil(wait in s), at least 1", () => {
    const native = (ms?: number) => fromNative(Object.assign(new Error('queue full'), { code: 'QUEUE_FULL', ...(ms === undefined ? {} : { retryAfterMs: ms }) }));
    expect(toHttpError(native(2300))).toMatchObject({ status: 503, code: 'QUEUE_FULL', retryAfterSeconds: 3 });
    expect(toHttpError(native(4000)).retryAfterSeconds).toBe(4);
    expect(toHttpError(native(3)).retryAfterSeconds).toBe(1);
    expect(toHttpError(native()).retryAfterSeconds).toBe(1);
    expect(toHttpError(Object.assign(new NimifyError('QUEUE_FULL', 'full'), { retryAfterMs: 1500 })).retryAfterSeconds).toBe(2);
    expect(toHttpError(retryLater('OVERLOADED', 'busy', 7)).retryAfterSeconds).toBe(7);
    expect(toHttpError(new NimifyError('INVALID_ARGUMENT', 'no')).retryAfterSeconds).toBeUndefined();
  });

  it('the breaker refuses with its remaining open time as Retry-After; its defaults are the plugin defaults', () => {
    const b = new CircuitBreaker({ failureThreshold: 1, resetTimeoutMs: 4500 });
    b.failure(b.admit('m'));
    let err: unknown;
    try {
      b.admit('m');
    } catch (e) {
      err = e;
    }
    expect(toHttpError(err)).toMatchObject({ status: 503, code: 'CIRCUIT_OPEN', retryAfterSeconds: 5 });
    expect(checkPluginOptions({ repository: root }).breaker).toEqual(BREAKER_DEFAULTS);
    expect(checkPluginOptions({ repository: root, breaker: { failureThreshold: 2 } }).breaker).toEqual({ ...BREAKER_DEFAULTS, failureThreshold: 2 });
  });

  it("a request whose predicted queue wait exceeds its deadline is refused at once: 503 QUEUE_FULL, Retry-After from the scheduler's prediction", async () => {
    const { app, port } = await listen({ shedding: { maxEventLoopDelayMs: 0 }, inferTimeoutMs: 600_000 });
    const slow = app.nimify.repository.resolve('slow').model!;
    const post = (body: Buffer) => fetch(`http://127.0.0.1:${port}/v2/models/slow/infer`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    // Runs that teach the scheduler the compute per row it predicts with.
    for (let i = 0; i < 2; i++) expect((await post(slowJson(200))).status).toBe(200);
    const blocker = connect(port);
    const long = slowJson(1_000_000);
    blocker.socket.write(head('/v2/models/slow/infer', long.length));
    blocker.socket.write(long);
    await waitFor('the blocker to run', () => slow.stats().inFlight === 1);
    const queued = Array.from({ length: 4 }, () => post(slowJson(200)));
    await waitFor('four queued', () => slow.stats().queueDepth === 4);
    const rejected = slow.stats().rejected;
    // The request's own deadline (`timeout`, µs): 1 ms, far below 4 runs of 200 steps.
    const r = await post(slowJson(1, 1000));
    expect(r.status).toBe(503);
    const answer = (await r.json()) as { code: string; error: string };
    expect(answer.code).toBe('QUEUE_FULL');
    const predictedMs = Number(/predicted queue wait \(([\d.]+) ms/.exec(answer.error)?.[1]);
    expect(predictedMs).toBeGreaterThan(1);
    expect(r.headers.get('retry-after')).toBe(String(Math.max(1, Math.ceil(predictedMs / 1000))));
    expect(slow.stats().rejected - rejected).toBe(1);
    blocker.socket.destroy();
    expect((await Promise.all(queued)).map((q) => q.status)).toEqual([200, 200, 200, 200]);
  }, 60_000);

  it('a queued request past its deadline (the server default) is dropped by the scheduler without running: 504', async () => {
    const { app, port } = await listen({ shedding: { maxEventLoopDelayMs: 0 }, inferTimeoutMs: 200 });
    const slow = app.nimify.repository.resolve('slow').model!;
    const before = slow.stats();
    // The blocker's own `timeout` parameter (µs) keeps it running past the server default.
    const blocker = fetch(`http://127.0.0.1:${port}/v2/models/slow/infer`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: slowJson(3000, 60_000_000) });
    await waitFor('the blocker to run', () => slow.stats().inFlight === 1);
    const late = await fetch(`http://127.0.0.1:${port}/v2/models/slow/infer`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: slowJson(1) });
    expect(late.status).toBe(504);
    expect(slow.stats().expired - before.expired).toBe(1);
    expect((await blocker).status).toBe(200);
  }, 60_000);
});

describe('the shared bounded worker pool (item 11)', () => {
  let dir: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nimify-pool-'));
    fs.writeFileSync(
      path.join(dir, 'worker.js'),
      `module.exports = async (t) => {
        if (t.fault) return { error: { code: t.fault, message: 'task fault: ' + t.fault } };
        await new Promise((r) => setTimeout(r, t.ms));
        return { ms: t.ms, bytes: t.bytes ? t.bytes.byteLength : 0 };
      };`,
    );
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('accepts capacity + maxQueue tasks and refuses the next at once with QUEUE_FULL; task faults keep their code; closed is DISPOSED', async () => {
    const pool = new WorkerPool({ filename: path.join(dir, 'worker.js'), name: 'test', threads: 1, tasksPerThread: 2, maxQueue: 1 });
    try {
      const accepted = [0, 1, 2].map(() => pool.run<{ ms: number }>({ ms: 150 }));
      expect(pool.outstanding).toBe(3);
      await expect(pool.run({ ms: 1 })).rejects.toMatchObject({ code: 'QUEUE_FULL', message: expect.stringMatching(/test queue full: 3 tasks accepted \(2 running, at most 1 waiting\)/) });
      expect((await Promise.all(accepted)).map((r) => r.ms)).toEqual([150, 150, 150]);
      expect(pool.outstanding).toBe(0);
      const bytes = new Uint8Array(16);
      expect(await pool.run({ ms: 1, bytes }, [bytes.buffer])).toEqual({ ms: 1, bytes: 16 });
      expect(bytes.byteLength).toBe(0); // moved, not copied
      await expect(pool.run({ fault: 'INVALID_ARGUMENT' })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: 'task fault: INVALID_ARGUMENT' });
      await expect(pool.run({ fault: 'NO_SUCH_CODE' })).rejects.toMatchObject({ code: 'INTERNAL' });
      expect(pool.completed).toBe(6);
    } finally {
      await pool.close();
    }
    await expect(pool.run({ ms: 1 })).rejects.toMatchObject({ code: 'DISPOSED' });
  });

  it('loading the pool module does not load Piscina (only its first task does)', () => {
    const script = path.join(ROOT, 'dist', 'runtime', 'worker-pool.js');
    const out = execFileSync(process.execPath, ['-e', `require(${JSON.stringify(script)}); process.stdout.write(String(Object.keys(require.cache).some((k) => k.includes('piscina'))))`], { encoding: 'utf8' });
    expect(out).toBe('false');
  });
});
