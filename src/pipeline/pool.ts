/**
 * The preprocessing pool: a Piscina pool whose workers decode images and build input tensors,
 * and tokenize texts (worker.ts), so that neither runs on the event loop. A request's bytes are moved
 * into the worker (transferred when the Uint8Array owns its whole ArrayBuffer, which is then
 * detached; copied otherwise), and the tensor is moved back.
 *
 * Failures stay with their request: bad bytes → INVALID_ARGUMENT (400); a task that throws →
 * INTERNAL naming the preprocessing step; a worker that dies → INTERNAL for its task, and Piscina
 * starts a new worker for the next ones. A full queue → QUEUE_FULL (503).
 *
 * The queue bound, transfers and the worker's error convention are the shared WorkerPool's
 * (src/runtime/worker-pool.ts); the worker script is the compiled dist/pipeline/worker.js.
 */
import * as os from 'node:os';
import { NimifyError } from '../runtime/errors';
import { expectInteger, expectKnownKeys, expectPlainObject } from '../runtime/validate';
import { movable, WorkerPool, workerScript } from '../runtime/worker-pool';
import { sharpModule, type ImageSpec } from './image';
import { tokenizersModule, type TextSpec, type TokenTensors } from './text';
import type { Fault, ImageTask, ImageTensor, PadToken, TaskResult, TextTask, TokenizerTask } from './worker';

export interface PreprocessPoolOptions {
  /** Worker threads (default: the number of cores). */
  threads?: number;
  /** Tasks that may wait for a worker; beyond it run() rejects with QUEUE_FULL (default 256). */
  maxQueue?: number;
  /**
   * Tasks one worker runs at once (default 2). Decoding is asynchronous inside a worker (libvips
   * runs on the libuv thread pool), so a worker with one task is mostly waiting.
   */
  tasksPerThread?: number;
}

/** Validates pool options; `where` names them in errors. */
export function checkPreprocessPoolOptions(where: string, options: unknown): PreprocessPoolOptions {
  const o = expectPlainObject(where, options);
  expectKnownKeys(where, o, ['threads', 'maxQueue', 'tasksPerThread']);
  const out: PreprocessPoolOptions = {};
  if (o.threads !== undefined) out.threads = expectInteger(`${where}.threads`, o.threads, 1, 256);
  if (o.maxQueue !== undefined) out.maxQueue = expectInteger(`${where}.maxQueue`, o.maxQueue, 0, 1_000_000);
  if (o.tasksPerThread !== undefined) out.tasksPerThread = expectInteger(`${where}.tasksPerThread`, o.tasksPerThread, 1, 64);
  return out;
}

export class PreprocessPool {
  readonly #pool: WorkerPool;

  constructor(options: PreprocessPoolOptions = {}) {
    const o = checkPreprocessPoolOptions('options', options);
    this.#pool = new WorkerPool({
      filename: () => workerScript(__dirname, 'pipeline', 'worker.js'),
      name: 'preprocessing',
      threads: o.threads ?? Math.max(1, os.availableParallelism()),
      tasksPerThread: o.tasksPerThread ?? 2,
      maxQueue: o.maxQueue ?? 256,
    });
  }

  get threads(): number {
    return this.#pool.threads;
  }

  get tasksPerThread(): number {
    return this.#pool.tasksPerThread;
  }

  get maxQueue(): number {
    return this.#pool.maxQueue;
  }

  /** Tasks the pool runs at once (threads × tasksPerThread). */
  get capacity(): number {
    return this.#pool.capacity;
  }

  /** Tasks finished so far. */
  get completed(): number {
    return this.#pool.completed;
  }

  /** Tasks waiting for a worker now. */
  get queueSize(): number {
    return this.#pool.queueSize;
  }

  /**
   * @internal (model.predict() and the predict route call it with resolved specs.) Decodes
   * `bytes` per `spec` in a worker. `bytes` is moved: when it owns its buffer, that buffer is
   * detached. `fault` is a test hook.
   */
  async image(bytes: Uint8Array, spec: ImageSpec, fault?: Fault): Promise<ImageTensor> {
    if (!(bytes instanceof Uint8Array)) throw new NimifyError('INVALID_ARGUMENT', `image: expected a Uint8Array or Buffer of encoded image bytes, received ${typeof bytes}`);
    if (bytes.byteLength === 0) throw new NimifyError('INVALID_ARGUMENT', 'image: the body is empty; expected JPEG, PNG or WebP bytes');
    // sharp's native libraries must be loaded by the main thread before any worker loads them
    // (glibc: a worker's exit would otherwise unload them under other workers' feet). sharp is an
    // optional peer: without it this is UNSUPPORTED naming `npm install sharp`.
    sharpModule();
    const task: ImageTask = { kind: 'image', bytes: movable(bytes) ? bytes : new Uint8Array(bytes), spec, ...(fault ? { fault } : {}) };
    return (await this.#run(task, [task.bytes.buffer as ArrayBuffer], 'image')) as ImageTensor;
  }

  /**
   * @internal (as image().) Tokenizes `texts` (row i paired with `pairs[i]` when given) per
   * `spec` in a worker: padded [texts.length, length] token tensors. The strings are copied to
   * the worker (they are small). `where` names the texts in errors (`where[i]`).
   */
  async text(texts: string[], pairs: (string | null)[] | null, spec: TextSpec, where = 'texts', fault?: Fault): Promise<TokenTensors> {
    // The tokenizers addon is loaded by the main thread first, for the reason sharp is (image()).
    tokenizersModule();
    const task: TextTask = { kind: 'text', texts, pairs, spec, where, ...(fault ? { fault } : {}) };
    return (await this.#run(task, [], 'text')) as TokenTensors;
  }

  /**
   * @internal (Pipeline.resolve calls it.) Loads the tokenizer.json `file` in a worker (the
   * parse can take a while for large vocabularies) and finds its padding token; errors name
   * `where` (the config section).
   */
  async inspectTokenizer(where: string, file: string, padToken: string | null): Promise<PadToken> {
    tokenizersModule();
    const task: TokenizerTask = { kind: 'tokenizer', file, padToken, where };
    return (await this.#run(task, [], 'tokenizer')) as PadToken;
  }

  /** A task's own failures (QUEUE_FULL, DISPOSED, its TaskError) pass through; a failed worker is INTERNAL naming the step. */
  async #run(task: ImageTask | TextTask | TokenizerTask, transferList: ArrayBuffer[], what: string): Promise<Exclude<TaskResult, { error: unknown }>> {
    try {
      return await this.#pool.run<TaskResult>(task, transferList);
    } catch (err) {
      if (err instanceof NimifyError) throw err;
      throw new NimifyError('INTERNAL', `${what} preprocessing failed in its worker: ${(err as Error).message}`, { cause: err });
    }
  }

  get closed(): boolean {
    return this.#pool.closed;
  }

  async close(): Promise<void> {
    await this.#pool.close();
  }
}

let shared: PreprocessPool | null = null;

/**
 * The process's default pool (one thread per core), made on first use: what model.predict()
 * uses unless given a pool. Idle workers do not keep the process alive.
 */
export function sharedPreprocessPool(): PreprocessPool {
  if (shared === null || shared.closed) shared = new PreprocessPool();
  return shared;
}
