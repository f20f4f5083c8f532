/**
 * The server the compat suite drives: a repository of the fixture models Triton's clients are
 * tried with (FP32, INT64, BYTES, FP16, BF16, BOOL, two inputs, a cached model), served by
 * buildServer() on a real HTTP port and startGrpcServer() on a real gRPC port, in explicit
 * control mode (the repository API is open) with an API key.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { buildServer } from '../../src/server';
import { startGrpcServer, type GrpcServer } from '../../src/server/grpc/server';
import { MODELS } from '../helpers';

export const KEY = 'compat-suite-key';

export interface CompatServer {
  app: FastifyInstance;
  grpc: GrpcServer;
  httpPort: number;
  close(): Promise<void>;
}

const FIXTURES: Record<string, string> = {
  mlp_tiny: 'mlp_tiny.onnx', i64: 'identity_int64.onnx', str: 'identity_string.onnx', f16: 'identity_float16.onnx',
  bf16: 'identity_bfloat16.onnx', bool: 'identity_bool.onnx', pair: 'two_inputs.onnx', cached: 'mlp_tiny.onnx',
};

export async function startCompatServer(): Promise<CompatServer> {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'nimify-compat-'));
  for (const [name, file] of Object.entries(FIXTURES)) {
    fs.mkdirSync(path.join(root, name, '1'), { recursive: true });
    fs.copyFileSync(path.join(MODELS, file), path.join(root, name, '1', 'model.onnx'));
  }
  fs.writeFileSync(path.join(root, 'cached', 'config.json'), JSON.stringify({ responseCache: { enable: true } }));
  const app = await buildServer({ repository: root, controlMode: 'explicit', startupModels: ['*'], logger: false, apiKeys: [KEY], responseCacheBytes: 1 << 20 });
  const grpc = await startGrpcServer(app, { port: 0 });
  await app.listen({ port: 0, host: '127.0.0.1' });
  return {
    app,
    grpc,
    httpPort: (app.server.address() as { port: number }).port,
    async close() {
      await app.close();
      fs.rmSync(root, { recursive: true, force: true });
    },
  };
}
