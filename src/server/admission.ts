/**
 * One inference request's way into a served model version and its accounting, shared by the
 * inference routes (infer, predict). Admission runs in an onRequest hook (registerAdmission()),
 * before the body is read, cheapest check first: the server-wide concurrency bound (shedding.ts
 * admit(); the event-loop and heap guards of the shedding plugin ran just before) → model
 * resolution (404 / 503 not ready) → the route's own check → the model's circuit breaker → the
 * model's queue depth. A refused request is answered without its body being read (the error
 * handler closes the connection when the body has not fully arrived). An admitted request holds
 * one of ctx.inFlight from then until its outcome is known: the handler's end() / fail(), an
 * error answered before the handler (body, decoding: the onError hook), or its client leaving
 * (the response's 'close' before the outcome: its AbortController aborts, which cancels its
 * queued request in the native scheduler). When it ends, the Triton per-model counters (success,
 * failure by reason, duration) and the breaker hear how it went. The gRPC service admits its
 * calls through the same core (admitModelRequest, inferAdmitted): one policy for both transports.
 * Event-loop thread only.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Counter } from 'prom-client';
import { NimifyError } from '../runtime/errors';
import { Canceller } from '../runtime/options';
import { checkModelName, checkVersion, type ServedVersion } from '../repository/repository';
import type { DecodedRequest, WireModel } from '../protocol/request';
import type { Tensor } from '../runtime/tensor';
import type { CircuitBreaker } from './breaker';
import type { NimifyContext } from './context';
import { toHttpError } from './errors';
import { newTally, type FailureReason, type RequestTally } from './metrics';
import { admit, overloaded } from './plugins/shedding';
import { cacheFor, throughCache } from './cache';
import { headerGetter, startRequestTrace, type RequestTrace } from './tracing';

declare module 'fastify' {
  interface FastifyRequest {
    /** The request's trace (tracing.ts), set by registerTracing's hook while tracing is on; null otherwise. */
    nimifyTrace: RequestTrace | null;
  }
}

interface VersionCounters {
  /** This version's success count and summed durations since the last scrape (metrics.ts RequestTally). */
  tally: RequestTally;
  failure: Map<FailureReason, Counter.Internal>;
  /** Requests admitted to this version and not ended (their bodies may still be arriving). */
  admitted: number;
  /** Summed receipt-to-outcome time of the requests that succeeded / failed, in ns (Triton's inference_stats success.ns / fail.ns). */
  successNs: number;
  failNs: number;
  /** When the last request that reached the model or the cache ended (ms since the epoch; Triton's last_inference). */
  lastInferenceMs: number;
}

/** Per version, made on first use: labelled children are looked up once, not per request. */
const countersByVersion = new WeakMap<ServedVersion, VersionCounters>();

function failureReason(err: unknown): FailureReason {
  // Fastify's own errors (body too large, bad JSON, schema) by the code they answer with.
  const code = err instanceof NimifyError ? err.code : toHttpError(err).code;
  switch (code) {
    case 'QUEUE_FULL': case 'OVERLOADED': case 'CIRCUIT_OPEN': case 'TIMEOUT': case 'NOT_READY': case 'DISPOSED': return 'REJECTED';
    case 'ABORTED': return 'CANCELED';
    case 'RUNTIME_ERROR': case 'INTERNAL': return 'BACKEND';
    default: return 'OTHER';
  }
}

/**
 * Failures that say something about the model's health (they count for its breaker). A timeout
 * counts only under the server's or model's own limit: a client's tight `timeout` parameter
 * must not open the breaker for everyone.
 */
function isModelFault(err: unknown, clientTimeout: boolean): boolean {
  if (!(err instanceof NimifyError)) return false;
  return err.code === 'RUNTIME_ERROR' || err.code === 'INTERNAL' || (err.code === 'TIMEOUT' && !clientTimeout);
}

/** A request admitted to a version: holds one of ctx.inFlight (and of its version's admitted) until end() or fail(). */
export class Admission {
  readonly #ctx: NimifyContext;
  readonly #v: ServedVersion;
  readonly #breaker: CircuitBreaker | null;
  readonly #probe: boolean;
  readonly #counters: VersionCounters;
  #done = false;
  /**
   * When the request was admitted (its headers had arrived): durations run from here. Not
   * reply.elapsedTime, which Fastify measures only with a logger or an onResponse hook.
   */
  readonly #start = performance.now();

  /**
   * Admits a request to `v` (resolved from `name`): refuses it with CIRCUIT_OPEN while the
   * model's breaker is open, and with OVERLOADED (counted as a failure of `v`) when the model's
   * pending requests (queued or running, or admitted and not yet there) are at its limit.
   */
  constructor(ctx: NimifyContext, name: string, v: ServedVersion) {
    this.#ctx = ctx;
    this.#v = v;
    this.#breaker = ctx.breaker(name);
    this.#probe = this.#breaker !== null ? this.#breaker.admit(name) : false;
    let c = countersByVersion.get(v);
    if (c === undefined) {
      c = { tally: newTally(v.name, v.version), failure: new Map(), admitted: 0, successNs: 0, failNs: 0, lastInferenceMs: 0 };
      countersByVersion.set(v, c);
    }
    this.#counters = c;
    ctx.inFlight++;
    ctx.admitted++;
    c.admitted++;
    const shedding = ctx.options.shedding;
    if (shedding !== false) {
      const config = v.config!;
      const limit = shedding.maxPendingPerModel ?? (config.batching !== false ? Math.floor(0.9 * (config.batching.maxQueueSize ?? 1024)) : 1024);
      // Admitted requests whose bodies are still arriving will queue too: count them.
      const pending = Math.max(v.model!.pending, c.admitted - 1);
      if (pending >= limit) {
        ctx.metrics.shed.inc({ reason: 'queue' });
        const err = overloaded(`model '${name}' has ${pending} requests pending`, shedding.retryAfterSeconds);
        this.fail(err, { beforeModel: true });
        throw err;
      }
    }
  }

  /** Whether the outcome is recorded (end() or fail() ran): the request no longer counts in flight. */
  get settled(): boolean {
    return this.#done;
  }

  /** The request succeeded. */
  end(): void {
    if (this.#done) return;
    const elapsedMs = performance.now() - this.#start;
    this.#done = true;
    this.#ctx.inFlight--;
    this.#counters.admitted--;
    this.#breaker?.success(this.#probe);
    this.#ctx.metrics.countSuccess(this.#counters.tally, elapsedMs);
    this.#counters.successNs += Math.round(elapsedMs * 1e6);
    this.#counters.lastInferenceMs = Date.now();
  }

  /**
   * The request failed with `err`. `clientTimeout`: it ran under the client's
   * own timeout; `beforeModel`: it failed before reaching the model (body, preprocessing), so
   * it says nothing about the model's health.
   */
  fail(err: unknown, { clientTimeout = false, beforeModel = false } = {}): void {
    if (this.#done) return;
    const elapsedMs = performance.now() - this.#start;
    this.#done = true;
    this.#ctx.inFlight--;
    this.#counters.admitted--;
    if (this.#breaker !== null) {
      if (!beforeModel && isModelFault(err, clientTimeout)) this.#breaker.failure(this.#probe);
      else this.#breaker.neutral(this.#probe);
    }
    const reason = failureReason(err);
    let f = this.#counters.failure.get(reason);
    if (f === undefined) this.#counters.failure.set(reason, (f = this.#ctx.metrics.failure.labels(this.#v.name, this.#v.version, reason)));
    f.inc();
    this.#ctx.metrics.countFailure(this.#counters.tally, elapsedMs);
    // Triton's fail.ns: requests that reached the model (fail.count counts those only).
    if (!beforeModel) {
      this.#counters.failNs += Math.round(elapsedMs * 1e6);
      this.#counters.lastInferenceMs = Date.now();
    }
  }
}

/**
 * Summed receipt-to-outcome time (ns) of `v`'s requests that succeeded and that failed, since it
 * was served, and when the last of them that reached the model (or the response cache) ended
 * (ms since the epoch; 0: none yet) — Triton's last_inference.
 */
export function requestDurationsNs(v: ServedVersion): { success: number; fail: number; lastInferenceMs: number } {
  const c = countersByVersion.get(v);
  return { success: c?.successNs ?? 0, fail: c?.failNs ?? 0, lastInferenceMs: c?.lastInferenceMs ?? 0 };
}

/** What the admission hook leaves on an admitted request (request.nimifyAdmitted) for its handler. */
export interface Admitted {
  readonly name: string;
  /** The version the request asked for (undefined: the policy's choice). */
  readonly version: string | undefined;
  /** The version resolved at admission; the handler runs on current(). */
  readonly v: ServedVersion;
  readonly admission: Admission;
  /** Aborted when the client goes away before its outcome; routes may abort it too (predict's deadline). */
  readonly controller: AbortController;
  /** Cancels the request's infer() call (inferAdmitted's) when the client goes away: no signal listener per request. */
  readonly canceller: Canceller;
  /** The request's trace while tracing is on (tracing.ts), else null. */
  readonly trace: RequestTrace | null;
}

type ModelParams = { model_name: string; model_version?: string };

/**
 * AbortControllers of finished requests, never aborted and with no listener left (model.infer()
 * removes its own when it settles), for the next requests: creating an AbortSignal costs ~4–9 µs
 * on Node 20 (createAbortSignal; measured in a loop on the 2-core VM), while adding and removing
 * one listener on a pooled one costs ~0.4–0.8 µs. Event-loop thread only.
 */
const idleControllers: AbortController[] = [];
const IDLE_CONTROLLERS_MAX = 4096;

export interface AdmissionOptions {
  /** The route's own refusal for a resolved model (predict: a model without preprocessing), before the breaker and the queue depth. */
  check?: (name: string, v: ServedVersion) => void;
  /**
   * The route's last refusal, once the request holds its admission (infer: a large JSON body when
   * the decode pool is full). A throw fails the admission (not the model's fault) and refuses the
   * request before its body is read.
   */
  reserve?: (request: FastifyRequest, reply: FastifyReply) => void;
  /**
   * Whether the request's AbortController may serve later requests once it ended (default true).
   * False for a route that derives signals from it (AbortSignal.any keeps a link to its sources).
   */
  reuseController?: boolean;
}

/**
 * Registers request tracing in an inference route context: call it first, before the shedding
 * plugin, so that a request shed there is traced too. With tracing off (ctx.tracing null) it
 * only declares `request.nimifyTrace` (null) and adds no hook: untraced requests pay nothing.
 * On, an onRequest hook starts the request span (startRequestTrace, shared with gRPC) from the
 * request's `traceparent` header, an onError hook records the failure being answered, and the
 * response's 'close' ends the span with its status code (ERROR for a failure, a 5xx, or a client
 * that left before its answer).
 */
export function registerTracing(app: FastifyInstance, ctx: NimifyContext): void {
  app.decorateRequest('nimifyTrace', null);
  const tracing = ctx.tracing;
  if (tracing === null) return;
  app.addHook('onRequest', (request, reply, done) => {
    const url = request.url;
    const q = url.indexOf('?');
    const route = request.routeOptions.url ?? url;
    const trace = startRequestTrace(tracing, `${request.method} ${route}`, request.headers, headerGetter, {
      'http.request.method': request.method,
      'http.route': route,
      'url.path': q < 0 ? url : url.slice(0, q),
    });
    if (trace !== null) {
      request.nimifyTrace = trace;
      const res = reply.raw;
      res.once('close', () => {
        if (!res.writableFinished) trace.fail(new NimifyError('ABORTED', 'the client closed the connection before its answer'));
        else if (res.statusCode >= 500) trace.fail(new NimifyError('INTERNAL', `answered HTTP ${res.statusCode}`));
        trace.end({ 'http.response.status_code': res.statusCode });
      });
    }
    done();
  });
  app.addHook('onError', (request, _reply, error, done) => {
    request.nimifyTrace?.fail(error);
    done();
  });
}

/** Registers admission in an inference route context (call it after the shedding plugin, so that its event-loop and heap guards run first). */
export function registerAdmission(app: FastifyInstance, ctx: NimifyContext, { check, reserve, reuseController = true }: AdmissionOptions = {}): void {
  app.decorateRequest('nimifyAdmitted', null);
  // Callback style: no promise per request on the hot path.
  app.addHook('onRequest', (request, reply, done) => {
    try {
      admitRequest(ctx, request, reply, check, reserve, reuseController);
    } catch (err) {
      done(err as Error);
      return;
    }
    done();
  });
  // Errors answered before the handler ran (body too large, malformed JSON, the JSON pool's
  // QUEUE_FULL, schema) end the admission; for the handler's own errors it already ended.
  app.addHook('onError', (request, reply, error, done) => {
    request.nimifyAdmitted?.admission.fail(error, { beforeModel: true });
    done();
  });
}

/**
 * The transport-neutral core of admission, shared by the Fastify hook below and the gRPC service
 * (src/server/grpc/): the server-wide concurrency bound, model resolution (`version` undefined:
 * the policy's choice), the caller's own check, then the breaker and queue depth (Admission). The
 * returned admission holds one of ctx.inFlight until its end() / fail(); `controller` is the
 * request's AbortController (pooled when `reuse`: hand it back with releaseController()).
 * Throws the refusal; nothing is held then. Event-loop thread only.
 */
export function admitModelRequest(ctx: NimifyContext, modelName: unknown, modelVersion: unknown, check?: AdmissionOptions['check'], reuse = true, trace: RequestTrace | null = null): Admitted {
  if (trace === null) return admitNow(ctx, modelName, modelVersion, check, reuse, null);
  // Traced: the same steps inside an admission span (its refusal fails the request span too).
  const start = performance.now();
  let admitted: Admitted;
  try {
    admitted = admitNow(ctx, modelName, modelVersion, check, reuse, trace);
  } catch (err) {
    trace.admission(start, null, err);
    throw err;
  }
  trace.admission(start, admitted.v);
  return admitted;
}

function admitNow(ctx: NimifyContext, modelName: unknown, modelVersion: unknown, check: AdmissionOptions['check'], reuse: boolean, trace: RequestTrace | null): Admitted {
  admit(ctx);
  const name = checkModelName(modelName);
  const version = modelVersion === undefined ? undefined : checkVersion(modelVersion);
  const v = ctx.repository.resolve(name, version);
  check?.(name, v);
  const admission = new Admission(ctx, name, v);
  const controller = (reuse ? idleControllers.pop() : undefined) ?? new AbortController();
  return { name, version, v, admission, controller, canceller: new Canceller(), trace };
}

/** Returns a settled request's AbortController to the pool (if it was never aborted and the pool has room). */
export function releaseController(controller: AbortController): void {
  if (!controller.signal.aborted && idleControllers.length < IDLE_CONTROLLERS_MAX) idleControllers.push(controller);
}

/**
 * The client went away before its outcome: aborts the request (cancelling its queued work in the
 * native scheduler) and fails its admission as CANCELED. No-op once settled.
 */
export function abandonAdmitted(a: Admitted, message: string): void {
  if (a.admission.settled) return;
  const gone = new NimifyError('ABORTED', message);
  a.canceller.cancel();
  a.controller.abort(gone);
  a.admission.fail(gone);
}

function admitRequest(ctx: NimifyContext, request: FastifyRequest, reply: FastifyReply, check: AdmissionOptions['check'], reserve: AdmissionOptions['reserve'], reuse: boolean): void {
  const params = request.params as ModelParams;
  const admitted = admitModelRequest(ctx, params.model_name, params.model_version, check, reuse, request.nimifyTrace);
  const { admission, controller } = admitted;
  if (reserve !== undefined) {
    try {
      reserve(request, reply);
    } catch (err) {
      admission.fail(err, { beforeModel: true });
      if (reuse) releaseController(controller);
      throw err;
    }
  }
  request.nimifyAdmitted = admitted;
  // One listener per request; the response emits 'close' once (after its end, or when the
  // connection drops first) and is then dropped with it.
  reply.raw.once('close', () => {
    if (admission.settled) {
      if (reuse) releaseController(controller);
      return;
    }
    abandonAdmitted(admitted, 'the client closed the connection before its answer');
  });
}

/** What inferAdmitted() ran: the version, the decoded request and the model's outputs. */
export interface InferOutcome {
  v: ServedVersion;
  decoded: DecodedRequest;
  results: Record<string, Tensor>;
}

/**
 * The inference step every KServe v2 transport shares (HTTP infer route, gRPC ModelInfer and
 * ModelStreamInfer): decodes the request for the version it runs on (currentVersion(), in the
 * same synchronous step as model.infer()) and runs it with the request's deadline — its `timeout`
 * parameter, else the model's timeoutMs, else the server's inferTimeoutMs, never past
 * `clientDeadlineMs` (a gRPC deadline, ms from now) — its priority and the admission's signal. A
 * failure fails the admission (a client's own timeout does not count against the model's
 * breaker) and is rethrown; on success the caller encodes the answer and then calls
 * admission.end(). Event-loop thread only.
 */
export async function inferAdmitted(ctx: NimifyContext, a: Admitted, decode: (wire: WireModel) => DecodedRequest, clientDeadlineMs?: number): Promise<InferOutcome> {
  let clientTimeout = false;
  // Traced requests only: the addon's per-request timing (the queue and compute spans).
  const trace = a.trace;
  const timing = trace === null ? undefined : trace.runTiming();
  try {
    const v = currentVersion(ctx, a);
    const config = v.config!;
    const decoded = decode(v.wire!);
    if (trace !== null) trace.requestId(decoded.id);
    let timeoutMs = decoded.timeoutMs ?? config.timeoutMs ?? ctx.options.inferTimeoutMs;
    clientTimeout = decoded.timeoutMs !== undefined;
    if (clientDeadlineMs !== undefined && clientDeadlineMs < timeoutMs) {
      timeoutMs = Math.max(clientDeadlineMs, 1);
      clientTimeout = true;
    }
    const all = decoded.outputs.length === config.outputs.length;
    const options = { outputs: all ? undefined : decoded.outputs, timeoutMs, priority: decoded.priority, canceller: a.canceller, timing };
    // The response cache (cache.ts) answers a repeat without the model; a miss calls infer() in
    // this same synchronous step (currentVersion() above still holds). Without one, infer() is
    // called directly: no closure or extra promise per request.
    const cache = cacheFor(ctx.cache, v);
    const results = await (cache === null
      ? v.model!.infer(decoded.feeds, options)
      : throughCache(cache, v, decoded.feeds, decoded.outputs, () => v.model!.infer(decoded.feeds, options)));
    if (trace !== null) trace.run(timing!);
    return { v, decoded, results };
  } catch (err) {
    a.admission.fail(err, { clientTimeout });
    if (trace !== null) {
      trace.run(timing!, err);
      trace.fail(err);
    }
    throw err;
  }
}

/**
 * The version a handler runs the request on, in the same synchronous step as its infer() call:
 * the admitted one while it is still ready, else the one serving now (NOT_FOUND / NOT_READY when
 * none). The repository retires a version after the requests its model already accepted
 * (repository.ts #retire: whenIdle() counts infer() calls), so a version swapped while the body
 * arrived must not be used.
 */
export function currentVersion(ctx: NimifyContext, a: Admitted): ServedVersion {
  return a.v.ready ? a.v : ctx.repository.resolve(a.name, a.version);
}
