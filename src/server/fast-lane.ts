/**
 * The infer route's fast lane (issue 14 item 13; SPEC P5). Fastify's request machinery cost
 * ~30 µs of the ~105 µs of CPU that `nimify serve` spent on a tiny model's request (a probe on
 * the 2-core VM at 64 connections, issue 14's notes): more than the model. The lane answers the
 * common inference request straight from Node's HTTP server, through the very steps the Fastify
 * route takes — admission (admitModelRequest: shedding, model resolution, breaker, queue
 * depth), parseInferBody and the route's own body validator, runInfer (inferAdmitted + the
 * response encoding), the error table's answers (errorAnswer) and @fastify/compress's choice of
 * response encoding (jsonResponseEncoding) — so either way gives the same answer, headers,
 * statistics and metrics, and refusals are logged alike.
 *
 * It takes a request only when nothing else would touch it; anything else goes to Fastify as it
 * came (the lane looks at the request line and headers and has read nothing): POST to
 * /v2/models/{m}[/versions/{v}]/infer with no query string or percent-encoding; a
 * Content-Length of at least 1 and at most the body limit (no chunked body, no Expect, no
 * Content-Encoding); no Content-Type or a common one (LANE_TYPES); a JSON body under the JSON
 * worker pool's threshold (or a binary-extension body); a valid API key where one is needed
 * (a refusal is the auth plugin's 401); not while the server drains. Not at all with tracing, a rate limit or the access log on (their hooks
 * would be skipped), and only in a server whose owner adds no hooks of its own: buildServer()'s
 * `fastLane` option, which `nimify serve` sets.
 *
 * Event-loop thread only. Per request: one admission (held from the headers until the outcome,
 * ended by runInfer or by a failure here), one 'close' listener that cancels the request when
 * its client leaves first (as the Fastify hook does), the body's chunks until 'end'.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import * as zlib from 'node:zlib';
import type { FastifyBaseLogger } from 'fastify';
import type { EncodedResponse } from '../protocol/response';
import { abandonAdmitted, admitModelRequest, releaseController, type Admitted } from './admission';
import type { NimifyContext } from './context';
import { checkBearer, digest } from './plugins/auth';
import { jsonResponseEncoding } from './plugins/compression';
import { errorAnswer } from './plugins/error-handler';
import { RequestLog } from './request-log';
import { parseInferBody, runInfer } from './routes/infer';
import { bodyValidationError, validateInferBody } from './validation';

/** Serves `req` and returns true, or returns false (having touched nothing) for Fastify to serve it. */
export type FastLane = (req: IncomingMessage, res: ServerResponse) => boolean;

export interface FastLaneOptions {
  /** The server's body limit (buildServer's bodyLimit). */
  bodyLimit: number;
  /** Whether the server is draining: the lane takes no new request then, and its answers close their connection. */
  closing: () => boolean;
}

/** The infer routes as the lane matches them: names and versions in the characters they may hold, nothing to decode. */
const INFER_PATH = /^\/v2\/models\/([A-Za-z0-9_.-]{1,128})\/(?:versions\/([0-9]{1,19})\/)?infer$/;
const JSON_TYPE = 'application/json; charset=utf-8';
/** Request media types the lane takes (what clients send: JSON, binary, curl's form default, text). */
const LANE_TYPES: ReadonlySet<string> = new Set(['application/json', 'application/octet-stream', 'application/x-www-form-urlencoded', 'text/plain']);
/** A character a header value cannot carry. */
const BAD_HEADER_CHAR = /[^\t\x20-\x7e\x80-\xff]/;

/** The lane for `ctx`'s server, or null when a configured feature needs Fastify's hooks on every inference request. */
export function createFastLane(ctx: NimifyContext, log: FastifyBaseLogger, { bodyLimit, closing }: FastLaneOptions): FastLane | null {
  const o = ctx.options;
  if (ctx.tracing !== null || o.rateLimit !== false) return null;
  const keys = o.apiKeys.length === 0 ? null : o.apiKeys.map(digest);
  // The JSON worker pool's bodies (its byte budget, its queue) stay with the route (infer.ts).
  const offloadBytes = ctx.jsonPool === null ? 0 : o.jsonWorkerBytes;

  const keyOk = (header: string | undefined): boolean => {
    try {
      checkBearer(header, keys!);
      return true;
    } catch {
      return false;
    }
  };

  /**
   * Writes the answer. A JSON body is compressed where @fastify/compress would compress the
   * route's (jsonResponseEncoding: Accept-Encoding, 1 KiB or more), on libuv's pool like it, and
   * sent with its length (the route streams it chunked). Nothing is written once the client is gone.
   */
  const send = (req: IncomingMessage, res: ServerResponse, status: number, headers: string[], body: string | Buffer, json: boolean): void => {
    if (res.destroyed) return;
    const bytes = typeof body === 'string' ? Buffer.byteLength(body) : body.length;
    const encoding = json ? jsonResponseEncoding(req.headers, bytes) : null;
    if (encoding === null) {
      headers.push('content-length', String(bytes));
      if (closing()) headers.push('connection', 'close');
      res.writeHead(status, headers);
      res.end(body);
      return;
    }
    (encoding === 'gzip' ? zlib.gzip : zlib.deflate)(body, (err, compressed) => {
      if (res.destroyed) return;
      if (err !== null) {
        log.error({ err }, 'could not compress a response');
        res.destroy();
        return;
      }
      headers.push('vary', 'accept-encoding', 'content-encoding', encoding, 'content-length', String(compressed.length));
      if (closing()) headers.push('connection', 'close');
      res.writeHead(status, headers);
      res.end(compressed);
    });
  };

  /**
   * The error's answer, as sendError gives it (errorAnswer), unless it was answered already.
   * `parseError`: the body could not be parsed, which Fastify answers with Connection: close.
   */
  const fail = (req: IncomingMessage, res: ServerResponse, id: string, err: unknown, complete: boolean, parseError = false): void => {
    if (res.headersSent || res.destroyed) return;
    const a = errorAnswer(err, new RequestLog(log, { reqId: id }, {}) as unknown as FastifyBaseLogger, req.headers, complete);
    const headers = ['content-type', JSON_TYPE, 'x-request-id', id];
    if (a.retryAfter !== undefined) headers.push('retry-after', a.retryAfter);
    if (a.close || parseError) headers.push('connection', 'close');
    send(req, res, a.status, headers, a.body, true);
  };

  const succeed = (req: IncomingMessage, res: ServerResponse, id: string, encoded: EncodedResponse): void => {
    const binary = encoded.headerLength !== undefined;
    const headers = binary
      ? ['inference-header-content-length', String(encoded.headerLength), 'content-type', 'application/octet-stream', 'x-request-id', id]
      : ['content-type', JSON_TYPE, 'x-request-id', id];
    send(req, res, 200, headers, encoded.body, !binary);
  };

  const serve = (req: IncomingMessage, res: ServerResponse, name: string, version: string | undefined): void => {
    // As Fastify's requestIdHeader: the client's id when it sent a non-empty one.
    const id = (req.headers['x-request-id'] as string | undefined) || randomUUID();
    let admitted: Admitted;
    try {
      admitted = admitModelRequest(ctx, name, version, undefined, true, null);
    } catch (err) {
      fail(req, res, id, err, false);
      return;
    }
    const { admission, controller } = admitted;
    // As the route's admission hook: the client leaving before the outcome cancels the request.
    res.once('close', () => {
      if (admission.settled) releaseController(controller);
      else abandonAdmitted(admitted, 'the client closed the connection before its answer');
    });
    const chunks: Buffer[] = [];
    let received = 0;
    req.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      received += chunk.length;
    });
    // A body cut off (its client gone mid-body) fails the request as Fastify's body reader does
    // (a 400 the client will not see): a request pipelined behind another never gets its
    // response's 'close', so this is what ends its admission.
    req.on('error', (err: Error & { statusCode?: number }) => {
      if (admission.settled) return;
      if (!(typeof err.statusCode === 'number' && err.statusCode >= 400)) err.statusCode = 400;
      admission.fail(err, { beforeModel: true });
      fail(req, res, id, err, false, true);
    });
    req.once('end', () => {
      if (admission.settled) return;
      const body = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, received);
      let wire;
      try {
        wire = parseInferBody(req.headers['inference-header-content-length'], body);
      } catch (err) {
        admission.fail(err, { beforeModel: true });
        fail(req, res, id, err, true, true);
        return;
      }
      if (!validateInferBody(wire)) {
        const err = bodyValidationError(validateInferBody.errors);
        admission.fail(err, { beforeModel: true });
        fail(req, res, id, err, true);
        return;
      }
      runInfer(ctx, admitted, wire).then(
        (encoded) => succeed(req, res, id, encoded),
        (err: unknown) => fail(req, res, id, err, true),
      );
    });
  };

  return (req, res) => {
    if (req.method !== 'POST') return false;
    const m = INFER_PATH.exec(req.url!);
    if (m === null) return false;
    const h = req.headers;
    if (h['transfer-encoding'] !== undefined || h['content-encoding'] !== undefined || h.expect !== undefined) return false;
    // Media types Fastify reads as valid (any other, or a malformed one, is its 415).
    const type = h['content-type'];
    if (type !== undefined && !LANE_TYPES.has((type.indexOf(';') < 0 ? type : type.slice(0, type.indexOf(';'))).trim().toLowerCase())) return false;
    // An id the answer can echo (Node's own parser never lets another through; --insecure-http-parser does).
    const id = h['x-request-id'];
    if (id !== undefined && BAD_HEADER_CHAR.test(id as string)) return false;
    const length = Number(h['content-length']);
    if (!(length >= 1 && length <= bodyLimit)) return false;
    if (offloadBytes > 0 && length >= offloadBytes && h['inference-header-content-length'] === undefined) return false;
    if (keys !== null && !keyOk(h.authorization)) return false;
    if (closing()) return false;
    serve(req, res, m[1], m[2]);
    return true;
  };
}
