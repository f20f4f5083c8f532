'use strict';
// Sequential batch-1 latency: nimify infer() and inferSync() vs onnxruntime-node's run(), in one
// process, on the same ORT build (nimify loads the libonnxruntime.so that onnxruntime-node ships).
// The three engines are measured in interleaved rounds so that machine noise hits all alike.
// Targets (SPEC P1, P6): tiny MLP inferSync ≤ 0.5×, infer ≤ 0.8× onnxruntime-node's median;
// conv net within 5 %.
const path = require('node:path');
const ort = require('onnxruntime-node');
const { loadModel, Tensor, runtimeInfo } = require('../dist');

const MODELS = path.join(__dirname, '..', 'test', 'fixtures', 'models');
// `nimify serve`'s inline setting, from where the server takes it.
const { SERVER_INLINE_BELOW_MICROS: INLINE_BELOW_US } = require('../dist/repository/config');

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
  const m = await loadModel(path.join(MODELS, file));
  // Batching with `inlineBelowMicros` (`nimify serve`'s setting): a lone request predicted to
  // compute in at most that many µs runs on the JS thread within infer(), with no thread hop.
  const inl = await loadModel(path.join(MODELS, file), { batching: { maxBatchSize: 64, inlineBelowMicros: INLINE_BELOW_US } });
  const s = await ort.InferenceSession.create(path.join(MODELS, file));
  const x = new Tensor('float32', data, dims);
  const ox = new ort.Tensor('float32', data, dims);
  const engines = {
    'onnxruntime-node run()': () => s.run({ x: ox }),
    'nimify infer()': () => m.infer({ x }),
    'nimify inferSync()': () => m.inferSync({ x }),
    [`nimify infer(), inline ≤ ${INLINE_BELOW_US} µs`]: () => inl.infer({ x }),
  };
  const samples = Object.fromEntries(Object.keys(engines).map((k) => [k, []]));
  for (const fn of Object.values(engines)) await timeIt(fn, Math.min(200, perRound * 2), []); // warm-up
  for (let r = 0; r < rounds; r++) {
    for (const [k, fn] of Object.entries(engines)) await timeIt(fn, perRound, samples[k]);
  }
  const inlineStats = inl.stats();
  await m.dispose();
  await inl.dispose();
  await s.release();
  const base = median(samples['onnxruntime-node run()']);
  const baseP99 = pct(samples['onnxruntime-node run()'], 99);
  return {
    model: name,
    file,
    dims,
    runs: rounds * perRound,
    inlineBatches: inlineStats.inlineBatches,
    inlineModelBatches: inlineStats.batches,
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
  const counts = report.cases.filter((c) => c.inlineModelBatches !== undefined).map((c) => `${c.model}: ${c.inlineBatches} of ${c.inlineModelBatches}`);
  if (counts.length > 0) lines.push('', `Runs on the JS thread (inline) / all runs of the inline-enabled model, warm-up included: ${counts.join('; ')}.`);
  return lines.join('\n');
}

module.exports = { main, toMarkdown };
