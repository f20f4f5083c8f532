/**
 * One inference request's way into a served model version and its accounting, shared by the
 * inference routes (infer, predict): after the server-wide concurrency check (shedding.ts
 * admit()) comes the model's circuit breaker, then the model's queue depth; when the request
 * ends, the Triton per-model counters (success, failure by reason, duration) and the breaker
 * hear how it went. Event-loop thread only.
 */
import type { Counter, Histogram } from 'prom-client';
import { NimifyError } from '../runtime/errors';
import type { ServedVersion } from '../repository/repository';
import type { CircuitBreaker } from './breaker';
import type { NimifyContext } from './context';
import type { FailureReason } from './metrics';
import { overloaded } from './plugins/shedding';

interface VersionCounters {
  success: Counter.Internal;
  duration: Counter.Internal;
  latency: Histogram.Internal<'model' | 'version'>;
  failure: Map<FailureReason, Counter.Internal>;
}

/** Per version, made on first use: labelled children are looked up once, not per request. */
const countersByVersion = new WeakMap<ServedVersion, VersionCounters>();

function failureReason(err: unknown): FailureReason {
  const code = err instanceof NimifyError ? err.code : 'INTERNAL';
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

/** A request admitted to a version: holds one of ctx.inFlight until end() or fail(). */
export class Admission {
  readonly #ctx: NimifyContext;
  readonly #v: ServedVersion;
  readonly #breaker: CircuitBreaker | null;
  readonly #probe: boolean;
  readonly #counters: VersionCounters;
  #done = false;

  /**
   * Admits a request to `v` (resolved from `name`): refuses it with CIRCUIT_OPEN while the
   * model's breaker is open, and with OVERLOADED (counted as a failure of `v`) when the model's
   * pending requests are at its limit.
   */
  constructor(ctx: NimifyContext, name: string, v: ServedVersion) {
    this.#ctx = ctx;
    this.#v = v;
    this.#breaker = ctx.breaker(name);
    this.#probe = this.#breaker !== null ? this.#breaker.admit(name) : false;
    let c = countersByVersion.get(v);
    if (c === undefined) {
      const m = ctx.metrics;
      c = { success: m.success.labels(v.name, v.version), duration: m.requestDuration.labels(v.name, v.version), latency: m.requestLatency.labels(v.name, v.version), failure: new Map() };
      countersByVersion.set(v, c);
    }
    this.#counters = c;
    ctx.inFlight++;
    const shedding = ctx.options.shedding;
    if (shedding !== false) {
      const config = v.config!;
      const limit = shedding.maxPendingPerModel ?? (config.batching !== false ? Math.floor(0.9 * (config.batching.maxQueueSize ?? 1024)) : 1024);
      const pending = v.model!.pending;
      if (pending >= limit) {
        ctx.metrics.shed.inc({ reason: 'queue' });
        const err = overloaded(`model '${name}' has ${pending} requests pending`, shedding.retryAfterSeconds);
        this.fail(err, 0);
        throw err;
      }
    }
  }

  /** The request succeeded after `elapsedMs`. */
  end(elapsedMs: number): void {
    if (this.#done) return;
    this.#done = true;
    this.#ctx.inFlight--;
    this.#breaker?.success(this.#probe);
    this.#counters.success.inc();
    this.#counters.duration.inc(Math.round(elapsedMs * 1000));
    this.#counters.latency.observe(elapsedMs / 1000);
  }

  /**
   * The request failed with `err` after `elapsedMs`. `clientTimeout`: it ran under the client's
   * own timeout; `beforeModel`: it failed before reaching the model (body, preprocessing), so
   * it says nothing about the model's health.
   */
  fail(err: unknown, elapsedMs: number, { clientTimeout = false, beforeModel = false } = {}): void {
    if (this.#done) return;
    this.#done = true;
    this.#ctx.inFlight--;
    if (this.#breaker !== null) {
      if (!beforeModel && isModelFault(err, clientTimeout)) this.#breaker.failure(this.#probe);
      else this.#breaker.neutral(this.#probe);
    }
    const reason = failureReason(err);
    let f = this.#counters.failure.get(reason);
    if (f === undefined) this.#counters.failure.set(reason, (f = this.#ctx.metrics.failure.labels(this.#v.name, this.#v.version, reason)));
    f.inc();
    this.#counters.duration.inc(Math.round(elapsedMs * 1000));
  }
}
