/**
 * Every error a nimify route answers with goes through toHttpError(): the body is always
 * `{"error": message, "code": CODE}` (the Open Inference Protocol's error shape plus nimify's
 * stable code), the status comes from ERROR_TABLE, and 503/429 answers carry Retry-After.
 * Fastify's own errors (bad JSON, schema validation, body too large) are mapped to the same table;
 * anything unexpected is a 500 INTERNAL whose details go to the log, not to the client.
 *
 * Retry-After has one source: a refusal made by the server (shedding, breaker, rate limit) is a
 * RetryableError carrying its seconds (made with retryLater()); a QUEUE_FULL from the native
 * scheduler carries its predicted queue wait as `retryAfterMs` (on the error or, once wrapped by
 * fromNative(), on its cause); any other error of a RETRY_CODES code gets 1 s.
 */
import { ERROR_TABLE, NimifyError, type ErrorCode, type GrpcStatusName } from '../runtime/errors';

export interface HttpError {
  status: number;
  code: ErrorCode;
  message: string;
  retryAfterSeconds: number | undefined;
  /** A genuine fault to log at error level. */
  internal: boolean;
}

const RETRY_CODES: ReadonlySet<ErrorCode> = new Set(['QUEUE_FULL', 'OVERLOADED', 'CIRCUIT_OPEN', 'NOT_READY', 'RATE_LIMITED', 'DISPOSED']);
/** Retry-After of a RETRY_CODES error that says nothing better. */
const DEFAULT_RETRY_AFTER_S = 1;

/** A refusal the client should retry after `retryAfterSeconds` (the Retry-After header). */
export class RetryableError extends NimifyError {
  constructor(code: ErrorCode, message: string, readonly retryAfterSeconds: number) {
    super(code, message);
  }
}

/** Makes the refusal `code` with Retry-After `seconds` (an integer ≥ 0; a time in ms is rounded up by secondsFromMs()). */
export function retryLater(code: ErrorCode, message: string, seconds: number): RetryableError {
  return new RetryableError(code, message, seconds);
}

/** Retry-After for a wait of `ms`: whole seconds, rounded up, at least 1. */
export function secondsFromMs(ms: number): number {
  return Math.max(1, Math.ceil(ms / 1000));
}

/** The predicted wait the native scheduler put on a QUEUE_FULL (own property, or its cause's once wrapped). */
function nativeRetryAfterMs(err: NimifyError): number | undefined {
  const own = (err as { retryAfterMs?: unknown }).retryAfterMs;
  const ms = own ?? (err.cause as { retryAfterMs?: unknown } | undefined)?.retryAfterMs;
  return typeof ms === 'number' && Number.isFinite(ms) && ms >= 0 ? ms : undefined;
}

/** The Retry-After seconds `err` answers with, or undefined for an error that is not worth retrying. */
export function retryAfterOf(err: NimifyError): number | undefined {
  if (err instanceof RetryableError) return err.retryAfterSeconds;
  if (!RETRY_CODES.has(err.code)) return undefined;
  const ms = nativeRetryAfterMs(err);
  return ms === undefined ? DEFAULT_RETRY_AFTER_S : secondsFromMs(ms);
}

export function toHttpError(err: unknown): HttpError {
  if (err instanceof NimifyError) {
    const status = ERROR_TABLE[err.code].httpStatus;
    return {
      status,
      code: err.code,
      message: err.message,
      retryAfterSeconds: retryAfterOf(err),
      internal: status >= 500 && (err.code === 'INTERNAL' || err.code === 'RUNTIME_ERROR'),
    };
  }
  const e = err as { statusCode?: number; code?: string; message?: string; validation?: unknown; validationContext?: string };
  if (e && e.validation) {
    return { status: 400, code: 'INVALID_ARGUMENT', message: `${e.validationContext ?? 'request'}: ${e.message?.replace(/^(body|params|querystring|headers)\/?\s*/, '')}`, retryAfterSeconds: undefined, internal: false };
  }
  if (e && e.statusCode === 413) return { status: 413, code: 'PAYLOAD_TOO_LARGE', message: e.message ?? 'request body too large', retryAfterSeconds: undefined, internal: false };
  if (e && e.statusCode === 429) return { status: 429, code: 'RATE_LIMITED', message: e.message ?? 'rate limit exceeded', retryAfterSeconds: undefined, internal: false };
  if (e && typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
    return { status: 400, code: 'INVALID_ARGUMENT', message: e.message ?? 'bad request', retryAfterSeconds: undefined, internal: false };
  }
  if (err instanceof SyntaxError) return { status: 400, code: 'INVALID_ARGUMENT', message: `request body: ${err.message}`, retryAfterSeconds: undefined, internal: false };
  return { status: 500, code: 'INTERNAL', message: 'internal server error (see the server log)', retryAfterSeconds: undefined, internal: true };
}

export interface GrpcError {
  /** ERROR_TABLE's gRPC status name for `code` (the gRPC server turns it into grpc-js's number). */
  status: GrpcStatusName;
  code: ErrorCode;
  message: string;
  retryAfterSeconds: number | undefined;
  internal: boolean;
}

/** The gRPC form of toHttpError(): the same code, message and Retry-After, the status from the same table row. */
export function toGrpcError(err: unknown): GrpcError {
  const h = toHttpError(err);
  return { status: ERROR_TABLE[h.code].grpcStatus, code: h.code, message: h.message, retryAfterSeconds: h.retryAfterSeconds, internal: h.internal };
}
