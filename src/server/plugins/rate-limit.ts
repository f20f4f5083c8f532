/**
 * Rate limiting with @fastify/rate-limit: a window per client, the client being its API key when
 * it sends one (so per-key limits hold across IPs) and its IP otherwise. Health, metrics and docs
 * routes are not limited. Over the limit: 429 RATE_LIMITED with Retry-After (set by the library).
 * The gRPC service checks its calls against the same windows (the library's createRateLimit, same
 * store, keys and limits) through the check this plugin hands to `expose`.
 */
import { createHash } from 'node:crypto';
import rateLimit from '@fastify/rate-limit';
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { retryLater, secondsFromMs } from '../errors';
import type { RateLimitOptions } from '../options';

const bearer = (request: FastifyRequest): string | null => {
  const h = request.headers.authorization;
  const m = typeof h === 'string' ? /^Bearer[ ]+(\S+)/i.exec(h) : null;
  return m === null ? null : m[1];
};

/** Checks one call of a client (its peer IP and `authorization` value) against the HTTP windows; throws RATE_LIMITED over the limit. */
export type RateLimitCheck = (ip: string, authorization: string | undefined) => Promise<void>;

const limiter: FastifyPluginAsync<RateLimitOptions & { onLimit?: () => void; expose?: (check: RateLimitCheck) => void }> = async (app, opts) => {
  // Keys are held hashed so that the limiter's store never holds a secret.
  const perKey = new Map(Object.entries(opts.perKey ?? {}).map(([k, v]) => [`key:${createHash('sha256').update(k).digest('hex')}`, v]));
  await app.register(rateLimit, {
    global: true,
    max: (_request, key) => perKey.get(key) ?? opts.max,
    timeWindow: opts.timeWindowMs ?? 60_000,
    keyGenerator: (request) => {
      const k = bearer(request);
      return k === null ? `ip:${request.ip}` : `key:${createHash('sha256').update(k).digest('hex')}`;
    },
    allowList: (request) => {
      const area = request.routeOptions.config?.nimifyArea;
      return area === 'health' || area === 'metrics' || area === 'docs';
    },
    errorResponseBuilder: (_request, context) => {
      opts.onLimit?.();
      const seconds = secondsFromMs(context.ttl);
      return retryLater('RATE_LIMITED', `rate limit exceeded: ${context.max} requests per ${context.after}; retry in ${seconds} s`, seconds);
    },
  });
  if (opts.expose !== undefined) {
    const check = app.createRateLimit();
    opts.expose(async (ip, authorization) => {
      // What keyGenerator, max and allowList read of a request (an inference-area call: never allow-listed).
      const request = { ip, headers: { authorization }, routeOptions: { config: {} } } as unknown as FastifyRequest;
      const r = await check(request);
      if (r.isAllowed || !r.isExceeded) return;
      opts.onLimit?.();
      const seconds = secondsFromMs(r.ttl);
      throw retryLater('RATE_LIMITED', `rate limit exceeded: ${r.max} requests per ${Math.round(r.timeWindow / 1000)} s; retry in ${seconds} s`, seconds);
    });
  }
};

export default fp(limiter, { name: 'nimify-rate-limit', fastify: '5.x' });
