'use strict';
// nimify's server for bench/predict.js, in one of two modes that differ only in where the image
// preprocessing runs. Both are buildServer() from dist with the options `nimify serve <repo>
// --log-level warn` gives it, and both serve nimify's own predict route, POST
// /v1/models/<m>/predict, unmodified:
//
//   pool  as shipped: the route gets its preprocessing pool from the server context
//         (ctx.preprocessPool(): a Piscina pool, src/pipeline/pool.ts) and the image is decoded
//         and turned into the input tensor in a worker thread.
//   main  the context's preprocessPool() is replaced, on this server's context object only, by
//         an object with the pool's image() method that calls nimify's imageToTensor
//         (dist/pipeline/image.js, the function the pool's workers run) on the event loop. Same
//         route, handler, admission, batching of the request's items, model, scheduler,
//         postprocess, serializer, hooks, logger, shedding and metrics; the pool never starts.
//
// Each mode counts where its images went (inline calls; the Piscina pool's completed tasks) and
// answers { bench: 'stats' } over IPC, so the runner can check that the mode did what it says;
// the answer also carries the pool's sizing as nimify set it (threads, tasksPerThread, capacity:
// read from the context's PreprocessPool in both modes; main reads it before the swap, and its
// inline stand-in reports the same values). The resampler (Pillow's or libvips') is the
// repository's config.json's business (preprocess.resampler): bench/predict.js serves a copy of
// examples/digits with `"resampler": "libvips"` for its pool-libvips server.
//
//   node bench/predict-nimify-server.js <pool|main> <repository dir> [port]   (port 0 = any free port)
//
// Prints `nimify predict server (<mode>) listening at http://127.0.0.1:<port>` when ready.
// SIGTERM and SIGINT close it (bench/lib/serve.js, shared with bench/predict-ort-server.js).
// With an IPC channel (spawned by bench/predict.js) it answers event-loop delay reads
// (bench/eld.js).
const path = require('node:path');
const { attachEventLoopDelayMonitor } = require('./eld');
const { NIMIFY_ROOT } = require('./lib/common');
const { listen, runServer } = require('./lib/serve');

const dist = (p) => path.join(NIMIFY_ROOT, 'dist', p);

async function main() {
  const [mode, repository, port = '8000'] = process.argv.slice(2);
  if (!['pool', 'main'].includes(mode) || !repository) {
    console.error('usage: node bench/predict-nimify-server.js <pool|main> <repository dir> [port]');
    process.exit(2);
  }
  attachEventLoopDelayMonitor();
  const { buildServer } = require(dist('server/index.js'));
  // BENCH_PREDICT_POOL_THREADS: the pool's worker threads (as `--preprocess-threads`); default nimify's (the core count).
  const threads = Number(process.env.BENCH_PREDICT_POOL_THREADS);
  // BENCH_PREDICT_POOL_TASKS: tasks per worker thread (default nimify's).
  const tasks = Number(process.env.BENCH_PREDICT_POOL_TASKS);
  const preprocess = {};
  if (Number.isInteger(threads) && threads > 0) preprocess.threads = threads;
  if (Number.isInteger(tasks) && tasks > 0) preprocess.tasksPerThread = tasks;
  const app = await buildServer({ repository, logger: { level: 'warn' }, authExempt: ['health', 'metrics', 'docs'], modelDefaults: {}, preprocess });
  const ctx = app.nimify;
  if (typeof ctx.preprocessPool !== 'function') {
    throw new Error('this nimify build has no server-context preprocessPool() (the predict route\'s pool); bench/predict-nimify-server.js needs it to swap the pool in main mode');
  }
  // The real pool's sizing, as buildServer configured it (constructing the PreprocessPool starts
  // no worker: Piscina starts on the first task).
  const real = ctx.preprocessPool();
  const sizing = { poolThreads: real.threads, poolTasksPerThread: real.tasksPerThread, poolCapacity: real.capacity };
  const stats = { mode, inlineImages: 0, poolCompleted: () => null };

  if (mode === 'main') {
    const { imageToTensor } = require(dist('pipeline/image.js'));
    // The fields of a PreprocessPool, with the real pool's values (the route reads `capacity`:
    // how many of one request's images it hands over at a time).
    const inline = {
      threads: real.threads,
      tasksPerThread: real.tasksPerThread,
      get capacity() {
        return this.threads * this.tasksPerThread;
      },
      maxQueue: real.maxQueue,
      completed: 0,
      queueSize: 0,
      closed: false,
      /** As PreprocessPool.image(), on the calling (event-loop) thread. */
      async image(bytes, spec) {
        const t = await imageToTensor(bytes, spec);
        stats.inlineImages++;
        this.completed++;
        return t;
      },
      async text() {
        throw new Error('bench: text preprocessing is not part of this benchmark');
      },
      async close() {
        this.closed = true;
      },
    };
    ctx.preprocessPool = () => inline;
  } else {
    stats.poolCompleted = () => ctx.preprocessPool().completed;
  }
  process.on('message', (m) => {
    if (m && m.bench === 'stats') process.send({ bench: 'stats', id: m.id, mode, inlineImages: stats.inlineImages, poolCompleted: stats.poolCompleted(), ...sizing });
  });

  const failed = ctx.repository.index().filter((e) => e.state === 'UNAVAILABLE');
  if (failed.length) throw new Error(`models failed to load: ${JSON.stringify(failed)}`);
  await listen(app, port, (address) => `nimify predict server (${mode}) listening at ${address}`);
}

runServer(main);
