/**
 * What nimifyPlugin shares with its route plugins (decorated as `fastify.nimify`), and the
 * Fastify type augmentations it relies on.
 */
import type { JsonDecodePool } from '../protocol/json-pool';
import type { Admitted } from './admission';
import { NimifyError } from '../runtime/errors';
import { PreprocessPool } from '../pipeline/pool';
import type { ModelRepository } from '../repository/repository';
import { BREAKER_STATE_VALUE, CircuitBreaker } from './breaker';
import type { ServerMetrics } from './metrics';
import type { AuthArea, CheckedPluginOptions } from './options';
import { ResponseCache } from './cache';
import type { ServerTracing } from './tracing';
import type { RateLimitCheck } from './plugins/rate-limit';

export type RouteArea = AuthArea | 'inference' | 'metadata' | 'repository';

declare module 'fastify' {
  interface FastifyInstance {
    nimify: NimifyContext;
  }
  interface FastifyRequest {
    /** Set by the inference routes' admission hook (admission.ts); null elsewhere and before it. */
    nimifyAdmitted: Admitted | null;
  }
  interface FastifyContextConfig {
    /** Which area a nimify route belongs to (auth exemptions, shedding). */
    nimifyArea?: RouteArea;
  }
}

export class NimifyContext {
  /** Inference requests admitted and not yet ended (body being read, decoded, queued or running: admission.ts). Event-loop thread only. */
  inFlight = 0;
  /** Inference requests admitted since the server started (the idle trim's sign of activity). Event-loop thread only. */
  admitted = 0;
  /** The pool decoding large JSON bodies off the event loop (null when disabled). */
  jsonPool: JsonDecodePool | null = null;
  /**
   * The event-loop and heap guards' verdict (plugins/shedding.ts, set when they are on): what is
   * over its limit, or null. admit() asks it, so gRPC sheds like HTTP, whose hook asks first.
   */
  pressure: (() => { type: string; value: number } | null) | null = null;
  /** The rate limiter's check for calls that are not Fastify requests (gRPC), when rate limiting is on (plugins/rate-limit.ts). */
  rateLimit: RateLimitCheck | null = null;
  /** The response cache (null without a budget: options.responseCacheBytes). */
  readonly cache: ResponseCache | null;
  /** Request tracing (tracing.ts), started by the plugin when options.tracing asks; null: off. */
  tracing: ServerTracing | null = null;
  readonly #breakers = new Map<string, CircuitBreaker>();
  #preprocess: PreprocessPool | null = null;
  #closed = false;

  constructor(
    readonly repository: ModelRepository,
    readonly metrics: ServerMetrics,
    readonly options: CheckedPluginOptions,
  ) {
    this.cache = options.responseCacheBytes > 0 ? new ResponseCache(options.responseCacheBytes) : null;
  }

  /** The predict route's preprocessing pool (options.preprocess), started on first use. */
  preprocessPool(): PreprocessPool {
    if (this.#closed) throw new NimifyError('DISPOSED', 'the server is closing');
    return (this.#preprocess ??= new PreprocessPool(this.options.preprocess));
  }

  /** Tasks waiting in the preprocessing pool now (0 before it starts). */
  preprocessQueueSize(): number {
    return this.#preprocess?.queueSize ?? 0;
  }

  /** Stops the pool's workers (the plugin's onClose, after requests ended). */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#preprocess?.close();
    this.#preprocess = null;
  }

  /** The model's breaker (created on first use), or null when breakers are off. */
  breaker(model: string): CircuitBreaker | null {
    const opts = this.options.breaker;
    if (opts === false) return null;
    let b = this.#breakers.get(model);
    if (b === undefined) {
      const gauge = this.metrics.breakerState;
      gauge.set({ model }, 0);
      b = new CircuitBreaker(opts, (state) => gauge.set({ model }, BREAKER_STATE_VALUE[state]));
      this.#breakers.set(model, b);
    }
    return b;
  }
}
