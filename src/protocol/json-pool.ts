/**
 * The worker pool (Piscina) that decodes large JSON inference bodies off the event loop: a
 * 3 MB image tensor as JSON costs ~20–40 ms of parse and conversion, which would stall every
 * other request on the loop. The body's memory is transferred to the worker when the body owns
 * its ArrayBuffer (copied otherwise); the decoded typed arrays are transferred back.
 *
 * The worker script is the compiled dist/protocol/json-worker.js (when running from the
 * TypeScript sources, e.g. under vitest, the built copy is used: `npm test` builds it first).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Piscina } from 'piscina';
import { NimifyError, type ErrorCode } from '../runtime/errors';
import type { WorkerResult } from './json-worker';

function workerFile(): string {
  const candidates = [path.join(__dirname, 'json-worker.js'), path.join(__dirname, '..', '..', 'dist', 'protocol', 'json-worker.js')];
  const found = candidates.find((f) => fs.existsSync(f));
  if (found === undefined) throw new NimifyError('INTERNAL', `JSON decode worker not found (looked for ${candidates.join(', ')}); run npm run build:ts`);
  return found;
}

export class JsonDecodePool {
  #pool: Piscina | null = null;
  #closed = false;

  constructor(readonly maxThreads = Math.max(1, Math.min(4, os.availableParallelism() - 1))) {}

  /** Tasks decoded so far (for tests and metrics). */
  get completed(): number {
    return this.#pool?.completed ?? 0;
  }

  /** Parses `body` (a whole JSON request) in a worker; the returned header holds typed arrays as `data`. */
  async decode(body: Buffer): Promise<Record<string, unknown>> {
    if (this.#closed) throw new NimifyError('DISPOSED', 'server is shutting down');
    this.#pool ??= new Piscina({ filename: workerFile(), maxThreads: this.maxThreads, minThreads: 0, idleTimeout: 30_000 });
    const owns = body.byteOffset === 0 && body.byteLength === body.buffer.byteLength && !(body.buffer instanceof SharedArrayBuffer);
    const task = { body: owns ? new Uint8Array(body.buffer) : new Uint8Array(body) };
    let result: WorkerResult;
    try {
      result = (await this.#pool.run(task, { transferList: [task.body.buffer as ArrayBuffer] })) as WorkerResult;
    } catch (err) {
      // Cloning the parsed header back overflows the stack only for absurdly nested JSON.
      if (err instanceof RangeError) throw new NimifyError('INVALID_ARGUMENT', 'request body: JSON nested too deeply');
      throw err;
    }
    if ('error' in result) throw new NimifyError(result.error.code as ErrorCode, result.error.message);
    return result.header;
  }

  async close(): Promise<void> {
    this.#closed = true;
    await this.#pool?.destroy();
    this.#pool = null;
  }
}
