/**
 * request.log without a pino child per request. Fastify binds every request's logger to its id
 * with logger.child({ reqId }), which serialises the bindings at once (1.8 % of a CPU profile of
 * `nimify serve` under 64 connections on the 2-core VM), while nimify's requests log only when
 * they fail or with --log-requests. This logger makes that child on its first enabled call, so a request that
 * logs nothing pays for nothing, and one that logs gets the same lines as before (the child
 * carries the same bindings and options). Event-loop thread only.
 */
import type { FastifyBaseLogger } from 'fastify';
import type { FastifyChildLoggerFactory } from 'fastify/types/logger';

type Level = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace';
type Parent = FastifyBaseLogger & { isLevelEnabled?: (level: string) => boolean };

export class RequestLog {
  #child: FastifyBaseLogger | null = null;
  readonly #parent: Parent;
  readonly #bindings: Record<string, unknown>;
  readonly #options: Record<string, unknown>;

  constructor(parent: FastifyBaseLogger, bindings: Record<string, unknown>, options: Record<string, unknown>) {
    this.#parent = parent as Parent;
    this.#bindings = bindings;
    this.#options = options;
  }

  /** The pino child Fastify would have made, made now. */
  #real(): FastifyBaseLogger {
    return (this.#child ??= this.#parent.child(this.#bindings, this.#options));
  }

  #log(level: Level, args: unknown[]): void {
    // Without isLevelEnabled (a logger that is not pino), every call goes to the child.
    if (this.#child === null && this.#parent.isLevelEnabled?.(level) === false) return;
    (this.#real()[level] as (...a: unknown[]) => void)(...args);
  }

  get level(): string {
    return this.#child?.level ?? this.#parent.level;
  }

  set level(level: string) {
    this.#real().level = level;
  }

  fatal(...args: unknown[]): void {
    this.#log('fatal', args);
  }

  error(...args: unknown[]): void {
    this.#log('error', args);
  }

  warn(...args: unknown[]): void {
    this.#log('warn', args);
  }

  info(...args: unknown[]): void {
    this.#log('info', args);
  }

  debug(...args: unknown[]): void {
    this.#log('debug', args);
  }

  trace(...args: unknown[]): void {
    this.#log('trace', args);
  }

  silent(..._args: unknown[]): void {}

  child(bindings: Record<string, unknown>, options?: Record<string, unknown>): FastifyBaseLogger {
    return this.#real().child(bindings, options);
  }
}

/** Fastify's childLoggerFactory: a RequestLog when the route sets no level of its own, else pino's child at once. */
export const requestLogFactory: FastifyChildLoggerFactory = (logger, bindings, options) => {
  if (options.level !== undefined) return logger.child(bindings, options);
  return new RequestLog(logger, bindings, options as Record<string, unknown>) as unknown as FastifyBaseLogger;
};
