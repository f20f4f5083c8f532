/** Error and not-found handling for nimify's routes: every failure answers through toHttpError(). */
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { NimifyError } from '../../runtime/errors';
import { toHttpError } from '../errors';

/** Bodies up to this size that an error leaves unread are read and discarded by Node, keeping the connection. */
const DISCARD_BODY_BYTES = 64 * 1024;

/**
 * Whether an error answered before the body was read (a refusal in onRequest, a body over the
 * limit) should end the connection: a larger or unsized (chunked) body is then not received at
 * all, instead of Node reading and discarding it after the answer. A small one is discarded, so
 * that the keep-alive connection (and any request pipelined behind it) stays usable.
 */
function bodyToCome(request: FastifyRequest): boolean {
  const length = request.headers['content-length'];
  if (length === undefined) return request.headers['transfer-encoding'] !== undefined;
  return !(Number(length) <= DISCARD_BODY_BYTES);
}

export function sendError(request: FastifyRequest, reply: FastifyReply, err: unknown): FastifyReply {
  const h = toHttpError(err);
  if (h.internal) request.log.error({ err }, 'request failed');
  else if (h.status >= 500) request.log.warn({ code: h.code, msg: h.message }, 'request refused');
  if (h.retryAfterSeconds !== undefined && !reply.hasHeader('retry-after')) reply.header('retry-after', String(h.retryAfterSeconds));
  if (!request.raw.complete && bodyToCome(request)) reply.header('connection', 'close');
  return reply.code(h.status).type('application/json; charset=utf-8').send(JSON.stringify({ error: h.message, code: h.code }));
}

const errorHandler: FastifyPluginAsync = async (app) => {
  app.setErrorHandler((err, request, reply) => sendError(request, reply, err));
};

export default fp(errorHandler, { name: 'nimify-error-handler', fastify: '5.x' });

/** For the server's root: unknown routes answer 404 in the same shape as every other error. */
export function notFoundHandler(request: FastifyRequest, reply: FastifyReply): FastifyReply {
  return sendError(request, reply, new NimifyError('NOT_FOUND', `no route ${request.method} ${request.url.split('?')[0].slice(0, 200)}`));
}
