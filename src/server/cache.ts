/**
 * The response cache (Triton's): results of earlier requests, by a hash of everything that
 * decides a result, so a repeated request is answered without running the model. Enabled per
 * model (config.json `responseCache: { enable: true }`) within one server-wide byte budget
 * (`responseCacheBytes`, `nimify serve --cache-size`; 0, the default, means no cache).
 *
 * Key: SHA-256 over the served version's identity (a reloaded version is a new ServedVersion,
 * so it never sees the answers of the one it replaced), the model name and version, every input
 * in the model's order (name, datatype, dims, bytes; strings length-prefixed) and the requested
 * outputs in order, each field length-prefixed so that no two requests encode alike. SHA-256
 * makes a collision between distinct requests practically impossible; the inputs themselves are
 * not kept.
 *
 * Entries hold private copies of the output tensors (never the buffers a response is written
 * from, never a caller's), and are evicted least recently used first once the budget is full.
 * Only successful results are stored. A result larger than the whole budget is not stored.
 * Hits never reach the model or its scheduler.
 *
 * Event-loop thread only. Ownership: one per server (NimifyContext), dropped with it.
 */
import { createHash, type Hash } from 'node:crypto';
import { Tensor, type TensorType } from '../runtime/tensor';
import type { ServedVersion } from '../repository/repository';

/** Triton's inference_stats cache_hit / cache_miss: counts and summed time (ns). */
export interface CacheCounts {
  hits: number;
  hitNs: number;
  misses: number;
  missNs: number;
}

interface Entry {
  outputs: Record<string, Tensor>;
  bytes: number;
}

/** Bytes an entry costs beyond its tensor data (map slot, key, objects): a rough, fixed charge. */
const ENTRY_OVERHEAD = 256;
const TENSOR_OVERHEAD = 96;

/**
 * The fields of a key before the tensor bytes, each length-prefixed, written into one reusable
 * buffer (one hash update per tensor instead of one per field: the key is on the hit path).
 */
class KeyWriter {
  #buf = Buffer.allocUnsafe(1024);
  #at = 0;

  reset(): void {
    this.#at = 0;
  }

  #room(n: number): void {
    if (this.#at + n <= this.#buf.length) return;
    const grown = Buffer.allocUnsafe(Math.max(this.#buf.length * 2, this.#at + n));
    this.#buf.copy(grown, 0, 0, this.#at);
    this.#buf = grown;
  }

  u32(n: number): void {
    this.#room(4);
    this.#buf.writeUInt32LE(n >>> 0, this.#at);
    this.#at += 4;
  }

  text(s: string): void {
    const max = Buffer.byteLength(s, 'utf8');
    this.#room(4 + max);
    const n = this.#buf.write(s, this.#at + 4, 'utf8');
    this.#buf.writeUInt32LE(n, this.#at);
    this.#at += 4 + n;
  }

  /** Hashes what was written and starts over. */
  flush(hash: Hash): void {
    if (this.#at > 0) hash.update(this.#buf.subarray(0, this.#at));
    this.#at = 0;
  }
}

export class ResponseCache {
  readonly #entries = new Map<string, Entry>();
  readonly #counts = new WeakMap<ServedVersion, CacheCounts>();
  readonly #ids = new WeakMap<ServedVersion, number>();
  readonly #writer = new KeyWriter();
  #nextId = 1;
  #bytes = 0;
  /** Entries dropped to make room, since the server started. */
  evictions = 0;

  constructor(readonly maxBytes: number) {}

  /** Bytes the entries hold now. */
  get bytes(): number {
    return this.#bytes;
  }

  get size(): number {
    return this.#entries.size;
  }

  /**
   * The key of a request for `v` (see the top of this file), or null when `feeds` lacks one of the
   * model's inputs: such a request is not cached, and the model's own check refuses it (400).
   */
  key(v: ServedVersion, feeds: Readonly<Record<string, Tensor>>, outputs: readonly string[]): string | null {
    let id = this.#ids.get(v);
    if (id === undefined) this.#ids.set(v, (id = this.#nextId++));
    const hash = createHash('sha256');
    const w = this.#writer;
    w.reset();
    w.u32(id);
    w.text(v.name);
    w.text(v.version);
    const inputs = v.model!.inputs;
    w.u32(inputs.length);
    for (const info of inputs) {
      const t = Object.prototype.hasOwnProperty.call(feeds, info.name) ? feeds[info.name] : undefined;
      if (t === undefined) return null;
      w.text(info.name);
      w.text(t.type);
      w.u32(t.dims.length);
      for (const d of t.dims) w.u32(d);
      if (t.type === 'string') {
        const strings = t.data as string[];
        w.u32(strings.length);
        for (const str of strings) w.text(str);
      } else {
        const data = t.data as ArrayBufferView;
        w.u32(data.byteLength);
        w.flush(hash);
        hash.update(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      }
    }
    w.u32(outputs.length);
    for (const o of outputs) w.text(o);
    w.flush(hash);
    return hash.digest('base64');
  }

  /** The cached outputs for `key` (now the most recently used), or undefined. Do not modify them. */
  lookup(key: string): Record<string, Tensor> | undefined {
    const e = this.#entries.get(key);
    if (e === undefined) return undefined;
    this.#entries.delete(key);
    this.#entries.set(key, e);
    return e.outputs;
  }

  /** Stores copies of a successful result, evicting the least recently used entries to make room. */
  insert(key: string, outputs: Readonly<Record<string, Tensor>>): void {
    let bytes = ENTRY_OVERHEAD + key.length;
    for (const t of Object.values(outputs)) {
      bytes += TENSOR_OVERHEAD + t.dims.length * 8;
      bytes += t.type === 'string' ? (t.data as string[]).reduce((n, s) => n + 16 + Buffer.byteLength(s), 0) : (t.data as ArrayBufferView).byteLength;
    }
    if (bytes > this.maxBytes || this.#entries.has(key)) return;
    while (this.#bytes + bytes > this.maxBytes) {
      const [oldest, e] = this.#entries.entries().next().value as [string, Entry];
      this.#entries.delete(oldest);
      this.#bytes -= e.bytes;
      this.evictions++;
    }
    const copy: Record<string, Tensor> = {};
    for (const [name, t] of Object.entries(outputs)) {
      const data = t.type === 'string' ? [...(t.data as string[])] : (t.data as ArrayBufferView & { slice(): ArrayBufferView }).slice();
      const tensor = new Tensor(t.type as TensorType, data as never, [...t.dims]);
      // Output names come from the model file: one named __proto__ stays an own property.
      Object.defineProperty(copy, name, { value: tensor, enumerable: true, writable: true, configurable: true });
    }
    this.#entries.set(key, { outputs: copy, bytes });
    this.#bytes += bytes;
  }

  /** The counts of `v` (zero until its first lookup). */
  counts(v: ServedVersion): CacheCounts {
    let c = this.#counts.get(v);
    if (c === undefined) this.#counts.set(v, (c = { hits: 0, hitNs: 0, misses: 0, missNs: 0 }));
    return c;
  }
}

/** The cache that serves `v`: the server's, when it has one and `v`'s config enables it; else null. */
export function cacheFor(cache: ResponseCache | null, v: ServedVersion): ResponseCache | null {
  return cache !== null && v.config?.responseCache.enable === true ? cache : null;
}

/**
 * Runs a request through the cache when `v` enables it (cacheFor): a hit answers with the cached
 * result and never calls `run`; a miss runs it and stores a successful result. Times and counts
 * go to `cache.counts(v)` (Triton's cache_hit: lookup + extraction; cache_miss: lookup +
 * insertion). `outputs`: the requested output names in order (the result depends on them).
 * Without a cache: `run()` itself, with no promise or closure of its own (the inference hot path
 * calls it for every request).
 */
export function throughCache(
  cache: ResponseCache | null,
  v: ServedVersion,
  feeds: Readonly<Record<string, Tensor>>,
  outputs: readonly string[],
  run: () => Promise<Record<string, Tensor>>,
): Promise<Record<string, Tensor>> {
  const c = cacheFor(cache, v);
  return c === null ? run() : cached(c, v, feeds, outputs, run);
}

async function cached(
  cache: ResponseCache,
  v: ServedVersion,
  feeds: Readonly<Record<string, Tensor>>,
  outputs: readonly string[],
  run: () => Promise<Record<string, Tensor>>,
): Promise<Record<string, Tensor>> {
  const counts = cache.counts(v);
  const t0 = process.hrtime.bigint();
  const key = cache.key(v, feeds, outputs);
  if (key === null) return run();
  const hit = cache.lookup(key);
  if (hit !== undefined) {
    counts.hits++;
    counts.hitNs += Number(process.hrtime.bigint() - t0);
    return hit;
  }
  const lookupNs = Number(process.hrtime.bigint() - t0);
  counts.misses++;
  counts.missNs += lookupNs;
  const result = await run();
  const t1 = process.hrtime.bigint();
  cache.insert(key, result);
  counts.missNs += Number(process.hrtime.bigint() - t1);
  return result;
}
