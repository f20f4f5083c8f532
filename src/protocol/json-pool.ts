/**
 * The worker pool that decodes large JSON inference bodies off the event loop: a 3 MB image
 * tensor as JSON costs ~20–40 ms of parse and conversion, which would stall every other request
 * on the loop. The body's memory is moved to the worker when the body owns its ArrayBuffer
 * (copied otherwise); the decoded typed arrays are moved back. The queue is bounded (maxQueue
 * bodies waiting beyond those being decoded; one more is QUEUE_FULL, 503 + Retry-After): each
 * waiting body is held in memory, up to the server's bodyLimit.
 *
 * The worker script is the compiled dist/protocol/json-worker.js (see workerScript()).
 */
import * as os from 'node:os';
import { NimifyError } from '../runtime/errors';
import { expectInteger } from '../runtime/validate';
import { movable, WorkerPool, workerScript } from '../runtime/worker-pool';
import type { WorkerResult } from './json-worker';

/** Bodies that may wait for a decode worker by default (beyond those being decoded). */
export const JSON_POOL_MAX_QUEUE = 256;
/**
 * Bytes of bodies the pool may hold by default: being decoded, waiting, and on their way (a place
 * reserved from the headers). The memory bound that matters: 2.9 MB image tensors as JSON fit 88
 * at once, 64 MiB bodies 4. A single body larger than the budget is taken when the pool holds
 * nothing else.
 */
export const JSON_POOL_MAX_BYTES = 256 * 1024 * 1024;

export class JsonDecodePool {
  readonly #pool: WorkerPool;
  #incoming = 0;
  /** Bytes held: bodies on their way (reserved) and bodies accepted (decoding or waiting). */
  #bytes = 0;

  /**
   * `maxThreads` decode workers (default: cores − 1, 1 to 4); `maxQueue` bodies may wait beyond
   * them, and all the bodies held together (decoding, waiting, on their way) may take `maxBytes`.
   */
  constructor(
    readonly maxThreads = Math.max(1, Math.min(4, os.availableParallelism() - 1)),
    maxQueue = JSON_POOL_MAX_QUEUE,
    readonly maxBytes = JSON_POOL_MAX_BYTES,
  ) {
    expectInteger('maxThreads', maxThreads, 1, 256);
    expectInteger('maxQueue', maxQueue, 0, 1_000_000);
    expectInteger('maxBytes', maxBytes, 1);
    // One task per worker: a decode is synchronous CPU work.
    this.#pool = new WorkerPool({ filename: () => workerScript(__dirname, 'protocol', 'json-worker.js'), name: 'JSON decode', threads: maxThreads, tasksPerThread: 1, maxQueue });
  }

  get maxQueue(): number {
    return this.#pool.maxQueue;
  }

  /** Tasks decoded so far (for tests and metrics). */
  get completed(): number {
    return this.#pool.completed;
  }

  /** Bodies accepted and not yet decoded (being decoded or waiting). */
  get outstanding(): number {
    return this.#pool.outstanding;
  }

  /** Bodies on their way (reserve()d, not yet handed to decode() or released). */
  get incoming(): number {
    return this.#incoming;
  }

  /** Bytes of the bodies held (on their way, waiting or being decoded). */
  get heldBytes(): number {
    return this.#bytes;
  }

  /** Whether one more body of `bytes` fits beside those held: count and bytes. */
  #fits(bytes: number): boolean {
    if (this.#pool.outstanding + this.#incoming >= this.#pool.capacity + this.#pool.maxQueue) return false;
    return this.#bytes === 0 || this.#bytes + bytes <= this.maxBytes;
  }

  #full(): NimifyError {
    return new NimifyError('QUEUE_FULL', `JSON decode queue full: ${this.#pool.outstanding} bodies decoding or waiting and ${this.#incoming} on their way (${this.#bytes} of ${this.maxBytes} bytes; at most ${this.maxThreads} decoding, ${this.maxQueue} waiting); retry later`);
  }

  /**
   * Holds a place for a body of `bytes` still being received, so that the bounds count it before
   * it is read: QUEUE_FULL when it does not fit beside the bodies decoding, waiting and on their
   * way. The caller gives the place back with release(bytes) once the body reached decode() or
   * was dropped.
   */
  reserve(bytes: number): void {
    if (this.#pool.closed) throw new NimifyError('DISPOSED', 'the JSON decode pool is closed');
    if (!this.#fits(bytes)) throw this.#full();
    this.#incoming++;
    this.#bytes += bytes;
  }

  release(bytes: number): void {
    if (this.#incoming > 0) this.#incoming--;
    this.#bytes = Math.max(0, this.#bytes - bytes);
  }

  /**
   * Parses `body` (a whole JSON request) in a worker; the returned header holds typed arrays as
   * `data`. `reserved`: the body held a place (reserve()) that the caller has just released.
   * QUEUE_FULL when the queue is at its bound; DISPOSED after close().
   */
  async decode(body: Buffer, reserved = false): Promise<Record<string, unknown>> {
    // A body that held a place (reserve(), released by the caller just before) fits: the places
    // held and the bodies accepted never exceed the bounds together. Any other body must fit
    // beside the places held for bodies still on their way.
    // The length now: moving the body to the worker detaches it (its length reads 0 after).
    const size = body.length;
    if (!reserved && !this.#fits(size)) throw this.#full();
    const task = { body: movable(body) ? new Uint8Array(body.buffer) : new Uint8Array(body) };
    this.#bytes += size;
    try {
      return (await this.#pool.run<WorkerResult>(task, [task.body.buffer as ArrayBuffer])).header;
    } catch (err) {
      // Cloning the parsed header back overflows the stack only for absurdly nested JSON.
      if (err instanceof RangeError) throw new NimifyError('INVALID_ARGUMENT', 'request body: JSON nested too deeply');
      throw err;
    } finally {
      this.#bytes -= size;
    }
  }

  async close(): Promise<void> {
    await this.#pool.close();
  }
}
