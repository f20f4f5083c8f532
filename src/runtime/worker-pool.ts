/**
 * A bounded worker-thread pool (Piscina underneath): the one wrapper behind the preprocessing
 * pool (src/pipeline/pool.ts) and the JSON decode pool (src/protocol/json-pool.ts).
 *
 * What it owns: the queue bound (tasks accepted at once = capacity + maxQueue; one more is
 * refused at once with QUEUE_FULL, which the server answers 503 + Retry-After), DISPOSED after
 * close(), the worker-side error convention (a task returns `{ error: { code, message } }` for a
 * failure that belongs to its request; a NimifyError cannot cross threads), which buffers may be
 * moved to a worker, and finding the compiled worker script. Errors thrown by Piscina itself (a
 * worker that died, a clone that failed) reach the caller as they are: only the caller knows
 * what they mean for its task.
 *
 * Piscina is required on the first run(), not when this module loads: importing a module that
 * holds a pool costs nothing until the pool is used. Event-loop thread only (the workers are
 * Piscina's).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as workerThreads from 'node:worker_threads';
import type { Piscina } from 'piscina';
import { ERROR_TABLE, NimifyError, type ErrorCode } from './errors';

export interface WorkerPoolOptions {
  /** The compiled worker script, or a function finding it (see workerScript()), called on the first run(). */
  filename: string | (() => string);
  /** What the pool does, for messages ("preprocessing", "JSON decode"). */
  name: string;
  /** Worker threads (≥ 1). */
  threads: number;
  /** Tasks one worker runs at once (≥ 1). */
  tasksPerThread: number;
  /** Tasks that may wait beyond those running (≥ 0); one more is QUEUE_FULL. */
  maxQueue: number;
}

/** What a worker returns for a failure that belongs to its task (its request), not to the pool. */
export interface TaskFault {
  error: { code: string; message: string };
}

// Node >= 21 (absent on Node 20, where every such buffer transfers).
const isMarkedAsUntransferable = (workerThreads as { isMarkedAsUntransferable?: (o: unknown) => boolean }).isMarkedAsUntransferable;

/**
 * Whether `view`'s memory can be moved (transferred) to a worker: the view covers its whole
 * ArrayBuffer, which is not shared and not marked untransferable (Node >= 21 marks memory a
 * native library owns, e.g. sharp's toBuffer() or a pooled Buffer: posting it throws). Otherwise
 * the caller copies.
 */
export function movable(view: ArrayBufferView): boolean {
  const buf = view.buffer;
  return view.byteOffset === 0 && view.byteLength === buf.byteLength && !(buf instanceof SharedArrayBuffer) && !isMarkedAsUntransferable?.(buf);
}

/**
 * The compiled worker script `file` of `layer` (e.g. 'protocol', 'json-worker.js'), next to the
 * caller's module (`dir`, its __dirname) when running compiled, else under dist/ (under vitest,
 * running from the sources: `npm test` builds it first).
 */
export function workerScript(dir: string, layer: string, file: string): string {
  const candidates = [path.join(dir, file), path.join(dir, '..', '..', 'dist', layer, file)];
  const found = candidates.find((f) => fs.existsSync(f));
  if (found === undefined) throw new NimifyError('INTERNAL', `worker script not found (looked for ${candidates.join(', ')}); run npm run build:ts`);
  return found;
}

const isErrorCode = (code: string): code is ErrorCode => Object.prototype.hasOwnProperty.call(ERROR_TABLE, code);

export class WorkerPool {
  readonly name: string;
  readonly threads: number;
  readonly tasksPerThread: number;
  readonly maxQueue: number;
  readonly #filename: string | (() => string);
  #pool: Piscina | null = null;
  /** Tasks accepted and not yet settled (running or waiting). */
  #outstanding = 0;
  #closed = false;

  constructor(o: WorkerPoolOptions) {
    this.#filename = o.filename;
    this.name = o.name;
    this.threads = o.threads;
    this.tasksPerThread = o.tasksPerThread;
    this.maxQueue = o.maxQueue;
  }

  /** Tasks the pool runs at once (threads × tasksPerThread). */
  get capacity(): number {
    return this.threads * this.tasksPerThread;
  }

  /** Tasks finished so far. */
  get completed(): number {
    return this.#pool?.completed ?? 0;
  }

  /** Tasks waiting for a worker now. */
  get queueSize(): number {
    return this.#pool?.queueSize ?? 0;
  }

  /** Tasks accepted and not yet settled (running or waiting). */
  get outstanding(): number {
    return this.#outstanding;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Runs `task` in a worker; the buffers in `transferList` are moved there (detached here).
   * Rejects with DISPOSED after close(), with QUEUE_FULL (at once, the task never queued) when
   * capacity + maxQueue tasks are outstanding, with the worker's NimifyError code for a
   * TaskFault result, and with Piscina's own error otherwise.
   */
  async run<R>(task: unknown, transferList: ArrayBuffer[] = []): Promise<Exclude<R, TaskFault>> {
    if (this.#closed) throw new NimifyError('DISPOSED', `the ${this.name} pool is closed`);
    if (this.#outstanding >= this.capacity + this.maxQueue) {
      throw new NimifyError('QUEUE_FULL', `${this.name} queue full: ${this.#outstanding} tasks accepted (${this.capacity} running, at most ${this.maxQueue} waiting); retry later`);
    }
    if (this.#pool === null) {
      const { Piscina: P } = require('piscina') as typeof import('piscina');
      const filename = typeof this.#filename === 'string' ? this.#filename : this.#filename();
      this.#pool = new P({ filename, maxThreads: this.threads, minThreads: 0, idleTimeout: 30_000, concurrentTasksPerWorker: this.tasksPerThread });
    }
    this.#outstanding++;
    let result: R;
    try {
      result = (await this.#pool.run(task, { transferList })) as R;
    } finally {
      this.#outstanding--;
    }
    if (typeof result === 'object' && result !== null && 'error' in result) {
      const { code, message } = (result as TaskFault).error;
      throw new NimifyError(isErrorCode(code) ? code : 'INTERNAL', message);
    }
    return result as Exclude<R, TaskFault>;
  }

  /** Refuses new tasks and stops the workers (tasks still running are rejected by Piscina). */
  async close(): Promise<void> {
    this.#closed = true;
    const pool = this.#pool;
    this.#pool = null;
    await pool?.destroy();
  }
}
