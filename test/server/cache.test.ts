// The response cache's own rules (src/server/cache.ts), with hand-made versions: keys that never
// collide for distinct requests, LRU eviction within the byte budget, private copies, failures
// never stored. The server-level behaviour (hits never reach the model, stats, metrics, reloads)
// is in test/server/response-cache.test.ts.
import { describe, expect, it } from 'vitest';
import { Tensor } from '../../src';
import { ResponseCache, throughCache } from '../../src/server/cache';
import { ServedVersion } from '../../src/repository/repository';

function version(name = 'm', v = '1', inputs = ['a', 'b'], enable = true): ServedVersion {
  const sv = new ServedVersion(name, v, '/dev/null');
  sv.model = { inputs: inputs.map((n) => ({ name: n, type: 'float32', shape: [-1] })) } as never;
  sv.config = { responseCache: { enable } } as never;
  return sv;
}
const f32 = (values: number[], dims = [values.length]) => new Tensor('float32', Float32Array.from(values), dims);

describe('ResponseCache keys', () => {
  it('differ for every difference that changes a result, and agree otherwise', () => {
    const c = new ResponseCache(1 << 20);
    const v = version();
    const base = c.key(v, { a: f32([1, 2]), b: f32([3]) }, ['y']);
    expect(c.key(v, { b: f32([3]), a: f32([1, 2]) }, ['y'])).toBe(base); // feed order does not matter
    const variants = [
      c.key(v, { a: f32([1, 2.000001]), b: f32([3]) }, ['y']),
      c.key(v, { a: f32([1, 2], [2, 1]), b: f32([3]) }, ['y']),
      c.key(v, { a: new Tensor('int32', Int32Array.from([1, 2])), b: f32([3]) }, ['y']),
      c.key(v, { a: f32([1]), b: f32([2, 3]) }, ['y']), // same bytes overall, split differently
      c.key(v, { a: f32([1, 2]), b: f32([3]) }, ['z']),
      c.key(v, { a: f32([1, 2]), b: f32([3]) }, ['y', 'z']),
      c.key(version(), { a: f32([1, 2]), b: f32([3]) }, ['y']), // a reloaded version: a new ServedVersion
      c.key(version('m', '2'), { a: f32([1, 2]), b: f32([3]) }, ['y']),
      c.key(version('n'), { a: f32([1, 2]), b: f32([3]) }, ['y']),
    ];
    expect(new Set([base, ...variants]).size).toBe(variants.length + 1);
    const s = version('s', '1', ['t']);
    expect(c.key(s, { t: new Tensor('string', ['ab', 'c']) }, ['y'])).not.toBe(c.key(s, { t: new Tensor('string', ['a', 'bc']) }, ['y']));
  });
});

describe('ResponseCache storage', () => {
  it('keeps private copies, evicts least recently used past the budget, skips what cannot fit', () => {
    const c = new ResponseCache(3 * (256 + 44 + 96 + 8 + 400)); // room for about three 400-byte results
    const out = (n: number) => ({ y: f32(Array.from({ length: 100 }, () => n)) });
    const original = out(1);
    c.insert('k1', original);
    (original.y.data as Float32Array)[0] = 99; // the caller's tensor changes: the entry does not
    expect((c.lookup('k1')!.y.data as Float32Array)[0]).toBe(1);
    c.insert('k2', out(2));
    c.insert('k3', out(3));
    expect(c.size).toBe(3);
    c.lookup('k1'); // k1 becomes the most recently used: k2 is the oldest now
    c.insert('k4', out(4));
    expect(c.lookup('k2')).toBeUndefined();
    expect(c.lookup('k1')).toBeDefined();
    expect(c.evictions).toBe(1);
    expect(c.bytes).toBeLessThanOrEqual(c.maxBytes);
    c.insert('huge', { y: f32(Array.from({ length: 10_000 }, () => 0)) });
    expect(c.lookup('huge')).toBeUndefined();
    expect(c.size).toBe(3);
  });
});

describe('throughCache', () => {
  it('answers a repeat from the cache without running, stores no failure, and does nothing when disabled', async () => {
    const c = new ResponseCache(1 << 20);
    const v = version();
    const feeds = { a: f32([1]), b: f32([2]) };
    let runs = 0;
    const run = async () => {
      runs++;
      return { y: f32([runs]) };
    };
    expect(((await throughCache(c, v, feeds, ['y'], run)).y.data as Float32Array)[0]).toBe(1);
    expect(((await throughCache(c, v, feeds, ['y'], run)).y.data as Float32Array)[0]).toBe(1);
    expect(runs).toBe(1);
    expect(c.counts(v)).toMatchObject({ hits: 1, misses: 1 });
    const failing = { a: f32([5]), b: f32([6]) };
    await expect(throughCache(c, v, failing, ['y'], async () => Promise.reject(new Error('model failed')))).rejects.toThrow('model failed');
    await throughCache(c, v, failing, ['y'], run);
    expect(runs).toBe(2); // the failure was not cached
    // A request missing an input is not cached (and never crashes the key): the model refuses it.
    expect(c.key(v, { a: f32([1]) }, ['y'])).toBeNull();
    await expect(throughCache(c, v, { a: f32([1]) }, ['y'], async () => Promise.reject(new Error('missing input b')))).rejects.toThrow('missing input b');
    const off = version('m', '1', ['a', 'b'], false);
    await throughCache(c, off, feeds, ['y'], run);
    await throughCache(null, v, feeds, ['y'], run);
    expect(runs).toBe(4);
  });
});
