/**
 * Compressed bodies, both ways, as Triton's clients use them (`request_compression_algorithm`,
 * `response_compression_algorithm`: gzip or deflate).
 *
 * Requests: a body sent with `Content-Encoding: gzip | deflate` is inflated in a preParsing hook
 * before any content-type parser reads it, so JSON and binary-extension bodies work unchanged
 * (`Inference-Header-Content-Length` counts the uncompressed JSON header, as in Triton). The body
 * limit applies to the inflated size too: inflation stops with 413 PAYLOAD_TOO_LARGE as soon as it
 * passes the route's bodyLimit, so a small gzip bomb never becomes a large buffer. Fastify still
 * checks the compressed bytes against Content-Length (`receivedEncodedLength`). Another encoding
 * is refused with 400 before the body is read.
 *
 * Inflated bytes held at once are bounded server-wide too (options.maxInflatedBytes, at least
 * one full body): compression multiplies what a client's bandwidth can make the server hold (a 64 KiB
 * gzip body can be 64 MiB inflated), so each request counts its inflated bytes from the first
 * chunk until its response is sent, and a body that would pass the budget while others hold it
 * is refused with 503 OVERLOADED (Retry-After) instead of inflated.
 *
 * Responses: @fastify/compress compresses a response when `Accept-Encoding` asks for gzip or
 * deflate and the body is over 1 KiB (Triton's two; never br or zstd, which its clients cannot
 * read), on the routes where Triton does: inference (and nimify's predict, metrics, docs). The
 * health, metadata, statistics, config and repository routes answer plain JSON whatever the
 * client accepts, as Triton's do: tritonclient.http.aio sends aiohttp's default
 * `Accept-Encoding: gzip, deflate` and parses those bodies without inflating them.
 *
 * Threads: all on the event loop; zlib runs on libuv's pool.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { Transform, type TransformCallback } from 'node:stream';
import * as zlib from 'node:zlib';
import { negotiate } from '@fastify/accept-negotiator';
import compress from '@fastify/compress';
import type { FastifyPluginAsync } from 'fastify';
import fp from 'fastify-plugin';
import { NimifyError } from '../../runtime/errors';
import { retryLater } from '../errors';

/** Request encodings Triton's clients send, and what inflates each. */
const INFLATE: Record<string, () => zlib.Gunzip | zlib.Inflate> = {
  gzip: () => zlib.createGunzip(),
  'x-gzip': () => zlib.createGunzip(),
  deflate: () => zlib.createInflate(),
};

/** The server's inflated bytes held now (event loop only). */
interface Budget {
  held: number;
  readonly max: number;
}

/** Counts inflated bytes against the body limit and the server's budget. */
class LimitedInflate extends Transform {
  /** Compressed bytes read so far: Fastify compares them with Content-Length. */
  receivedEncodedLength = 0;
  /** This body's inflated bytes, held in `budget` until release(). */
  #inflated = 0;

  constructor(
    readonly limit: number,
    readonly budget: Budget,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    if (this.#inflated + chunk.length > this.limit) {
      done(new NimifyError('PAYLOAD_TOO_LARGE', `body: the decompressed body is larger than the server accepts (bodyLimit ${this.limit} bytes)`));
      return;
    }
    const others = this.budget.held - this.#inflated;
    if (others > 0 && this.budget.held + chunk.length > this.budget.max) {
      done(retryLater('OVERLOADED', `body: compressed request bodies already hold ${others} inflated bytes (at most ${this.budget.max} at once); retry later`, 1));
      return;
    }
    this.#inflated += chunk.length;
    this.budget.held += chunk.length;
    done(null, chunk);
  }

  /** The request is over: its inflated bytes no longer count. Idempotent. */
  release(): void {
    this.budget.held -= this.#inflated;
    this.#inflated = 0;
  }
}

/** Response encodings, in the server's order of preference: Triton's two. */
const RESPONSE_ENCODINGS = ['gzip', 'deflate'];
/** Responses smaller than this many bytes are sent as they are. */
const COMPRESS_THRESHOLD = 1024;

/**
 * The encoding @fastify/compress (as registered below) gives a JSON response of `bytes` bytes
 * to a request with these headers, or null when it sends it as it is: none under the threshold,
 * none asked for (`X-No-Compression`, no or only unsupported encodings in Accept-Encoding, `*`
 * and x-gzip read as gzip). The infer fast lane (fast-lane.ts) answers by it; JSON is the only
 * compressible type nimify's inference routes answer with (application/octet-stream is not).
 */
export function jsonResponseEncoding(headers: IncomingHttpHeaders, bytes: number): 'gzip' | 'deflate' | null {
  if (bytes < COMPRESS_THRESHOLD || headers['x-no-compression'] !== undefined) return null;
  const accept = headers['accept-encoding'];
  if (accept === undefined) return null;
  const encoding = negotiate(accept.toLowerCase().replace(/\*|x-gzip/gu, 'gzip'), RESPONSE_ENCODINGS);
  return encoding === 'gzip' || encoding === 'deflate' ? encoding : null;
}

/** Route areas (route config `nimifyArea`) whose responses are never compressed: see the file comment. */
export const UNCOMPRESSED_AREAS: ReadonlySet<string> = new Set(['health', 'metadata', 'repository']);

const compression: FastifyPluginAsync<{ maxInflatedBytes: number }> = async (app, { maxInflatedBytes }) => {
  // Added before @fastify/compress's own onRoute hook, which reads `compress: false` as "leave alone".
  app.addHook('onRoute', (route) => {
    const area = (route.config as { nimifyArea?: string } | undefined)?.nimifyArea;
    if (route.compress === undefined && area !== undefined && UNCOMPRESSED_AREAS.has(area)) route.compress = false;
  });
  await app.register(compress, { global: true, encodings: RESPONSE_ENCODINGS as ['gzip', 'deflate'], threshold: COMPRESS_THRESHOLD, globalDecompression: false });

  const budget: Budget = { held: 0, max: Math.max(maxInflatedBytes, app.initialConfig.bodyLimit ?? 0) };
  // Callback style: an identity body (nearly every request) costs no promise.
  app.addHook('preParsing', (request, reply, payload, done) => {
    const header = request.headers['content-encoding'];
    if (header === undefined) {
      done(null, payload);
      return;
    }
    const encoding = header.trim().toLowerCase();
    if (encoding === '' || encoding === 'identity') {
      done(null, payload);
      return;
    }
    const inflate = INFLATE[encoding];
    if (inflate === undefined) {
      done(new NimifyError('INVALID_ARGUMENT', `Content-Encoding: expected gzip, deflate or identity, received ${JSON.stringify(header.slice(0, 64))}`));
      return;
    }
    const limit = request.routeOptions.bodyLimit ?? app.initialConfig.bodyLimit ?? 1024 * 1024;
    const inflater = inflate();
    const out = new LimitedInflate(limit, budget);
    // Held until the response is sent (or the connection is gone): the parsed body lives that long.
    reply.raw.once('close', () => out.release());
    payload.on('data', (chunk: Buffer) => {
      out.receivedEncodedLength += chunk.length;
    });
    // Errors of either stage end the body with that error: a corrupt stream is the client's.
    payload.on('error', (err) => out.destroy(err));
    inflater.on('error', (err) => out.destroy(new NimifyError('INVALID_ARGUMENT', `body: not valid ${encoding} data (${err.message})`)));
    payload.pipe(inflater).pipe(out);
    out.on('error', () => {
      inflater.destroy();
      payload.unpipe(inflater);
      payload.resume(); // let the rest of the request be read and dropped
    });
    done(null, out);
  });
};

export default fp(compression, { name: 'nimify-compression', fastify: '5.x' });
