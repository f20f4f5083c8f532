/**
 * OpenTelemetry tracing (issue 16 item 4) with the SDK's InMemorySpanExporter injected as the
 * server's tracerProvider, over real HTTP and gRPC ports with real models: the span tree and
 * attributes of an HTTP infer, a gRPC ModelInfer and a ModelStreamInfer stream, a batched run (batch size > 1 on the compute
 * span, from the addon's per-request timing), a predict request (its preprocess span), a W3C
 * traceparent continued (header and metadata), refused requests (status ERROR, no queue or compute
 * span), Triton's timestamps as events in order; the OTLP exporter posting to a real HTTP
 * collector; option and --trace / OTEL_* validation; and with tracing off no OpenTelemetry module
 * loaded at all.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GRPC_SERVICE, loadInferenceProto } from '../../src/protocol/grpc';
import { buildServer } from '../../src/server';
import { startGrpcServer, type GrpcServer } from '../../src/server/grpc/server';
import { checkPluginOptions } from '../../src/server/options';
import { ATTR, SPAN, TRITON_EVENTS, TRACING_PACKAGES, checkTracingPackages } from '../../src/server/tracing';
import { serveOptions, traceOption } from '../../src/cli/serve';
import { MODELS, ROOT, model, writeFile } from '../helpers';

const exporter = new InMemorySpanExporter();
const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });

let root: string;
let app: FastifyInstance;
let base: string;
let grpcServer: GrpcServer;

const TRACE_ID = '0af7651916cd43dd8448eb211c80319c';
const PARENT_ID = 'b7ad6b7169203331';
const TRACEPARENT = `00-${TRACE_ID}-${PARENT_ID}-01`;

const row = (k: number) => Array.from({ length: 64 }, (_, i) => Math.sin(i + k));
const inferBody = (k: number, id?: string) => JSON.stringify({ ...(id ? { id } : {}), inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: row(k) }] });

function post(url: string, body: string | Buffer, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${base}${url}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });
}

async function waitFor<T>(what: string, fn: () => T | undefined): Promise<T> {
  for (let i = 0; i < 400; i++) {
    const v = fn();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** The finished request span whose attribute `key` is `value`, and its children. */
async function tree(key: string, value: string): Promise<{ request: ReadableSpan; children: ReadableSpan[] }> {
  const request = await waitFor(`the request span with ${key}=${value}`, () =>
    exporter.getFinishedSpans().find((s) => s.kind === SpanKind.SERVER && s.attributes[key] === value));
  const id = request.spanContext().spanId;
  const children = exporter.getFinishedSpans().filter((s) => s.parentSpanContext?.spanId === id);
  return { request, children };
}

const named = (spans: ReadableSpan[], name: string) => spans.filter((s) => s.name === name);
const ms = (t: [number, number]) => t[0] * 1000 + t[1] / 1e6;

/** Triton's timestamps, each once, in order, inside the request span. */
function expectTritonEvents(request: ReadableSpan): void {
  const events = request.events.filter((e) => (TRITON_EVENTS as readonly string[]).includes(e.name));
  expect(events.map((e) => e.name)).toEqual([...TRITON_EVENTS]);
  const times = events.map((e) => ms(e.time));
  for (let i = 1; i < times.length; i++) expect(times[i]).toBeGreaterThanOrEqual(times[i - 1] - 0.01);
  expect(times[0]).toBeGreaterThanOrEqual(ms(request.startTime) - 0.01);
  expect(times.at(-1)!).toBeLessThanOrEqual(ms(request.endTime) + 0.01);
}

const put = (rel: string, data: string | Buffer): void => writeFile(root, rel, data);

beforeAll(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'nimify-trace-'));
  put('mlp_tiny/1/model.onnx', fs.readFileSync(model('mlp_tiny.onnx')));
  // Waits up to 150 ms for company and never runs inline: concurrent requests share a batch.
  put('batched/1/model.onnx', fs.readFileSync(model('mlp_tiny.onnx')));
  put('batched/config.json', JSON.stringify({ runtime: { inlineBelowMicros: 0 }, batching: { maxBatchSize: 8, maxQueueDelayMicros: 150_000, adaptive: false } }));
  put('slow/1/model.onnx', fs.readFileSync(path.join(MODELS, 'slow.onnx')));
  // Its pending limit is 1 (90 % of maxQueueSize, admission.ts): a second request is shed.
  put('slow/config.json', JSON.stringify({ batching: { maxQueueSize: 2 } }));
  const digits = path.join(ROOT, 'examples', 'digits', 'digits');
  fs.cpSync(digits, path.join(root, 'digits'), { recursive: true });
  app = await buildServer({ repository: root, logger: false, tracing: { tracerProvider: provider } });
  grpcServer = await startGrpcServer(app, { port: 0 });
  base = await app.listen({ port: 0, host: '127.0.0.1' });
}, 120_000);

afterAll(async () => {
  await app?.close();
  await provider.shutdown();
  fs.rmSync(root, { recursive: true, force: true });
});

describe('tracing: HTTP', () => {
  it('an infer request: the request span with admission, queue, compute and encoding children, its attributes and Triton timestamps', async () => {
    const r = await post('/v2/models/mlp_tiny/infer', inferBody(1, 'req-http-1'));
    expect(r.status).toBe(200);
    const { request, children } = await tree(ATTR.requestId, 'req-http-1');
    expect(request.name).toBe('POST /v2/models/:model_name/infer');
    expect(request.attributes).toMatchObject({
      [ATTR.model]: 'mlp_tiny', [ATTR.version]: '1', [ATTR.status]: 'OK',
      'http.request.method': 'POST', 'http.route': '/v2/models/:model_name/infer', 'url.path': '/v2/models/mlp_tiny/infer', 'http.response.status_code': 200,
    });
    expect(request.status.code).toBe(SpanStatusCode.UNSET);
    // A new trace: the client sent no traceparent.
    expect(request.parentSpanContext).toBeUndefined();
    expect(children.map((s) => s.name).sort()).toEqual([SPAN.admission, SPAN.compute, SPAN.encode, SPAN.queue].sort());
    for (const c of children) expect(c.spanContext().traceId).toBe(request.spanContext().traceId);
    const [queue] = named(children, SPAN.queue);
    const [compute] = named(children, SPAN.compute);
    // The queue wait ends where the compute starts (the addon's clock, one reading).
    expect(ms(queue.endTime)).toBeCloseTo(ms(compute.startTime), 3);
    expect(compute.attributes[ATTR.batchSize]).toBe(1);
    expect(compute.attributes[ATTR.batchRequests]).toBe(1);
    expect(typeof compute.attributes[ATTR.instance]).toBe('number');
    expectTritonEvents(request);
  });

  it("continues the client's W3C traceparent", async () => {
    const r = await post('/v2/models/mlp_tiny/infer', inferBody(2, 'req-http-parent'), { traceparent: TRACEPARENT });
    expect(r.status).toBe(200);
    const { request, children } = await tree(ATTR.requestId, 'req-http-parent');
    expect(request.spanContext().traceId).toBe(TRACE_ID);
    expect(request.parentSpanContext?.spanId).toBe(PARENT_ID);
    expect(children.length).toBe(4);
  });

  it('a batched run: the compute span says how many rows and requests it ran together', async () => {
    const ids = [0, 1, 2, 3].map((k) => `req-batch-${k}`);
    const rs = await Promise.all(ids.map((id, k) => post('/v2/models/batched/infer', inferBody(k, id))));
    expect(rs.map((r) => r.status)).toEqual([200, 200, 200, 200]);
    const computes = await Promise.all(ids.map(async (id) => named((await tree(ATTR.requestId, id)).children, SPAN.compute)[0]));
    const sizes = computes.map((c) => c.attributes[ATTR.batchSize] as number);
    expect(Math.max(...sizes)).toBeGreaterThan(1);
    for (const c of computes) expect(c.attributes[ATTR.batchRequests]).toBe(c.attributes[ATTR.batchSize]);
    // The scheduler's own instance thread ran them (index 0), not the event loop (-1).
    expect(computes.map((c) => c.attributes[ATTR.instance])).toEqual([0, 0, 0, 0]);
  });

  it('a predict request: a preprocess span before the queue and compute spans', async () => {
    const png = fs.readFileSync(path.join(ROOT, 'examples', 'digits', 'samples', 'digit-7.png'));
    const r = await post('/v1/models/digits/predict', png, { 'content-type': 'image/png', traceparent: `00-${'1'.repeat(32)}-${PARENT_ID}-01` });
    expect(r.status).toBe(200);
    const request = await waitFor('the predict span', () => exporter.getFinishedSpans().find((s) => s.kind === SpanKind.SERVER && s.spanContext().traceId === '1'.repeat(32)));
    expect(request.name).toBe('POST /v1/models/:model_name/predict');
    expect(request.attributes).toMatchObject({ [ATTR.model]: 'digits', [ATTR.status]: 'OK' });
    const children = exporter.getFinishedSpans().filter((s) => s.parentSpanContext?.spanId === request.spanContext().spanId);
    expect(children.map((s) => s.name).sort()).toEqual([SPAN.admission, SPAN.compute, SPAN.preprocess, SPAN.queue].sort());
    const [pre] = named(children, SPAN.preprocess);
    expect(pre.attributes[ATTR.items]).toBe(1);
    expect(ms(pre.endTime)).toBeLessThanOrEqual(ms(named(children, SPAN.queue)[0].startTime) + 0.01);
  });

  it('a request refused at admission (unknown model): status ERROR, a failed admission span, no queue or compute span', async () => {
    const r = await post('/v2/models/nope/infer', inferBody(3), { traceparent: `00-${'2'.repeat(32)}-${PARENT_ID}-01` });
    expect(r.status).toBe(404);
    const request = await waitFor('the refused span', () => exporter.getFinishedSpans().find((s) => s.kind === SpanKind.SERVER && s.spanContext().traceId === '2'.repeat(32)));
    expect(request.status.code).toBe(SpanStatusCode.ERROR);
    expect(request.attributes).toMatchObject({ [ATTR.status]: 'NOT_FOUND', 'http.response.status_code': 404 });
    const children = exporter.getFinishedSpans().filter((s) => s.parentSpanContext?.spanId === request.spanContext().spanId);
    expect(children.map((s) => s.name)).toEqual([SPAN.admission]);
    expect(children[0].status.code).toBe(SpanStatusCode.ERROR);
  });

  it('a request shed for the model\'s pending limit (OVERLOADED 503): status ERROR, no compute span', async () => {
    const slow = JSON.stringify({ parameters: { timeout: 400_000 }, inputs: [{ name: 'x', shape: [256, 256], datatype: 'FP32', data: new Array(65536).fill(0.01) }, { name: 'iters', shape: [], datatype: 'INT64', data: 1_000_000 }] });
    const blocker = post('/v2/models/slow/infer', slow);
    await waitFor('the slow request to be admitted', () => (app.nimify.inFlight === 1 ? true : undefined));
    const r = await post('/v2/models/slow/infer', slow, { traceparent: `00-${'3'.repeat(32)}-${PARENT_ID}-01` });
    expect(r.status).toBe(503);
    expect(((await r.json()) as { code: string }).code).toBe('OVERLOADED');
    await blocker;
    const request = await waitFor('the shed span', () => exporter.getFinishedSpans().find((s) => s.kind === SpanKind.SERVER && s.spanContext().traceId === '3'.repeat(32)));
    expect(request.status.code).toBe(SpanStatusCode.ERROR);
    expect(request.attributes[ATTR.status]).toBe('OVERLOADED');
    const children = exporter.getFinishedSpans().filter((s) => s.parentSpanContext?.spanId === request.spanContext().spanId);
    expect(children.map((s) => s.name)).toEqual([SPAN.admission]);
  });
});

describe('tracing: gRPC', () => {
  it('ModelInfer: the same span tree through the same request-span function, continuing the traceparent metadata', async () => {
    const Service = (grpc.loadPackageDefinition(loadInferenceProto()).inference as unknown as { GRPCInferenceService: grpc.ServiceClientConstructor }).GRPCInferenceService;
    const client = new Service(grpcServer.address, grpc.credentials.createInsecure()) as grpc.Client & Record<string, (...a: unknown[]) => unknown>;
    try {
      const metadata = new grpc.Metadata();
      metadata.set('traceparent', `00-${'4'.repeat(32)}-${PARENT_ID}-01`);
      const request = { model_name: 'mlp_tiny', id: 'req-grpc-1', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 64], contents: { fp32_contents: row(5) } }] };
      await new Promise((resolve, reject) => client.ModelInfer(request, metadata, (err: unknown, res: unknown) => (err ? reject(err) : resolve(res))));
      const { request: span, children } = await tree(ATTR.requestId, 'req-grpc-1');
      expect(span.name).toBe(`${GRPC_SERVICE}/ModelInfer`);
      expect(span.spanContext().traceId).toBe('4'.repeat(32));
      expect(span.parentSpanContext?.spanId).toBe(PARENT_ID);
      expect(span.attributes).toMatchObject({ 'rpc.system': 'grpc', 'rpc.service': GRPC_SERVICE, 'rpc.method': 'ModelInfer', 'rpc.grpc.status_code': 0, [ATTR.model]: 'mlp_tiny', [ATTR.version]: '1', [ATTR.status]: 'OK' });
      expect(children.map((s) => s.name).sort()).toEqual([SPAN.admission, SPAN.compute, SPAN.encode, SPAN.queue].sort());
      expectTritonEvents(span);

      // A refused call: its gRPC status on the span, status ERROR, no compute.
      const bad = new grpc.Metadata();
      bad.set('traceparent', `00-${'5'.repeat(32)}-${PARENT_ID}-01`);
      await expect(new Promise((resolve, reject) => client.ModelInfer({ ...request, model_name: 'nope' }, bad, (err: unknown, res: unknown) => (err ? reject(err) : resolve(res))))).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
      const refused = await waitFor('the refused gRPC span', () => exporter.getFinishedSpans().find((s) => s.kind === SpanKind.SERVER && s.spanContext().traceId === '5'.repeat(32)));
      expect(refused.status.code).toBe(SpanStatusCode.ERROR);
      expect(refused.attributes['rpc.grpc.status_code']).toBe(grpc.status.NOT_FOUND);
      expect(exporter.getFinishedSpans().filter((s) => s.parentSpanContext?.spanId === refused.spanContext().spanId).map((s) => s.name)).toEqual([SPAN.admission]);

      // A stream: one request span per message, each with its own compute.
      const streamMeta = new grpc.Metadata();
      streamMeta.set('traceparent', `00-${'6'.repeat(32)}-${PARENT_ID}-01`);
      const stream = (client as unknown as { ModelStreamInfer(m: grpc.Metadata): grpc.ClientDuplexStream<unknown, { error_message: string }> }).ModelStreamInfer(streamMeta);
      const answers: string[] = [];
      const ended = new Promise<void>((resolve, reject) => {
        stream.on('data', (m) => answers.push(m.error_message));
        stream.on('end', () => resolve());
        stream.on('error', reject);
      });
      for (const k of [1, 2, 3]) stream.write({ ...request, id: `req-stream-${k}` });
      stream.end();
      await ended;
      expect(answers).toEqual(['', '', '']);
      for (const k of [1, 2, 3]) {
        const { request: s, children } = await tree(ATTR.requestId, `req-stream-${k}`);
        expect(s.name).toBe(`${GRPC_SERVICE}/ModelStreamInfer`);
        expect(s.spanContext().traceId).toBe('6'.repeat(32));
        expect(named(children, SPAN.compute)).toHaveLength(1);
      }
    } finally {
      client.close();
    }
  });
});

describe('tracing: the OTLP exporter', () => {
  it("exports the spans with OTLP over HTTP to the given endpoint, flushed by the app's close()", async () => {
    const received: Array<{ url: string; type: string; body: string }> = [];
    const collector = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        received.push({ url: req.url ?? '', type: String(req.headers['content-type']), body: Buffer.concat(chunks).toString('utf8') });
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      });
    });
    await new Promise<void>((r) => collector.listen(0, '127.0.0.1', () => r()));
    const port = (collector.address() as { port: number }).port;
    try {
      const other = await buildServer({ repository: model('mlp_tiny.onnx'), logger: false, tracing: { exporter: 'otlp', url: `http://127.0.0.1:${port}/v1/traces`, serviceName: 'nimify-test' } });
      const r = await other.inject({ method: 'POST', url: '/v2/models/mlp_tiny/infer', headers: { 'content-type': 'application/json' }, payload: inferBody(6) });
      expect(r.statusCode).toBe(200);
      expect(received).toEqual([]); // batched: nothing sent per request
      await other.close();
      expect(received.length).toBeGreaterThan(0);
      expect(received[0]).toMatchObject({ url: '/v1/traces', type: 'application/json' });
      // OTLP/JSON: the resource names the service, and the request's spans are all there.
      type Otlp = { resourceSpans: Array<{ resource: { attributes: Array<{ key: string; value: { stringValue?: string } }> }; scopeSpans: Array<{ spans: Array<{ name: string }> }> }> };
      const sent = received.flatMap((x) => (JSON.parse(x.body) as Otlp).resourceSpans);
      expect(sent[0].resource.attributes).toContainEqual({ key: 'service.name', value: { stringValue: 'nimify-test' } });
      const names = sent.flatMap((rs) => rs.scopeSpans.flatMap((ss) => ss.spans.map((sp) => sp.name)));
      expect(names.sort()).toEqual(['POST /v2/models/:model_name/infer', SPAN.admission, SPAN.compute, SPAN.encode, SPAN.queue].sort());
    } finally {
      collector.close();
    }
  });
});

describe('tracing: options', () => {
  it('options.tracing is validated: exporter, url, provider, one of them', () => {
    const check = (tracing: unknown) => () => checkPluginOptions({ repository: root, tracing });
    expect(checkPluginOptions({ repository: root }).tracing).toBe(false);
    expect(check({ exporter: 'zipkin' })).toThrow(/options\.tracing\.exporter: expected one of/);
    expect(check({})).toThrow(/options\.tracing: expected exporter: 'otlp' or a tracerProvider, received neither/);
    expect(check({ exporter: 'otlp', url: 'ftp://x' })).toThrow(/options\.tracing\.url: expected an http:\/\/ or https:\/\/ URL/);
    expect(check({ tracerProvider: {} })).toThrow(/options\.tracing\.tracerProvider: expected an OpenTelemetry TracerProvider/);
    expect(check({ tracerProvider: provider, exporter: 'otlp' })).toThrow(/received both/);
    expect(check({ exporter: 'otlp', colour: 1 })).toThrow(/colour/);
  });

  it('the SDK packages are optional peers: missing ones are named in one npm install line', () => {
    // From a folder where nothing resolves: every package is named.
    const nowhere = fs.mkdtempSync(path.join(os.tmpdir(), 'nimify-no-otel-'));
    expect(() => checkTracingPackages(TRACING_PACKAGES, [nowhere])).toThrow(/^tracing needs '@opentelemetry\/core', '@opentelemetry\/sdk-trace-base', '@opentelemetry\/exporter-trace-otlp-http', '@opentelemetry\/resources', not installed: run `npm install @opentelemetry\/core @opentelemetry\/sdk-trace-base @opentelemetry\/exporter-trace-otlp-http @opentelemetry\/resources` in your project$/);
    expect(() => checkTracingPackages(TRACING_PACKAGES)).not.toThrow(); // installed here (dev dependencies)
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
    for (const name of TRACING_PACKAGES) {
      expect(pkg.dependencies[name], name).toBeUndefined();
      expect(pkg.peerDependenciesMeta[name], name).toEqual({ optional: true });
    }
  });

  it('--trace and the OTEL_* environment', () => {
    const served = (argv: string[], env: NodeJS.ProcessEnv = {}) => serveOptions([model('mlp_tiny.onnx'), ...argv], env).options.tracing;
    expect(served([])).toBeUndefined();
    expect(served(['--trace', 'otlp=http://c:4318/v1/traces'])).toEqual({ exporter: 'otlp', url: 'http://c:4318/v1/traces' });
    expect(served([], { NIMIFY_TRACE: 'otlp=http://n:4318/v1/traces' })).toEqual({ exporter: 'otlp', url: 'http://n:4318/v1/traces' });
    expect(served([], { OTEL_TRACES_EXPORTER: 'otlp' })).toEqual({ exporter: 'otlp' });
    expect(traceOption(undefined, {})).toBe(false);
    expect(traceOption('otlp=http://c:4318/v1/traces', {})).toEqual({ exporter: 'otlp', url: 'http://c:4318/v1/traces' });
    expect(traceOption('off', { OTEL_TRACES_EXPORTER: 'otlp' })).toBe(false);
    expect(traceOption(undefined, { OTEL_TRACES_EXPORTER: 'otlp', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318/', OTEL_SERVICE_NAME: 'svc' })).toEqual({ exporter: 'otlp', url: 'http://c:4318/v1/traces', serviceName: 'svc' });
    expect(traceOption('otlp', { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://t:4318/custom', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318' })).toEqual({ exporter: 'otlp', url: 'http://t:4318/custom' });
    expect(traceOption(undefined, { OTEL_TRACES_EXPORTER: 'none' })).toBe(false);
    expect(traceOption(undefined, { OTEL_TRACES_EXPORTER: 'otlp', OTEL_SDK_DISABLED: 'true' })).toBe(false);
    expect(() => traceOption(undefined, { OTEL_TRACES_EXPORTER: 'zipkin' })).toThrow(/OTEL_TRACES_EXPORTER: expected otlp or none/);
    expect(() => traceOption('jaeger', {})).toThrow(/--trace: expected otlp=<url>, otlp or off, received "jaeger"/);
    expect(() => traceOption('otlp=not a url', {})).toThrow(/--trace: expected an http/);
    expect(() => traceOption(undefined, { OTEL_TRACES_EXPORTER: 'otlp', OTEL_EXPORTER_OTLP_ENDPOINT: 'grpc://c' })).toThrow(/OTEL_EXPORTER_OTLP_ENDPOINT: expected an http/);
  });
});

describe('tracing off', () => {
  it('loads no OpenTelemetry module and records nothing: a server without tracing, serving inferences', () => {
    expect(fs.existsSync(path.join(ROOT, 'dist', 'server', 'tracing.js')), 'build dist first: npx tsc -p tsconfig.build.json').toBe(true);
    const probe = `
      const { buildServer } = require('./dist/server');
      (async () => {
        const app = await buildServer({ repository: ${JSON.stringify(model('mlp_tiny.onnx'))}, logger: false });
        const body = ${JSON.stringify(inferBody(7))};
        for (let i = 0; i < 3; i++) {
          const r = await app.inject({ method: 'POST', url: '/v2/models/mlp_tiny/infer', headers: { 'content-type': 'application/json', traceparent: ${JSON.stringify(TRACEPARENT)} }, payload: body });
          if (r.statusCode !== 200) throw new Error(r.body);
        }
        const tracing = app.nimify.tracing;
        await app.close();
        // prom-client loads @opentelemetry/api for itself; nimify loads nothing of OpenTelemetry's.
        const otel = Object.keys(require.cache).filter((f) => f.includes('@opentelemetry') && !f.includes('@opentelemetry/api/'));
        console.log(JSON.stringify({ tracing, otel }));
      })().catch((e) => { console.error(e); process.exit(1); });`;
    const r = spawnSync(process.execPath, ['-e', probe], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout.trim().split('\n').pop()!)).toEqual({ tracing: null, otel: [] });
  });
});
