/**
 * The KServe v2 gRPC endpoint (Triton's `inference.GRPCInferenceService`, proto/grpc_service.proto)
 * beside a nimify Fastify server, on its own port, serving the same models through the same
 * policy code as HTTP: admission (admission.ts admitModelRequest / inferAdmitted: concurrency
 * bound, model resolution, breaker, queue depth, in-flight accounting, Triton's per-model
 * counters), bearer keys (plugins/auth.ts checkBearer, metadata `authorization`, the same key set
 * and exempt areas), the request's timeout and priority parameters, the same Prometheus counters,
 * errors through ERROR_TABLE's grpcStatus (errors.ts toGrpcError), message size bound by the
 * server's bodyLimit, and the app's close(): ServerReady answers false from its first step, idle
 * streams end, calls in flight finish, then the models are disposed. Not shared with HTTP: the
 * per-client rate limit (@fastify/rate-limit) and the event-loop/heap shedding guards
 * (@fastify/under-pressure) are Fastify hooks; gRPC calls pass only the concurrency bound and
 * queue-depth shedding.
 *
 * ModelStreamInfer answers each request on a stream in the order the requests came (Triton's
 * order for non-decoupled models), each answer with Triton's `triton_final_response: true`
 * parameter, a failed one as `error_message` without ending the stream;
 * at most STREAM_WINDOW requests of a stream are in flight at once (reading pauses beyond it,
 * so HTTP/2 flow control holds the client back instead of the model's queue refusing it). A
 * client that cancels or drops the stream cancels its pending requests (their AbortSignals).
 *
 * Threads: everything here runs on the event-loop thread (grpc-js's callbacks).
 */
import * as grpc from '@grpc/grpc-js';
import type { FastifyInstance } from 'fastify';
import { parseUntrustedJson } from '../../protocol/json';
import { decodeGrpcInferRequest, encodeGrpcInferResponse, finalResponseParameters, GRPC_SERVICE, loadInferenceProto, responseParameters, type ModelInferRequest, type ModelInferResponse } from '../../protocol/grpc';
import { parseModelConfig } from '../../repository/config';
import { checkModelName, checkVersion, type ServedVersion } from '../../repository/repository';
import { NimifyError } from '../../runtime/errors';
import { expectInteger, expectKnownKeys, expectPlainObject, expectString } from '../../runtime/validate';
import { version as nimifyVersion } from '../../runtime/version';
import { abandonAdmitted, admitModelRequest, inferAdmitted, releaseController, type Admitted } from '../admission';
import type { NimifyContext, RouteArea } from '../context';
import { toGrpcError } from '../errors';
import { metadataGetter, SPAN, startRequestTrace, type RequestTrace } from '../tracing';
import { checkBearer, digest } from '../plugins/auth';
import { EXTENSIONS, modelMetadata, versionStats } from '../routes/metadata';
import { tritonModelConfig } from './model-config';

/** Requests of one stream in flight at once before its reading pauses. */
export const STREAM_WINDOW = 256;

export interface GrpcServerOptions {
  /** TCP port (0: any free port; default 8001, Triton's). */
  port?: number;
  /** Address to bind (default 127.0.0.1). */
  host?: string;
  /** Server credentials (default insecure, as Triton's default). */
  credentials?: grpc.ServerCredentials;
}

export interface GrpcServer {
  /** The bound port. */
  readonly port: number;
  /** host:port, as gRPC clients take it. */
  readonly address: string;
  /** Calls in flight (unary calls and open streams). */
  readonly activeCalls: number;
  /** Stops accepting, ends idle streams, waits for calls in flight. The app's close() does this too. */
  close(): Promise<void>;
}

const GRPC_OPTION_KEYS = ['port', 'host', 'credentials'];

type Metadata = grpc.Metadata;

/**
 * Starts the gRPC endpoint for `app` (a buildServer() instance, or any app with nimifyPlugin
 * registered). Call it before app.listen() / app.ready(): it registers its drain on the app's
 * close, which Fastify allows only before the app starts.
 */
export async function startGrpcServer(app: FastifyInstance, options: GrpcServerOptions = {}): Promise<GrpcServer> {
  const o = expectPlainObject('grpc options', options);
  expectKnownKeys('grpc options', o, GRPC_OPTION_KEYS);
  const port = o.port === undefined ? 8001 : expectInteger('grpc options.port', o.port, 0, 65535);
  const host = o.host === undefined ? '127.0.0.1' : expectString('grpc options.host', o.host);
  if (o.credentials !== undefined && !(o.credentials instanceof grpc.ServerCredentials)) {
    throw new NimifyError('INVALID_ARGUMENT', `grpc options.credentials: expected grpc.ServerCredentials, received ${typeof o.credentials}`);
  }
  const ctx = (app as FastifyInstance & { nimify?: NimifyContext }).nimify;
  if (ctx === undefined) throw new NimifyError('INVALID_ARGUMENT', 'startGrpcServer: expected a Fastify app with nimifyPlugin registered (buildServer()), received one without app.nimify');
  const bodyLimit = app.initialConfig.bodyLimit ?? 64 * 1024 * 1024;
  const log = app.log;

  const server = new grpc.Server({
    'grpc.max_receive_message_length': bodyLimit,
    'grpc.max_send_message_length': -1,
  });
  const service = new Service(ctx, log);
  const definition = (loadInferenceProto()[GRPC_SERVICE] as grpc.ServiceDefinition);
  server.addService(definition, service.handlers() as grpc.UntypedServiceImplementation);

  const credentials = (o.credentials as grpc.ServerCredentials | undefined) ?? grpc.ServerCredentials.createInsecure();
  const target = host.includes(':') && !host.startsWith('[') ? `[${host}]:${port}` : `${host}:${port}`;
  const bound = await new Promise<number>((resolve, reject) => {
    server.bindAsync(target, credentials, (err, p) => (err ? reject(new NimifyError('INVALID_ARGUMENT', `grpc: cannot listen on ${target}: ${err.message}`, { cause: err })) : resolve(p)));
  });

  let closing: Promise<void> | null = null;
  const close = (): Promise<void> =>
    (closing ??= new Promise<void>((resolve) => {
      service.drain();
      server.tryShutdown(() => resolve());
    }));
  // The app's close() drains gRPC with HTTP: Fastify runs preClose hooks before closing its server.
  app.addHook('preClose', async () => {
    await close();
  });
  const hostPart = host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
  return {
    port: bound,
    address: `${hostPart}:${bound}`,
    get activeCalls() {
      return service.active;
    },
    close,
  };
}

/** ms until the call's deadline, or undefined without one. */
function deadlineMs(call: { getDeadline(): grpc.Deadline }): number | undefined {
  const d = call.getDeadline();
  const at = d instanceof Date ? d.getTime() : d;
  return Number.isFinite(at) ? at - Date.now() : undefined;
}

/** A decimal version string from a request ('' = the policy's choice). */
const versionOf = (v: string): string | undefined => (v === '' ? undefined : v);

/** Which auth area each RPC belongs to (the HTTP route's nimifyArea for the same thing). */
const AREAS: Record<string, RouteArea> = {
  ServerLive: 'health', ServerReady: 'health',
  ModelReady: 'metadata', ServerMetadata: 'metadata', ModelMetadata: 'metadata', ModelConfig: 'metadata', ModelStatistics: 'metadata',
  ModelInfer: 'inference', ModelStreamInfer: 'inference',
  RepositoryIndex: 'repository', RepositoryModelLoad: 'repository', RepositoryModelUnload: 'repository',
};

const UNIMPLEMENTED = [
  'SystemSharedMemoryStatus', 'SystemSharedMemoryRegister', 'SystemSharedMemoryUnregister',
  'CudaSharedMemoryStatus', 'CudaSharedMemoryRegister', 'CudaSharedMemoryUnregister', 'TraceSetting', 'LogSettings',
];

interface StreamState {
  call: grpc.ServerDuplexStream<ModelInferRequest, unknown>;
  /** Answers not yet written, in request order; `response` set once its request settled. */
  queue: Array<{ response: unknown }>;
  /** Requests of this stream admitted and not settled (cancelled with the stream). */
  admitted: Set<Admitted>;
  clientEnded: boolean;
  gone: boolean;
  paused: boolean;
  /**
   * The call's write buffer is full (write() returned false: the client is not reading): no more
   * answers are written and reading stays paused until 'drain', so a client that sends without
   * reading holds at most STREAM_WINDOW answers, not an unbounded buffer.
   */
  writeBlocked: boolean;
}

class Service {
  readonly #ctx: NimifyContext;
  readonly #log: FastifyInstance['log'];
  readonly #keys: Buffer[];
  readonly #exempt: Set<string>;
  readonly #streams = new Set<StreamState>();
  #draining = false;
  active = 0;

  constructor(ctx: NimifyContext, log: FastifyInstance['log']) {
    this.#ctx = ctx;
    this.#log = log;
    this.#keys = ctx.options.apiKeys.map(digest);
    this.#exempt = new Set(ctx.options.authExempt);
  }

  /** The app is closing: ServerReady answers false, streams end once their pending requests are answered. */
  drain(): void {
    this.#draining = true;
    for (const s of this.#streams) this.#flush(s);
  }

  #authorize(rpc: string, metadata: Metadata): void {
    if (this.#keys.length === 0 || this.#exempt.has(AREAS[rpc])) return;
    const values = metadata.get('authorization');
    try {
      checkBearer(values.length === 1 ? String(values[0]) : undefined, this.#keys);
    } catch (err) {
      this.#ctx.metrics.unauthorized.inc();
      throw err;
    }
  }

  /**
   * The HTTP rate limiter's verdict for a call (same windows, keys and limits: plugins/rate-limit.ts),
   * or null when none applies: rate limiting off, or a health RPC (never limited, as on HTTP).
   */
  #limit(rpc: string, call: { getPeer(): string; metadata: Metadata }): Promise<void> | null {
    const check = this.#ctx.rateLimit;
    if (check === null || AREAS[rpc] === 'health') return null;
    // getPeer(): "ipv4:127.0.0.1:5000", "ipv6:[::1]:5000" → the address HTTP's request.ip would give.
    const peer = call.getPeer().replace(/^ipv[46]:/, '');
    const ip = peer.startsWith('[') ? peer.slice(1, peer.indexOf(']')) : peer.replace(/:\d+$/, '');
    const auth = call.metadata.get('authorization');
    return check(ip, auth.length === 1 ? String(auth[0]) : undefined);
  }

  #serviceError(err: unknown, rpc: string): grpc.ServiceError {
    const g = toGrpcError(err);
    if (g.internal) this.#log.error({ err, rpc }, `grpc ${rpc} failed`);
    const metadata = new grpc.Metadata();
    metadata.set('nimify-code', g.code);
    if (g.retryAfterSeconds !== undefined) metadata.set('retry-after', String(g.retryAfterSeconds));
    return Object.assign(new Error(g.message), { code: grpc.status[g.status], details: g.message, metadata });
  }

  #unary<Req, Res>(rpc: string, fn: (request: Req, call: grpc.ServerUnaryCall<Req, Res>) => Res | Promise<Res>): grpc.handleUnaryCall<Req, Res> {
    return (call, callback) => {
      this.active++;
      const done = (err: unknown, res?: Res) => {
        this.active--;
        if (err !== null) callback(this.#serviceError(err, rpc));
        else callback(null, res);
      };
      const run = () => {
        try {
          const out = fn(call.request, call);
          if (out instanceof Promise) out.then((res) => done(null, res), (err: unknown) => done(err));
          else done(null, out);
        } catch (err) {
          done(err);
        }
      };
      try {
        this.#authorize(rpc, call.metadata);
        const limited = this.#limit(rpc, call);
        if (limited === null) run();
        else limited.then(run, (err: unknown) => done(err));
      } catch (err) {
        done(err);
      }
    };
  }

  /** One inference request, admitted like an HTTP one; `track` holds it while it can still be cancelled (its call's or stream's cancellation abandons it). */
  async #infer(msg: ModelInferRequest, deadline: number | undefined, track: Set<Admitted> | null, trace: RequestTrace | null = null): Promise<ModelInferResponse> {
    const a = admitModelRequest(this.#ctx, msg.model_name, versionOf(msg.model_version ?? ''), undefined, true, trace);
    track?.add(a);
    try {
      const { v, decoded, results } = await inferAdmitted(this.#ctx, a, (wire) => decodeGrpcInferRequest(wire, msg), deadline);
      const encodeStart = trace === null ? 0 : performance.now();
      const response = encodeGrpcInferResponse({ modelName: v.name, modelVersion: v.version, id: decoded.id, parameters: responseParameters(msg, decoded) }, results, decoded.outputs);
      if (trace !== null) trace.child(SPAN.encode, encodeStart);
      a.admission.end();
      return response;
    } catch (err) {
      a.admission.fail(err);
      throw err;
    } finally {
      track?.delete(a);
      if (a.admission.settled) releaseController(a.controller);
    }
  }

  /**
   * Runs one inference request of `rpc` under its request span while tracing is on: the span
   * comes from startRequestTrace (tracing.ts, the one HTTP uses too), continuing the W3C trace
   * context of the call's metadata, and ends with the request's gRPC status. Off: just `run(null)`.
   */
  #traced<T>(rpc: string, metadata: Metadata, run: (trace: RequestTrace | null) => Promise<T>): Promise<T> {
    const tracing = this.#ctx.tracing;
    if (tracing === null) return run(null);
    const trace = startRequestTrace(tracing, `${GRPC_SERVICE}/${rpc}`, metadata, metadataGetter, { 'rpc.system': 'grpc', 'rpc.service': GRPC_SERVICE, 'rpc.method': rpc });
    if (trace === null) return run(null);
    return run(trace).then(
      (res) => {
        trace.end({ 'rpc.grpc.status_code': grpc.status.OK });
        return res;
      },
      (err: unknown) => {
        trace.fail(err);
        trace.end({ 'rpc.grpc.status_code': grpc.status[toGrpcError(err).status] });
        throw err;
      },
    );
  }

  #resolve(name: string, version: string): ServedVersion {
    return this.#ctx.repository.resolve(checkModelName(name), versionOf(version) === undefined ? undefined : checkVersion(version));
  }

  handlers(): Record<string, grpc.UntypedHandleCall> {
    const ctx = this.#ctx;
    const repository = ctx.repository;
    const h: Record<string, grpc.UntypedHandleCall> = {
      ServerLive: this.#unary('ServerLive', () => ({ live: true })),
      ServerReady: this.#unary('ServerReady', () => ({ ready: !this.#draining && repository.ready() })),
      ModelReady: this.#unary('ModelReady', (r: { name: string; version: string }) => {
        const name = checkModelName(r.name);
        const version = versionOf(r.version) === undefined ? undefined : checkVersion(r.version);
        try {
          repository.resolve(name, version);
          return { ready: true };
        } catch (err) {
          // Triton answers false for a model it does not have or that is not ready.
          if (err instanceof NimifyError && (err.code === 'NOT_FOUND' || err.code === 'NOT_READY')) return { ready: false };
          throw err;
        }
      }),
      ServerMetadata: this.#unary('ServerMetadata', () => ({ name: 'nimify', version: nimifyVersion, extensions: EXTENSIONS })),
      ModelMetadata: this.#unary('ModelMetadata', (r: { name: string; version: string }) => {
        const m = modelMetadata(repository, { model_name: checkModelName(r.name), ...(versionOf(r.version) === undefined ? {} : { model_version: checkVersion(r.version) }) });
        return { name: m.name, versions: m.versions, platform: m.platform, inputs: m.inputs, outputs: m.outputs };
      }),
      ModelConfig: this.#unary('ModelConfig', (r: { name: string; version: string }) => ({ config: tritonModelConfig(this.#resolve(r.name, r.version)) })),
      ModelStatistics: this.#unary('ModelStatistics', (r: { name: string; version: string }) => {
        let versions: ServedVersion[];
        if (r.name === '') {
          if (r.version !== '') throw new NimifyError('INVALID_ARGUMENT', `version: expected empty when name is empty (all models), received ${JSON.stringify(r.version)}`);
          versions = repository.names().flatMap((n) => repository.versions(n));
        } else if (r.version === '') {
          const name = checkModelName(r.name);
          repository.resolve(name);
          versions = repository.versions(name);
        } else {
          versions = [this.#resolve(r.name, r.version)];
        }
        return { model_stats: versions.filter((v) => v.ready && v.model !== null).map((v) => statisticsMessage(versionStats(ctx, v))) };
      }),
      RepositoryIndex: this.#unary('RepositoryIndex', (r: { ready: boolean }) => ({
        models: repository.index(r.ready === true).map((e) => ({ name: e.name, version: e.version ?? '', state: e.state ?? '', reason: e.reason ?? '' })),
      })),
      RepositoryModelLoad: this.#unary('RepositoryModelLoad', async (r: { model_name: string; parameters: Record<string, RepositoryParameter> }) => {
        const name = checkModelName(r.model_name);
        let override;
        for (const [key, p] of Object.entries(r.parameters ?? {})) {
          if (key !== 'config') throw new NimifyError('UNSUPPORTED', `parameters.${key}: nimify's load takes only \`config\` (a config.json document); model files come from the repository`);
          if (p.parameter_choice !== 'string_param') throw new NimifyError('INVALID_ARGUMENT', `parameters.config: expected string_param holding a config.json document, received ${p.parameter_choice ?? 'no value'}`);
          override = parseModelConfig('parameters.config', parseUntrustedJson('parameters.config', p.string_param ?? ''), { fromApi: true });
        }
        await repository.load(name, override);
        return {};
      }),
      RepositoryModelUnload: this.#unary('RepositoryModelUnload', async (r: { model_name: string }) => {
        await repository.unload(checkModelName(r.model_name));
        return {};
      }),
      ModelInfer: this.#unary('ModelInfer', (msg: ModelInferRequest, call) => {
        const track = new Set<Admitted>();
        // Cancelled by the client, or its deadline passed: cancel the queued or running work.
        const onCancel = () => {
          for (const a of track) abandonAdmitted(a, 'the client cancelled the call');
        };
        call.once('cancelled', onCancel);
        const deadline = deadlineMs(call);
        // Untraced: no closure for #traced (tracing off costs the request nothing).
        const p = this.#ctx.tracing === null ? this.#infer(msg, deadline, track) : this.#traced('ModelInfer', call.metadata, (trace) => this.#infer(msg, deadline, track, trace));
        return p.finally(() => call.off('cancelled', onCancel));
      }),
      ModelStreamInfer: (call: grpc.ServerDuplexStream<ModelInferRequest, unknown>) => this.#stream(call),
    };
    for (const rpc of UNIMPLEMENTED) {
      h[rpc] = (_call: unknown, callback: grpc.sendUnaryData<unknown>) => {
        callback({ code: grpc.status.UNIMPLEMENTED, details: `${rpc}: not implemented by nimify (no shared memory, trace or log settings over gRPC)`, name: 'Error', message: `${rpc}: not implemented`, metadata: new grpc.Metadata() });
      };
    }
    return h;
  }

  #stream(call: grpc.ServerDuplexStream<ModelInferRequest, unknown>): void {
    try {
      this.#authorize('ModelStreamInfer', call.metadata);
    } catch (err) {
      call.emit('error', this.#serviceError(err, 'ModelStreamInfer'));
      return;
    }
    this.active++;
    const s: StreamState = { call, queue: [], admitted: new Set(), clientEnded: false, gone: false, paused: false, writeBlocked: false };
    this.#streams.add(s);
    const deadline = deadlineMs(call);
    const deadlineAt = deadline === undefined ? undefined : Date.now() + deadline;
    const finish = () => {
      if (!this.#streams.delete(s)) return;
      this.active--;
    };
    call.on('data', (msg: ModelInferRequest) => {
      // After the stream ended (a drain, a cancel), late messages are not run: nobody reads their answers.
      if (s.gone) return;
      const entry: { response: unknown } = { response: undefined };
      s.queue.push(entry);
      if (this.#draining) {
        // Closing: answer at once without running it, so the stream empties and ends (a client
        // that keeps sending cannot hold the drain open).
        entry.response = { error_message: 'the server is closing: this request was not run; send it to another server', infer_response: { model_name: msg.model_name, model_version: msg.model_version, id: msg.id, parameters: finalResponseParameters(undefined) } };
        this.#flush(s);
        return;
      }
      const left = deadlineAt === undefined ? undefined : deadlineAt - Date.now();
      let p: Promise<ModelInferResponse>;
      try {
        const run = () => (this.#ctx.tracing === null ? this.#infer(msg, left, s.admitted) : this.#traced('ModelStreamInfer', call.metadata, (trace) => this.#infer(msg, left, s.admitted, trace)));
        // Each message is one inference request: rate limited like one (its answer keeps its place in the queue).
        const limited = this.#limit('ModelStreamInfer', call);
        p = limited === null ? run() : limited.then(run);
      } catch (err) {
        p = Promise.reject(err);
      }
      p.then(
        (res) => {
          entry.response = { error_message: '', infer_response: { ...res, parameters: finalResponseParameters(res.parameters) } };
        },
        (err: unknown) => {
          // The stream goes on: the failure is this request's answer, with its id to match it.
          entry.response = { error_message: this.#serviceError(err, 'ModelStreamInfer').details, infer_response: { model_name: msg.model_name, model_version: msg.model_version, id: msg.id, parameters: finalResponseParameters(undefined) } };
        },
      ).finally(() => this.#flush(s));
      if (s.queue.length >= STREAM_WINDOW && !s.paused) {
        s.paused = true;
        call.pause();
      }
    });
    call.on('end', () => {
      s.clientEnded = true;
      this.#flush(s);
    });
    const gone = () => {
      if (s.gone) return;
      s.gone = true;
      for (const a of s.admitted) abandonAdmitted(a, 'the client cancelled the stream');
      finish();
    };
    call.on('cancelled', gone);
    call.on('error', gone);
    call.on('close', () => {
      if (s.queue.length > 0 || !s.clientEnded) gone();
      else finish();
    });
  }

  /** Writes the answers at the head of the stream's queue that are ready; ends the stream when the client (or a drain) is done and nothing is pending. */
  #flush(s: StreamState): void {
    if (s.gone) return;
    while (!s.writeBlocked && s.queue.length > 0 && s.queue[0].response !== undefined) {
      if (s.call.write(s.queue.shift()!.response)) continue;
      s.writeBlocked = true;
      if (!s.paused) {
        s.paused = true;
        s.call.pause();
      }
      s.call.once('drain', () => {
        s.writeBlocked = false;
        this.#flush(s);
      });
    }
    if (s.paused && !s.writeBlocked && s.queue.length < STREAM_WINDOW / 2) {
      s.paused = false;
      s.call.resume();
    }
    if (s.queue.length === 0 && (s.clientEnded || this.#draining)) {
      s.gone = true;
      if (this.#streams.delete(s)) this.active--;
      s.call.end();
    }
  }
}

interface RepositoryParameter {
  parameter_choice?: 'bool_param' | 'int64_param' | 'string_param' | 'bytes_param';
  string_param?: string;
}

type Stats = ReturnType<typeof versionStats>;

/** The HTTP statistics object (routes/metadata.ts versionStats) as Triton's ModelStatistics message. */
function statisticsMessage(s: Stats): Record<string, unknown> {
  const i = s.inference_stats as Record<string, { count: number; ns: number }>;
  return {
    name: s.name,
    version: s.version,
    last_inference: s.last_inference,
    inference_count: s.inference_count,
    execution_count: s.execution_count,
    inference_stats: {
      success: i.success, fail: i.fail, queue: i.queue,
      compute_input: i.compute_input, compute_infer: i.compute_infer, compute_output: i.compute_output,
      cache_hit: i.cache_hit ?? { count: 0, ns: 0 }, cache_miss: i.cache_miss ?? { count: 0, ns: 0 },
    },
    batch_stats: s.batch_stats.map((b) => ({ batch_size: b.batch_size, compute_infer: { count: b.compute_infer.count, ns: 0 } })),
  };
}

