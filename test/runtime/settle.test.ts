// infer()'s promises are JavaScript's, settled by the addon in bulk (src/runtime/settle.ts,
// native/settlement.h): every outcome reaches its own promise, however many settle at once,
// whatever caller code runs while they do, and every ticket is given back.
import { describe, expect, it } from 'vitest';
import { loadModel, NimifyError, Tensor } from '../../src';
import { openTickets } from '../../src/runtime/settle';
import { model } from '../helpers';

const x1 = (seed: number) => new Tensor('float32', Float32Array.from({ length: 64 }, (_, i) => Math.sin(i * 0.37 + seed)), [1, 64]);

function busyWait(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    // (the JS thread stays busy: finished runs pile up for one drain)
  }
}

describe('settling infer() promises', () => {
  it('thousands finishing while the JS thread is busy settle in one drain (several settler calls), each with its own result', async () => {
    const base = openTickets();
    // No inline runs: every run finishes on an executor thread and waits on the completion list.
    const m = await loadModel(model('mlp_tiny.onnx'), { inlineBelowMicros: 0 });
    try {
      const xs = Array.from({ length: 2500 }, (_, i) => x1(i));
      const ps = xs.map((x) => m.infer({ x }));
      expect(openTickets()).toBe(base + 2500);
      busyWait(300);
      const outs = await Promise.all(ps);
      outs.forEach((o, i) => expect(o.y.data).toEqual(m.inferSync({ x: xs[i] }).y.data));
      expect(openTickets()).toBe(base);
      expect(m.stats().inFlight).toBe(0);
    } finally {
      await m.dispose();
    }
  });

  it('caller code run by a resolution (a `then` getter on Object.prototype) may call infer() again: every promise gets its own result', async () => {
    const base = openTickets();
    for (const options of [{ inlineBelowMicros: 1_000_000 }, { inlineBelowMicros: 1_000_000, batching: { maxBatchSize: 8 } }, { inlineBelowMicros: 0 }]) {
      const m = await loadModel(model('mlp_tiny.onnx'), options);
      // [seed, request]: a request made inside settlement can settle (and run the getter again)
      // before infer() returns, so pushes need not follow the seeds' order.
      const inner: [number, Promise<Record<string, Tensor>>][] = [];
      let calls = 0;
      try {
        await m.infer({ x: x1(0) }); // measured: later lone runs settle inside infer()
        Object.defineProperty(Object.prototype, 'then', {
          configurable: true,
          get() {
            // Resolving looks `then` up on each outputs object: a request from inside settlement.
            if (calls < 20 && this !== null && typeof this === 'object' && 'y' in this) {
              const seed = 100 + calls++;
              inner.push([seed, m.infer({ x: x1(seed) })]);
            }
            return undefined;
          },
        });
        const xs = Array.from({ length: 16 }, (_, i) => x1(i));
        const outs = await Promise.all(xs.map((x) => m.infer({ x })));
        // The inner requests' own resolutions ran the getter too, up to the cap.
        while (inner.length < 20) await new Promise((r) => setTimeout(r, 1));
        const innerOuts = await Promise.all(inner.map(([, p]) => p));
        delete (Object.prototype as Record<string, unknown>).then;
        outs.forEach((o, i) => expect(o.y.data).toEqual(m.inferSync({ x: xs[i] }).y.data));
        innerOuts.forEach((o, i) => expect(o.y.data).toEqual(m.inferSync({ x: x1(inner[i][0]) }).y.data));
        expect(new Set(inner.map(([seed]) => seed)).size).toBe(20);
        expect(openTickets()).toBe(base);
      } finally {
        delete (Object.prototype as Record<string, unknown>).then;
        await m.dispose();
      }
    }
  });

  it('a refused request rejects its promise and gives its ticket back; failures reject theirs; the rest resolve', async () => {
    const base = openTickets();
    const m = await loadModel(model('mlp_tiny.onnx'), { inlineBelowMicros: 0, batching: { maxBatchSize: 4, maxQueueSize: 8, maxQueueDelayMicros: 100_000 } });
    try {
      const ps = Array.from({ length: 12 }, (_, i) => m.infer({ x: x1(i) }).then(() => 'ok', (e: NimifyError) => e.code));
      const codes = await Promise.all(ps);
      expect(codes.filter((c) => c === 'QUEUE_FULL').length).toBeGreaterThan(0);
      expect(codes.filter((c) => c === 'ok').length).toBeGreaterThan(0);
      expect(codes.every((c) => c === 'ok' || c === 'QUEUE_FULL')).toBe(true);
      // Rejected after admission: the run's own failure (a batch dim beyond maxBatchSize fails
      // in Submit; a cancelled one is settled with ABORTED).
      const ac = new AbortController();
      const aborted = m.infer({ x: x1(1) }, { signal: ac.signal });
      ac.abort();
      await expect(aborted).rejects.toMatchObject({ code: 'ABORTED' });
      await expect(m.infer({ x: new Tensor('float32', new Float32Array(64 * 5), [5, 64]) })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
      expect(openTickets()).toBe(base);
    } finally {
      await m.dispose();
    }
    // Disposed while queued (waiting out a fixed delay): settled with DISPOSED.
    const d = await loadModel(model('mlp_tiny.onnx'), { inlineBelowMicros: 0, batching: { maxBatchSize: 4, maxQueueDelayMicros: 10_000_000, adaptive: false } });
    const queued = d.infer({ x: x1(3) }).then(() => 'ok', (e: NimifyError) => e.code);
    await d.dispose();
    expect(await queued).toBe('DISPOSED');
    expect(openTickets()).toBe(base);
  });

  it('caller code that throws while a request settles (its signal\'s removeEventListener) rejects that request only', async () => {
    const base = openTickets();
    const m = await loadModel(model('mlp_tiny.onnx'), { inlineBelowMicros: 0 });
    try {
      const signal = new AbortController().signal;
      const boom = new Error('listener removal failed');
      signal.removeEventListener = () => {
        throw boom;
      };
      const bad = m.infer({ x: x1(1) }, { signal });
      const good = Array.from({ length: 5 }, (_, i) => m.infer({ x: x1(i) }));
      await expect(bad).rejects.toBe(boom);
      for (const [i, p] of good.entries()) expect((await p).y.data).toEqual(m.inferSync({ x: x1(i) }).y.data);
      expect(m.stats().inFlight).toBe(0);
      expect(openTickets()).toBe(base);
    } finally {
      await m.dispose();
    }
    // A request the addon refuses (QUEUE_FULL) whose cleanup throws: infer() still returns its
    // promise, rejected with the refusal, and gives the ticket back.
    const q = await loadModel(model('mlp_tiny.onnx'), { inlineBelowMicros: 0, batching: { maxBatchSize: 4, maxQueueSize: 1, maxQueueDelayMicros: 10_000_000, adaptive: false } });
    try {
      const first = q.infer({ x: x1(1) });
      const signal = new AbortController().signal;
      signal.removeEventListener = () => {
        throw new Error('listener removal failed');
      };
      let refused: Promise<unknown> | undefined;
      expect(() => (refused = q.infer({ x: x1(2) }, { signal }))).not.toThrow();
      await expect(refused).rejects.toMatchObject({ code: 'QUEUE_FULL' });
      expect(q.stats().queueDepth).toBe(1);
      await q.dispose();
      await expect(first).rejects.toMatchObject({ code: 'DISPOSED' });
      expect(openTickets()).toBe(base);
    } finally {
      await q.dispose();
    }
  });

  it('tiny outputs are copied at settlement: each request gets its own arrays, of every type, in the caller\'s order, on every route', async () => {
    const base = openTickets();
    for (const options of [{}, { inlineBelowMicros: 0 }, { batching: { maxBatchSize: 16 } }, { inlineBelowMicros: 0, batching: { maxBatchSize: 16 } }]) {
      const m = await loadModel(model('two_inputs.onnx'), options);
      try {
        const t = (v: number) => new Tensor('float32', Float32Array.from({ length: 4 }, (_, i) => v + i), [1, 4]);
        const outs = await Promise.all(Array.from({ length: 200 }, (_, k) => m.infer({ a: t(k), b: t(1) }, k % 2 ? { outputs: ['prod', 'sum'] } : undefined)));
        outs.forEach((o, k) => {
          expect(Object.keys(o)).toEqual(k % 2 ? ['prod', 'sum'] : ['sum', 'prod']);
          expect(Array.from(o.sum.data as Float32Array)).toEqual([0, 1, 2, 3].map((i) => k + i + 1 + i));
          expect(Array.from(o.prod.data as Float32Array)).toEqual([0, 1, 2, 3].map((i) => (k + i) * (1 + i)));
          // Arrays of their own, on V8's heap: nothing shared between requests or with the addon.
          expect((o.sum.data as Float32Array).buffer).not.toBe((o.prod.data as Float32Array).buffer);
          expect((o.sum.data as Float32Array).byteLength).toBe(16);
        });
        (outs[0].sum.data as Float32Array)[0] = 99;
        expect((outs[2].sum.data as Float32Array)[0]).toBe(3);
      } finally {
        await m.dispose();
      }
      for (const [file, type, data] of [
        ['identity_int64.onnx', 'int64', BigInt64Array.from([1n, -2n, 2n ** 62n])],
        ['identity_bool.onnx', 'bool', Uint8Array.from([1, 0, 1])],
        ['identity_float64.onnx', 'float64', Float64Array.from([0.5, -1e300, Math.PI])],
      ] as const) {
        // x[n] → y[n]: 3 elements, at most 24 bytes.
        const id = await loadModel(model(file), options);
        try {
          const x = new Tensor(type, data as never, [3]);
          const outs = await Promise.all(Array.from({ length: 5 }, () => id.infer({ x })));
          for (const o of outs) {
            expect(o.y.type).toBe(type);
            expect(o.y.data.constructor).toBe(data.constructor);
            expect(Array.from(o.y.data as ArrayLike<unknown>)).toEqual(Array.from(data as ArrayLike<unknown>));
          }
        } finally {
          await id.dispose();
        }
      }
    }
    expect(openTickets()).toBe(base);
  });

  it('more outcomes of mixed sizes than one settler call carries: every request gets its own bytes', async () => {
    const base = openTickets();
    // x[n] → y[n], n = 1..16 floats (4..64 bytes, each copied at settlement), on executor
    // threads, all finished before one drain: several settler calls, the data buffer refilled.
    const m = await loadModel(model('identity_float32.onnx'), { inlineBelowMicros: 0 });
    try {
      const xs = Array.from({ length: 3500 }, (_, k) => new Tensor('float32', Float32Array.from({ length: 1 + (k % 16) }, (_, i) => k + i / 100), [1 + (k % 16)]));
      const ps = xs.map((x) => m.infer({ x }));
      busyWait(400);
      const outs = await Promise.all(ps);
      outs.forEach((o, k) => expect(o.y.data).toEqual(xs[k].data));
      expect(openTickets()).toBe(base);
    } finally {
      await m.dispose();
    }
  });

  it('caller code run while a result is built (a setter for an output\'s name) may call infer() again: both get their own outputs', async () => {
    const m = await loadModel(model('two_inputs.onnx'), { inlineBelowMicros: 1_000_000 });
    const t = (v: number) => new Tensor('float32', new Float32Array(4).fill(v), [1, 4]);
    // [seed, request]: a request made in the setter can settle, and run the setter, before infer() returns.
    const inner: [number, Promise<Record<string, Tensor>>][] = [];
    let seeds = 0;
    try {
      Object.defineProperty(Object.prototype, 'sum', {
        configurable: true,
        set(v: unknown) {
          Object.defineProperty(this, 'sum', { value: v, writable: true, enumerable: true, configurable: true });
          // While the result is half built (its prod not yet made): a run that may settle at once.
          if (seeds < 6) {
            const seed = 100 + seeds++;
            inner.push([seed, m.infer({ a: t(seed), b: t(1) })]);
          }
        },
      });
      const outer = await Promise.all([1, 2, 3].map((v) => m.infer({ a: t(v), b: t(v) })));
      const nested = await Promise.all(inner.map(([, p]) => p));
      delete (Object.prototype as Record<string, unknown>).sum;
      outer.forEach((o, k) => {
        expect(Array.from(o.sum.data as Float32Array)).toEqual(new Array(4).fill(2 * (k + 1)));
        expect(Array.from(o.prod.data as Float32Array)).toEqual(new Array(4).fill((k + 1) ** 2));
      });
      nested.forEach((o, k) => {
        const seed = inner[k][0];
        expect(Array.from(o.sum.data as Float32Array)).toEqual(new Array(4).fill(seed + 1));
        expect(Array.from(o.prod.data as Float32Array)).toEqual(new Array(4).fill(seed));
      });
      expect(inner.length).toBe(6);
    } finally {
      delete (Object.prototype as Record<string, unknown>).sum;
      await m.dispose();
    }
  });

  it('a settler that detaches the arrays it was given does not make the addon write into memory it no longer has', async () => {
    const { getBinding } = await import('../../src/runtime/binding');
    const { settle } = await import('../../src/runtime/settle');
    const binding = getBinding();
    const m = await loadModel(model('mlp_tiny.onnx'), { inlineBelowMicros: 0 });
    let calls = 0;
    try {
      // Settles, then detaches the entries' and the data's buffers (structuredClone with a
      // transfer list detaches on every Node): the addon must look them up again.
      binding.setSettler((n, entries, values, data) => {
        calls++;
        settle(n, entries, values, data);
        structuredClone(entries.buffer, { transfer: [entries.buffer as ArrayBuffer] });
        structuredClone(data, { transfer: [data] });
      });
      for (let round = 0; round < 3; round++) {
        const xs = Array.from({ length: 1500 }, (_, i) => x1(round * 10_000 + i));
        const ps = xs.map((x) => m.infer({ x }));
        busyWait(200); // several settler calls in one drain
        const outs = await Promise.all(ps);
        outs.forEach((o, i) => expect(o.y.data).toEqual(m.inferSync({ x: xs[i] }).y.data));
      }
      expect(calls).toBeGreaterThan(3);
    } finally {
      binding.setSettler(settle);
      await m.dispose();
    }
  });
});
