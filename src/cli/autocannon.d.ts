/**
 * The part of autocannon (which ships no types) that `nimify bench` uses over HTTP
 * (src/cli/bench-http.ts): a closed loop of `connections` keep-alive clients cycling `requests`.
 */
declare module 'autocannon' {
  import type { EventEmitter } from 'node:events';

  namespace autocannon {
    interface Request {
      method?: string;
      path?: string;
      headers?: Record<string, string>;
      body?: string | Buffer;
    }
    interface Options {
      url: string;
      connections?: number;
      /** Seconds (fractions allowed). */
      duration?: number;
      /** Seconds before a request times out. */
      timeout?: number;
      requests?: Request[];
      headers?: Record<string, string>;
    }
    interface Result {
      requests: { total: number };
      non2xx: number;
      errors: number;
      timeouts: number;
      resets: number;
    }
    interface Instance extends EventEmitter {
      stop(): void;
      on(event: 'response', listener: (client: unknown, statusCode: number, resBytes: number, responseTimeMs: number) => void): this;
      on(event: 'reqError', listener: (err: Error) => void): this;
      on(event: string, listener: (...args: unknown[]) => void): this;
    }
  }

  function autocannon(options: autocannon.Options, callback: (err: Error | null, result: autocannon.Result) => void): autocannon.Instance;
  export = autocannon;
}
