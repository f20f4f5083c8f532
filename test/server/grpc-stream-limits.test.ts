// ModelStreamInfer under clients that do not play along (review findings): one that sends
// without reading its answers must not make the server buffer them without bound, and one that
// keeps pipelining requests must not hold a drain (app.close()) open.
import * as fs from 'node:fs';
import * as http2 from 'node:http2';
import * as os from 'node:os';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type { FastifyInstance } from 'fastify';
import * as protobuf from 'protobufjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadInferenceProto, PROTO_DIR } from '../../src/protocol/grpc';
import { buildServer } from '../../src/server';
import { startGrpcServer, STREAM_WINDOW, type GrpcServer } from '../../src/server/grpc/server';
import { MODELS } from '../helpers';

const Service = grpc.loadPackageDefinition(loadInferenceProto()).inference as unknown as { GRPCInferenceService: grpc.ServiceClientConstructor };
type Client = grpc.Client & { ModelStreamInfer: (m?: grpc.Metadata) => grpc.ClientDuplexStream<unknown, { error_message: string; infer_response: { id: string } }> };

let root: string;
let app: FastifyInstance;
let server: GrpcServer;
let client: Client;

beforeAll(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'nimify-grpc-limits-'));
  for (const [name, file] of [['big', 'identity_float32.onnx'], ['mlp', 'mlp_tiny.onnx']]) {
    fs.mkdirSync(path.join(root, name!, '1'), { recursive: true });
    fs.copyFileSync(path.join(MODELS, file!), path.join(root, name!, '1', 'model.onnx'));
  }
  // 1-D identity: no batch dim (each request is 16 Ki elements).
  fs.writeFileSync(path.join(root, 'big', 'config.json'), JSON.stringify({ batching: false }));
  app = await buildServer({ repository: root, logger: false, breaker: false, bodyLimit: 8 * 1024 * 1024 });
  server = await startGrpcServer(app, { port: 0 });
  await app.ready();
  client = new Service.GRPCInferenceService(server.address, grpc.credentials.createInsecure()) as unknown as Client;
}, 60_000);

afterAll(async () => {
  client?.close();
  await app?.close();
  fs.rmSync(root, { recursive: true, force: true });
});

const succeeded = (name: string) => app.nimify.repository.resolve(name).model!.stats().succeeded;

describe('ModelStreamInfer limits', () => {
  it('a client that does not read its answers: the server stops running its requests once its answers back up, and sends them all in order once it reads', async () => {
    // A raw HTTP/2 client: pausing its stream stops HTTP/2 flow-control updates, so the server's
    // writes back up exactly as they do for a client that never reads (grpc-js's own client
    // keeps reading into its buffer whatever its consumer does).
    const root = new protobuf.Root().loadSync(path.join(PROTO_DIR, 'grpc_service.proto'), { keepCase: true });
    const Request = root.lookupType('inference.ModelInferRequest');
    const Response = root.lookupType('inference.ModelStreamInferResponse');
    const frame = (msg: object) => {
      const body = Request.encode(Request.fromObject(msg)).finish();
      const out = Buffer.alloc(5 + body.length);
      out.writeUInt32BE(body.length, 1);
      Buffer.from(body).copy(out, 5);
      return out;
    };
    const session = http2.connect(`http://${server.address}`, { maxSessionMemory: 256 }); // MB: it queues every request it sends
    const stream = session.request({ ':method': 'POST', ':path': '/inference.GRPCInferenceService/ModelStreamInfer', 'content-type': 'application/grpc', te: 'trailers' });
    stream.pause();
    const big = Buffer.from(new Float32Array(16 * 1024).fill(1).buffer); // 64 KiB answers fill HTTP/2's window fast
    const n = STREAM_WINDOW * 3;
    for (let i = 0; i < n; i++) stream.write(frame({ model_name: 'big', id: String(i), inputs: [{ name: 'x', datatype: 'FP32', shape: [16 * 1024] }], raw_input_contents: [big] }));
    stream.end();
    await new Promise((r) => setTimeout(r, 2000));
    const ranWhileBlocked = succeeded('big');
    // At most the window plus what the transport buffers: far fewer than were sent.
    expect(ranWhileBlocked).toBeLessThanOrEqual(STREAM_WINDOW + 64);
    // Now read: every answer arrives, in order, without errors.
    const ids: string[] = [];
    const errors: string[] = [];
    let pending = Buffer.alloc(0);
    stream.on('data', (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      while (pending.length >= 5 && pending.length >= 5 + pending.readUInt32BE(1)) {
        const len = pending.readUInt32BE(1);
        const m = Response.toObject(Response.decode(pending.subarray(5, 5 + len))) as { error_message?: string; infer_response?: { id: string } };
        if (m.error_message) errors.push(m.error_message);
        ids.push(m.infer_response?.id ?? '');
        pending = pending.subarray(5 + len);
      }
    });
    const ended = new Promise<void>((r) => stream.on('end', () => r()));
    stream.resume();
    await ended;
    session.close();
    expect(errors).toEqual([]);
    expect(ids).toEqual(Array.from({ length: n }, (_, i) => String(i)));
  }, 60_000);

  it('a client that keeps pipelining cannot hold the drain open: app.close() ends its stream', async () => {
    const row = Buffer.from(new Float32Array(64).fill(0.5).buffer);
    const stream = client.ModelStreamInfer();
    const answers: Array<{ error_message: string }> = [];
    stream.on('data', (m) => answers.push(m));
    const ended = new Promise<void>((r) => {
      stream.on('end', () => r());
      stream.on('error', () => r());
    });
    let i = 0;
    const timer = setInterval(() => {
      for (let k = 0; k < 4; k++) stream.write({ model_name: 'mlp', id: String(i++), inputs: [{ name: 'x', datatype: 'FP32', shape: ['1', '64'] }], raw_input_contents: [row] });
    }, 2);
    await new Promise((r) => setTimeout(r, 300));
    const t0 = Date.now();
    await app.close();
    clearInterval(timer);
    expect(Date.now() - t0).toBeLessThan(5000);
    await ended;
    expect(answers.length).toBeGreaterThan(0);
    expect(answers.some((a) => a.error_message === '')).toBe(true);
  }, 30_000);

  it('the event-loop and heap guards shed gRPC like HTTP: UNAVAILABLE with OVERLOADED, counted by reason', async () => {
    // A heap limit of 1 byte: under pressure from the first sample on.
    const shedApp = await buildServer({ repository: root, logger: false, breaker: false, shedding: { maxHeapUsedBytes: 1, maxEventLoopDelayMs: 0 } });
    const shedGrpc = await startGrpcServer(shedApp, { port: 0 });
    await shedApp.ready();
    await new Promise((r) => setTimeout(r, 1200)); // under-pressure samples once a second
    const c = new Service.GRPCInferenceService(shedGrpc.address, grpc.credentials.createInsecure()) as unknown as grpc.Client & { ModelInfer: (req: unknown, cb: (err: grpc.ServiceError | null) => void) => void };
    try {
      const err = await new Promise<grpc.ServiceError | null>((r) => c.ModelInfer({ model_name: 'mlp', inputs: [{ name: 'x', datatype: 'FP32', shape: ['1', '64'] }], raw_input_contents: [Buffer.alloc(256)] }, r));
      expect(err?.code).toBe(grpc.status.UNAVAILABLE);
      expect(err?.details).toMatch(/server overloaded \(heapUsedBytes at \d+\)/);
      expect(err?.metadata.get('nimify-code')).toEqual(['OVERLOADED']);
      const http = await shedApp.inject({ method: 'POST', url: '/v2/models/mlp/infer', payload: { inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: new Array(64).fill(0) }] } });
      expect(http.statusCode).toBe(503);
      expect((await shedApp.inject('/metrics')).body).toMatch(/nimify_requests_shed_total\{reason="heapUsedBytes"\} [2-9]/);
    } finally {
      c.close();
      await shedApp.close();
    }
  }, 30_000);

  it('the rate limit applies to gRPC calls with the same windows as HTTP (per peer IP or API key); health RPCs are never limited', async () => {
    const limited = await buildServer({ repository: root, logger: false, breaker: false, rateLimit: { max: 3, timeWindowMs: 60_000 } });
    const g = await startGrpcServer(limited, { port: 0 });
    await limited.ready();
    type C = grpc.Client & Record<string, (req: unknown, cb: (err: grpc.ServiceError | null, res?: unknown) => void) => void> & { ModelStreamInfer: () => grpc.ClientDuplexStream<unknown, { error_message: string }> };
    const c = new Service.GRPCInferenceService(g.address, grpc.credentials.createInsecure()) as unknown as C;
    const rpc = (name: string, req: unknown) => new Promise<grpc.ServiceError | null>((r) => c[name]!(req, (err) => r(err)));
    const infer = { model_name: 'mlp', inputs: [{ name: 'x', datatype: 'FP32', shape: ['1', '64'] }], raw_input_contents: [Buffer.alloc(256)] };
    try {
      expect(await rpc('ModelInfer', infer)).toBeNull();
      expect(await rpc('ModelMetadata', { name: 'mlp', version: '' })).toBeNull();
      // The third of the window's requests is HTTP's: one window for the client, whatever the transport.
      expect((await limited.inject({ method: 'POST', url: '/v2/models/mlp/infer', remoteAddress: '127.0.0.1', payload: { inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: new Array(64).fill(0) }] } })).statusCode).toBe(200);
      const over = await rpc('ModelInfer', infer);
      expect(over?.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
      expect(over?.metadata.get('nimify-code')).toEqual(['RATE_LIMITED']);
      expect(Number(over?.metadata.get('retry-after')[0])).toBeGreaterThan(0);
      expect(await rpc('ServerLive', {})).toBeNull(); // health: never limited
      // A stream's messages are requests too: over the limit each is answered with the error, the stream goes on.
      const stream = c.ModelStreamInfer();
      const answers: string[] = [];
      stream.on('data', (m) => answers.push(m.error_message));
      const ended = new Promise((r) => stream.on('end', r));
      stream.write(infer);
      stream.write(infer);
      stream.end();
      await ended;
      expect(answers).toHaveLength(2);
      for (const a of answers) expect(a).toMatch(/rate limit exceeded/);
      expect((await limited.inject('/metrics')).body).toMatch(/nimify_requests_rate_limited_total [3-9]/);
    } finally {
      c.close();
      await limited.close();
    }
  }, 30_000);
});
