/** Error and not-found handling for nimify's routes: every failure answers through toHttpError(). */
import type { IncomingHttpHeaders } from 'node:http';
import type { FastifyBaseLogger, FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
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
function bodyToCome(headers: IncomingHttpHeaders): boolean {
  const length = headers['content-length'];
  if (length === undefined) return headers['transfer-encoding'] !== undefined;
  return !(Number(length) <= DISCARD_BODY_BYTES);
}

/** How a route answers an error, whichever way the request came (Fastify's route or the infer fast lane). */
export interface ErrorAnswer {
  status: number;
  /** `{"error": message, "code": CODE}`. */
  body: string;
  /** Retry-After seconds, for a refusal worth retrying. */
  retryAfter: string | undefined;
  /** The answer ends the connection: the request's body had not fully arrived and more than a small one was to come. */
  close: boolean;
}

/**
 * The answer to `err` (toHttpError), logged as every route logs its failures: internal faults at
 * error level, other 5xx refusals at warn. `complete`: the request's body has been received.
 */
export function errorAnswer(err: unknown, log: FastifyBaseLogger, headers: IncomingHttpHeaders, complete: boolean): ErrorAnswer {
  const h = toHttpError(err);
  if (h.internal) log.error({ err }, 'request failed');
  else if (h.status >= 500) log.warn({ code: h.code, msg: h.message }, 'request refused');
  return {
    status: h.status,
    body: JSON.stringify({ error: h.message, code: h.code }),
    retryAfter: h.retryAfterSeconds === undefined ? undefined : String(h.retryAfterSeconds),
    close: !complete && bodyToCome(headers),
  };
}

export function sendError(request: FastifyRequest, reply: FastifyReply, err: unknown): FastifyReply {
  const a = errorAnswer(err, request.log, request.headers, request.raw.complete);
  if (a.retryAfter !== undefined && !reply.hasHeader('retry-after')) reply.header('retry-after', a.retryAfter);
  if (a.close) reply.header('connection', 'close');
  return reply.code(a.status).type('application/json; charset=utf-8').send(a.body);
}

const errorHandler: FastifyPluginAsync = async (app) => {
  app.setErrorHandler((err, request, reply) => sendError(request, reply, err));
};

export default fp(errorHandler, { name: 'nimify-error-handler', fastify: '5.x' });

/** For the server's root: unknown routes answer 404 in the same shape as every other error. */
export function notFoundHandler(request: FastifyRequest, reply: FastifyReply): FastifyReply {
  return sendError(request, reply, new NimifyError('NOT_FOUND', `no route ${request.method} ${request.url.split('?')[0].slice(0, 200)}`));
}
