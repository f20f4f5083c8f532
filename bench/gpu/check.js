#!/usr/bin/env node
'use strict';
// The GPU check (issue 15 item 5), in one go, on a Linux GPU machine with no network:
//
//   node bench/gpu/check.js --ort <dir> [--cuda-lib <dir>]... [--out <dir>] [--quick]
//
// --ort       a folder with ONNX Runtime's GPU libraries: the core (libonnxruntime.so*) and the
//             CUDA provider — either ORT's own (libonnxruntime_providers_cuda.so beside
//             libonnxruntime_providers_shared.so) or a plugin-EP library (any other *cuda*.so,
//             or --ep-library <file>)
// --cuda-lib  folders with the CUDA 13 user-space libraries (cudart, cuBLAS, cuRAND, cuDNN);
//             repeatable
// --cuda-from-python  add every nvidia/*/lib folder of `python3`'s site-packages (the nvidia-*
//             wheels PyTorch installs) to --cuda-lib
// --out       where gpu-check.json and gpu-check.md go (default bench/results)
// --quick     short measurements (a smoke run)
// --cpu-only  skip CUDA (to check the script itself on a machine without a GPU)
//
// It loads the mid MLP and the ResNet-18-class conv net (scripts/bench-models.js: deterministic,
// generated here) on the CPU and on CUDA, checks that their outputs agree on the same inputs
// (relative tolerance below: CUDA runs fp32 math with TF32 tensor cores allowed, ~1e-3 relative),
// measures samples/s with batching at 1, 8 and 64 requests in flight (closed loop, as
// bench/throughput.js), the one-call ideal of batch C on each device, device I/O (pinned staging,
// device-resident results and a chain fed on the device, against the host path), CUDA graphs
// (enableCudaGraph with padded batch sizes: agreement and samples/s), and — when `python3 -c
// 'import torch'` works there — PyTorch eager on the same architectures and GPU
// (bench/gpu/torch_baseline.py). Everything is bounded by --budget-s (default 270 s): what does not
// fit is reported as skipped. Exit 0 when it ran (whatever it measured), 1 when CUDA could not be
// used or the outputs disagree, 2 on a usage error.
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const ROOT = path.join(__dirname, '..', '..');
/** Largest |cuda − cpu| / max|cpu| accepted (TF32 matmuls and convolutions on the GPU). */
const TOLERANCE = 1e-2;

function usage(message) {
  process.stderr.write(`gpu-check: ${message}\nusage: node bench/gpu/check.js --ort <dir> [--cuda-lib <dir>]... [--cuda-from-python] [--ep-library <file>] [--out <dir>] [--budget-s <s>] [--quick] [--cpu-only]\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const a = { ort: undefined, cudaLib: [], epLibrary: undefined, out: path.join(ROOT, 'bench', 'results'), budgetS: 270, quick: false, cpuOnly: false, models: ['mlp_mid', 'resnet18'] };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) usage(`${flag} needs a value`);
      return argv[++i];
    };
    if (flag === '--ort') a.ort = path.resolve(value());
    else if (flag === '--cuda-lib') a.cudaLib.push(path.resolve(value()));
    else if (flag === '--ep-library') a.epLibrary = path.resolve(value());
    else if (flag === '--out') a.out = path.resolve(value());
    else if (flag === '--budget-s') {
      a.budgetS = Number(value());
      if (!(a.budgetS > 0)) usage(`--budget-s: expected a positive number of seconds, received ${JSON.stringify(argv[i])}`);
    } else if (flag === '--models') a.models = value().split(',').filter(Boolean);
    else if (flag === '--quick') a.quick = true;
    else if (flag === '--cpu-only') a.cpuOnly = true;
    else if (flag === '--cuda-from-python') a.cudaLib.push(...pythonCudaLibs());
    else usage(`unknown option ${JSON.stringify(flag)}`);
  }
  for (const m of a.models) if (!['mlp_mid', 'resnet18', 'mlp_tiny'].includes(m)) usage(`--models: unknown model ${JSON.stringify(m)} (mlp_mid, resnet18, mlp_tiny)`);
  if (!a.cpuOnly && a.ort === undefined) usage('--ort <dir> is required (or --cpu-only)');
  if (a.ort !== undefined && !fs.existsSync(a.ort)) usage(`--ort: ${a.ort} does not exist`);
  for (const d of a.cudaLib) if (!fs.existsSync(d)) usage(`--cuda-lib: ${d} does not exist`);
  return a;
}

/** The lib folders of the nvidia-* Python packages (cudart, cublas, curand, cudnn, ...). */
function pythonCudaLibs() {
  const r = spawnSync('python3', ['-c', 'import nvidia, sys; print("\\n".join(nvidia.__path__))'], { encoding: 'utf8' });
  if (r.status !== 0) usage(`--cuda-from-python: python3 has no nvidia packages (${(r.stderr || r.error?.message || '').trim().split('\n').pop()})`);
  const libs = [];
  for (const root of r.stdout.trim().split('\n').filter(Boolean)) {
    for (const pkg of fs.readdirSync(root)) {
      const lib = path.join(root, pkg, 'lib');
      if (fs.existsSync(lib)) libs.push(lib);
    }
  }
  if (libs.length === 0) usage('--cuda-from-python: no nvidia/*/lib folder found');
  return libs;
}

/** The ORT core and how CUDA is reached from the --ort folder. */
function layout(a) {
  const files = fs.readdirSync(a.ort);
  const core = ['libonnxruntime.so.1', 'libonnxruntime.so'].find((f) => files.includes(f)) ?? files.find((f) => /^libonnxruntime\.so\.\d/.test(f));
  if (core === undefined) usage(`--ort: no libonnxruntime.so* in ${a.ort}`);
  if (a.epLibrary) return { core: path.join(a.ort, core), provider: { name: 'cuda', library: a.epLibrary, required: true } };
  if (files.includes('libonnxruntime_providers_cuda.so') && files.includes('libonnxruntime_providers_shared.so')) {
    return { core: path.join(a.ort, core), provider: { name: 'cuda', required: true } };
  }
  const plugin = files.find((f) => /cuda.*\.so$/.test(f) && !f.startsWith('libonnxruntime.so'));
  if (plugin === undefined) usage(`--ort: neither libonnxruntime_providers_cuda.so nor a plugin CUDA EP library in ${a.ort} (or give --ep-library)`);
  return { core: path.join(a.ort, core), provider: { name: 'cuda', library: path.join(a.ort, plugin), required: true } };
}

// The dynamic loader reads LD_LIBRARY_PATH once, at process start: the parent sets it (and the
// ORT core nimify loads) and runs the check in a child.
if (process.env.NIMIFY_GPU_CHECK_CHILD !== '1') {
  const a = parseArgs(process.argv.slice(2));
  const env = { ...process.env, NIMIFY_GPU_CHECK_CHILD: '1' };
  if (!a.cpuOnly) {
    const { core } = layout(a);
    env.NIMIFY_ORT_LIBRARY = core;
    env.LD_LIBRARY_PATH = [...a.cudaLib, a.ort, process.env.LD_LIBRARY_PATH].filter(Boolean).join(':');
  }
  const r = spawnSync(process.execPath, [__filename, ...process.argv.slice(2)], { env, stdio: 'inherit' });
  process.exit(r.status ?? 1);
}

const a = parseArgs(process.argv.slice(2));
const { loadModel, Tensor, runtimeInfo } = require(path.join(ROOT, 'dist'));
const { benchModel } = require(path.join(ROOT, 'scripts', 'bench-models.js'));

const started = performance.now();
const budgetLeftMs = () => a.budgetS * 1000 - (performance.now() - started);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const timing = a.quick ? { warmupMs: 200, durationMs: 400 } : { warmupMs: 700, durationMs: 2000 };

const MODELS = {
  mlp_tiny: { name: 'tiny MLP (64→256→10)', file: () => path.join(ROOT, 'test', 'fixtures', 'models', 'mlp_tiny.onnx'), dims: [64] },
  mlp_mid: { name: 'mid MLP (512→2048→2048→512)', file: () => benchModel('mlp_mid.onnx'), dims: [512] },
  resnet18: { name: 'ResNet-18-class conv net (3×224×224)', file: () => benchModel('resnet18.onnx'), dims: [3, 224, 224] },
};

/** Deterministic inputs in [-1, 1). */
function inputs(dims, rows, seed) {
  const n = dims.reduce((x, y) => x * y, 1) * rows;
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 31 - 1;
  }
  return out;
}

async function closedLoop(call, inflight) {
  let stop = false;
  let counting = false;
  let done = 0;
  const loop = async (i) => {
    while (!stop) {
      await call(i);
      if (counting) done++;
    }
  };
  const loops = Array.from({ length: inflight }, (_, i) => loop(i));
  await sleep(timing.warmupMs);
  counting = true;
  const t0 = performance.now();
  await sleep(timing.durationMs);
  const elapsed = performance.now() - t0;
  counting = false;
  stop = true;
  await Promise.all(loops);
  return +((done / elapsed) * 1000).toFixed(1);
}

/** One call of batch `rows`, median of a few: the device's one-batch ideal. */
async function ideal(model, dims, rows) {
  const x = new Tensor('float32', inputs(dims, rows, 7), [rows, ...dims]);
  await model.infer({ x });
  const times = [];
  const deadline = performance.now() + (a.quick ? 300 : 1500);
  while (times.length < 3 || (performance.now() < deadline && times.length < 50)) {
    const t0 = performance.now();
    await model.infer({ x });
    times.push(performance.now() - t0);
  }
  times.sort((p, q) => p - q);
  return +((rows / times[Math.floor(times.length / 2)]) * 1000).toFixed(1);
}

/** max |a − b| / max |a|. */
function relativeDiff(a, b) {
  let maxAbs = 0;
  let maxDiff = 0;
  for (let i = 0; i < a.length; i++) {
    maxAbs = Math.max(maxAbs, Math.abs(a[i]));
    maxDiff = Math.max(maxDiff, Math.abs(a[i] - b[i]));
  }
  return maxDiff / Math.max(maxAbs, 1e-12);
}

/**
 * Device I/O on one loaded model (issue 15 item 3): where it keeps tensors, whether batches are
 * staged in pinned memory, device-resident results (outputLocation 'device': concurrent batched
 * requests, each a view of its rows) against the host path, and — where the model's output fits
 * its input (the mid MLP) — a chain fed on the device against the same chain through the host.
 */
async function deviceIo(key, spec, model) {
  const io = { device: model.device, pinnedStaging: model.pinnedStaging };
  const xs = Array.from({ length: 8 }, (_, i) => new Tensor('float32', inputs(spec.dims, 1, 500 + i), [1, ...spec.dims]));
  const [host, dev] = await Promise.all([Promise.all(xs.map((x) => model.infer({ x }))), Promise.all(xs.map((x) => model.infer({ x }, { outputLocation: 'device' })))]);
  io.resultLocation = dev[0].y.location;
  let worst = 0;
  for (let i = 0; i < xs.length; i++) worst = Math.max(worst, relativeDiff(host[i].y.data, (await dev[i].y.download()).data));
  io.deviceOutputs = { relative: +worst.toExponential(3), ok: worst <= TOLERANCE };
  if (key === 'mlp_mid') {
    const viaHost = (await model.infer({ x: host[0].y })).y.data;
    const viaDevice = await (await model.infer({ x: dev[0].y }, { outputLocation: 'device' })).y.download();
    const r = relativeDiff(viaHost, viaDevice.data);
    io.chained = { relative: +r.toExponential(3), ok: r <= TOLERANCE };
  }
  for (const d of dev) d.y.dispose();
  return io;
}

async function checkModel(key, provider, report) {
  const spec = MODELS[key];
  const file = spec.file();
  const batching = { maxBatchSize: 64, maxQueueDelayMicros: key === 'resnet18' ? 20000 : 5000, adaptive: true };
  const row = { model: spec.name, agreement: null, devices: {} };
  report.models.push(row);
  const devices = { cpu: await loadModel(file, { batching }) };
  if (provider) {
    const t0 = performance.now();
    devices.cuda = await loadModel(file, { batching, executionProviders: [provider] }).catch(async (err) => {
      await devices.cpu.dispose();
      throw err;
    });
    row.cudaLoadMs = Math.round(performance.now() - t0);
    row.cudaProviders = devices.cuda.providers;
  }
  try {
    if (devices.cuda) {
      const x = new Tensor('float32', inputs(spec.dims, 8, 1), [8, ...spec.dims]);
      const [c, g] = [(await devices.cpu.infer({ x })).y.data, (await devices.cuda.infer({ x })).y.data];
      let maxAbs = 0;
      let maxDiff = 0;
      for (let i = 0; i < c.length; i++) {
        maxAbs = Math.max(maxAbs, Math.abs(c[i]));
        maxDiff = Math.max(maxDiff, Math.abs(c[i] - g[i]));
      }
      const relative = maxDiff / Math.max(maxAbs, 1e-12);
      row.agreement = { maxAbsDiff: maxDiff, maxAbsCpu: maxAbs, relative: +relative.toExponential(3), tolerance: TOLERANCE, ok: relative <= TOLERANCE };
      // CUDA graphs: batches padded to three sizes, each replayed on its fixed buffers.
      row.cudaGraph = await cudaGraph(key, spec, provider, devices.cpu).catch((err) => ({ error: `${err.code ?? 'ERROR'}: ${err.message}`, ok: false }));
    }
    row.io = {};
    for (const [device, model] of Object.entries(devices)) row.io[device] = await deviceIo(key, spec, model);
    for (const [device, model] of Object.entries(devices)) {
      const r = (row.devices[device] = { inflight: {}, ideal: {} });
      const xs = Array.from({ length: 64 }, (_, i) => new Tensor('float32', inputs(spec.dims, 1, 100 + i), [1, ...spec.dims]));
      for (const c of [1, 8, 64]) {
        // Each measurement needs about warmup + duration (+ the ideal's time); keep 10 s in reserve.
        if (budgetLeftMs() < timing.warmupMs + timing.durationMs + (a.quick ? 500 : 2500) + 10_000) {
          r.inflight[c] = 'skipped: time budget';
          continue;
        }
        r.ideal[c] = await ideal(model, spec.dims, c);
        r.inflight[c] = await closedLoop((i) => model.infer({ x: xs[i] }), c);
        process.stderr.write(`  ${spec.name} on ${device} @${c}: ${r.inflight[c]} samples/s (ideal ${r.ideal[c]})\n`);
      }
    }
  } finally {
    for (const m of Object.values(devices)) await m.dispose();
  }
}

/** The model on CUDA with CUDA graphs (enableCudaGraph, padToPreferred 1/8/64): agreement with the CPU and samples/s at 64 in flight. */
async function cudaGraph(key, spec, provider, cpu) {
  const batching = { maxBatchSize: 64, maxQueueDelayMicros: 5000, preferredBatchSizes: [1, 8, 64], padToPreferred: true };
  const model = await loadModel(spec.file(), { batching, executionProviders: [{ ...provider, enableCudaGraph: true }] });
  try {
    const xs = Array.from({ length: 64 }, (_, i) => new Tensor('float32', inputs(spec.dims, 1, 900 + i), [1, ...spec.dims]));
    // Three rounds: ORT captures a size's graph on its first runs and replays it afterwards.
    let worst = 0;
    for (let round = 0; round < 3; round++) {
      const outs = await Promise.all(xs.slice(0, 5 + round * 20).map((x) => model.infer({ x })));
      for (let i = 0; i < outs.length; i++) worst = Math.max(worst, relativeDiff((await cpu.infer({ x: xs[i] })).y.data, outs[i].y.data));
    }
    const result = { relative: +worst.toExponential(3), ok: worst <= TOLERANCE, batchSizes: model.stats().batchSizeHistogram };
    if (budgetLeftMs() > timing.warmupMs + timing.durationMs + 15_000) result.inflight64 = await closedLoop((i) => model.infer({ x: xs[i] }), 64);
    process.stderr.write(`  ${spec.name} on cuda with CUDA graphs: ${result.ok ? 'agrees' : 'DISAGREES'} (${result.relative}), @64 ${result.inflight64 ?? 'skipped'} samples/s\n`);
    return result;
  } finally {
    await model.dispose();
  }
}

function torchBaseline(models) {
  const script = path.join(__dirname, 'torch_baseline.py');
  const wanted = models.filter((m) => m !== 'mlp_tiny');
  if (wanted.length === 0) return { skipped: 'no model to compare' };
  const seconds = a.quick ? 0.3 : 1.5;
  // A generous bound: 3 batch sizes per model plus start-up (CUDA context, cuDNN autotuning).
  const timeoutMs = Math.max(10_000, Math.min(budgetLeftMs() - 5_000, wanted.length * 3 * (seconds + 3) * 1000 + 30_000));
  if (budgetLeftMs() < 15_000) return { skipped: 'time budget' };
  const r = spawnSync('python3', [script, '--seconds', String(seconds), '--models', wanted.join(','), ...(a.cpuOnly ? ['--cpu'] : [])], { encoding: 'utf8', timeout: timeoutMs });
  if (r.error) return { skipped: `python3: ${r.error.message}` };
  const last = (r.stdout || '').trim().split('\n').pop() || '';
  try {
    const parsed = JSON.parse(last);
    return r.status === 0 ? parsed : { skipped: parsed.error ?? `exit ${r.status}` };
  } catch {
    return { skipped: `no result (exit ${r.status}${r.signal ? `, ${r.signal}` : ''}): ${(r.stderr || '').trim().split('\n').slice(-2).join(' ')}` };
  }
}

function markdown(report) {
  const lines = ['## GPU check', '', `Machine: ${report.machine.cpu} (${report.machine.cores} cores), GPU: ${report.gpu ?? 'none'}, Node ${report.machine.node}`, `ONNX Runtime ${report.runtime.version} (${report.runtime.library}); CUDA provider: ${report.provider ? JSON.stringify(report.provider) : 'not used (--cpu-only)'}`, ''];
  lines.push(`Outputs agree when max |cuda − cpu| / max |cpu| ≤ ${TOLERANCE} (TF32 math on the GPU). Samples/s, batching on (max 64), C batch-1 requests in flight; ideal = one call of batch C on that device.`, '');
  lines.push('| model | device | agreement | C=1 | C=8 | C=64 | ideal 1 | ideal 8 | ideal 64 | PyTorch eager 1 | 8 | 64 |', '|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const m of report.models) {
    for (const [device, r] of Object.entries(m.devices)) {
      const key = Object.keys(MODELS).find((k) => MODELS[k].name === m.model);
      const torch = device === 'cuda' || report.torch?.device === 'cpu' ? report.torch?.models?.[key] : undefined;
      const agreement = device === 'cuda' && m.agreement ? `${m.agreement.ok ? 'ok' : 'DISAGREE'} (${m.agreement.relative})` : '';
      lines.push(`| ${m.model} | ${device} | ${agreement} | ${[1, 8, 64].map((c) => r.inflight[c] ?? '').join(' | ')} | ${[1, 8, 64].map((c) => r.ideal[c] ?? '').join(' | ')} | ${[1, 8, 64].map((c) => torch?.[c] ?? '').join(' | ')} |`);
    }
  }
  lines.push('', 'Device I/O (outputLocation \'device\': 8 concurrent batched requests downloaded vs the host path; mid MLP: its output fed back on the device vs through the host):', '');
  lines.push('| model | device | keeps tensors on | pinned staging | device results | chained on device | CUDA graphs (agreement, C=64 samples/s) |', '|---|---|---|---|---|---|---|');
  for (const m of report.models) {
    for (const [device, io] of Object.entries(m.io ?? {})) {
      const graph = device === 'cuda' && m.cudaGraph ? (m.cudaGraph.error ? `failed: ${m.cudaGraph.error}` : `${m.cudaGraph.ok ? 'ok' : 'DISAGREE'} (${m.cudaGraph.relative}), ${m.cudaGraph.inflight64 ?? 'skipped'}`) : '';
      lines.push(`| ${m.model} | ${device} | ${io.resultLocation} | ${io.pinnedStaging} | ${io.deviceOutputs.ok ? 'ok' : 'DISAGREE'} (${io.deviceOutputs.relative}) | ${io.chained ? `${io.chained.ok ? 'ok' : 'DISAGREE'} (${io.chained.relative})` : ''} | ${graph} |`);
    }
  }
  lines.push('', report.torch?.skipped ? `PyTorch baseline: skipped (${report.torch.skipped}).` : `PyTorch ${report.torch.torch} eager on ${report.torch.device}, fp32, TF32 ${JSON.stringify(report.torch.tf32)}: one forward pass of batch 1 / 8 / 64 at a time.`);
  lines.push('', `Took ${report.seconds} s.`);
  return lines.join('\n') + '\n';
}

async function main() {
  const provider = a.cpuOnly ? null : layout(a).provider;
  const gpu = spawnSync('nvidia-smi', ['--query-gpu=name,memory.total,driver_version', '--format=csv,noheader'], { encoding: 'utf8' });
  const report = {
    machine: { cpu: os.cpus()[0]?.model ?? 'unknown', cores: os.cpus().length, node: process.version },
    gpu: gpu.status === 0 ? gpu.stdout.trim() : null,
    runtime: runtimeInfo(),
    provider,
    models: [],
    torch: null,
    ok: true,
  };
  let failure = null;
  try {
    for (const key of a.models) await checkModel(key, provider, report);
  } catch (err) {
    failure = `${err.code ?? 'ERROR'}: ${err.message}`;
    report.error = failure;
  }
  report.torch = torchBaseline(a.models);
  report.seconds = +((performance.now() - started) / 1000).toFixed(1);
  report.ok =
    failure === null &&
    report.models.every((m) => (m.agreement === null || m.agreement.ok) && Object.values(m.io ?? {}).every((io) => io.deviceOutputs.ok && (io.chained?.ok ?? true)) && (m.cudaGraph?.ok ?? true));
  fs.mkdirSync(a.out, { recursive: true });
  fs.writeFileSync(path.join(a.out, 'gpu-check.json'), JSON.stringify(report, null, 2) + '\n');
  fs.writeFileSync(path.join(a.out, 'gpu-check.md'), markdown(report));
  process.stderr.write(`gpu-check: ${report.ok ? 'ok' : `FAILED${failure ? `: ${failure}` : ' (outputs disagree)'}`} in ${report.seconds} s -> ${path.join(a.out, 'gpu-check.{json,md}')}\n`);
  process.exit(report.ok ? 0 : 1);
}

main().catch((err) => {
  process.stderr.write(`gpu-check: ${err.stack ?? err}\n`);
  process.exit(1);
});
