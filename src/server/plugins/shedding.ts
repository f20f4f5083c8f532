/**
 * Load shedding for the inference routes, registered in their context only (health and metrics
 * keep answering under load): @fastify/under-pressure refuses requests while the event loop is
 * late or the heap is full, and this plugin bounds the requests served at once. Refusals are
 * 503 OVERLOADED with Retry-After, answered before any decoding. A model's own queue depth is
 * checked by the inference route (it knows the model).
 */
import underPressure from '@fastify/under-pressure';
import type { FastifyPluginAsync } from 'fastify';
import fp from 'fastify-plugin';
import { NimifyError } from '../../errors';
import type { SheddingOptions } from '../options';

export function overloaded(reason: string, retryAfterSeconds: number): NimifyError {
  const err = new NimifyError('OVERLOADED', `server overloaded (${reason}); retry later`);
  (err as NimifyError & { retryAfterSeconds?: number }).retryAfterSeconds = retryAfterSeconds;
  return err;
}

const shedding: FastifyPluginAsync<Required<Pick<SheddingOptions, 'maxEventLoopDelayMs' | 'retryAfterSeconds'>> & Pick<SheddingOptions, 'maxHeapUsedBytes'> & { onShed: (reason: string) => void }> = async (app, opts) => {
  if (opts.maxEventLoopDelayMs === 0 && opts.maxHeapUsedBytes === undefined) return;
  await app.register(underPressure, {
    maxEventLoopDelay: opts.maxEventLoopDelayMs || 0,
    maxHeapUsedBytes: opts.maxHeapUsedBytes ?? 0,
    retryAfter: opts.retryAfterSeconds,
    pressureHandler: (_request, _reply, type, value) => {
      opts.onShed(type);
      throw overloaded(`${type} at ${Math.round(Number(value))}`, opts.retryAfterSeconds);
    },
  });
};

export default fp(shedding, { name: 'nimify-shedding', fastify: '5.x' });
