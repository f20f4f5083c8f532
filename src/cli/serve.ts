/**
 * `nimify serve <model.onnx | repository>`: builds the server, listens, prints where and what it
 * serves (each model's completed config), and shuts down gracefully on SIGTERM/SIGINT: stop
 * accepting, let in-flight requests finish, dispose the models, exit 0. A second signal, or a
 * drain longer than --shutdown-timeout-ms, exits 1 at once. Started by npm/npx through a shell,
 * it also drains when npm receives the signal (npm-parent.ts says why that needs watching).
 */
import type { FastifyInstance } from 'fastify';
import { NimifyError } from '../runtime/errors';
import { BATCHING_DEFAULTS, INLINE_BELOW_MICROS_DEFAULT, MAX_QUEUE_SIZE, type BatchingOptions } from '../runtime/options';
import { toProviderRequests, type ExecutionProvider } from '../runtime/providers';
import { DEFAULT_BATCHING, INFER_TIMEOUT_MS_DEFAULT, type ModelDefaults } from '../repository/config';
import { BREAKER_DEFAULTS } from '../server/breaker';
import { buildServer } from '../server/build';
import { startGrpcServer, type GrpcServer } from '../server/grpc/server';
import type { ServerOptions } from '../server/options';
import { checkOtlpUrl, type TracingOptions } from '../server/tracing';
import { flagHelp, parseFlags, type FlagSpec } from './flags';
import type { CliIo } from './io';
import { startIdleTrim } from './idle-trim';
import { npmShellParent, watchNpmShell } from './npm-parent';

export const SERVE_FLAGS = {
  port: { type: 'string', short: 'p', arg: 'port', help: 'TCP port (default 8000)', integer: { min: 0, max: 65535 } },
  host: { type: 'string', arg: 'host', help: 'address to bind (default 127.0.0.1; 0.0.0.0 in a container)' },
  'grpc-port': { type: 'string', arg: 'port', help: 'KServe v2 gRPC port (default 8001 as Triton; 0 when --port is 0)', integer: { min: 0, max: 65535 } },
  'no-grpc': { type: 'boolean', help: 'do not serve gRPC' },
  instances: { type: 'string', arg: 'n', help: 'ORT sessions per model that run concurrently (default 1)', integer: { min: 1, max: 64 } },
  'max-batch-size': { type: 'string', arg: 'n', help: `dynamic batching: most rows per run; 0 = no batching (default ${DEFAULT_BATCHING.maxBatchSize})`, integer: { min: 0, max: 1 << 20 } },
  'max-queue-delay-us': { type: 'string', arg: 'us', help: `dynamic batching: longest wait for a fuller batch (default ${BATCHING_DEFAULTS.maxQueueDelayMicros})`, integer: { min: 0, max: 60_000_000 } },
  'max-queue-size': { type: 'string', arg: 'n', help: `dynamic batching: queued requests before 503 QUEUE_FULL (default ${BATCHING_DEFAULTS.maxQueueSize})`, integer: { min: 1, max: MAX_QUEUE_SIZE } },
  'inline-below-us': { type: 'string', arg: 'us', help: `run batches (a lone request included) predicted to compute in at most this many µs on the event loop itself (default ${INLINE_BELOW_MICROS_DEFAULT}; 0 = never; models with batching: served requests carry a deadline, which keeps an unbatched model's runs off the event loop)`, integer: { min: 0, max: 1_000_000 } },
  'intra-op-threads': { type: 'string', arg: 'n', help: 'ORT threads inside one operator (default: ORT decides)', integer: { min: 0, max: 1024 } },
  'allow-spinning': { type: 'boolean', help: "let ORT's pool threads busy-wait between runs (default off in the server)" },
  'execution-provider': { type: 'string', arg: 'eps', help: `execution providers by preference: a list such as cuda,cpu, or JSON with options such as '[{"name":"cuda","deviceId":1,"required":true}]' (default cpu; a model's config.json runtime section wins)` },
  trace: { type: 'string', arg: 'spec', help: 'OpenTelemetry tracing of inference requests: otlp=<url> (an OTLP/HTTP traces endpoint, e.g. http://localhost:4318/v1/traces), otlp (the endpoint from OTEL_EXPORTER_OTLP_TRACES_ENDPOINT / OTEL_EXPORTER_OTLP_ENDPOINT), or off; default: OTEL_TRACES_EXPORTER (otlp | none), else off' },
  'cache-size': { type: 'string', arg: 'bytes', help: "the response cache's byte budget, for models whose config.json enables it (responseCache: { enable: true }); default 0: no cache", integer: { min: 0 } },
  'memory-arena': { type: 'boolean', help: "keep ORT's CPU memory arena: memory a run needed stays with the model (default off in the server)" },
  'control-mode': { type: 'string', arg: 'mode', help: 'none | explicit | poll (default none)', choices: ['none', 'explicit', 'poll'] },
  'load-model': { type: 'string', multiple: true, arg: 'name', help: "explicit mode: model to load at start (repeatable; '*' = all)" },
  'poll-interval-ms': { type: 'string', arg: 'ms', help: 'poll mode: rescan period (default 5000)', integer: { min: 10 } },
  'api-key': { type: 'string', multiple: true, arg: 'key', help: 'require Authorization: Bearer <key> (repeatable)' },
  'protect-health': { type: 'boolean', help: 'require an API key on /v2/health/live and /v2/health/ready too (per-model ready routes always need one)' },
  'open-metrics': { type: 'boolean', help: 'serve /metrics without an API key, for a scraper that cannot send one (it names every model)' },
  'protect-metrics': { type: 'boolean', help: 'deprecated, changes nothing: /metrics needs the API key by default now (--open-metrics opens it)' },
  'rate-limit': { type: 'string', arg: 'n', help: 'requests per minute per client (API key or IP); default off', integer: { min: 1 } },
  'breaker-failures': { type: 'string', arg: 'n', help: `consecutive failures that open a model's circuit breaker (default ${BREAKER_DEFAULTS.failureThreshold}; 0 = off)`, integer: { min: 0 } },
  'breaker-reset-ms': { type: 'string', arg: 'ms', help: `how long an open breaker waits before a probe (default ${BREAKER_DEFAULTS.resetTimeoutMs})`, integer: { min: 1 } },
  'max-event-loop-delay-ms': { type: 'string', arg: 'ms', help: 'shed load (503) above this event-loop delay (default 200; 0 = off)', integer: { min: 0 } },
  'max-concurrent-requests': { type: 'string', arg: 'n', help: 'inference requests served at once before 503 (default 4096)', integer: { min: 1 } },
  'infer-timeout-ms': { type: 'string', arg: 'ms', help: `default per-request inference timeout (default ${INFER_TIMEOUT_MS_DEFAULT})`, integer: { min: 1 } },
  'body-limit': { type: 'string', arg: 'bytes', help: 'largest request body (default 67108864)', integer: { min: 1024 } },
  'log-level': { type: 'string', arg: 'level', help: 'fatal | error | warn | info | debug | trace | silent (default info)', choices: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] },
  'preprocess-threads': { type: 'string', arg: 'n', help: 'preprocessing worker threads of the predict route: image decoding, tokenization (default: the core count)', integer: { min: 1, max: 256 } },
  'preprocess-queue': { type: 'string', arg: 'n', help: 'preprocessing tasks waiting for a worker before 503 QUEUE_FULL (default 256)', integer: { min: 0, max: 1_000_000 } },
  'log-requests': { type: 'boolean', help: 'log every request and response at info (default off: refusals and faults only)' },
  'shutdown-timeout-ms': { type: 'string', arg: 'ms', help: 'longest graceful drain on SIGTERM before exiting 1 (default 30000)', integer: { min: 1 } },
  'no-docs': { type: 'boolean', help: 'do not serve /documentation' },
  'no-fast-lane': { type: 'boolean', help: 'serve every inference request through Fastify\'s route (default: plain /infer requests take the fast lane, same answers, less CPU)' },
  'keep-going': { type: 'boolean', help: 'keep serving when a startup model fails to load (default: exit 1, like Triton)' },
  'no-parent-watch': { type: 'boolean', help: 'started by npm/npx through a shell: do not drain when npm gets SIGTERM/SIGINT (default: drain, see docs/cli.md)' },
  help: { type: 'boolean', short: 'h', help: 'show this help' },
} as const satisfies Record<string, FlagSpec>;

export const SERVE_USAGE = `usage: nimify serve <model.onnx | repository-dir> [options]

Serves ONNX models with the Open Inference Protocol (KServe v2) over HTTP (/v2/..., /metrics,
/documentation) and gRPC (inference.GRPCInferenceService, as Triton). A repository is <dir>/<model>/[config.json] + <dir>/<model>/<version>/model.onnx.

options (each also read from the environment variable in brackets):
${flagHelp(SERVE_FLAGS, 'serve')}`;

export const USAGE = SERVE_USAGE;

/** --execution-provider: `cuda,cpu`, or JSON (one provider object or an array), checked now. */
function parseProviderFlag(raw: string): ExecutionProvider[] {
  let list: unknown;
  if (/^\s*[[{]/.test(raw)) {
    try {
      list = JSON.parse(raw);
    } catch (err) {
      throw new NimifyError('INVALID_ARGUMENT', `--execution-provider: expected a list such as cuda,cpu or valid JSON, received ${JSON.stringify(raw)} (${(err as Error).message})`);
    }
    if (!Array.isArray(list)) list = [list];
  } else {
    list = raw.split(',').map((s) => s.trim()).filter(Boolean);
  }
  toProviderRequests('--execution-provider', list);
  return list as ExecutionProvider[];
}

/**
 * --trace (NIMIFY_TRACE), else the standard OpenTelemetry environment: OTEL_SDK_DISABLED=true
 * turns tracing off; OTEL_TRACES_EXPORTER=otlp turns it on (none: off; nimify exports only OTLP).
 * The endpoint is otlp=<url> as given, else OTEL_EXPORTER_OTLP_TRACES_ENDPOINT as given, else
 * OTEL_EXPORTER_OTLP_ENDPOINT + /v1/traces (the OTLP/HTTP rule), else the exporter's default
 * (http://localhost:4318/v1/traces). OTEL_SERVICE_NAME names the service (default nimify).
 */
export function traceOption(flag: string | undefined, env: NodeJS.ProcessEnv): TracingOptions | false {
  let spec = flag;
  if (spec === undefined) {
    if ((env.OTEL_SDK_DISABLED ?? '').trim().toLowerCase() === 'true') return false;
    const exporter = (env.OTEL_TRACES_EXPORTER ?? '').trim().toLowerCase();
    if (exporter === '' || exporter === 'none') return false;
    if (exporter !== 'otlp') throw new NimifyError('INVALID_ARGUMENT', `OTEL_TRACES_EXPORTER: expected otlp or none (nimify exports traces with OTLP over HTTP only), received ${JSON.stringify(env.OTEL_TRACES_EXPORTER)}`);
    spec = 'otlp';
  }
  if (spec === 'off' || spec === 'none') return false;
  const m = /^otlp(?:=(.*))?$/s.exec(spec);
  if (m === null) throw new NimifyError('INVALID_ARGUMENT', `--trace: expected otlp=<url>, otlp or off, received ${JSON.stringify(spec.slice(0, 200))}`);
  let url = m[1];
  let urlName = '--trace';
  if (url === undefined) {
    if (env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) {
      url = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT;
      urlName = 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT';
    } else if (env.OTEL_EXPORTER_OTLP_ENDPOINT) {
      url = `${env.OTEL_EXPORTER_OTLP_ENDPOINT.replace(/\/+$/, '')}/v1/traces`;
      urlName = 'OTEL_EXPORTER_OTLP_ENDPOINT';
    }
  }
  const options: TracingOptions = { exporter: 'otlp' };
  if (url !== undefined) options.url = checkOtlpUrl(urlName, url);
  if (env.OTEL_SERVICE_NAME) options.serviceName = env.OTEL_SERVICE_NAME;
  return options;
}

/** Translates flags (and the model path) into buildServer() options. */
export function serveOptions(argv: string[], env: NodeJS.ProcessEnv = process.env): { options: ServerOptions; keepGoing: boolean; port: number; grpcPort: number | null; host: string; shutdownTimeoutMs: number; parentWatch: boolean; help: boolean; warnings: string[] } {
  const { values: v, positionals } = parseFlags(argv, SERVE_FLAGS, env, 'serve');
  if (v.help) return { options: { repository: '' }, keepGoing: false, port: 0, grpcPort: null, host: '', shutdownTimeoutMs: 0, parentWatch: false, help: true, warnings: [] };
  // Lines for stderr before serving: deprecated flags that are accepted but change nothing.
  const warnings: string[] = [];
  const path = positionals[0] ?? env.NIMIFY_REPOSITORY;
  if (path === undefined || path === '') throw new NimifyError('INVALID_ARGUMENT', 'serve: expected a model (.onnx) or repository directory (or NIMIFY_REPOSITORY)\n\n' + SERVE_USAGE);
  if (positionals.length > 1) throw new NimifyError('INVALID_ARGUMENT', `serve: expected one model or repository path, received ${positionals.length}: ${positionals.join(' ')}`);

  const defaults: ModelDefaults = {};
  if (v.instances !== undefined) defaults.instances = v.instances as number;
  if (v['max-batch-size'] === 0) defaults.batching = false;
  else if (v['max-batch-size'] !== undefined || v['max-queue-delay-us'] !== undefined || v['max-queue-size'] !== undefined) {
    const b: BatchingOptions = { ...DEFAULT_BATCHING, ...(v['max-batch-size'] !== undefined ? { maxBatchSize: v['max-batch-size'] as number } : {}) };
    if (v['max-queue-delay-us'] !== undefined) b.maxQueueDelayMicros = v['max-queue-delay-us'] as number;
    if (v['max-queue-size'] !== undefined) b.maxQueueSize = v['max-queue-size'] as number;
    defaults.batching = b;
  }
  if (v['intra-op-threads'] !== undefined) defaults.runtime = { intraOpNumThreads: v['intra-op-threads'] as number };
  if (v['allow-spinning'] !== undefined) defaults.runtime = { ...(defaults.runtime ?? {}), allowSpinning: v['allow-spinning'] as boolean };
  if (v['memory-arena'] !== undefined) defaults.runtime = { ...(defaults.runtime ?? {}), memoryArena: v['memory-arena'] as boolean };
  if (v['inline-below-us'] !== undefined) defaults.runtime = { ...(defaults.runtime ?? {}), inlineBelowMicros: v['inline-below-us'] as number };
  if (v['execution-provider'] !== undefined) defaults.runtime = { ...(defaults.runtime ?? {}), executionProviders: parseProviderFlag(v['execution-provider'] as string) };

  const options: ServerOptions = { repository: path, modelDefaults: defaults };
  if (v['control-mode'] !== undefined) options.controlMode = v['control-mode'] as ServerOptions['controlMode'];
  if (v['load-model'] !== undefined) options.startupModels = v['load-model'] as string[];
  if (v['poll-interval-ms'] !== undefined) options.pollIntervalMs = v['poll-interval-ms'] as number;
  if (v['api-key'] !== undefined) options.apiKeys = v['api-key'] as string[];
  if (v['cache-size'] !== undefined) options.responseCacheBytes = v['cache-size'] as number;
  const tracing = traceOption(v.trace as string | undefined, env);
  if (tracing !== false) options.tracing = tracing;
  options.authExempt = [...(v['protect-health'] ? [] : ['health' as const]), 'docs', ...(v['open-metrics'] ? ['metrics' as const] : [])];
  // --protect-metrics opted in to a key on /metrics until issue 14 item 8 made that the default;
  // kept so that existing command lines and NIMIFY_PROTECT_METRICS still start, true or false.
  if (v['protect-metrics'] !== undefined) {
    warnings.push('nimify: --protect-metrics (NIMIFY_PROTECT_METRICS) is deprecated and changes nothing: /metrics needs the API key by default now; --open-metrics (NIMIFY_OPEN_METRICS) serves it without one');
  }
  if (v['rate-limit'] !== undefined) options.rateLimit = { max: v['rate-limit'] as number, timeWindowMs: 60_000 };
  if (v['breaker-failures'] === 0) options.breaker = false;
  else if (v['breaker-failures'] !== undefined || v['breaker-reset-ms'] !== undefined) {
    // The one left out keeps its default (BREAKER_DEFAULTS, filled in by checkPluginOptions).
    options.breaker = {
      ...(v['breaker-failures'] !== undefined ? { failureThreshold: v['breaker-failures'] as number } : {}),
      ...(v['breaker-reset-ms'] !== undefined ? { resetTimeoutMs: v['breaker-reset-ms'] as number } : {}),
    };
  }
  if (v['max-event-loop-delay-ms'] !== undefined || v['max-concurrent-requests'] !== undefined) {
    options.shedding = {};
    if (v['max-event-loop-delay-ms'] !== undefined) options.shedding.maxEventLoopDelayMs = v['max-event-loop-delay-ms'] as number;
    if (v['max-concurrent-requests'] !== undefined) options.shedding.maxConcurrentRequests = v['max-concurrent-requests'] as number;
  }
  if (v['infer-timeout-ms'] !== undefined) options.inferTimeoutMs = v['infer-timeout-ms'] as number;
  if (v['body-limit'] !== undefined) options.bodyLimit = v['body-limit'] as number;
  if (v['log-level'] !== undefined) options.logger = v['log-level'] === 'silent' ? false : { level: v['log-level'] };
  if (v['log-requests']) options.logRequests = true;
  options.fastLane = v['no-fast-lane'] !== true;
  if (v['preprocess-threads'] !== undefined || v['preprocess-queue'] !== undefined) {
    options.preprocess = {};
    if (v['preprocess-threads'] !== undefined) options.preprocess.threads = v['preprocess-threads'] as number;
    if (v['preprocess-queue'] !== undefined) options.preprocess.maxQueue = v['preprocess-queue'] as number;
  }
  if (v['no-docs']) options.docs = false;
  const port = (v.port as number | undefined) ?? 8000;
  // An HTTP port of 0 (any free port: tests, parallel servers) makes gRPC's default 0 too, so two never collide on 8001.
  const grpcPort = v['no-grpc'] === true ? null : ((v['grpc-port'] as number | undefined) ?? (port === 0 ? 0 : 8001));
  if (grpcPort !== null && grpcPort !== 0 && grpcPort === port) {
    throw new NimifyError('INVALID_ARGUMENT', `--port ${port}: HTTP and gRPC cannot share a port (gRPC's is ${v['grpc-port'] === undefined ? 'its default, ' : ''}${grpcPort}); set --grpc-port to another port, or --no-grpc`);
  }
  return {
    options,
    keepGoing: v['keep-going'] === true,
    port,
    grpcPort,
    host: (v.host as string | undefined) ?? '127.0.0.1',
    shutdownTimeoutMs: (v['shutdown-timeout-ms'] as number | undefined) ?? 30_000,
    parentWatch: v['no-parent-watch'] !== true,
    help: false,
    warnings,
  };
}

export interface Running {
  app: FastifyInstance;
  address: string;
  /** The gRPC endpoint (null with --no-grpc); the app's close() drains it. */
  grpc: GrpcServer | null;
  /** Resolves with the exit code once a signal-triggered shutdown finished. */
  stopped: Promise<number>;
}

/** The command: serves until a signal, then resolves with the exit code of the drain. */
export async function run(argv: string[], io: CliIo): Promise<number> {
  const running = await serve(argv, io.out, io.env, io.err);
  return running === null ? 0 : running.stopped;
}

/** Starts serving; installs SIGTERM/SIGINT handlers. `out` receives the human-readable summary, `err` the warnings. */
export async function serve(argv: string[], out: (line: string) => void = (l) => process.stdout.write(`${l}\n`), env: NodeJS.ProcessEnv = process.env, err: (line: string) => void = (l) => process.stderr.write(`${l}\n`)): Promise<Running | null> {
  const cfg = serveOptions(argv, env);
  for (const line of cfg.warnings) err(line);
  if (cfg.help) {
    out(SERVE_USAGE);
    return null;
  }
  const app = await buildServer(cfg.options);
  const failed = app.nimify.repository.index().filter((e) => e.state === 'UNAVAILABLE');
  if (failed.length > 0 && !cfg.keepGoing) {
    await app.close();
    throw new NimifyError('INVALID_MODEL', `startup models failed to load (pass --keep-going to serve the others):\n${failed.map((e) => `  ${e.name}${e.version ? ` version ${e.version}` : ''}: ${e.reason}`).join('\n')}`);
  }
  let grpcServer: GrpcServer | null = null;
  if (cfg.grpcPort !== null) {
    // Before listen(): it hooks its drain on the app's close.
    try {
      grpcServer = await startGrpcServer(app, { port: cfg.grpcPort, host: cfg.host });
    } catch (e) {
      await app.close();
      throw e;
    }
  }
  const address = await app.listen({ port: cfg.port, host: cfg.host });
  // Idle: nothing in flight now and nothing admitted since the last check (a trim blocks the
  // event loop for up to ~20 ms; a server between two requests is not idle).
  let seen = app.nimify.admitted;
  const stopTrim = startIdleTrim({
    busy: () => {
      const active = app.nimify.inFlight > 0 || app.nimify.admitted !== seen;
      seen = app.nimify.admitted;
      return active;
    },
  });
  const repo = app.nimify.repository;
  out(`nimify serving ${repo.root} (control mode ${repo.controlMode}) at ${address}`);
  out(`  inference  ${address}/v2/models/<model>/infer   metrics ${address}/metrics   docs ${address}/documentation`);
  if (grpcServer !== null) out(`  grpc       ${grpcServer.address} (inference.GRPCInferenceService)`);
  for (const name of repo.names()) {
    const versions = repo.versions(name);
    if (versions.length === 0) out(`  model ${name}: not loaded`);
    for (const v of versions) {
      out(`  model ${name} version ${v.version}: ${v.state}${v.reason ? ` (${v.reason})` : ''}`);
      if (v.config) out(`    config ${JSON.stringify(v.config)}`);
    }
  }

  let resolveStopped!: (code: number) => void;
  const stopped = new Promise<number>((r) => (resolveStopped = r));
  let stopping = false;
  const drain = (signal: string) => {
    stopping = true;
    out(`nimify: ${signal}: draining in-flight requests, then stopping`);
    const timer = setTimeout(() => {
      out(`nimify: drain took longer than ${cfg.shutdownTimeoutMs} ms, exiting`);
      resolveStopped(1);
    }, cfg.shutdownTimeoutMs);
    timer.unref();
    app.close().then(
      () => {
        clearTimeout(timer);
        out('nimify: stopped');
        resolveStopped(0);
      },
      (err: unknown) => {
        clearTimeout(timer);
        out(`nimify: error while stopping: ${(err as Error).message}`);
        resolveStopped(1);
      },
    );
  };
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      out(`nimify: ${signal} again, exiting now`);
      resolveStopped(1);
      return;
    }
    drain(signal);
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  // Under npm/npx the signal may reach only the shell npm put between us (npm-parent.ts). A Ctrl-C
  // reaches both us and that shell: the watch then finds a drain already under way and adds nothing.
  const shell = cfg.parentWatch ? npmShellParent(env) : null;
  const unwatch = shell === null ? () => {} : watchNpmShell(shell, (signal, why) => {
    if (stopping) return;
    out(`nimify: ${why}`);
    drain(`${signal} (via npm)`);
  });
  void stopped.then(() => {
    stopTrim();
    unwatch();
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
  });
  return { app, address, grpc: grpcServer, stopped };
}
