// Run by test/worker.test.ts in a child process: nimify is loaded only by worker_threads (never
// by this main thread), and workers are terminated mid-inference, with and without a scheduler.
// Node unloads an addon that only workers loaded when the last of them exits; the process must
// still exit cleanly (native threads outlive every env).
'use strict';
const path = require('node:path');
const { Worker } = require('node:worker_threads');
const SCRIPT = path.join(__dirname, 'worker-script.js');
const MODEL = path.join(__dirname, '..', 'fixtures', 'models', 'slow.onnx');
(async () => {
  for (let cycle = 0; cycle < 8; cycle++) {
    const scheduled = cycle % 2 === 1 ? { options: { instances: 2, batching: { maxQueueSize: 8 } }, queued: 4 } : {};
    const w = new Worker(SCRIPT, { workerData: { model: MODEL, mode: 'slow', ...scheduled } });
    await new Promise((resolve, reject) => {
      w.once('message', resolve);
      w.once('error', reject);
    });
    await new Promise((r) => setTimeout(r, 20));
    await w.terminate();
  }
  console.log('ok');
})().catch((err) => {
  console.error(err);
  process.exit(1);
});
