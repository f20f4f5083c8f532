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
 * Responses: @fastify/compress compresses a response when `Accept-Encoding` asks for gzip or
 * deflate and the body is over 1 KiB (Triton's two; never br or zstd, which its clients cannot
 * read).
 *
 * Threads: all on the event loop; zlib runs on libuv's pool.
 */
import { Transform, type TransformCallback } from 'node:stream';
import * as zlib from 'node:zlib';
import compress from '@fastify/compress';
import type { FastifyPluginAsync } from 'fastify';
import fp from 'fastify-plugin';
import { NimifyError } from '../../runtime/errors';

/** Request encodings Triton's clients send, and what inflates each. */
const INFLATE: Record<string, () => zlib.Gunzip | zlib.Inflate> = {
  gzip: () => zlib.createGunzip(),
  'x-gzip': () => zlib.createGunzip(),
  deflate: () => zlib.createInflate(),
};

/** Counts inflated bytes and fails once they pass `limit`. */
class LimitedInflate extends Transform {
  /** Compressed bytes read so far: Fastify compares them with Content-Length. */
  receivedEncodedLength = 0;
  #inflated = 0;

  constructor(readonly limit: number) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    this.#inflated += chunk.length;
    if (this.#inflated > this.limit) {
      done(new NimifyError('PAYLOAD_TOO_LARGE', `body: the decompressed body is larger than the server accepts (bodyLimit ${this.limit} bytes)`));
      return;
    }
    done(null, chunk);
  }
}

const compression: FastifyPluginAsync = async (app) => {
  await app.register(compress, { global: true, encodings: ['gzip', 'deflate'], globalDecompression: false });

  app.addHook('preParsing', async (request, _reply, payload) => {
    const header = request.headers['content-encoding'];
    if (header === undefined) return payload;
    const encoding = header.trim().toLowerCase();
    if (encoding === '' || encoding === 'identity') return payload;
    const inflate = INFLATE[encoding];
    if (inflate === undefined) {
      throw new NimifyError('INVALID_ARGUMENT', `Content-Encoding: expected gzip, deflate or identity, received ${JSON.stringify(header.slice(0, 64))}`);
    }
    const limit = request.routeOptions.bodyLimit ?? app.initialConfig.bodyLimit ?? 1024 * 1024;
    const inflater = inflate();
    const out = new LimitedInflate(limit);
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
    return out;
  });
};

export default fp(compression, { name: 'nimify-compression', fastify: '5.x' });
