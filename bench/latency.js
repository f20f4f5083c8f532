'use strict';
// Sequential batch-1 latency: nimify infer() (defaults; every run off the JS thread; with the
// batcher) and inferSync() vs onnxruntime-node's run(), in one
// process, on the same ORT build (nimify loads the libonnxruntime.so that onnxruntime-node ships).
// The engines are measured in interleaved rounds so that machine noise hits all alike.
// Targets (SPEC P1, P6): tiny MLP inferSync ≤ 0.5×, infer ≤ 0.8× onnxruntime-node's median;
// conv net within 5 %.
const path = require('node:path');
const ort = require('onnxruntime-node');
const { loadModel, Tensor, runtimeInfo } = require('../dist');

const MODELS = path.join(__dirname, '..', 'test', 'fixtures', 'models');
// LoadOptions.inlineBelowMicros when left out (the library's and `nimify serve`'s).
const { INLINE_BELOW_MICROS_DEFAULT: INLINE_BELOW_US } = require('../dist/runtime/options');

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}
function pct(xs, p) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((s.length * p) / 100))];
}

async function timeIt(fn, n, samples) {
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    await fn();
    samples.push(Number(process.hrtime.bigint() - t0) / 1000);
  }
}

async function benchModel({ name, file, dims, rounds, perRound }) {
  const size = dims.reduce((a, b) => a * b, 1);
  const data = Float32Array.from({ length: size }, (_, i) => Math.sin(i * 0.1));
  // The defaults: a lone request predicted to compute in at most inlineBelowMicros runs on the
  // JS thread within infer(), with no thread hop.
  const m = await loadModel(path.join(MODELS, file));
  // Every run on an executor thread (inlineBelowMicros 0): what infer() cost before inline runs.
  const off = await loadModel(path.join(MODELS, file), { inlineBelowMicros: 0 });
  // With the dynamic batcher (`nimify serve`'s setting), inline as well.
  const inl = await loadModel(path.join(MODELS, file), { batching: { maxBatchSize: 64 } });
  const s = await ort.InferenceSession.create(path.join(MODELS, file));
  const x = new Tensor('float32', data, dims);
  const ox = new ort.Tensor('float32', data, dims);
  const engines = {
    'onnxruntime-node run()': () => s.run({ x: ox }),
    [`nimify infer() (defaults: inline ≤ ${INLINE_BELOW_US} µs)`]: () => m.infer({ x }),
    'nimify infer(), inlineBelowMicros 0': () => off.infer({ x }),
    'nimify inferSync()': () => m.inferSync({ x }),
    'nimify infer(), batching': () => inl.infer({ x }),
  };
  const samples = Object.fromEntries(Object.keys(engines).map((k) => [k, []]));
  for (const fn of Object.values(engines)) await timeIt(fn, Math.min(200, perRound * 2), []); // warm-up
  for (let r = 0; r < rounds; r++) {
    for (const [k, fn] of Object.entries(engines)) await timeIt(fn, perRound, samples[k]);
  }
  const inlineStats = m.stats();
  await m.dispose();
  await off.dispose();
  await inl.dispose();
  await s.release();
  const base = median(samples['onnxruntime-node run()']);
  const baseP99 = pct(samples['onnxruntime-node run()'], 99);
  return {
    model: name,
    file,
    dims,
    runs: rounds * perRound,
    inlineRuns: inlineStats.inlineBatches,
    inferRequests: inlineStats.requests,
    results: Object.entries(samples).map(([engine, xs]) => ({
      engine,
      medianUs: +median(xs).toFixed(2),
      p99Us: +pct(xs, 99).toFixed(2),
      ratioVsOrtNode: +(median(xs) / base).toFixed(3),
      p99RatioVsOrtNode: +(pct(xs, 99) / baseP99).toFixed(3),
    })),
  };
}

async function main() {
  const quick = process.argv.includes('--quick');
  const cases = [
    { name: 'tiny MLP (64→256→10)', file: 'mlp_tiny.onnx', dims: [1, 64], rounds: quick ? 3 : 10, perRound: quick ? 500 : 2000 },
    { name: 'conv net (3×112×112)', file: 'convnet_bench.onnx', dims: [1, 3, 112, 112], rounds: quick ? 2 : 6, perRound: quick ? 10 : 40 },
  ];
  const out = [];
  for (const c of cases) out.push(await benchModel(c));
  return { kind: 'latency', runtime: runtimeInfo(), cases: out };
}

function toMarkdown(report) {
  const lines = ['| model | engine | median µs | p99 µs | median × onnxruntime-node | p99 × onnxruntime-node |', '|---|---|---:|---:|---:|---:|'];
  for (const c of report.cases) {
    for (const r of c.results) lines.push(`| ${c.model} | ${r.engine} | ${r.medianUs} | ${r.p99Us} | ${r.ratioVsOrtNode} | ${r.p99RatioVsOrtNode ?? '–'} |`);
  }
  const counts = report.cases.filter((c) => c.inferRequests !== undefined).map((c) => `${c.model}: ${c.inlineRuns} of ${c.inferRequests}`);
  if (counts.length > 0) lines.push('', `infer() requests of the defaults engine that ran on the JS thread / all of them, warm-up included: ${counts.join('; ')}.`);
  return lines.join('\n');
}

module.exports = { main, toMarkdown };
