/**
 * Typed arrays the codec makes for a request on the event loop: the scanner's numbers
 * (infer-json.ts) and, for the server's own routes, the decoded input tensors (request.ts).
 * Small ones are views of shared, zero-filled blocks (OutputPool, the rule and sizes of Node's
 * Buffer pool) instead of arrays over an ArrayBuffer of their own, which V8 makes with a backing
 * store and an external-memory registration and sweeps when collected: ~350–450 ns each against
 * ~25 ns for a view (2-core VM, Node 20), and a tiny model's JSON request made two of them.
 *
 * Unlike the output pool's (io-plan.ts), these views are used on every Node, including 20 and
 * 22, where an untransferable block can still be detached (through a web byte stream, and on 22
 * `transfer()`). That is safe because of who reads them and when:
 *   - the scanner's numbers (JsonNumbers) are read by JavaScript only, when the request is decoded;
 *   - a decoded input comes from a block only when the model copies every numeric input of the
 *     call at infer() (request.ts, the addon's ownedInputBytes), so no run ever reads a block;
 *   - nothing hands them to a caller: decodeInferRequest, the public codec, gives arrays of their
 *     own unless the server's routes ask for shared ones.
 * Code that could reach a view anyway — an embedding app's hook reading the parsed body's
 * JsonNumbers — and detached its block would leave later views of it empty: their requests fail
 * as malformed (INVALID_ARGUMENT), and no memory is read after it moved. A kept view keeps its
 * block (8 KiB). Worker threads get arrays of their own: the JSON decode worker transfers its
 * arrays' buffers to the event loop (json-worker.ts), which a shared block cannot be.
 */
import { isMainThread } from 'node:worker_threads';
import { addonIfLoadable } from '../runtime/binding';
import { OutputPool } from '../runtime/io-plan';
import type { TypedArrayCtor } from '../runtime/tensor';

/** Arrays of fewer bytes than this share blocks (half a block, as in OutputPool). */
const POOLED_BELOW = OutputPool.BLOCK_BYTES / 2;

const pool = isMainThread ? new OutputPool() : null;

/** A zero-filled `ctor` array of `count` elements: a view of a shared block when small, on the event loop. */
export function requestArray<T extends ArrayBufferView>(ctor: TypedArrayCtor, count: number): T {
  const bytes = count * ctor.BYTES_PER_ELEMENT;
  return (pool !== null && bytes < POOLED_BELOW ? pool.take(ctor, bytes, count) : new ctor(count)) as T;
}

/** What infer() copies (the addon's ownedInputBytes / ownedInputAlign); null without the addon. */
let owned: { bytes: number; align: number } | null | undefined;

/**
 * Whether infer() copies numeric inputs of these byte sizes (in any order) rather than reading
 * the caller's memory: each rounded up to the copy's alignment, they fit the copy's size — a
 * bound on the addon's own sum (native/run_job.cc), which rounds the running total instead.
 */
export function copiedAtInfer(sizes: readonly number[]): boolean {
  if (owned === undefined) {
    const addon = addonIfLoadable();
    owned = addon !== null && typeof addon.ownedInputBytes === 'number' ? { bytes: addon.ownedInputBytes, align: addon.ownedInputAlign } : null;
  }
  if (owned === null) return false;
  let total = 0;
  for (const size of sizes) {
    total += Math.ceil(size / owned.align) * owned.align;
    if (total > owned.bytes) return false;
  }
  return true;
}
