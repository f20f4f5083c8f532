// Runs inside a worker_thread: loads a model with the built package and reports results.
'use strict';
const { parentPort, workerData } = require('node:worker_threads');
const { loadModel, Tensor } = require('../../dist');

(async () => {
  const m = await loadModel(workerData.model, workerData.options);
  if (workerData.mode === 'slow') {
    const x = new Tensor('float32', new Float32Array(256 * 256).fill(0.01), [256, 256]);
    const iters = new Tensor('int64', new BigInt64Array([1000000n]), []);
    const run = m.infer({ x, iters });
    // With a scheduler: more requests wait in its queue behind the running one.
    for (let i = 0; i < (workerData.queued ?? 0); i++) m.infer({ x, iters }).catch(() => {});
    parentPort.postMessage({ started: true });
    await run;
    return;
  }
  if (workerData.mode === 'burst-exit') {
    // Measured runs first (inline from then on), then a burst in one stretch of JS: the first
    // runs inline, the rest wait for the end of the turn (native lone_deferred) — and the worker
    // exits before that turn ends, with those requests still attached.
    const x = new Tensor('float32', new Float32Array(64).fill(0.5), [1, 64]);
    for (let i = 0; i < 5; i++) await m.infer({ x });
    for (let i = 0; i < workerData.burst; i++) m.infer({ x }).catch(() => {});
    const { inlineBatches, inFlight } = m.stats();
    parentPort.postMessage({ inlineBatches, inFlight });
    process.exit(0);
  }
  const sums = [];
  for (let i = 0; i < workerData.runs; i++) {
    const x = new Tensor('float32', Float32Array.from({ length: 64 }, (_, k) => Math.sin(k * 0.01 * (i + 1))), [1, 64]);
    const out = i % 2 ? m.inferSync({ x }) : await m.infer({ x });
    sums.push(Array.from(out.y.data));
  }
  await m.dispose();
  parentPort.postMessage({ results: sums });
})().catch((err) => parentPort.postMessage({ error: `${err.code}: ${err.message}` }));
