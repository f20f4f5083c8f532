/**
 * buildServer(): a Fastify instance with nimify's plugin registered, not listening, so tests can
 * inject() and the CLI can listen(). Server-level concerns live here: the pino logger (request
 * ids from X-Request-Id or generated, Authorization redacted, no bodies logged, access log opt-in),
 * body size limit, request and keep-alive timeouts, 404s in the protocol's error shape, and closing idle
 * keep-alive connections on close() so that a graceful shutdown does not hang.
 */
import { randomUUID } from 'node:crypto';
import Fastify, { LogController, type FastifyInstance } from 'fastify';
import { expectBoolean, expectInteger, expectKnownKeys, expectPlainObject, invalid } from '../runtime/validate';
import { SERVER_KEYS, type ServerOptions } from './options';
import { nimifyPlugin } from './plugin';
import { notFoundHandler, sendError } from './plugins/error-handler';

export async function buildServer(options: ServerOptions): Promise<FastifyInstance> {
  const o = expectPlainObject('options', options);
  expectKnownKeys('options', o, SERVER_KEYS);
  const bodyLimit = o.bodyLimit === undefined ? 64 * 1024 * 1024 : expectInteger('options.bodyLimit', o.bodyLimit, 1024, 2 ** 31 - 1);
  const requestTimeout = o.requestTimeoutMs === undefined ? 30_000 : expectInteger('options.requestTimeoutMs', o.requestTimeoutMs, 0);
  const keepAliveTimeout = o.keepAliveTimeoutMs === undefined ? 72_000 : expectInteger('options.keepAliveTimeoutMs', o.keepAliveTimeoutMs, 1);
  let logger: Record<string, unknown> | false;
  if (o.logger === undefined || o.logger === true) logger = { level: 'info' };
  else if (o.logger === false) logger = false;
  else if (typeof o.logger === 'object' && o.logger !== null) logger = o.logger as Record<string, unknown>;
  else throw invalid('options.logger', 'true, false or pino options', o.logger);
  const logRequests = o.logRequests === undefined ? false : expectBoolean('options.logRequests', o.logRequests);
  if (logger !== false) logger = { redact: ['req.headers.authorization', 'req.headers["x-api-key"]'], ...logger };

  const { logger: _l, logRequests: _lr, bodyLimit: _b, requestTimeoutMs: _r, keepAliveTimeoutMs: _k, ...pluginOptions } = options;
  const app = Fastify({
    logger,
    logController: new LogController({ disableRequestLogging: !logRequests }),
    bodyLimit,
    requestTimeout,
    keepAliveTimeout,
    forceCloseConnections: 'idle',
    requestIdHeader: 'x-request-id',
    genReqId: () => randomUUID(),
    return503OnClosing: true,
    // Longer than any valid name (128), so a long name reaches nimify's own 400 instead of a 414.
    routerOptions: { maxParamLength: 512 },
    // Errors Fastify raises before routing (malformed URL encoding, …) answer in nimify's shape.
    frameworkErrors: (err, request, reply) => sendError(request, reply, err),
    // Requests Node's HTTP parser rejects never reach Fastify's routing: answer them in the same shape.
    clientErrorHandler: (err, socket) => {
      if (!socket.writable) return;
      const body = JSON.stringify({ error: `malformed HTTP request (${(err as NodeJS.ErrnoException).code ?? 'parse error'})`, code: 'INVALID_ARGUMENT' });
      socket.end(`HTTP/1.1 400 Bad Request\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
    },
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, allErrors: false } },
  });
  // Graceful close: Node closes idle keep-alive connections when close() starts, but a connection
  // whose request is still running becomes idle later and would hold close() open until its
  // keep-alive timeout. Responses sent while closing therefore end their connection.
  let closing = false;
  app.addHook('preClose', async () => {
    closing = true;
  });
  app.addHook('onSend', async (request, reply) => {
    reply.header('x-request-id', request.id);
    if (closing) reply.header('connection', 'close');
  });
  // Routes outside nimify's plugin (404s, their body parsing) answer through the same table.
  app.setErrorHandler((err, request, reply) => sendError(request, reply, err));
  app.setNotFoundHandler(notFoundHandler);
  await app.register(nimifyPlugin, pluginOptions);
  return app;
}
