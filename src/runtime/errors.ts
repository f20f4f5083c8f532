/**
 * nimify's one error vocabulary: every failure a user can see is a NimifyError with a stable
 * `code`. The table below is the single mapping code → category → HTTP status and gRPC status;
 * the servers (a later layer: HTTP src/server/errors.ts, gRPC src/server/grpc/) map errors
 * through it and nowhere else.
 *
 * gRPC statuses follow Triton's own mapping where it has one (invalid argument, not found,
 * unavailable — queue full included —, unsupported → UNIMPLEMENTED, cancelled, internal) and
 * gRPC's conventions otherwise (missing key → UNAUTHENTICATED, rate limit and too-large messages
 * → RESOURCE_EXHAUSTED, timeout → DEADLINE_EXCEEDED). Names, not numbers, so that this layer
 * needs no gRPC library; the gRPC server turns them into @grpc/grpc-js `status` values.
 */

export type ErrorCategory = 'client' | 'auth' | 'not-found' | 'unavailable' | 'limited' | 'timeout' | 'aborted' | 'internal';

/** gRPC status code names (google.rpc.Code) the table uses. */
export type GrpcStatusName = 'INVALID_ARGUMENT' | 'NOT_FOUND' | 'UNIMPLEMENTED' | 'INTERNAL' | 'UNAVAILABLE' | 'CANCELLED' | 'DEADLINE_EXCEEDED' | 'UNAUTHENTICATED' | 'RESOURCE_EXHAUSTED';

export const ERROR_TABLE = {
  INVALID_ARGUMENT: { category: 'client', httpStatus: 400, grpcStatus: 'INVALID_ARGUMENT', description: 'An argument, option or tensor is malformed or does not match the model.' },
  NOT_FOUND: { category: 'not-found', httpStatus: 404, grpcStatus: 'NOT_FOUND', description: 'A model file, input or output name does not exist.' },
  INVALID_MODEL: { category: 'client', httpStatus: 400, grpcStatus: 'INVALID_ARGUMENT', description: 'The bytes or file are not a model ONNX Runtime can load.' },
  UNSUPPORTED: { category: 'client', httpStatus: 400, grpcStatus: 'UNIMPLEMENTED', description: 'The request is well-formed but this build or model cannot serve it (e.g. an execution provider that is not available).' },
  RUNTIME_ERROR: { category: 'internal', httpStatus: 500, grpcStatus: 'INTERNAL', description: 'ONNX Runtime failed while running the model.' },
  RUNTIME_UNAVAILABLE: { category: 'unavailable', httpStatus: 503, grpcStatus: 'UNAVAILABLE', description: 'The ONNX Runtime shared library (or the nimify addon) could not be loaded.' },
  ABORTED: { category: 'aborted', httpStatus: 499, grpcStatus: 'CANCELLED', description: 'The caller aborted the request (AbortSignal).' },
  TIMEOUT: { category: 'timeout', httpStatus: 504, grpcStatus: 'DEADLINE_EXCEEDED', description: 'The request exceeded its timeoutMs; the run was terminated.' },
  DISPOSED: { category: 'unavailable', httpStatus: 503, grpcStatus: 'UNAVAILABLE', description: 'The model was disposed.' },
  QUEUE_FULL: { category: 'unavailable', httpStatus: 503, grpcStatus: 'UNAVAILABLE', description: "The model's request queue is full (batching.maxQueueSize); retry later." },
  BUFFER_DETACHED: { category: 'client', httpStatus: 400, grpcStatus: 'INVALID_ARGUMENT', description: 'A buffer passed to infer() (an input or a supplied output) or to loadModel() was transferred or detached while the call was in flight; its result was discarded.' },
  EP_UNAVAILABLE: { category: 'unavailable', httpStatus: 503, grpcStatus: 'UNAVAILABLE', description: 'An execution provider the model requires (executionProviders with required: true) cannot be used here: its library is missing, no device, or not built in; the message lists what was tried.' },
  NOT_READY: { category: 'unavailable', httpStatus: 503, grpcStatus: 'UNAVAILABLE', description: 'The model (or server) is loading, unloading or failed to load; retry later.' },
  UNAUTHORIZED: { category: 'auth', httpStatus: 401, grpcStatus: 'UNAUTHENTICATED', description: 'A route that needs an API key was called without a valid `Authorization: Bearer <key>`.' },
  RATE_LIMITED: { category: 'limited', httpStatus: 429, grpcStatus: 'RESOURCE_EXHAUSTED', description: 'Too many requests from this client or API key in the current window; retry after Retry-After seconds.' },
  OVERLOADED: { category: 'unavailable', httpStatus: 503, grpcStatus: 'UNAVAILABLE', description: 'The server is shedding load (event-loop delay, memory, concurrency or queue depth over its limit); retry after Retry-After seconds.' },
  CIRCUIT_OPEN: { category: 'unavailable', httpStatus: 503, grpcStatus: 'UNAVAILABLE', description: "The model's circuit breaker is open after repeated failures; retry after Retry-After seconds." },
  PAYLOAD_TOO_LARGE: { category: 'client', httpStatus: 413, grpcStatus: 'RESOURCE_EXHAUSTED', description: 'The request body is larger than the server accepts (bodyLimit).' },
  INTERNAL: { category: 'internal', httpStatus: 500, grpcStatus: 'INTERNAL', description: 'A bug in nimify.' },
} as const satisfies Record<string, { category: ErrorCategory; httpStatus: number; grpcStatus: GrpcStatusName; description: string }>;

export type ErrorCode = keyof typeof ERROR_TABLE;

export class NimifyError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'NimifyError';
    this.code = code;
  }

  get category(): ErrorCategory {
    return ERROR_TABLE[this.code].category;
  }

  get httpStatus(): number {
    return ERROR_TABLE[this.code].httpStatus;
  }

  toJSON(): { code: ErrorCode; message: string } {
    return { code: this.code, message: this.message };
  }
}

function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && Object.prototype.hasOwnProperty.call(ERROR_TABLE, code);
}

/** Turns an error thrown by the addon (an Error with a `code` property) into a NimifyError. */
export function fromNative(err: unknown): NimifyError {
  if (err instanceof NimifyError) return err;
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    const out = new NimifyError(isErrorCode(code) ? code : 'INTERNAL', err.message, { cause: err });
    // QUEUE_FULL from the scheduler: its predicted queue wait, for Retry-After (native/scheduler.h).
    const retryAfterMs = (err as { retryAfterMs?: unknown }).retryAfterMs;
    if (typeof retryAfterMs === 'number') (out as NimifyError & { retryAfterMs?: number }).retryAfterMs = retryAfterMs;
    return out;
  }
  return new NimifyError('INTERNAL', String(err));
}
