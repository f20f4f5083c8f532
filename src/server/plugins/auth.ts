/**
 * Bearer API keys. Keys are compared as SHA-256 digests with crypto.timingSafeEqual against every
 * configured key (no early exit), so neither content nor length leaks through timing. Routes in
 * an exempt area (options.authExempt: the server's health routes and the docs by default; /metrics
 * only when asked, it names every model) stay open. Keys never reach the log: the
 * server's logger redacts the Authorization header and this plugin never logs it.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyPluginAsync } from 'fastify';
import fp from 'fastify-plugin';
import { NimifyError } from '../../runtime/errors';
import type { AuthArea } from '../options';

export interface AuthOptions {
  keys: string[];
  exempt: AuthArea[];
  onReject?: () => void;
}

/** A key as the checks hold it: its SHA-256 digest. */
export const digest = (s: string): Buffer => createHash('sha256').update(s, 'utf8').digest();

/** True when `presented` equals one of `keys`; time does not depend on which key or where they differ. */
export function keyMatches(presented: string, keys: readonly Buffer[]): boolean {
  const d = digest(presented);
  let ok = false;
  for (const k of keys) ok = timingSafeEqual(d, k) || ok;
  return ok;
}

/**
 * Checks an `Authorization` value (HTTP header, or gRPC metadata `authorization`) against the
 * digests of the configured keys: UNAUTHORIZED when it is missing, malformed or no key matches.
 */
export function checkBearer(header: unknown, keys: readonly Buffer[]): void {
  const match = typeof header === 'string' ? /^Bearer[ ]+(\S+)\s*$/i.exec(header) : null;
  if (match === null || !keyMatches(match[1], keys)) {
    throw new NimifyError('UNAUTHORIZED', match === null ? 'missing API key: send Authorization: Bearer <key>' : 'invalid API key');
  }
}

const auth: FastifyPluginAsync<AuthOptions> = async (app, opts) => {
  if (opts.keys.length === 0) return;
  const keys = opts.keys.map(digest);
  const exempt = new Set<string>(opts.exempt);
  // Callback style: no promise per request.
  app.addHook('onRequest', (request, reply, done) => {
    const area = request.routeOptions.config?.nimifyArea;
    if (area !== undefined && exempt.has(area)) {
      done();
      return;
    }
    try {
      checkBearer(request.headers.authorization, keys);
    } catch (err) {
      opts.onReject?.();
      reply.header('www-authenticate', 'Bearer realm="nimify"');
      done(err as Error);
      return;
    }
    done();
  });
};

export default fp(auth, { name: 'nimify-auth', fastify: '5.x' });
