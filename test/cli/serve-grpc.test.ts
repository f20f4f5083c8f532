/**
 * `nimify serve` and gRPC: the --grpc-port / --no-grpc flags and their variables, then the real
 * command in a child process: it prints the gRPC address, answers a real gRPC client, and on
 * SIGTERM drains (a request in flight is answered) and exits 0.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { serveOptions } from '../../src/cli/serve';
import { loadInferenceProto } from '../../src/protocol/grpc';
import { MODELS, ROOT } from '../helpers';

describe('--grpc-port and --no-grpc', () => {
  it('default 8001 (0 when --port is 0), the flag or NIMIFY_GRPC_PORT, off with --no-grpc / NIMIFY_NO_GRPC', () => {
    expect(serveOptions(['m.onnx']).grpcPort).toBe(8001);
    expect(serveOptions(['m.onnx', '--port', '0']).grpcPort).toBe(0);
    expect(serveOptions(['m.onnx'], { NIMIFY_PORT: '0' }).grpcPort).toBe(0);
    expect(serveOptions(['m.onnx', '--port', '0', '--grpc-port', '9001']).grpcPort).toBe(9001);
    expect(serveOptions(['m.onnx'], { NIMIFY_GRPC_PORT: '7001' }).grpcPort).toBe(7001);
    expect(serveOptions(['m.onnx', '--no-grpc']).grpcPort).toBeNull();
    expect(serveOptions(['m.onnx'], { NIMIFY_NO_GRPC: 'true' }).grpcPort).toBeNull();
    expect(() => serveOptions(['m.onnx', '--grpc-port', '70000'])).toThrow(/--grpc-port: expected an integer in \[0, 65535\]/);
    // HTTP on gRPC's port: refused before anything listens, naming both ways out.
    expect(() => serveOptions(['m.onnx', '--port', '8001'])).toThrow(/--port 8001: HTTP and gRPC cannot share a port \(gRPC's is its default, 8001\); set --grpc-port to another port, or --no-grpc/);
    expect(() => serveOptions(['m.onnx', '--port', '9000', '--grpc-port', '9000'])).toThrow(/cannot share a port/);
    expect(serveOptions(['m.onnx', '--port', '8001', '--no-grpc']).grpcPort).toBeNull();
    expect(serveOptions(['m.onnx', '--port', '8001', '--grpc-port', '8002']).grpcPort).toBe(8002);
  });
});

const children: ChildProcess[] = [];
afterEach(() => {
  for (const c of children.splice(0)) if (c.exitCode === null) c.kill('SIGKILL');
});

describe('nimify serve over gRPC (child process)', () => {
  it('prints the gRPC address, serves ModelInfer, drains on SIGTERM and exits 0', async () => {
    const child = spawn(process.execPath, [path.join(ROOT, 'dist', 'cli', 'index.js'), 'serve', path.join(MODELS, 'slow.onnx'), '--port', '0', '--log-level', 'warn'], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    let out = '';
    const address = await new Promise<string>((resolve, reject) => {
      const onData = (d: Buffer) => {
        out += d;
        const m = /\n {2}grpc {7}(\S+) \(inference\.GRPCInferenceService\)/.exec(out);
        if (m) resolve(m[1]);
      };
      child.stdout!.on('data', onData);
      child.stderr!.on('data', onData);
      child.once('exit', (code) => reject(new Error(`exited ${code}: ${out}`)));
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const Service = (grpc.loadPackageDefinition(loadInferenceProto()).inference as unknown as { GRPCInferenceService: grpc.ServiceClientConstructor }).GRPCInferenceService;
    const client = new Service(address, grpc.credentials.createInsecure()) as unknown as Record<string, (req: unknown, cb: (err: grpc.ServiceError | null, res: Record<string, unknown>) => void) => void> & grpc.Client;
    try {
      const ready = await new Promise<Record<string, unknown>>((resolve, reject) => client.ModelReady({ name: 'slow' }, (err, res) => (err ? reject(err) : resolve(res))));
      expect(ready).toEqual({ ready: true });
      const iters = Buffer.from(BigInt64Array.from([300n]).buffer);
      const answer = new Promise<Record<string, unknown>>((resolve, reject) =>
        client.ModelInfer({ model_name: 'slow', id: 'during-drain', inputs: [{ name: 'x', datatype: 'FP32', shape: [256, 256] }, { name: 'iters', datatype: 'INT64', shape: [] }], raw_input_contents: [Buffer.alloc(256 * 256 * 4), iters] }, (err, res) => (err ? reject(err) : resolve(res))),
      );
      await new Promise((r) => setTimeout(r, 20));
      child.kill('SIGTERM');
      expect(await answer).toMatchObject({ id: 'during-drain', model_name: 'slow' });
      expect(await exited).toBe(0);
      expect(out).toMatch(/nimify: stopped/);
    } finally {
      client.close();
    }
  }, 60_000);
});
