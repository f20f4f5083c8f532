'use strict';
// Closed-loop throughput at 1, 8 and 64 requests in flight (each a batch-1 request), for
// onnxruntime-node's run(), nimify infer() without batching (defaults), and nimify infer() with
// the native dynamic batcher, without (inlineBelowMicros 0) and with inline batches (the default
// inlineBelowMicros, `nimify serve`'s too); plus
// the ideal (one onnxruntime-node call of batch C), the event-loop delay p99 during each run, the
// adaptive delay against fixed delays on a sparse and a dense load, and RSS over a long run.
// Same process, same ORT library for both engines.
// Targets (SPEC): P2 mid MLP at 64 in flight ≥ 3.5× onnxruntime-node and ≥ 0.8× the ideal;
// P3 tiny MLP at 64 ≥ 5×; P4 event-loop delay p99 ≤ 5 ms during P2; P7 RSS after 1M
// inferences within 5 % of RSS after the first 10k.
const path = require('node:path');
const { monitorEventLoopDelay, performance } = require('node:perf_hooks');
const ort = require('onnxruntime-node');
const { loadModel, Tensor, runtimeInfo } = require('../dist');
const { benchModel } = require('../scripts/bench-models');

const FIXTURES = path.join(__dirname, '..', 'test', 'fixtures', 'models');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const INFLIGHT = [1, 8, 64];
const RESOLUTION_MS = 1;
// LoadOptions.inlineBelowMicros when left out (the library's and `nimify serve`'s).
const { INLINE_BELOW_MICROS_DEFAULT: INLINE_BELOW_US } = require('../dist/runtime/options');

function pct(sorted, p) {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))] : 0;
}

/** `inflight` loops each awaiting `call(i)` back to back; measured after a warm-up. */
async function closedLoop(call, inflight, { warmupMs, durationMs }) {
  let stop = false;
  let counting = false;
  let done = 0;
  const lat = [];
  const loop = async (i) => {
    while (!stop) {
      const t0 = performance.now();
      await call(i);
      if (counting) {
        done++;
        lat.push(performance.now() - t0);
      }
    }
  };
  const loops = Array.from({ length: inflight }, (_, i) => loop(i));
  await sleep(warmupMs);
  const eld = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
  eld.enable();
  counting = true;
  const t0 = performance.now();
  await sleep(durationMs);
  const elapsed = performance.now() - t0;
  counting = false;
  eld.disable();
  stop = true;
  await Promise.all(loops);
  lat.sort((a, b) => a - b);
  return {
    samplesPerSec: +((done / elapsed) * 1000).toFixed(1),
    latencyP50Ms: +pct(lat, 50).toFixed(3),
    latencyP99Ms: +pct(lat, 99).toFixed(3),
    // monitorEventLoopDelay reports the timer interval; the delay is what exceeds the resolution.
    eventLoopDelayP99Ms: +Math.max(0, eld.percentile(99) / 1e6 - RESOLUTION_MS).toFixed(3),
  };
}

/** Open loop: one request every `gapMs`, `n` requests; latency of each. */
async function openLoop(call, { gapMs, n }) {
  const lat = [];
  const pending = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    pending.push(call(i).then(() => lat.push(performance.now() - t0)));
    await sleep(gapMs);
  }
  await Promise.all(pending);
  lat.sort((a, b) => a - b);
  return { meanMs: +(lat.reduce((a, b) => a + b, 0) / lat.length).toFixed(3), p50Ms: +pct(lat, 50).toFixed(3), p99Ms: +pct(lat, 99).toFixed(3) };
}

function inputs(dims, count) {
  const size = dims.reduce((a, b) => a * b, 1);
  return Array.from({ length: count }, (_, k) => Float32Array.from({ length: size }, (_, i) => Math.sin(i * 0.01 + k)));
}

async function benchModelThroughput(c, quick) {
  const data = inputs(c.dims, 64);
  const ortSession = await ort.InferenceSession.create(c.file);
  const ortX = data.map((d) => new ort.Tensor('float32', d, c.dims));
  const plain = await loadModel(c.file);
  // Every batch on the instance thread (inlineBelowMicros 0).
  const batched = await loadModel(c.file, { inlineBelowMicros: 0, batching: { maxBatchSize: 64, maxQueueDelayMicros: c.delayCapUs, adaptive: true } });
  // The same with the default inlineBelowMicros (`nimify serve`'s too): batches cheap enough run
  // on the JS thread at the end of the turn that queued them, with no thread hops.
  const inline = await loadModel(c.file, { batching: { maxBatchSize: 64, maxQueueDelayMicros: c.delayCapUs, adaptive: true } });
  const nx = data.map((d) => new Tensor('float32', d, c.dims));
  const engines = {
    'onnxruntime-node': (i) => ortSession.run({ x: ortX[i] }),
    'nimify (no batching)': (i) => plain.infer({ x: nx[i] }),
    'nimify (batching)': (i) => batched.infer({ x: nx[i] }),
    'nimify (batching, inline)': (i) => inline.infer({ x: nx[i] }),
  };
  const timing = quick ? { warmupMs: c.warmupMs / 2, durationMs: c.durationMs / 3 } : c;
  const rows = [];
  for (const inflight of INFLIGHT) {
    // The ideal: one onnxruntime-node call of batch `inflight` (median of several).
    const big = new Float32Array(inflight * data[0].length);
    for (let k = 0; k < inflight; k++) big.set(data[k], k * data[0].length);
    const bigX = new ort.Tensor('float32', big, [inflight, ...c.dims.slice(1)]);
    await ortSession.run({ x: bigX });
    const times = [];
    for (let r = 0; r < c.idealRuns; r++) {
      const t0 = performance.now();
      await ortSession.run({ x: bigX });
      times.push(performance.now() - t0);
    }
    times.sort((a, b) => a - b);
    const ideal = +((inflight / pct(times, 50)) * 1000).toFixed(1);
    const row = { inflight, idealSamplesPerSec: ideal, engines: {} };
    // Interleaved rounds (every engine once per round: a noisy minute of the VM hits all of them
    // alike); each engine's figures are those of its median round, every round's rate is kept.
    const rounds = quick ? 1 : c.rounds;
    const runs = Object.fromEntries(Object.keys(engines).map((name) => [name, []]));
    for (let r = 0; r < rounds; r++) {
      for (const [name, call] of Object.entries(engines)) runs[name].push(await closedLoop(call, inflight, timing));
    }
    for (const [name, list] of Object.entries(runs)) {
      const sorted = [...list].sort((a, b) => a.samplesPerSec - b.samplesPerSec);
      row.engines[name] = { ...sorted[Math.floor(sorted.length / 2)], roundsSamplesPerSec: list.map((x) => x.samplesPerSec) };
    }
    const base = row.engines['onnxruntime-node'].samplesPerSec;
    for (const r of Object.values(row.engines)) {
      r.ratioVsOrtNode = +(r.samplesPerSec / base).toFixed(2);
      r.ratioVsIdeal = +(r.samplesPerSec / ideal).toFixed(2);
    }
    rows.push(row);
    console.error(`  ${c.name} @${inflight}: ${Object.entries(row.engines).map(([k, v]) => `${k} ${v.samplesPerSec}/s`).join(', ')}, ideal ${ideal}/s`);
  }
  const stats = batched.stats();
  const inlineStats = inline.stats();
  await plain.dispose();
  await batched.dispose();
  await inline.dispose();
  await ortSession.release();
  return { model: c.name, dims: c.dims, rounds: quick ? 1 : c.rounds, rows, batchSizeHistogram: stats.batchSizeHistogram, inlineBatches: inlineStats.inlineBatches, inlineModelBatches: inlineStats.batches };
}

/**
 * Adaptive vs fixed delays: mean latency on a sparse open loop, samples/s on a dense closed
 * loop. The settings run in interleaved rounds (machine noise hits all alike) and each figure
 * is the median over the rounds.
 */
async function benchDelays(c, quick) {
  const data = inputs(c.dims, 64);
  const nx = data.map((d) => new Tensor('float32', d, c.dims));
  const settings = [...c.fixedDelaysUs.map((d) => ({ label: `fixed ${d} µs`, adaptive: false, delay: d })), { label: `adaptive (cap ${c.delayCapUs} µs)`, adaptive: true, delay: c.delayCapUs }];
  const models = [];
  // inlineBelowMicros 0: the delay policy decides when every batch runs (a lone request inline
  // would not wait at all, whatever the delay).
  for (const s of settings) models.push(await loadModel(c.file, { inlineBelowMicros: 0, batching: { maxBatchSize: 64, maxQueueDelayMicros: s.delay, adaptive: s.adaptive } }));
  const runs = settings.map(() => ({ sparse: [], dense: [] }));
  const rounds = quick ? 1 : 3;
  const timing = quick ? { warmupMs: c.warmupMs / 2, durationMs: c.durationMs / 3 } : { warmupMs: c.warmupMs / 2, durationMs: c.durationMs / 2 };
  for (let r = 0; r < rounds; r++) {
    for (let k = 0; k < settings.length; k++) {
      const call = (i) => models[k].infer({ x: nx[i % 64] });
      runs[k].sparse.push(await openLoop(call, { gapMs: c.sparseGapMs, n: quick ? 30 : c.sparseN }));
      runs[k].dense.push(await closedLoop(call, 64, timing));
    }
  }
  const med = (xs, f) => xs.map(f).sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const out = settings.map((s, k) => ({
    setting: s.label,
    sparseMeanMs: med(runs[k].sparse, (x) => x.meanMs),
    sparseP99Ms: med(runs[k].sparse, (x) => x.p99Ms),
    denseSamplesPerSec: med(runs[k].dense, (x) => x.samplesPerSec),
    denseP99Ms: med(runs[k].dense, (x) => x.latencyP99Ms),
    denseAllRounds: runs[k].dense.map((x) => x.samplesPerSec),
  }));
  for (const m of models) await m.dispose();
  for (const o of out) console.error(`  delays ${c.name} ${o.setting}: sparse mean ${o.sparseMeanMs} ms, dense ${o.denseSamplesPerSec}/s (${o.denseAllRounds.join(', ')})`);
  return { model: c.name, sparseGapMs: c.sparseGapMs, rounds, settings: out };
}

/** RSS after the first 10k and after `total` batch-1 inferences at 64 in flight (batching). */
async function benchRss(file, total) {
  const m = await loadModel(file, { inlineBelowMicros: 0, batching: { maxBatchSize: 64, maxQueueDelayMicros: 2000 } });
  const nx = inputs([1, 64], 64).map((d) => new Tensor('float32', d, [1, 64]));
  let done = 0;
  const marks = [];
  const next = [10_000, ...Array.from({ length: 10 }, (_, k) => Math.round(((k + 1) * total) / 10))];
  const loop = async (i) => {
    while (done < total) {
      await m.infer({ x: nx[i] });
      done++;
      if (done === next[0]) {
        next.shift();
        marks.push({ inferences: done, rssMiB: +(process.memoryUsage().rss / 2 ** 20).toFixed(1) });
      }
    }
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: 64 }, (_, i) => loop(i)));
  const seconds = (performance.now() - t0) / 1000;
  await m.dispose();
  const first = marks[0].rssMiB;
  const last = marks.at(-1).rssMiB;
  return { inferences: total, seconds: +seconds.toFixed(1), marks, rssAfter10kMiB: first, rssAfterAllMiB: last, growthPct: +(((last - first) / first) * 100).toFixed(2) };
}

async function main() {
  const quick = process.argv.includes('--quick');
  const models = [
    { name: 'tiny MLP (64→256→10)', file: path.join(FIXTURES, 'mlp_tiny.onnx'), dims: [1, 64], delayCapUs: 2000, warmupMs: 500, durationMs: 2000, idealRuns: 200, rounds: 3, fixedDelaysUs: [0, 100, 500, 2000], sparseGapMs: 2, sparseN: 300 },
    { name: 'mid MLP (512→2048→2048→512)', file: benchModel('mlp_mid.onnx'), dims: [1, 512], delayCapUs: 5000, warmupMs: 1000, durationMs: 3000, idealRuns: 20, rounds: 3, fixedDelaysUs: [0, 500, 2000, 5000], sparseGapMs: 20, sparseN: 100 },
    { name: 'ResNet-18-class conv net (3×224×224)', file: benchModel('resnet18.onnx'), dims: [1, 3, 224, 224], delayCapUs: 20000, warmupMs: 3000, durationMs: 8000, idealRuns: 3, rounds: 1 },
  ];
  const throughput = [];
  for (const c of models) throughput.push(await benchModelThroughput(c, quick));
  const delays = [];
  for (const c of models.filter((m) => m.fixedDelaysUs)) delays.push(await benchDelays(c, quick));
  const rss = await benchRss(models[0].file, quick ? 100_000 : 1_000_000);
  return { kind: 'throughput', runtime: runtimeInfo(), inflight: INFLIGHT, throughput, delays, rss };
}

const fmt = (n) => (n >= 1000 ? Math.round(n).toLocaleString('en-US') : String(n));

function toMarkdown(report) {
  const lines = [
    `Samples/s with C batch-1 requests in flight (closed loop); × = ratio to onnxruntime-node; ideal = one onnxruntime-node call of batch C; ELD = event-loop delay p99 (ms). "batching + inline": the same batching with the default \`inlineBelowMicros: ${INLINE_BELOW_US}\` (\`nimify serve\`'s too): a batch predicted to compute in ≤ ${INLINE_BELOW_US} µs runs on the JS thread at the end of its turn (inline batches / all batches of that model after the three C values); "batching": \`inlineBelowMicros: 0\`, every batch on the instance thread. "no batching": the defaults (lone requests inline). Each figure is its engine's median of ${[...new Set(report.throughput.map((t) => t.rounds))].join(' / ')} interleaved rounds (${report.throughput.map((t) => `${t.model}: ${t.rounds}`).join('; ')}); the rates of the tiny MLP's rounds at 64 in flight are listed below the table.`,
    '',
    '| model | C | onnxruntime-node | ELD | nimify, no batching | ELD | nimify, batching | × | × ideal | ELD | batching + inline | × | × ideal | ELD | ideal |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const t of report.throughput) {
    for (const r of t.rows) {
      const o = r.engines['onnxruntime-node'];
      const p = r.engines['nimify (no batching)'];
      const b = r.engines['nimify (batching)'];
      const i = r.engines['nimify (batching, inline)'];
      const inl = i ? `${fmt(i.samplesPerSec)} | ${i.ratioVsOrtNode} | ${i.ratioVsIdeal} | ${i.eventLoopDelayP99Ms}` : '– | – | – | –';
      lines.push(`| ${t.model} | ${r.inflight} | ${fmt(o.samplesPerSec)} | ${o.eventLoopDelayP99Ms} | ${fmt(p.samplesPerSec)} | ${p.eventLoopDelayP99Ms} | ${fmt(b.samplesPerSec)} | ${b.ratioVsOrtNode} | ${b.ratioVsIdeal} | ${b.eventLoopDelayP99Ms} | ${inl} | ${fmt(r.idealSamplesPerSec)} |`);
    }
  }
  const tiny = report.throughput[0]?.rows.find((r) => r.inflight === 64);
  if (tiny) {
    lines.push('', `${report.throughput[0].model} at 64 in flight, per round: ${Object.entries(tiny.engines).map(([k, v]) => `${k} ${(v.roundsSamplesPerSec ?? [v.samplesPerSec]).map(fmt).join(' / ')}`).join('; ')}.`);
  }
  const inlineCounts = report.throughput.filter((t) => t.inlineModelBatches !== undefined).map((t) => `${t.model}: ${fmt(t.inlineBatches)} / ${fmt(t.inlineModelBatches)}`);
  if (inlineCounts.length > 0) lines.push('', `Inline batches / all batches (batching + inline): ${inlineCounts.join('; ')}.`);
  lines.push('', 'Queue delay: mean latency with one request every few ms (sparse), samples/s at 64 in flight (dense); medians of interleaved rounds.', '', '| model | setting | sparse mean ms | sparse p99 ms | dense samples/s | dense p99 ms |', '|---|---|---:|---:|---:|---:|');
  for (const d of report.delays) {
    for (const s of d.settings) lines.push(`| ${d.model} (sparse: 1 per ${d.sparseGapMs} ms) | ${s.setting} | ${s.sparseMeanMs} | ${s.sparseP99Ms} | ${fmt(s.denseSamplesPerSec)} | ${s.denseP99Ms} |`);
  }
  const r = report.rss;
  lines.push('', `RSS (tiny MLP, batching, 64 in flight): ${r.rssAfter10kMiB} MiB after 10k inferences, ${r.rssAfterAllMiB} MiB after ${fmt(r.inferences)} (${r.growthPct >= 0 ? '+' : ''}${r.growthPct} %), ${r.seconds} s.`);
  return lines.join('\n');
}

module.exports = { main, toMarkdown, toSvg: (report, machine) => require('./chart').throughputSvg(report, machine) };
