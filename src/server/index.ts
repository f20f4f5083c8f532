/**
 * 'nimify/server': the KServe v2 server (Fastify), its plugin, the model repository and the
 * protocol codec. Importing it loads Fastify and its plugins; the package root does not.
 */
export { buildServer } from './build';
export { nimifyPlugin } from './plugin';
export type { GrpcServer, GrpcServerOptions } from './grpc/server';
import type { startGrpcServer as StartGrpcServer } from './grpc/server';

/**
 * Starts the KServe v2 gRPC endpoint beside `app` (src/server/grpc/server.ts). @grpc/grpc-js is
 * loaded on the first call: importing 'nimify/server' alone does not load it.
 */
export async function startGrpcServer(...args: Parameters<typeof StartGrpcServer>): ReturnType<typeof StartGrpcServer> {
  const grpc = await import('./grpc/server');
  return grpc.startGrpcServer(...args);
}
export type { ServerOptions, NimifyPluginOptions, RateLimitOptions, SheddingOptions, AuthArea } from './options';
export type { BreakerOptions, BreakerState } from './breaker';
export type { TracingOptions } from './tracing';
export { ModelRepository } from '../repository/repository';
export type { RepositoryOptions, ControlMode, VersionState, IndexEntry } from '../repository/repository';
export type { ModelConfig, CompletedConfig, ModelDefaults, VersionPolicy, WarmupRequest } from '../repository/config';
export { decodeInferRequest } from '../protocol/request';
export type { WireModel, WireTensor, DecodedRequest } from '../protocol/request';
export { encodeInferResponse } from '../protocol/response';
export type { Datatype } from '../protocol/datatypes';
