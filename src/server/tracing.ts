/**
 * OpenTelemetry tracing of inference requests (issue 16 item 4), off by default.
 *
 * Off (options.tracing absent or false: NimifyContext.tracing is null) nothing here runs per
 * request: the routes, admission.ts and the gRPC service test `tracing !== null` (or a request's
 * trace against null) before they read a clock or allocate anything for tracing, and nimify loads
 * no OpenTelemetry package (prom-client loads @opentelemetry/api for its own use) — this module
 * imports only their types; startTracing() loads
 * @opentelemetry/api and @opentelemetry/core, plus the SDK and the OTLP exporter for
 * `exporter: 'otlp'`, when the server starts tracing.
 *
 * On, each inference request (HTTP infer / predict, gRPC ModelInfer / each message of
 * ModelStreamInfer) gets one request span (SERVER kind), started by startRequestTrace() — the
 * one function both transports use — as a child of the W3C `traceparent` / `tracestate` the
 * client sent (HTTP headers, gRPC metadata), with child spans for admission, preprocessing
 * (predict), the queue wait and the compute of its run (from the addon's per-request timing:
 * infer()'s internal `timing` option, src/runtime/binding.ts RUN_TIMING), and response encoding,
 * plus Triton's trace timestamps as events on the request span (TRITON_EVENTS). The provider is
 * nimify's own (never registered globally: an embedding app's global tracer stays its own), or
 * the caller's `tracerProvider`.
 *
 * Threads: event-loop thread only. A RequestTrace belongs to its request.
 */
import type { Attributes, Context, HrTime, Span, TextMapGetter, Tracer, TracerProvider } from '@opentelemetry/api';
import { NimifyError } from '../runtime/errors';
import { RUN_TIMING, RUN_TIMING_LENGTH } from '../runtime/binding';
import { expectKnownKeys, expectOneOf, expectPlainObject, expectString, invalid } from '../runtime/validate';
import { version as nimifyVersion } from '../runtime/version';

/** options.tracing of buildServer() / nimifyPlugin. */
export interface TracingOptions {
  /**
   * 'otlp': export spans with OTLP over HTTP (OTLP/JSON) to `url`, through nimify's own
   * BasicTracerProvider (batched; flushed when the server closes). Exclusive with `tracerProvider`.
   */
  exporter?: 'otlp';
  /**
   * The OTLP traces endpoint, used as it is (e.g. http://collector:4318/v1/traces). Default: the
   * exporter's, from OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, else OTEL_EXPORTER_OTLP_ENDPOINT +
   * /v1/traces, else http://localhost:4318/v1/traces.
   */
  url?: string;
  /** Extra HTTP headers for the exporter (e.g. an API key of a hosted collector). */
  headers?: Record<string, string>;
  /** service.name of the spans' resource (default OTEL_SERVICE_NAME, else 'nimify'). */
  serviceName?: string;
  /** A TracerProvider of the caller's (tests, an embedding app's SDK): nimify takes its tracer from it and never shuts it down. */
  tracerProvider?: TracerProvider;
}

/** Names of nimify's spans (the request span is named after its route or RPC). */
export const SPAN = {
  admission: 'admission',
  preprocess: 'preprocess',
  queue: 'queue',
  compute: 'compute',
  encode: 'encode response',
} as const;

/** Attributes nimify sets, beside OpenTelemetry's HTTP and RPC semantic conventions. */
export const ATTR = {
  model: 'nimify.model.name',
  version: 'nimify.model.version',
  requestId: 'nimify.request.id',
  /** The request's outcome: 'OK' or its error code (ERROR_TABLE). */
  status: 'nimify.status',
  batchSize: 'nimify.batch.size',
  batchRequests: 'nimify.batch.requests',
  instance: 'nimify.instance',
  items: 'nimify.predict.items',
} as const;

/** Triton's trace timestamp names (its trace API / trace_summary.py), as events on the request span. */
export const TRITON_EVENTS = ['REQUEST_START', 'QUEUE_START', 'COMPUTE_START', 'COMPUTE_INPUT_END', 'COMPUTE_OUTPUT_START', 'COMPUTE_END', 'REQUEST_END'] as const;

type Api = typeof import('@opentelemetry/api');

/**
 * A performance.now() reading as OpenTelemetry's HrTime (epoch seconds, nanoseconds). Every time
 * nimify gives a span goes through this: a plain number would be shifted by an offset the SDK
 * recomputes per span from Date.now() (ms granularity), so spans of one request would disagree
 * by up to a millisecond on the same instant (the queue's end and the compute's start).
 */
function hr(ms: number): HrTime {
  const epoch = performance.timeOrigin + ms;
  let seconds = Math.floor(epoch / 1000);
  let nanos = Math.round((epoch - seconds * 1000) * 1e6);
  if (nanos >= 1e9) {
    seconds += 1;
    nanos -= 1e9;
  }
  return [seconds, nanos];
}

/** A started tracing setup: the tracer, the modules it needs, and how to stop what nimify started. */
export class ServerTracing {
  readonly #shutdown: () => Promise<void>;

  /** @internal */
  constructor(
    readonly tracer: Tracer,
    /** @internal */ readonly api: Api,
    /** @internal */ readonly propagator: { extract(context: Context, carrier: unknown, getter: TextMapGetter): Context },
    shutdown: () => Promise<void>,
  ) {
    this.#shutdown = shutdown;
  }

  /** Flushes and stops nimify's own provider (an injected one stays the caller's). */
  shutdown(): Promise<void> {
    return this.#shutdown();
  }
}

const TRACING_KEYS = ['exporter', 'url', 'headers', 'serviceName', 'tracerProvider'];

/** Validates options.tracing (false: off). */
export function checkTracingOptions(name: string, value: unknown): TracingOptions | false {
  if (value === false) return false;
  const o = expectPlainObject(name, value);
  expectKnownKeys(name, o, TRACING_KEYS);
  const out: TracingOptions = {};
  if (o.tracerProvider !== undefined) {
    const p = o.tracerProvider as { getTracer?: unknown } | null;
    if (typeof p !== 'object' || p === null || typeof p.getTracer !== 'function') throw invalid(`${name}.tracerProvider`, 'an OpenTelemetry TracerProvider (with getTracer())', o.tracerProvider);
    if (o.exporter !== undefined || o.url !== undefined || o.headers !== undefined || o.serviceName !== undefined) {
      throw new NimifyError('INVALID_ARGUMENT', `${name}: expected either tracerProvider or exporter (with url, headers, serviceName), received both`);
    }
    out.tracerProvider = o.tracerProvider as TracerProvider;
    return out;
  }
  if (o.exporter === undefined) throw new NimifyError('INVALID_ARGUMENT', `${name}: expected exporter: 'otlp' or a tracerProvider, received neither`);
  out.exporter = expectOneOf(`${name}.exporter`, o.exporter, ['otlp'] as const);
  if (o.url !== undefined) out.url = checkOtlpUrl(`${name}.url`, o.url);
  if (o.headers !== undefined) {
    const h = expectPlainObject(`${name}.headers`, o.headers);
    out.headers = Object.fromEntries(Object.entries(h).map(([k, v]) => [k, expectString(`${name}.headers[${JSON.stringify(k.slice(0, 40))}]`, v)]));
  }
  if (o.serviceName !== undefined) out.serviceName = expectString(`${name}.serviceName`, o.serviceName);
  return out;
}

/** An http(s) URL for an OTLP endpoint, or INVALID_ARGUMENT naming `name`. */
export function checkOtlpUrl(name: string, value: unknown): string {
  const text = expectString(name, value);
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw invalid(name, 'an http:// or https:// URL of an OTLP traces endpoint (e.g. http://localhost:4318/v1/traces)', text);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw invalid(name, 'an http:// or https:// URL (OTLP over HTTP)', text);
  return text;
}

/** What tracing with nimify's own exporter needs beyond @opentelemetry/api (prom-client's dependency): optional peers of nimify. */
export const TRACING_PACKAGES = ['@opentelemetry/core', '@opentelemetry/sdk-trace-base', '@opentelemetry/exporter-trace-otlp-http', '@opentelemetry/resources'] as const;

/** UNSUPPORTED naming every package of `names` that is not installed (one `npm install` line for all). */
export function checkTracingPackages(names: readonly string[], resolveFrom: string[] = [__dirname, process.cwd()]): void {
  const missing = names.filter((n) => {
    try {
      require.resolve(n, { paths: resolveFrom });
      return false;
    } catch {
      return true;
    }
  });
  if (missing.length > 0) {
    throw new NimifyError('UNSUPPORTED', `tracing needs ${missing.map((m) => `'${m}'`).join(', ')}, not installed: run \`npm install ${missing.join(' ')}\` in your project`);
  }
}

/**
 * Starts tracing per checked options: loads the OpenTelemetry modules (the SDK and exporter only
 * for `exporter`). `env` gives OTEL_SERVICE_NAME.
 */
export function startTracing(options: TracingOptions, env: NodeJS.ProcessEnv = process.env): ServerTracing {
  // Loaded here, never at import: 'nimify/server' without tracing loads none of the SDK (the
  // API alone is loaded by prom-client anyway).
  const api = require('@opentelemetry/api') as Api;
  // The propagator (and, for an exporter, the SDK) are optional peer dependencies: installed by
  // whoever turns tracing on, named all at once when missing.
  checkTracingPackages(options.tracerProvider !== undefined ? ['@opentelemetry/core'] : TRACING_PACKAGES);
  const { W3CTraceContextPropagator } = require('@opentelemetry/core') as typeof import('@opentelemetry/core');
  const propagator = new W3CTraceContextPropagator();
  if (options.tracerProvider !== undefined) {
    return new ServerTracing(options.tracerProvider.getTracer('nimify', nimifyVersion), api, propagator, async () => {});
  }
  const sdk = require('@opentelemetry/sdk-trace-base') as typeof import('@opentelemetry/sdk-trace-base');
  const { OTLPTraceExporter } = require('@opentelemetry/exporter-trace-otlp-http') as typeof import('@opentelemetry/exporter-trace-otlp-http');
  const { resourceFromAttributes } = require('@opentelemetry/resources') as typeof import('@opentelemetry/resources');
  // OpenTelemetry's semantic-convention names for the service (semantic-conventions is a 10 MB package for two strings).
  const ATTR_SERVICE_NAME = 'service.name';
  const ATTR_SERVICE_VERSION = 'service.version';
  const exporter = new OTLPTraceExporter({ ...(options.url !== undefined ? { url: options.url } : {}), ...(options.headers !== undefined ? { headers: options.headers } : {}) });
  const provider = new sdk.BasicTracerProvider({
    resource: resourceFromAttributes({ [ATTR_SERVICE_NAME]: options.serviceName ?? (env.OTEL_SERVICE_NAME || 'nimify'), [ATTR_SERVICE_VERSION]: nimifyVersion }),
    spanProcessors: [new sdk.BatchSpanProcessor(exporter)],
  });
  return new ServerTracing(provider.getTracer('nimify', nimifyVersion), api, propagator, () => provider.shutdown());
}

/** Reads a W3C trace context from HTTP headers (Node lower-cases their names). */
export const headerGetter: TextMapGetter<Record<string, string | string[] | undefined>> = {
  keys: (carrier) => Object.keys(carrier),
  get: (carrier, key) => carrier[key],
};

/** Reads a W3C trace context from gRPC metadata (@grpc/grpc-js Metadata, by shape: this module does not load grpc-js). */
export const metadataGetter: TextMapGetter<{ get(key: string): Array<string | Buffer>; getMap(): Record<string, unknown> }> = {
  keys: (carrier) => Object.keys(carrier.getMap()),
  get: (carrier, key) => {
    const values = carrier.get(key);
    return values.length === 0 ? undefined : values.map(String);
  },
};

/**
 * The request span of one inference request, continuing the client's W3C trace context read
 * from `carrier` with `getter`: the one entry point of HTTP (admission.ts registerTracing) and
 * gRPC (grpc/server.ts). Null when the sampler dropped it (nothing more is recorded then).
 */
export function startRequestTrace<C>(tracing: ServerTracing, name: string, carrier: C, getter: TextMapGetter<C>, attributes: Attributes): RequestTrace | null {
  const { api } = tracing;
  const parent = tracing.propagator.extract(api.ROOT_CONTEXT, carrier, getter as TextMapGetter);
  const start = performance.now();
  const span = tracing.tracer.startSpan(name, { kind: api.SpanKind.SERVER, attributes, startTime: hr(start) }, parent);
  if (!span.isRecording()) {
    span.end();
    return null;
  }
  span.addEvent('REQUEST_START', hr(start));
  return new RequestTrace(tracing, span, start);
}

/** One request's spans (startRequestTrace). Times are performance.now() readings (ms). */
export class RequestTrace {
  readonly span: Span;
  readonly #tracing: ServerTracing;
  readonly #context: Context;
  readonly #start: number;
  #error: unknown = undefined;
  #ended = false;

  /** @internal */
  constructor(tracing: ServerTracing, span: Span, start: number) {
    this.#tracing = tracing;
    this.span = span;
    this.#start = start;
    this.#context = tracing.api.trace.setSpan(tracing.api.ROOT_CONTEXT, span);
  }

  /** When the request span started (performance.now(), ms). */
  get start(): number {
    return this.#start;
  }

  /** A child span from `startMs` to `endMs` (default now), failed with `error` when given. */
  child(name: string, startMs: number, endMs: number = performance.now(), attributes?: Attributes, error?: unknown): Span {
    const span = this.#tracing.tracer.startSpan(name, { startTime: hr(startMs), attributes }, this.#context);
    if (error !== undefined) markFailed(this.#tracing.api, span, error);
    span.end(hr(endMs));
    return span;
  }

  /** Admission (admission.ts) let the request in to `model` / `version`, or refused it with `error`. */
  admission(startMs: number, model: { name: string; version: string } | null, error?: unknown): void {
    if (model !== null) this.span.setAttributes({ [ATTR.model]: model.name, [ATTR.version]: model.version });
    this.child(SPAN.admission, startMs, undefined, undefined, error);
    if (error !== undefined) this.fail(error);
  }

  /** The client's request id (the protocol's `id`), once decoded. */
  requestId(id: string | undefined): void {
    if (id !== undefined && id !== '') this.span.setAttribute(ATTR.requestId, id);
  }

  /** A timing array for one infer() call of this request (its internal `timing` option); pass it to run() once that call settled. */
  runTiming(): Float64Array {
    return new Float64Array(RUN_TIMING_LENGTH);
  }

  /**
   * The queue and compute spans of one settled infer() call, from its timing array, and Triton's
   * QUEUE_START … COMPUTE_END events. A request the response cache answered (infer() never
   * called: nothing submitted) records none; one that never ran (expired, cancelled or refused
   * in the queue) records its queue span, failed with `error`.
   */
  run(timing: Float64Array, error?: unknown): void {
    const submitted = timing[RUN_TIMING.SUBMITTED_MS];
    if (submitted === 0) return;
    const span = this.span;
    span.addEvent('QUEUE_START', hr(submitted));
    if (timing[RUN_TIMING.RAN] !== 1) {
      this.child(SPAN.queue, submitted, undefined, undefined, error ?? new NimifyError('INTERNAL', 'the request did not run'));
      return;
    }
    const at = (slot: number) => submitted + timing[slot] / 1000;
    const start = at(RUN_TIMING.START_US);
    const end = at(RUN_TIMING.END_US);
    this.child(SPAN.queue, submitted, start);
    span.addEvent('COMPUTE_START', hr(start));
    span.addEvent('COMPUTE_INPUT_END', hr(at(RUN_TIMING.INPUT_END_US)));
    span.addEvent('COMPUTE_OUTPUT_START', hr(at(RUN_TIMING.RUN_END_US)));
    span.addEvent('COMPUTE_END', hr(end));
    this.child(SPAN.compute, start, end, {
      [ATTR.batchSize]: timing[RUN_TIMING.BATCH_ROWS],
      [ATTR.batchRequests]: timing[RUN_TIMING.BATCH_REQUESTS],
      [ATTR.instance]: timing[RUN_TIMING.INSTANCE],
    }, error);
  }

  /** Records the request's failure (the span ends with status ERROR). The first one wins. */
  fail(error: unknown): void {
    if (this.#error === undefined) this.#error = error;
  }

  /** Ends the request span (REQUEST_END), with status ERROR when it failed. Idempotent. */
  end(attributes?: Attributes): void {
    if (this.#ended) return;
    this.#ended = true;
    const span = this.span;
    if (attributes !== undefined) span.setAttributes(attributes);
    if (this.#error !== undefined) markFailed(this.#tracing.api, span, this.#error);
    else span.setAttribute(ATTR.status, 'OK');
    const now = hr(performance.now());
    span.addEvent('REQUEST_END', now);
    span.end(now);
  }
}

function markFailed(api: Api, span: Span, error: unknown): void {
  const code = error instanceof NimifyError ? error.code : ((error as { code?: unknown } | null)?.code ?? 'INTERNAL');
  const message = error instanceof Error ? error.message : String(error);
  span.setAttribute(ATTR.status, String(code));
  if (error instanceof Error) span.recordException(error);
  span.setStatus({ code: api.SpanStatusCode.ERROR, message });
}
