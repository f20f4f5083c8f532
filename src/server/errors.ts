/**
 * Every error a nimify route answers with goes through toHttpError(): the body is always
 * `{"error": message, "code": CODE}` (the Open Inference Protocol's error shape plus nimify's
 * stable code), the status comes from ERROR_TABLE, and 503/429 answers carry Retry-After.
 * Fastify's own errors (bad JSON, schema validation, body too large) are mapped to the same table;
 * anything unexpected is a 500 INTERNAL whose details go to the log, not to the client.
 */
import { ERROR_TABLE, NimifyError, type ErrorCode } from '../runtime/errors';

export interface HttpError {
  status: number;
  code: ErrorCode;
  message: string;
  retryAfterSeconds: number | undefined;
  /** A genuine fault to log at error level. */
  internal: boolean;
}

const RETRY_CODES: ReadonlySet<ErrorCode> = new Set(['QUEUE_FULL', 'OVERLOADED', 'CIRCUIT_OPEN', 'NOT_READY', 'RATE_LIMITED', 'DISPOSED']);

export function toHttpError(err: unknown): HttpError {
  if (err instanceof NimifyError) {
    const status = ERROR_TABLE[err.code].httpStatus;
    const explicit = (err as NimifyError & { retryAfterSeconds?: number }).retryAfterSeconds;
    return {
      status,
      code: err.code,
      message: err.message,
      retryAfterSeconds: explicit ?? (RETRY_CODES.has(err.code) ? 1 : undefined),
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
