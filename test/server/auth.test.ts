/**
 * API keys and what stays open without one (issue 14 item 8), and the request timeout's answer,
 * over a real listening port: with keys set, only the server-level health routes and the docs
 * answer without a key, and nothing that answers without a key tells which models exist (the
 * per-model ready routes and /metrics need the key; /metrics can be opened on purpose). A client
 * that sends its request too slowly gets 408.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, describe, expect, it } from 'vitest';
import { buildServer } from '../../src/server';
import type { ServerOptions } from '../../src/server/options';
import { serveOptions } from '../../src/cli/serve';
import { MODELS } from '../helpers';

const KEY = 'key-aaaaaaaa-1234';
const apps: FastifyInstance[] = [];
afterAll(async () => {
  for (const app of apps) await app.close();
});

async function listen(options: Partial<ServerOptions>): Promise<string> {
  const app = await buildServer({ repository: path.join(MODELS, 'mlp_tiny.onnx'), logger: false, ...options });
  apps.push(app);
  return app.listen({ port: 0, host: '127.0.0.1' });
}

const get = async (url: string, key?: string) => {
  const r = await fetch(url, { headers: key ? { authorization: `Bearer ${key}` } : {} });
  return { status: r.status, body: await r.text() };
};

describe('API keys: what answers without one', () => {
  it('server health and docs are open; per-model ready and /metrics need the key, and answer the same for real and made-up models', async () => {
    const base = await listen({ apiKeys: [KEY] });
    expect((await get(`${base}/v2/health/live`)).status).toBe(200);
    expect((await get(`${base}/v2/health/ready`)).status).toBe(200);
    const docs = await get(`${base}/documentation/json`);
    expect(docs.status).toBe(200);
    expect(docs.body).not.toContain('mlp_tiny');
    // Without a key, a real and a made-up model cannot be told apart.
    for (const url of ['/v2/models/mlp_tiny/ready', '/v2/models/nope/ready', '/v2/models/mlp_tiny/versions/1/ready', '/v2/models/nope/versions/1/ready', '/metrics']) {
      const r = await get(`${base}${url}`);
      expect(r.status, url).toBe(401);
      expect(JSON.parse(r.body).code).toBe('UNAUTHORIZED');
      expect(r.body).not.toContain('mlp_tiny');
    }
    // With the key, the answers are the real ones.
    expect((await get(`${base}/v2/models/mlp_tiny/ready`, KEY)).status).toBe(200);
    expect((await get(`${base}/v2/models/mlp_tiny/versions/1/ready`, KEY)).status).toBe(200);
    expect((await get(`${base}/v2/models/nope/ready`, KEY)).status).toBe(404);
    const metrics = await get(`${base}/metrics`, KEY);
    expect(metrics.status).toBe(200);
    expect(metrics.body).toContain('model="mlp_tiny"');
  });

  it('/metrics opens only when asked (authExempt: metrics, or --open-metrics); --protect-health closes the health routes', async () => {
    const open = await listen({ apiKeys: [KEY], authExempt: ['health', 'docs', 'metrics'] });
    expect((await get(`${open}/metrics`)).status).toBe(200);
    expect((await get(`${open}/v2/models/mlp_tiny/ready`)).status).toBe(401); // still: a per-model route
    const closed = await listen({ apiKeys: [KEY], authExempt: [] });
    expect((await get(`${closed}/v2/health/live`)).status).toBe(401);
    expect((await get(`${closed}/v2/health/ready`)).status).toBe(401);
    expect((await get(`${closed}/v2/health/ready`, KEY)).status).toBe(200);
    // The CLI's flags map onto the same areas.
    expect(serveOptions(['m.onnx', '--api-key', KEY]).options.authExempt).toEqual(['health', 'docs']);
    expect(serveOptions(['m.onnx', '--api-key', KEY, '--open-metrics']).options.authExempt).toEqual(['health', 'docs', 'metrics']);
    expect(serveOptions(['m.onnx', '--api-key', KEY, '--protect-health']).options.authExempt).toEqual(['docs']);
  });

  it('--protect-metrics / NIMIFY_PROTECT_METRICS (deprecated: /metrics is protected by default now) are accepted, change nothing and warn once', async () => {
    const model = path.join(MODELS, 'mlp_tiny.onnx');
    const warning = /^nimify: --protect-metrics \(NIMIFY_PROTECT_METRICS\) is deprecated and changes nothing: \/metrics needs the API key by default now/;
    const given: Array<[string[], NodeJS.ProcessEnv]> = [
      [[model, '--api-key', KEY, '--protect-metrics'], {}],
      [[model, '--api-key', KEY], { NIMIFY_PROTECT_METRICS: '1' }],
      [[model, '--api-key', KEY], { NIMIFY_PROTECT_METRICS: 'false' }],
    ];
    for (const [argv, env] of given) {
      const cfg = serveOptions(argv, env);
      expect(cfg.options.authExempt, argv.join(' ')).toEqual(serveOptions([model, '--api-key', KEY]).options.authExempt);
      expect(cfg.warnings).toHaveLength(1);
      expect(cfg.warnings[0]).toMatch(warning);
    }
    expect(serveOptions([model, '--api-key', KEY]).warnings).toEqual([]);
    // What the server does with them: /metrics still needs the key.
    const base = await listen({ ...serveOptions(given[0]![0], {}).options, logger: false });
    expect((await get(`${base}/metrics`)).status).toBe(401);
    expect((await get(`${base}/metrics`, KEY)).status).toBe(200);
  });

  it('an open /v2/health/ready that is not ready counts models instead of naming them; with the key required it names them', async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'nimify-auth-'));
    try {
      fs.mkdirSync(path.join(root, 'secret_model', '1'), { recursive: true });
      fs.writeFileSync(path.join(root, 'secret_model', '1', 'model.onnx'), 'not an onnx model');
      const open = await listen({ repository: root, apiKeys: [KEY] });
      const r = await get(`${open}/v2/health/ready`);
      expect(r.status).toBe(503);
      expect(JSON.parse(r.body)).toMatchObject({ code: 'NOT_READY', error: expect.stringContaining('1 of 1 model versions not ready') });
      expect(r.body).not.toContain('secret_model');
      const guarded = await listen({ repository: root, apiKeys: [KEY], authExempt: ['docs'] });
      expect((await get(`${guarded}/v2/health/ready`, KEY)).body).toContain('secret_model');
      const noKeys = await listen({ repository: root });
      expect((await get(`${noKeys}/v2/health/ready`)).body).toContain('secret_model');
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });
});

describe('request timeout', () => {
  /** Sends `data` on a raw connection and resolves with everything the server sent back before closing. */
  const stall = (base: string, data: string) =>
    new Promise<string>((resolve, reject) => {
      const { port } = new URL(base);
      const socket = net.connect(Number(port), '127.0.0.1', () => socket.write(data));
      let got = '';
      socket.on('data', (d) => (got += d));
      socket.on('error', reject);
      socket.on('close', () => resolve(got));
    });

  it('a client that sends its headers and then stalls (or stalls within its headers) gets 408 in the error shape, not 400', async () => {
    const base = await listen({ requestTimeoutMs: 300 });
    const body = JSON.stringify({ inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: new Array(64).fill(0.5) }] });
    // Headers and part of the body, then nothing.
    const partBody = await stall(base, `POST /v2/models/mlp_tiny/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body.slice(0, 20)}`);
    expect(partBody).toMatch(/^HTTP\/1\.1 408 Request Timeout\r\n/);
    expect(JSON.parse(partBody.slice(partBody.indexOf('\r\n\r\n') + 4))).toMatchObject({ code: 'TIMEOUT', error: expect.stringContaining('300 ms') });
    // Half a header block, then nothing.
    const partHeaders = await stall(base, 'GET /v2/health/live HTTP/1.1\r\nHost: x\r\n');
    expect(partHeaders).toMatch(/^HTTP\/1\.1 408 Request Timeout\r\n/);
    // A malformed request is still 400.
    expect(await stall(base, 'BOGUS\r\n\r\n')).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n/);
  });
});
