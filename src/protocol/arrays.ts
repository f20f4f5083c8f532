/**
 * Typed arrays the codec makes for a request on the event loop: the scanner's numbers
 * (infer-json.ts) and the decoded input tensors (request.ts). Small ones are views of shared,
 * zero-filled blocks (OutputPool, the rule and sizes of Node's Buffer pool) instead of arrays
 * over an ArrayBuffer of their own, which V8 makes with a backing store and an external-memory
 * registration and sweeps when collected: ~350–450 ns each against ~25 ns for a view (2-core
 * VM, Node 20), and a tiny model's JSON request made two of them.
 *
 * These arrays stay inside the server: the model copies small inputs when infer() is called
 * (native/run_job.h, kOwnedInputBytes) and references larger ones for the run, which keeps
 * their block alive; nothing hands them to a caller, so nothing transfers or detaches a block
 * (blocks are marked untransferable all the same). A request that is kept keeps its block
 * (8 KiB). Worker threads get arrays of their own: the JSON decode worker transfers its
 * arrays' buffers to the event loop (json-worker.ts), which a shared block cannot be.
 */
import { isMainThread } from 'node:worker_threads';
import { OutputPool } from '../runtime/io-plan';
import type { TypedArrayCtor } from '../runtime/tensor';

/** Arrays of fewer bytes than this share blocks (half a block, as OutputPool.LIMIT). */
const POOLED_BELOW = OutputPool.BLOCK_BYTES / 2;

const pool = isMainThread ? new OutputPool() : null;

/** A zero-filled `ctor` array of `count` elements: a view of a shared block when small, on the event loop. */
export function requestArray<T extends ArrayBufferView>(ctor: TypedArrayCtor, count: number): T {
  const bytes = count * ctor.BYTES_PER_ELEMENT;
  return (pool !== null && bytes < POOLED_BELOW ? pool.take(ctor, bytes, count) : new ctor(count)) as T;
}
