/**
 * POST /v2/models/{m}[/versions/{v}]/infer — the hot path.
 *
 * Body parsing is this context's own (any content type, read as one Buffer): without the
 * Inference-Header-Content-Length header the body is JSON; with it, the first N bytes are the JSON
 * header and the rest are binary tensors, which the codec views in place; N = 0 is a raw binary
 * request. JSON goes through parseInferJson (numeric `data` arrays read natively; `__proto__` /
 * `constructor.prototype` keys are refused). The header then passes the route schema like any JSON body.
 *
 * Order of refusals, cheapest first, before the body is read (onRequest: admission.ts):
 * shedding (event-loop delay, heap, concurrency) → model resolution (404 / 503 not ready) →
 * circuit breaker → the model's queue depth; then the JSON pool's queue bound (503 QUEUE_FULL)
 * and decoding (400); then the native scheduler's own admission (QUEUE_FULL by count, or by the
 * predicted wait against the request's deadline: Retry-After from that wait, errors.ts). Every
 * request reaches the scheduler with a deadline (the request's `timeout`, else the model's
 * timeoutMs, else the server's inferTimeoutMs) and with a signal that cancels it when its client
 * hangs up. Event-loop thread only.
 */
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { NimifyError } from '../../runtime/errors';
import { isPlainObject } from '../../runtime/validate';
import { parseInferJson } from '../../protocol/infer-json';
import { decodeInferRequest } from '../../protocol/request';
import { encodeInferResponse, type EncodedResponse } from '../../protocol/response';
import { JsonDecodePool } from '../../protocol/json-pool';
import { inferAdmitted, registerAdmission, registerTracing, type Admitted, type InferOutcome } from '../admission';
import type { NimifyContext } from '../context';
import { formatSchemaErrors, inferValidatorCompiler } from '../validation';
import { SPAN } from '../tracing';
import sheddingPlugin from '../plugins/shedding';
import { errorResponses, inferRequestBody, inferResponse, modelParams } from '../schemas';

const BINARY = Symbol('nimify.binary');
const RAW = Symbol('nimify.raw');

export type InferBody = Record<string, unknown> & { [BINARY]?: Buffer; [RAW]?: boolean };
type Params = { model_name: string; model_version?: string };


/** Splits the body into the JSON header and the binary part per Inference-Header-Content-Length. */
export function parseInferBody(headerLength: string | string[] | undefined, body: Buffer): InferBody {
  if (headerLength === undefined) {
    if (body.length === 0) throw new NimifyError('INVALID_ARGUMENT', 'request body: empty; expected a JSON inference request');
    const json = parseInferJson('request body', body);
    if (!isPlainObject(json)) throw new NimifyError('INVALID_ARGUMENT', 'request body: expected a JSON object with `inputs`');
    return json as InferBody;
  }
  const text = Array.isArray(headerLength) ? headerLength[0] : headerLength;
  if (!/^[0-9]{1,15}$/.test(text)) throw new NimifyError('INVALID_ARGUMENT', `Inference-Header-Content-Length: expected a non-negative integer, received ${JSON.stringify(text.slice(0, 32))}`);
  const n = Number(text);
  if (n > body.length) throw new NimifyError('INVALID_ARGUMENT', `Inference-Header-Content-Length: ${n} is larger than the body (${body.length} bytes)`);
  if (n === 0) return { inputs: [], [RAW]: true, [BINARY]: body };
  const json = parseInferJson('request body', body, n);
  if (!isPlainObject(json)) throw new NimifyError('INVALID_ARGUMENT', 'request body: the JSON header must be an object with `inputs`');
  const header = json as InferBody;
  header[BINARY] = body.subarray(n);
  return header;
}

/**
 * Runs an admitted request whose body was parsed and validated, and encodes its answer: the
 * inference step shared with gRPC (inferAdmitted: decoding for the version it runs on, the
 * deadline, the cancellation), then the response body. Ends the admission either way (success once
 * encoded, a failure with its error, which is rethrown). Shared by the Fastify route below and
 * the fast lane (fast-lane.ts). Event-loop thread only.
 */
export function runInfer(ctx: NimifyContext, admitted: Admitted, body: InferBody): Promise<EncodedResponse> {
  // inferAdmitted() fails the admission when the model's step fails; encode() covers encoding.
  // Shared arrays (arrays.ts): the request's tensors go only to infer(), called in this same step.
  return inferAdmitted(ctx, admitted, (wire) => decodeInferRequest(wire, body, body[BINARY] ?? null, body[RAW] === true, true)).then((outcome) => encode(admitted, outcome));
}

/** The answer to an inference that ran; ends its admission (success, or the encoding's failure). */
function encode(admitted: Admitted, { v, decoded, results }: InferOutcome): EncodedResponse {
  const { admission, trace } = admitted;
  try {
    const encodeStart = trace === null ? 0 : performance.now();
    const encoded = encodeInferResponse({ modelName: v.name, modelVersion: v.version, id: decoded.id, parameters: decoded.parameters }, results, decoded.outputs, decoded.binary);
    if (trace !== null) trace.child(SPAN.encode, encodeStart);
    admission.end();
    return encoded;
  } catch (err) {
    admission.fail(err);
    throw err;
  }
}

const infer: FastifyPluginAsync = async (app) => {
  const ctx = app.nimify;
  const { options } = ctx;

  const offloadBytes = options.jsonWorkerBytes;
  const pool = offloadBytes > 0 ? new JsonDecodePool(undefined, options.jsonWorkerMaxQueue, options.jsonWorkerMaxQueueBytes) : null;
  ctx.jsonPool = pool;
  if (pool !== null) app.addHook('onClose', () => pool.close());
  app.removeAllContentTypeParsers();
  // A JSON body announced as large holds a place in the decode pool from admission (before it is
  // read) until it reaches the pool, where that place is its own: a full pool refuses it with
  // QUEUE_FULL while it is still on the wire, never after. A chunked body (no length) must fit
  // when it arrives, beside the places held. A place is held while its body arrives, so slow
  // uploads can hold every place until requestTimeoutMs answers them 408.
  const POOL_SLOT = Symbol('nimify.jsonPoolSlot');
  // The bytes the request's place holds (its Content-Length), while it holds one.
  type Slotted = FastifyRequest & { [POOL_SLOT]?: number };
  const releaseSlot = (request: Slotted) => {
    const bytes = request[POOL_SLOT];
    if (bytes === undefined) return;
    request[POOL_SLOT] = undefined;
    pool!.release(bytes);
  };
  const reserve = pool === null ? undefined : (request: FastifyRequest, reply: FastifyReply) => {
    if (request.headers['inference-header-content-length'] !== undefined) return;
    const length = Number(request.headers['content-length']);
    if (!(length >= offloadBytes)) return;
    pool.reserve(length);
    (request as Slotted)[POOL_SLOT] = length;
    reply.raw.once('close', () => releaseSlot(request as Slotted));
  };
  app.addContentTypeParser('*', { parseAs: 'buffer' }, async (request: FastifyRequest, raw: Buffer | string) => {
    const body = raw as Buffer;
    const headerLength = request.headers['inference-header-content-length'];
    const reserved = (request as Slotted)[POOL_SLOT] !== undefined;
    releaseSlot(request as Slotted);
    // Large JSON bodies are parsed and converted to typed arrays off the event loop.
    if (pool !== null && headerLength === undefined && body.length >= offloadBytes) return pool.decode(body, reserved);
    return parseInferBody(headerLength, body);
  });

  registerTracing(app, ctx);
  await app.register(sheddingPlugin, { ctx });
  registerAdmission(app, ctx, { reserve });

  const handler = (request: FastifyRequest<{ Params: Params; Body: InferBody }>, reply: FastifyReply): Promise<unknown> =>
    runInfer(ctx, request.nimifyAdmitted!, request.body).then((encoded) => {
      if (encoded.headerLength !== undefined) {
        reply.header('inference-header-content-length', String(encoded.headerLength)).type('application/octet-stream');
      } else {
        reply.type('application/json');
      }
      return reply.send(encoded.body);
    });

  const schema = {
    summary: 'Run an inference (JSON, or the binary tensor data extension)',
    tags: ['inference'],
    params: modelParams,
    headers: { type: 'object', properties: { 'inference-header-content-length': { type: 'string', description: 'Byte length of the JSON header when binary tensors follow it (0 = raw binary body)' } } },
    body: inferRequestBody,
    response: { 200: inferResponse, ...errorResponses },
  };
  const config = { nimifyArea: 'inference' as const };
  // The body is checked by the validator the fast lane uses too, and refused in the same words.
  const route = { config, schema, validatorCompiler: inferValidatorCompiler, schemaErrorFormatter: formatSchemaErrors };
  app.post<{ Params: Params; Body: InferBody }>('/v2/models/:model_name/infer', route, handler);
  app.post<{ Params: Params; Body: InferBody }>('/v2/models/:model_name/versions/:model_version/infer', route, handler);
};

export default infer;
