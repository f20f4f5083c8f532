/**
 * buildServer(): a Fastify instance with nimify's plugin registered, not listening, so tests can
 * inject() and the CLI can listen(). Server-level concerns live here: the pino logger (request
 * ids from X-Request-Id or generated, Authorization redacted, no bodies logged, access log opt-in),
 * body size limit, request and keep-alive timeouts (a request not received in time answers 408),
 * 404s in the protocol's error shape, and the drain on close() (drainOnClose below).
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import Fastify, { LogController, type FastifyInstance } from 'fastify';
import { expectBoolean, expectInteger, expectKnownKeys, expectPlainObject, invalid } from '../runtime/validate';
import { SERVER_KEYS, type ServerOptions } from './options';
import { createFastLane } from './fast-lane';
import { nimifyPlugin } from './plugin';
import { notFoundHandler, sendError } from './plugins/error-handler';
import { requestLogFactory } from './request-log';

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
  const fastLane = o.fastLane === undefined ? false : expectBoolean('options.fastLane', o.fastLane);
  if (logger !== false) logger = { redact: ['req.headers.authorization', 'req.headers["x-api-key"]'], ...logger };

  const { logger: _l, logRequests: _lr, bodyLimit: _b, requestTimeoutMs: _r, keepAliveTimeoutMs: _k, fastLane: _f, ...pluginOptions } = options;
  const httpOptions = requestTimeout > 0 ? { requestTimeout, connectionsCheckingInterval: Math.max(10, Math.min(1000, requestTimeout)) } : undefined;
  const app = Fastify({
    logger,
    logController: new LogController({ disableRequestLogging: !logRequests }),
    bodyLimit,
    requestTimeout,
    // Given to http.createServer too: Node applies a requestTimeout set after creation (all
    // Fastify does with its own option) to the headers only, so a client that sent its headers
    // and then trickled or stalled its body was never cut off. Node enforces it when it sweeps
    // its connections, every 30 s by default (a 30 s limit then cuts after 30 to 60 s): a sweep a
    // second (C++, over the open connections) keeps the limit within a second of what was asked.
    ...(httpOptions !== undefined ? { http: httpOptions } : {}),
    keepAliveTimeout,
    // Connections are closed by drainOnClose, never by Fastify: closing an idle keep-alive socket at
    // once resets a request the client has already sent on it (issue 14 item 7).
    forceCloseConnections: false,
    requestIdHeader: 'x-request-id',
    genReqId: () => randomUUID(),
    // request.log makes its pino child only when the request logs (request-log.ts).
    childLoggerFactory: requestLogFactory,
    // A request that arrives on an open connection while draining is served (the models stay
    // loaded until every connection closed) and its response ends the connection.
    return503OnClosing: false,
    // Longer than any valid name (128), so a long name reaches nimify's own 400 instead of a 414.
    routerOptions: { maxParamLength: 512 },
    // Errors Fastify raises before routing (malformed URL encoding, …) answer in nimify's shape.
    frameworkErrors: (err, request, reply) => sendError(request, reply, err),
    // Requests Node's HTTP parser rejects, or a client too slow to send its request within
    // requestTimeoutMs (Node's ERR_HTTP_REQUEST_TIMEOUT: 408, as Node itself answers), never reach
    // Fastify's routing: answer them in the same shape.
    clientErrorHandler: (err, socket) => {
      if (!socket.writable) return;
      const code = (err as NodeJS.ErrnoException).code;
      const timedOut = code === 'ERR_HTTP_REQUEST_TIMEOUT';
      const body = JSON.stringify(
        timedOut
          ? { error: `request not received within ${requestTimeout} ms (requestTimeoutMs)`, code: 'TIMEOUT' }
          : { error: `malformed HTTP request (${code ?? 'parse error'})`, code: 'INVALID_ARGUMENT' },
      );
      const status = timedOut ? '408 Request Timeout' : '400 Bad Request';
      socket.end(`HTTP/1.1 ${status}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
    },
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, allErrors: false } },
  });
  drainOnClose(app.server);
  // Responses sent while closing end their connection (Fastify's router adds the header too for
  // requests that arrive while closing; this covers those that were already running). The
  // listener closes in the same turn, before any such response can reach a client: Fastify's own
  // server.close() comes only after an avvio turn in which I/O runs, and a client that reconnects
  // in that turn lands in the accept queue, whose connections the kernel resets on close.
  let closing = false;
  app.addHook('preClose', async () => {
    closing = true;
    if (app.server.listening) app.server.close();
  });
  // Callback style: no promise per response.
  app.addHook('onSend', (request, reply, payload, done) => {
    reply.header('x-request-id', request.id);
    if (closing) reply.header('connection', 'close');
    done(null, payload);
  });
  // Routes outside nimify's plugin (404s, their body parsing) answer through the same table.
  app.setErrorHandler((err, request, reply) => sendError(request, reply, err));
  app.setNotFoundHandler(notFoundHandler);
  await app.register(nimifyPlugin, pluginOptions);
  if (fastLane && !logRequests) {
    const lane = createFastLane(app.nimify, app.log, { bodyLimit, closing: () => closing });
    // The lane sees each request of Fastify's own server first (fast-lane.ts: it takes it or
    // leaves it untouched for Fastify's handler). Not a serverFactory, which would stop Fastify
    // from listening on every address of a name such as localhost (its extra servers, if any,
    // go to Fastify's handler directly).
    const [handler] = app.server.listeners('request') as Array<(req: IncomingMessage, res: ServerResponse) => void>;
    if (lane !== null && handler !== undefined) {
      app.server.removeListener('request', handler);
      app.server.on('request', (req: IncomingMessage, res: ServerResponse) => {
        if (!lane(req, res)) handler(req, res);
      });
    }
  }
  return app;
}

/** How long a connection must stay quiet (no request running, no byte received) before a drain closes it. */
export const DRAIN_QUIET_MS = 500;
/** How often a drain looks for quiet connections. */
const DRAIN_SWEEP_MS = 100;

/**
 * Graceful close without resetting requests already sent. Node's server.close() stops listening
 * and then destroys every keep-alive connection that looks idle; a request the client wrote on
 * one of them an instant earlier (in the kernel's buffer, or read but not yet parsed) is then
 * answered with a TCP reset — with 64 keep-alive connections under load, ~28 requests in 3 of 5
 * SIGTERM runs (issue 14 item 7). Here server.close() still stops accepting at once, but a
 * connection is closed only when (a) a response ends it (every response sent while closing carries
 * `Connection: close`, so a busy connection closes right after its next answer), or (b) it stayed
 * quiet — no response pending, no byte received — for DRAIN_QUIET_MS, checked again after an I/O
 * poll so bytes that already reached the socket are seen before it is destroyed. Only a request
 * still on the wire at that very moment, after DRAIN_QUIET_MS of silence, can meet a closed socket.
 * net.Server's close callback (and so Fastify's onClose hooks: model disposal) waits for every
 * connection. A drain that never ends is the caller's deadline to enforce (serve's
 * --shutdown-timeout-ms). Event-loop thread only; costs nothing per request (sockets are tracked
 * per connection, and swept only while closing).
 */
export function drainOnClose(server: Server): void {
  // server.close() may be called twice (early by buildServer's preClose hook, then by Fastify):
  // the first call closes; every caller's callback runs once the last connection closed.
  const close = server.close.bind(server);
  let closed: Promise<Error | undefined> | null = null;
  server.close = (cb?: (err?: Error) => void) => {
    closed ??= new Promise((resolve) => close((err) => resolve(err)));
    if (cb !== undefined) void closed.then((err) => cb(err));
    return server;
  };
  const sockets = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  // Called by http.Server.close() right before it stops listening (Node ≥ 19), and by nothing else in nimify.
  server.closeIdleConnections = () => {
    if (sweeper !== null) return;
    const seen = new Map<Socket, { bytes: number; quietSince: number }>();
    const start = Date.now();
    sweeper = setInterval(() => {
      const now = Date.now();
      const quiet: Socket[] = [];
      for (const socket of sockets) {
        const last = seen.get(socket) ?? { bytes: -1, quietSince: start };
        if (busy(socket) || socket.bytesRead !== last.bytes) {
          seen.set(socket, { bytes: socket.bytesRead, quietSince: busy(socket) ? now : last.bytes === -1 ? start : now });
          continue;
        }
        if (now - last.quietSince >= DRAIN_QUIET_MS) quiet.push(socket);
      }
      if (quiet.length === 0) return;
      // After the poll phase: whatever had reached these sockets has been read (bytesRead moved) by now.
      setImmediate(() => {
        for (const socket of quiet) {
          if (!busy(socket) && socket.bytesRead === seen.get(socket)?.bytes) socket.destroy();
        }
      });
    }, DRAIN_SWEEP_MS);
    sweeper.unref();
  };
  let sweeper: NodeJS.Timeout | null = null;
  server.once('close', () => {
    if (sweeper !== null) clearInterval(sweeper);
  });
}

/** A response is being produced on the socket (Node's own test in closeIdleConnections). */
function busy(socket: Socket): boolean {
  const res = (socket as Socket & { _httpMessage?: { finished: boolean } | null })._httpMessage;
  return res !== undefined && res !== null && !res.finished;
}
