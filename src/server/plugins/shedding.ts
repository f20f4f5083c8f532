/**
 * Load shedding for the inference routes, registered in their context only (health and metrics
 * keep answering under load): @fastify/under-pressure refuses requests while the event loop is
 * late or the heap is full, and admit() bounds the requests served at once. Refusals are
 * 503 OVERLOADED with Retry-After, answered before any decoding. A model's own queue depth is
 * checked by the inference route (it knows the model).
 */
import underPressure, { TYPE_EVENT_LOOP_DELAY, TYPE_HEAP_USED_BYTES } from '@fastify/under-pressure';
import type { FastifyPluginAsync } from 'fastify';
import fp from 'fastify-plugin';
import type { NimifyContext } from '../context';
import { retryLater, type RetryableError } from '../errors';

export function overloaded(reason: string, retryAfterSeconds: number): RetryableError {
  return retryLater('OVERLOADED', `server overloaded (${reason}); retry later`, retryAfterSeconds);
}

/**
 * Event-loop thread, first check of an inference request's admission (admission.ts), HTTP and
 * gRPC alike: refuses it while the event loop is late or the heap full (the guards' verdict;
 * HTTP's own hook refused such requests already), or when the concurrency bound is reached.
 */
export function admit(ctx: NimifyContext): void {
  const shedding = ctx.options.shedding;
  if (shedding === false) return;
  const pressure = ctx.pressure?.() ?? null;
  if (pressure !== null) {
    ctx.metrics.shed.inc({ reason: pressure.type });
    throw overloaded(`${pressure.type} at ${Math.round(pressure.value)}`, shedding.retryAfterSeconds);
  }
  if (ctx.inFlight >= shedding.maxConcurrentRequests) {
    ctx.metrics.shed.inc({ reason: 'concurrency' });
    throw overloaded(`${ctx.inFlight} requests in flight`, shedding.retryAfterSeconds);
  }
}

/** Registers the event-loop-delay and heap guards in the calling route context (nothing when shedding is off). */
const shedding: FastifyPluginAsync<{ ctx: NimifyContext }> = async (app, { ctx }) => {
  const opts = ctx.options.shedding;
  if (opts === false || (opts.maxEventLoopDelayMs === 0 && opts.maxHeapUsedBytes === undefined)) return;
  await app.register(underPressure, {
    maxEventLoopDelay: opts.maxEventLoopDelayMs || 0,
    maxHeapUsedBytes: opts.maxHeapUsedBytes ?? 0,
    retryAfter: opts.retryAfterSeconds,
    pressureHandler: (_request, _reply, type, value) => {
      ctx.metrics.shed.inc({ reason: type });
      throw overloaded(`${type} at ${Math.round(Number(value))}`, opts.retryAfterSeconds);
    },
  });
  // The same verdict for admit() (gRPC has no Fastify hook), named as under-pressure names it.
  const maxDelay = opts.maxEventLoopDelayMs || 0;
  const maxHeap = opts.maxHeapUsedBytes ?? 0;
  ctx.pressure = () => {
    if (!app.isUnderPressure()) return null;
    const m = app.memoryUsage();
    if (maxDelay > 0 && m.eventLoopDelay > maxDelay) return { type: TYPE_EVENT_LOOP_DELAY, value: m.eventLoopDelay };
    if (maxHeap > 0 && m.heapUsed > maxHeap) return { type: TYPE_HEAP_USED_BYTES, value: m.heapUsed };
    return null;
  };
};

export default fp(shedding, { name: 'nimify-shedding', fastify: '5.x' });
