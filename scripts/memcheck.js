'use strict';
// Exercises the addon's paths (async and sync runs, concurrency, bad input, the copy path,
// strings, abort of a running inference, dispose; the scheduler: batches with gather/scatter,
// a request running alone, mixed shapes, an ORT failure in a batch, queue expiry and abort,
// dispose with a queue; buffers detached mid-run; device-resident results and IoBinding) for `npm run memcheck`, which runs it under
// valgrind memcheck with scripts/valgrind.supp and fails on any error. Worker termination is left
// to test/worker.test.ts: under valgrind a worker's bootstrap alone took three minutes here.
const { loadModel, Tensor } = require('../dist');
const M = require('node:path').join(__dirname, '..', 'test', 'fixtures', 'models') + '/';
(async () => {
  console.error('memcheck: runs');
  const m = await loadModel(M + 'mlp_tiny.onnx');
  const x = new Tensor('float32', new Float32Array(64).fill(0.1), [1, 64]);
  for (let i = 0; i < 50; i++) { await m.infer({ x }); m.inferSync({ x }); }
  await Promise.all(Array.from({ length: 16 }, () => m.infer({ x })));
  try { await m.infer({ x: new Tensor('float32', new Float32Array(63), [1, 63]) }); } catch {}
  const nz = await loadModel(M + 'nonzero.onnx');
  await nz.infer({ x: new Tensor('float32', new Float32Array([0, 1, 2]), [3]) });
  const s = await loadModel(M + 'identity_string.onnx');
  await s.infer({ x: new Tensor('string', ['a', 'b\u0000c'], [2]) });
  console.error('memcheck: abort of a running inference');
  const slow = await loadModel(M + 'slow.onnx');
  const ac = new AbortController();
  const p = slow.infer({ x: new Tensor('float32', new Float32Array(65536), [256, 256]), iters: new Tensor('int64', new BigInt64Array([100000n]), []) }, { signal: ac.signal });
  setTimeout(() => ac.abort(), 200);
  try {
    await p;
    throw new Error('the aborted run resolved');
  } catch (e) {
    if (e.code !== 'ABORTED') throw e;
  }
  // Scheduler paths.
  console.error('memcheck: scheduler: batches across two instances');
  const b = await loadModel(M + 'mlp_tiny.onnx', { instances: 2, batching: { maxBatchSize: 8, maxQueueDelayMicros: 20000 } });
  await Promise.all(Array.from({ length: 20 }, (_, i) => b.infer({ x: new Tensor('float32', new Float32Array(64 * (1 + (i % 3))).fill(i), [1 + (i % 3), 64]) })));
  await b.infer({ x });
  console.error('memcheck: scheduler: mixed shapes, a failing batch');
  const e = await loadModel(M + 'embed_int64.onnx', { batching: { maxBatchSize: 8, maxQueueDelayMicros: 20000, adaptive: false } });
  const ids = (v, seq) => new Tensor('int64', BigInt64Array.from({ length: seq }, (_, j) => (j === 0 ? v : 1n)), [1, seq]);
  await Promise.all([ids(1n, 3), ids(2n, 5), ids(3n, 3), ids(4n, 5)].map((t) => e.infer({ ids: t })));
  await Promise.allSettled([ids(1n, 3), ids(99999n, 3)].map((t) => e.infer({ ids: t })));
  console.error('memcheck: scheduler: batches run inline on the JS thread, one failing');
  const il = await loadModel(M + 'embed_int64.onnx', { allowSpinning: false, inlineBelowMicros: 1e6, batching: { maxBatchSize: 8 } });
  await il.infer({ ids: ids(1n, 3) }); // measured on the instance thread; inline from here on
  await new Promise((r) => setTimeout(r, 50));
  await Promise.allSettled([ids(1n, 3), ids(2n, 3), ids(99999n, 3), ids(3n, 3)].map((t) => il.infer({ ids: t })));
  await il.infer({ ids: ids(4n, 3) });
  if (il.stats().inlineBatches < 2) throw new Error(`expected inline batches, stats ${JSON.stringify(il.stats())}`);
  // Without a scheduler: a lone request inside infer(), a burst's others at the end of the turn
  // (EnvState::lone_deferred), a failing run on the JS thread, the timed (traced) path.
  console.error('memcheck: unscheduled: lone inline runs, deferred to the end of the turn, one failing');
  const ul = await loadModel(M + 'embed_int64.onnx', { inlineBelowMicros: 1e6 });
  await ul.infer({ ids: ids(1n, 3) }); // measured on an executor thread; inline from here on
  await Promise.allSettled([ids(1n, 3), ids(2n, 3), ids(99999n, 3), ids(3n, 3)].map((t) => ul.infer({ ids: t })));
  await ul.infer({ ids: ids(4n, 3) }, { timing: new Float64Array(9) });
  if (ul.stats().inlineBatches < 4) throw new Error(`expected inline runs, stats ${JSON.stringify(ul.stats())}`);
  // Per-request timing (tracing: infer()'s internal `timing` option): the job holds a reference
  // on the array and writes it when it settles, run or not.
  console.error('memcheck: per-request timing (executor, batches, inline, a queued abort)');
  const timing = () => new Float64Array(9);
  await m.infer({ x }, { timing: timing() });
  await Promise.all(Array.from({ length: 6 }, (_, i) => b.infer({ x }, i % 2 ? {} : { timing: timing() })));
  await il.infer({ ids: ids(5n, 3) }, { timing: timing() });
  const ac3 = new AbortController();
  const tq = e.infer({ ids: ids(6n, 3) }, { timing: timing(), signal: ac3.signal });
  ac3.abort();
  await Promise.allSettled([tq]);
  console.error('memcheck: scheduler: expiry, abort, dispose with a queue');
  const q = await loadModel(M + 'slow.onnx', { batching: { maxQueueSize: 4 } });
  const feeds = (n) => ({ x: new Tensor('float32', new Float32Array(65536), [256, 256]), iters: new Tensor('int64', new BigInt64Array([n]), []) });
  const running = q.infer(feeds(3n));
  const ac2 = new AbortController();
  const queued = [q.infer(feeds(1n), { timeoutMs: 1 }), q.infer(feeds(1n), { signal: ac2.signal }), q.infer(feeds(1n))];
  ac2.abort();
  const disposing = q.dispose();
  await Promise.allSettled([running, ...queued]);
  await disposing;
  // Buffers transferred away while their call is in flight (test/runtime/detach.test.ts has the
  // full matrix). A small input is the run's own copy: freeing the caller's buffer mid-run must
  // not be read. A large input and a supplied output stay borrowed: moved (kept alive by their new
  // owner), the call rejects with BUFFER_DETACHED. Held in flight by a batcher waiting for a full batch.
  console.error('memcheck: buffers detached mid-run');
  const gc = (require('node:v8').setFlagsFromString('--expose-gc'), require('node:vm').runInNewContext('gc'));
  const moveAway = (t) => structuredClone(t.data.buffer, { transfer: [t.data.buffer] });
  const expectDetached = async (p, what) => {
    try {
      await p;
    } catch (err) {
      if (err.code === 'BUFFER_DETACHED' && err.message.startsWith(what)) return;
      throw err;
    }
    throw new Error(`${what}: a call whose buffer was detached resolved`);
  };
  const rows = (n, v) => new Tensor('float32', Float32Array.from({ length: 64 * n }, (_, i) => Math.sin(i * v)), [n, 64]);
  const d = await loadModel(M + 'mlp_tiny.onnx', { batching: { maxBatchSize: 301, maxQueueDelayMicros: 60000000, adaptive: false } });
  const small = rows(1, 0.1);
  const want = Array.from(m.inferSync({ x: small }).y.data);
  const ps = d.infer({ x: small });
  (() => moveAway(small))(); // nothing keeps the new buffer: freed by the next GC
  gc();
  await d.infer({ x: rows(300, 0.2) }); // fills the batch: both run
  if (JSON.stringify(Array.from((await ps).y.data)) !== JSON.stringify(want)) throw new Error('a small input freed mid-run changed the result');
  const big = rows(300, 0.3);
  const pb = d.infer({ x: big });
  const keptBig = moveAway(big);
  await d.infer({ x: rows(1, 0.4) });
  await expectDetached(pb, "input 'x'");
  const y = new Tensor('float32', new Float32Array(10), [1, 10]);
  const po = d.infer({ x: rows(1, 0.5) }, { outputs: { y } });
  const keptY = moveAway(y);
  await d.infer({ x: rows(300, 0.6) });
  await expectDetached(po, "output 'y'");
  // Unscheduled: settled after the transfer, whenever the run itself happens.
  const sx = new Tensor('float32', new Float32Array(65536).fill(0.5), [256, 256]);
  const psl = slow.infer({ x: sx, iters: new Tensor('int64', new BigInt64Array([2n]), []) });
  const keptSx = moveAway(sx);
  await expectDetached(psl, "input 'x'");
  const bytes = new Uint8Array(require('node:fs').readFileSync(M + 'mlp_tiny.onnx'));
  const loading = loadModel(bytes);
  const keptBytes = moveAway({ data: bytes });
  await expectDetached(loading, 'the model bytes');
  if (keptBig.byteLength + keptY.byteLength + keptSx.byteLength + keptBytes.byteLength === 0) throw new Error('moved buffers are empty');
  // Device-resident results (DeviceTensor; on the CPU "the device" is the session's memory):
  // a lone run's whole output, views of a batch output (two instances, so two sessions own
  // them), fed back as inputs, downloaded after their model is disposed, disposed while a run
  // that was fed one is queued, and the bound (IoBinding) path for host results.
  console.error('memcheck: device-resident results, IoBinding');
  const lone = await m.infer({ x: rows(2, 0.7) }, { outputLocation: 'device' });
  const views = await Promise.all(Array.from({ length: 12 }, (_, i) => b.infer({ x: rows(1, i) }, { outputLocation: 'device' })));
  const id = await loadModel(M + 'identity_float32.onnx', { batching: { maxBatchSize: 16 } });
  const flat = await id.infer({ x: new Tensor('float32', new Float32Array(10).fill(2), [10]) }, { outputLocation: 'device' });
  const fed = id.infer({ x: flat.y });
  flat.y.dispose(); // the queued run holds it
  if ((await fed).y.data[9] !== 2) throw new Error('a DeviceTensor disposed while its run was queued changed the result');
  await (await b.infer({ x: rows(1, 0.8) }, { outputLocation: 'device' })).y.download();
  process.env.NIMIFY_IO_BINDING = 'always';
  const bound = await loadModel(M + 'mlp_tiny.onnx', { batching: { maxBatchSize: 8, maxQueueDelayMicros: 20000 } });
  await Promise.all(Array.from({ length: 10 }, (_, i) => bound.infer({ x: rows(1 + (i % 2), i) })));
  // Fixed buffers (the CUDA-graph path): gathered batches padded to sizes, copies through the
  // Identity copy sessions, device-resident copies, lone runs of a model without a scheduler.
  process.env.NIMIFY_IO_BINDING = 'fixed';
  const fixed = await loadModel(M + 'mlp_tiny.onnx', { batching: { maxBatchSize: 8, maxQueueDelayMicros: 20000, preferredBatchSizes: [4, 8], padToPreferred: true } });
  const alone = await loadModel(M + 'mlp_tiny.onnx');
  delete process.env.NIMIFY_IO_BINDING;
  const fixedOut = await Promise.all(Array.from({ length: 6 }, (_, i) => fixed.infer({ x: rows(1, i) }, i % 2 ? { outputLocation: 'device' } : {})));
  await fixedOut[1].y.download();
  await alone.infer({ x: rows(2, 1) });
  await (await alone.infer({ x: rows(3, 2) }, { outputLocation: 'device' })).y.download();
  await fixed.infer({ x: rows(1, 4) });
  await Promise.all([fixed.dispose(), alone.dispose()]);
  await Promise.all([m.dispose(), b.dispose()]);
  await lone.y.download();
  for (const v of views) await v.y.download();
  views.slice(0, 6).forEach((v) => v.y.dispose());
  gc();
  await Promise.all([id.dispose(), bound.dispose()]);
  await Promise.all([m.dispose(), nz.dispose(), s.dispose(), slow.dispose(), b.dispose(), e.dispose(), il.dispose(), ul.dispose(), d.dispose()]);
  console.log('memcheck script: all paths ran');
})().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
