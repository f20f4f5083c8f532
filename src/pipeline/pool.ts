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
 * The worker script is the compiled dist/pipeline/worker.js (under vitest, running from the
 * sources, the built copy is used: `npm test` builds it first).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as workerThreads from 'node:worker_threads';
import { Piscina } from 'piscina';
import { NimifyError, type ErrorCode } from '../runtime/errors';
import { expectInteger, expectKnownKeys, expectPlainObject } from '../runtime/validate';
import { sharpModule, type ImageSpec } from './image';
import { tokenizersModule, type TextSpec, type TokenTensors } from './text';
import type { Fault, ImageTask, ImageTensor, PadToken, TaskResult, TextTask, TokenizerTask } from './worker';

// Node >= 21 (absent on Node 20, where every such buffer transfers).
const isMarkedAsUntransferable = (workerThreads as { isMarkedAsUntransferable?: (o: unknown) => boolean }).isMarkedAsUntransferable;

function workerFile(): string {
  const candidates = [path.join(__dirname, 'worker.js'), path.join(__dirname, '..', '..', 'dist', 'pipeline', 'worker.js')];
  const found = candidates.find((f) => fs.existsSync(f));
  if (found === undefined) throw new NimifyError('INTERNAL', `preprocessing worker not found (looked for ${candidates.join(', ')}); run npm run build:ts`);
  return found;
}

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
  readonly threads: number;
  readonly maxQueue: number;
  readonly tasksPerThread: number;
  #pool: Piscina | null = null;
  #closed = false;

  constructor(options: PreprocessPoolOptions = {}) {
    const o = checkPreprocessPoolOptions('options', options);
    this.threads = o.threads ?? Math.max(1, os.availableParallelism());
    this.maxQueue = o.maxQueue ?? 256;
    this.tasksPerThread = o.tasksPerThread ?? 2;
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
    // Moved only when the view owns its whole buffer and Node lets it move: on Node >= 21 a
    // buffer whose memory a native library owns (sharp's toBuffer(), a pooled Buffer) is marked
    // untransferable and posting it throws DataCloneError, so it is copied instead.
    const owns = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength && !(bytes.buffer instanceof SharedArrayBuffer) && !isMarkedAsUntransferable?.(bytes.buffer);
    const task: ImageTask = { kind: 'image', bytes: owns ? bytes : new Uint8Array(bytes), spec, ...(fault ? { fault } : {}) };
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

  async #run(task: ImageTask | TextTask | TokenizerTask, transferList: ArrayBuffer[], what: string): Promise<Exclude<TaskResult, { error: unknown }>> {
    if (this.#closed) throw new NimifyError('DISPOSED', 'the preprocessing pool is closed');
    this.#pool ??= new Piscina({ filename: workerFile(), maxThreads: this.threads, minThreads: 0, idleTimeout: 30_000, maxQueue: this.maxQueue, concurrentTasksPerWorker: this.tasksPerThread });
    if (this.maxQueue > 0 && this.#pool.queueSize >= this.maxQueue) {
      throw new NimifyError('QUEUE_FULL', `preprocessing queue full: ${this.#pool.queueSize} tasks are waiting; retry later`);
    }
    let result: TaskResult;
    try {
      result = (await this.#pool.run(task, { transferList })) as TaskResult;
    } catch (err) {
      const msg = (err as Error).message;
      // Piscina's words for a full queue, and for no queue (maxQueue 0) with every worker busy.
      if (/queue is at limit|no task queue available/i.test(msg)) throw new NimifyError('QUEUE_FULL', 'preprocessing queue full; retry later');
      throw new NimifyError('INTERNAL', `${what} preprocessing failed in its worker: ${msg}`, { cause: err });
    }
    if ('error' in result) throw new NimifyError(result.error.code as ErrorCode, result.error.message);
    return result;
  }

  get closed(): boolean {
    return this.#closed;
  }

  async close(): Promise<void> {
    this.#closed = true;
    await this.#pool?.destroy();
    this.#pool = null;
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
