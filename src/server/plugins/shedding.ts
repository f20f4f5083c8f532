/**
 * Load shedding for the inference routes, registered in their context only (health and metrics
 * keep answering under load): @fastify/under-pressure refuses requests while the event loop is
 * late or the heap is full, and admit() bounds the requests served at once. Refusals are
 * 503 OVERLOADED with Retry-After, answered before any decoding. A model's own queue depth is
 * checked by the inference route (it knows the model).
 */
import underPressure from '@fastify/under-pressure';
import type { FastifyPluginAsync } from 'fastify';
import fp from 'fastify-plugin';
import type { NimifyContext } from '../context';
import { retryLater, type RetryableError } from '../errors';

export function overloaded(reason: string, retryAfterSeconds: number): RetryableError {
  return retryLater('OVERLOADED', `server overloaded (${reason}); retry later`, retryAfterSeconds);
}

/** Event-loop thread, first check of an inference route's admission (admission.ts): refuses a request over the concurrency bound. */
export function admit(ctx: NimifyContext): void {
  const shedding = ctx.options.shedding;
  if (shedding !== false && ctx.inFlight >= shedding.maxConcurrentRequests) {
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
};

export default fp(shedding, { name: 'nimify-shedding', fastify: '5.x' });
