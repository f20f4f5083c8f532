/**
 * Resilience plugins: API keys, rate limiting, the per-model circuit breaker (time driven by
 * faked Date), load shedding (concurrency and queue depth), and what reaches the logs.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Writable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { buildServer } from '../../src/server';
import { CircuitBreaker } from '../../src/server/breaker';
import { MODELS } from '../helpers';

let root: string;
const apps: FastifyInstance[] = [];
const KEY_A = 'key-aaaa-1111';
const KEY_B = 'key-bbbb-2222';

beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'nimify-res-'));
  const put = (rel: string, content: Buffer | string) => {
    fs.mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
    fs.writeFileSync(path.join(root, rel), content);
  };
  put('tiny/1/model.onnx', fs.readFileSync(path.join(MODELS, 'mlp_tiny.onnx')));
  // reshape_fail: x [n], shape [2] → Reshape fails in ORT unless shape fits n. A valid warmup.
  put('flaky/1/model.onnx', fs.readFileSync(path.join(MODELS, 'reshape_fail.onnx')));
  put('flaky/config.json', JSON.stringify({ warmup: [{ inputs: { x: { shape: [4] }, shape: { shape: [2], data: [2, 2] } } }] }));
  put('slow/1/model.onnx', fs.readFileSync(path.join(MODELS, 'slow.onnx')));
});
afterEach(async () => {
  vi.useRealTimers();
  await Promise.all(apps.splice(0).map((a) => a.close()));
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

async function server(options: Record<string, unknown>): Promise<FastifyInstance> {
  const app = await buildServer({ repository: root, logger: false, ...options });
  await app.ready();
  apps.push(app);
  return app;
}
const tinyBody = { inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: new Array(64).fill(0.5) }] };
const tiny = (app: FastifyInstance, headers: Record<string, string> = {}) => app.inject({ method: 'POST', url: '/v2/models/tiny/infer', headers, payload: tinyBody });
const flaky = (app: FastifyInstance, ok: boolean) =>
  app.inject({ method: 'POST', url: '/v2/models/flaky/infer', payload: { inputs: [{ name: 'x', shape: [4], datatype: 'FP32', data: [1, 2, 3, 4] }, { name: 'shape', shape: [2], datatype: 'INT64', data: ok ? [2, 2] : [3, 3] }] } });
const slowBody = (iters: number) => ({ inputs: [{ name: 'x', shape: [256, 256], datatype: 'FP32', data: new Array(65536).fill(0.01) }, { name: 'iters', shape: [], datatype: 'INT64', data: iters }] });

describe('API keys', () => {
  it('requires a valid bearer key except on exempt areas; answers 401 with WWW-Authenticate', async () => {
    const app = await server({ apiKeys: [KEY_A, KEY_B] });
    const none = await tiny(app);
    expect(none.statusCode).toBe(401);
    expect(none.json().code).toBe('UNAUTHORIZED');
    expect(none.headers['www-authenticate']).toContain('Bearer');
    expect((await tiny(app, { authorization: `Bearer ${KEY_A}x` })).statusCode).toBe(401);
    expect((await tiny(app, { authorization: `Basic ${KEY_A}` })).statusCode).toBe(401);
    expect((await tiny(app, { authorization: `Bearer ${KEY_A}` })).statusCode).toBe(200);
    expect((await tiny(app, { authorization: `bearer ${KEY_B}` })).statusCode).toBe(200);
    expect((await app.inject('/v2/models/tiny')).statusCode).toBe(401);
    expect((await app.inject('/v2/health/ready')).statusCode).toBe(200);
    // /metrics names every model: it needs a key unless exempted (authExempt).
    expect((await app.inject({ url: '/metrics', headers: { authorization: `Bearer ${KEY_A}` } })).body).toMatch(/nimify_requests_unauthorized_total 4/);
  });

  it('health and metrics can be protected too; keys can come from NIMIFY_API_KEYS', async () => {
    const app = await server({ apiKeys: [KEY_A], authExempt: [] });
    expect((await app.inject('/v2/health/live')).statusCode).toBe(401);
    expect((await app.inject('/metrics')).statusCode).toBe(401);
    expect((await app.inject({ url: '/metrics', headers: { authorization: `Bearer ${KEY_A}` } })).statusCode).toBe(200);
    process.env.NIMIFY_API_KEYS = `${KEY_B}, ${KEY_A}`;
    try {
      const envApp = await server({});
      expect((await tiny(envApp)).statusCode).toBe(401);
      expect((await tiny(envApp, { authorization: `Bearer ${KEY_B}` })).statusCode).toBe(200);
    } finally {
      delete process.env.NIMIFY_API_KEYS;
    }
  });

  it('short keys are refused at startup', async () => {
    await expect(buildServer({ repository: root, logger: false, apiKeys: ['short'] })).rejects.toThrow(/at least 8 characters/);
  });
});

describe('rate limiting', () => {
  it('limits per client and per API key, answers 429 with Retry-After, leaves health alone', async () => {
    const app = await server({ apiKeys: [KEY_A, KEY_B], rateLimit: { max: 3, timeWindowMs: 60_000, perKey: { [KEY_B]: 6 } } });
    const a = { authorization: `Bearer ${KEY_A}` };
    const b = { authorization: `Bearer ${KEY_B}` };
    for (let i = 0; i < 3; i++) expect((await tiny(app, a)).statusCode).toBe(200);
    const limited = await tiny(app, a);
    expect(limited.statusCode).toBe(429);
    expect(limited.json().code).toBe('RATE_LIMITED');
    expect(Number(limited.headers['retry-after'])).toBeGreaterThan(0);
    for (let i = 0; i < 6; i++) expect((await tiny(app, b)).statusCode).toBe(200);
    expect((await tiny(app, b)).statusCode).toBe(429);
    for (let i = 0; i < 5; i++) expect((await app.inject('/v2/health/live')).statusCode).toBe(200);
    expect((await app.inject({ url: '/metrics', headers: a })).body).toMatch(/nimify_requests_rate_limited_total 2/);
  });

  it('a new window lets the client through again', async () => {
    vi.useFakeTimers({ toFake: ['Date', 'setTimeout', 'clearTimeout', 'setInterval', 'clearInterval'], shouldAdvanceTime: true });
    // Shedding off: under-pressure samples the loop with the (faked) timers.
    const app = await server({ rateLimit: { max: 2, timeWindowMs: 1000 }, shedding: false });
    expect((await tiny(app)).statusCode).toBe(200);
    expect((await tiny(app)).statusCode).toBe(200);
    expect((await tiny(app)).statusCode).toBe(429);
    await vi.advanceTimersByTimeAsync(1100);
    expect((await tiny(app)).statusCode).toBe(200);
  });
});

describe('circuit breaker', () => {
  it('opens after N consecutive model failures, fails fast, probes after the reset time, closes on success', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const app = await server({ breaker: { failureThreshold: 3, resetTimeoutMs: 5000 } });
    expect((await flaky(app, true)).statusCode).toBe(200);
    for (let i = 0; i < 3; i++) {
      const r = await flaky(app, false);
      expect(r.statusCode).toBe(500);
      expect(r.json().code).toBe('RUNTIME_ERROR');
    }
    const open = await flaky(app, true);
    expect(open.statusCode).toBe(503);
    expect(open.json().code).toBe('CIRCUIT_OPEN');
    expect(Number(open.headers['retry-after'])).toBe(5);
    expect((await tiny(app)).statusCode).toBe(200); // other models are not affected
    expect((await app.inject('/metrics')).body).toMatch(/nimify_circuit_breaker_state\{model="flaky"\} 2/);

    vi.setSystemTime(Date.now() + 5001);
    expect((await flaky(app, false)).statusCode).toBe(500); // the half-open probe fails: open again
    expect((await flaky(app, true)).json().code).toBe('CIRCUIT_OPEN');
    vi.setSystemTime(Date.now() + 5001);
    expect((await flaky(app, true)).statusCode).toBe(200); // probe succeeds: closed
    expect((await flaky(app, true)).statusCode).toBe(200);
    expect((await app.inject('/metrics')).body).toMatch(/nimify_circuit_breaker_state\{model="flaky"\} 0/);
  });

  it('client errors do not count; a success resets the count', async () => {
    const app = await server({ breaker: { failureThreshold: 2, resetTimeoutMs: 5000 } });
    for (let i = 0; i < 5; i++) {
      const r = await app.inject({ method: 'POST', url: '/v2/models/flaky/infer', payload: { inputs: [{ name: 'x', shape: [4], datatype: 'FP32', data: [1] }] } });
      expect(r.statusCode).toBe(400);
    }
    expect((await flaky(app, false)).statusCode).toBe(500);
    expect((await flaky(app, true)).statusCode).toBe(200);
    expect((await flaky(app, false)).statusCode).toBe(500);
    expect((await flaky(app, true)).statusCode).toBe(200);
  });

  it('state machine: one probe at a time while half-open', () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const states: string[] = [];
    const b = new CircuitBreaker({ failureThreshold: 1, resetTimeoutMs: 100 }, (s) => states.push(s));
    b.failure(b.admit('m'));
    expect(() => b.admit('m')).toThrow(/circuit breaker is open/);
    vi.setSystemTime(Date.now() + 100);
    const probe = b.admit('m');
    expect(probe).toBe(true);
    expect(() => b.admit('m')).toThrow(/half-open/);
    b.success(probe);
    expect(b.admit('m')).toBe(false);
    expect(states).toEqual(['open', 'half-open', 'closed']);
  });
});

describe('load shedding', () => {
  it('bounds concurrent requests with 503 OVERLOADED + Retry-After; accepted ones complete', async () => {
    // jsonWorkerBytes 0: bodies decode in the handler, so all six arrive together.
    const app = await server({ shedding: { maxConcurrentRequests: 2, maxEventLoopDelayMs: 0, retryAfterSeconds: 2 }, jsonWorkerBytes: 0 });
    const results = await Promise.all(Array.from({ length: 6 }, () => app.inject({ method: 'POST', url: '/v2/models/slow/infer', payload: slowBody(40) })));
    const codes = results.map((r) => r.statusCode).sort();
    expect(codes.filter((c) => c === 200).length).toBeGreaterThanOrEqual(2);
    const shed = results.filter((r) => r.statusCode === 503);
    expect(shed.length).toBeGreaterThan(0);
    for (const r of shed) {
      expect(r.json().code).toBe('OVERLOADED');
      expect(r.headers['retry-after']).toBe('2');
    }
    expect((await app.inject('/metrics')).body).toMatch(/nimify_requests_shed_total\{reason="concurrency"\} [1-9]/);
    expect((await app.inject('/v2/health/live')).statusCode).toBe(200);
  });

  it("sheds on a model's pending requests before its queue overflows", async () => {
    const app = await server({ shedding: { maxPendingPerModel: 2, maxEventLoopDelayMs: 0 }, jsonWorkerBytes: 0 });
    const results = await Promise.all(Array.from({ length: 6 }, () => app.inject({ method: 'POST', url: '/v2/models/slow/infer', payload: slowBody(40) })));
    expect(results.filter((r) => r.statusCode === 200).length).toBeGreaterThanOrEqual(2);
    expect(results.filter((r) => r.statusCode === 503 && r.json().code === 'OVERLOADED').length).toBeGreaterThan(0);
    expect((await app.inject('/metrics')).body).toMatch(/nimify_requests_shed_total\{reason="queue"\} [1-9]/);
  });

  it('sheds while the event loop is late (under-pressure), health stays up', async () => {
    const app = await server({ shedding: { maxEventLoopDelayMs: 30 } });
    const until = Date.now() + 1500;
    // Keep the loop late for a while: busy slices with short yields, like an overloaded server.
    while (Date.now() < until) {
      const t = Date.now() + 120;
      while (Date.now() < t) { /* busy */ }
      await new Promise((r) => setImmediate(r));
    }
    const r = await tiny(app);
    expect(r.statusCode).toBe(503);
    expect(r.json().code).toBe('OVERLOADED');
    expect(r.headers['retry-after']).toBeDefined();
    expect((await app.inject('/v2/health/live')).statusCode).toBe(200);
  });
});

describe('logs', () => {
  it('carry request ids and never API keys or tensor data', async () => {
    const lines: string[] = [];
    const stream = new Writable({ write(chunk, _enc, cb) { lines.push(String(chunk)); cb(); } });
    const app = await buildServer({ repository: root, apiKeys: [KEY_A], logRequests: true, logger: { level: 'info', stream } });
    await app.ready();
    apps.push(app);
    await app.inject({ method: 'POST', url: '/v2/models/tiny/infer', headers: { authorization: `Bearer ${KEY_A}`, 'x-request-id': 'trace-42' }, payload: { inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: new Array(64).fill(0.123456) }] } });
    await app.inject({ method: 'POST', url: '/v2/models/tiny/infer', headers: { authorization: 'Bearer wrong-key-123' }, payload: tinyBody });
    await app.inject({ method: 'POST', url: '/v2/models/flaky/infer', headers: { authorization: `Bearer ${KEY_A}` }, payload: { inputs: [{ name: 'x', shape: [4], datatype: 'FP32', data: [7.25, 7.5, 7.75, 8.125] }, { name: 'shape', shape: [2], datatype: 'INT64', data: [3, 3] }] } });
    const text = lines.join('');
    expect(text).toContain('trace-42');
    expect(text).not.toContain(KEY_A);
    expect(text).not.toContain('wrong-key-123');
    expect(text).not.toContain('0.123456');
    expect(text).not.toContain('7.25');
  });

  it('leave out the access log by default but keep refusals with their request id', async () => {
    const lines: string[] = [];
    const stream = new Writable({ write(chunk, _enc, cb) { lines.push(String(chunk)); cb(); } });
    const app = await buildServer({ repository: root, logger: { level: 'info', stream }, breaker: false });
    await app.ready();
    apps.push(app);
    const before = lines.length; // startup lines (models ready, completed configs)
    const ok = await app.inject({ method: 'POST', url: '/v2/models/tiny/infer', headers: { 'x-request-id': 'fine-1' }, payload: tinyBody });
    expect(ok.statusCode).toBe(200);
    expect(lines.length).toBe(before);
    const failed = await app.inject({ method: 'POST', url: '/v2/models/flaky/infer', headers: { 'x-request-id': 'broken-7' }, payload: { inputs: [{ name: 'x', shape: [4], datatype: 'FP32', data: [1, 2, 3, 4] }, { name: 'shape', shape: [2], datatype: 'INT64', data: [3, 3] }] } });
    expect(failed.statusCode).toBe(500);
    const text = lines.slice(before).join('');
    expect(text).toContain('broken-7');
    expect(text).not.toContain('fine-1');
    await expect(buildServer({ repository: root, logRequests: 'yes' as unknown as boolean })).rejects.toThrow(/options.logRequests: expected true or false/);
  });
});
