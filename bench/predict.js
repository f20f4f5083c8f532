'use strict';
// The image predict route under load: where should image preprocessing run, and what does it
// cost next to a hand-written onnxruntime-node server? Four servers, each a child process, serving
// examples/digits (a small CNN: 8×8 grayscale in, 10 logits out; its config.json declares image
// preprocess + postprocess) to the same photo-sized JPEG bodies:
//
//   pool          nimify's server (buildServer from dist), its predict route POST
//                 /v1/models/digits/predict, as shipped: decode + resize + tensor in the Piscina
//                 preprocessing pool (src/pipeline/pool.ts; threads × tasksPerThread tasks at once,
//                 read from the pool), then the model, then top-3 predictions. examples/digits'
//                 config as it is, so nimify's default resampler, 'pillow': sharp decodes the JPEG
//                 at full size and nimify resamples it to 8×8 with Pillow's arithmetic in
//                 JavaScript (src/pipeline/resample.ts), in the worker.
//   main          the same nimify server, route and config, with the server context's
//                 preprocessing pool swapped for one whose image() calls nimify's imageToTensor()
//                 (what the pool's workers run) on the event loop (bench/predict-nimify-server.js):
//                 same handler, admission, model, scheduler, postprocess, serializer, hooks, logger
//                 and shedding; only where preprocessing runs differs (so the Pillow resampling's
//                 JavaScript runs on the event loop). Each nimify server counts where its images
//                 went, and the run fails unless main decoded every image inline and the pool
//                 servers none.
//   pool-libvips  the same server as pool, serving a copy of examples/digits/digits (config.json,
//                 model, labels; made in a temp dir at bench time, removed at the end) whose config
//                 adds `"resampler": "libvips"`: sharp decodes and resizes in one libvips pipeline
//                 (shrink-on-load, libvips' kernels), the resizing work ort-node does, so it is the
//                 side-by-side with onnxruntime-node; pool ÷ pool-libvips is what the exact
//                 resampler costs.
//   ort-node      what a user writes without nimify: Fastify + sharp's resize on the event loop +
//                 onnxruntime-node's InferenceSession on the same model file, the same JSON answer
//                 (bench/predict-ort-server.js).
//
// Bodies: BENCH_PREDICT_IMAGES (default 4) synthetic photo-like JPEGs, 1024×768 (smooth
// gradients, soft blobs, a dark stroke, sensor-like noise; quality 85), generated with sharp at
// bench time from a seeded PRNG, so identical on every run and never committed. Decoding and
// resizing them is the dominant cost of a request: the model is tiny.
//
// Load: autocannon (closed loop, keep-alive, one request in flight per connection) in this
// process, at 1, 8 and 32 connections. Each cell: a warm-up until every connection has had a
// response (at least 0.5 s), then the event-loop delay histogram in the server is reset (over IPC,
// bench/eld.js: perf_hooks.monitorEventLoopDelay at 1 ms resolution), the measured window runs,
// and the histogram is read at its end. Cells run interleaved (every server at a concurrency,
// the server order rotating each round), BENCH_PREDICT_ROUNDS times; each figure is the median
// over the rounds, each ratio the median of the per-round ratios. Every response of a cell
// (warm-up included) is counted by status: any non-200 or socket error fails the run. So does a
// change of dist/'s code during the run (a rebuild: the pool's workers load dist when they start).
//
// Before the cells, each server answers every body once: 200, three predictions; pool and main
// must answer identical JSON; pool-libvips and ort-node (the same libvips resize) must agree on
// the top label and on every score within 0.02 (ort-node computes the same BT.601 grayscale in
// floating point, nimify in integers; the largest difference is reported); pool and pool-libvips
// (Pillow's resize vs libvips') must agree on the top label (their scores may differ: the largest
// difference is reported, and so is the largest difference of their input tensors, in grey levels).
//
//   node bench/predict.js [--quick]        or   npm run bench -- predict [--quick]
// BENCH_PREDICT_SECONDS=<s> measured window per cell (default 3; quick 1); BENCH_PREDICT_ROUNDS=<n>
// rounds (default 3; quick 1); BENCH_PREDICT_CONNECTIONS=1,8,32; BENCH_PREDICT_IMAGE=1024x768;
// BENCH_PREDICT_POOL_THREADS=<n> sets the pools' threads (default nimify's: the core count);
// BENCH_PREDICT_POOL_TASKS=<n> their tasks per thread (default nimify's: 2);
// BENCH_NIMIFY_ROOT=<dir> serves <dir>/dist instead of this checkout's dist.
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { performance } = require('node:perf_hooks');
const autocannon = require('autocannon');
const sharp = require('sharp');
// ROOT: this checkout; NIMIFY_ROOT: the nimify package whose dist/ is served (BENCH_NIMIFY_ROOT).
const { ROOT, NIMIFY_ROOT, nimifyVersion, prng, pct, median, fmt, ms } = require('./lib/common');
const { startServer: startChild, guardChildren, cpuSeconds, quiesce: quiesceFor } = require('./lib/children');

const REPOSITORY = path.join(ROOT, 'examples', 'digits');
const MODEL = 'digits';

// ---------------------------------------------------------------------------------------------
// Child servers, with an IPC channel for the event-loop delay reads (bench/lib/children.js: every
// spawned child is tracked and killed on the way out, whatever the way).

// args(repos): repos.pillow is examples/digits as it is; repos.libvips the temp copy whose
// config.json says `"resampler": "libvips"` (makeLibvipsRepository()).
const NIMIFY_SERVER = path.join(__dirname, 'predict-nimify-server.js');
const ROUTE = `/v1/models/${MODEL}/predict`;
const SERVERS = {
  pool: { args: (repos) => [NIMIFY_SERVER, 'pool', repos.pillow, '0'], path: ROUTE },
  main: { args: (repos) => [NIMIFY_SERVER, 'main', repos.pillow, '0'], path: ROUTE },
  'pool-libvips': { args: (repos) => [NIMIFY_SERVER, 'pool', repos.libvips, '0'], path: ROUTE },
  'ort-node': { args: (repos) => [path.join(__dirname, 'predict-ort-server.js'), path.join(repos.pillow, MODEL), '0'], path: ROUTE },
};
const NAMES = Object.keys(SERVERS);
// The nimify servers, by mode (bench/predict-nimify-server.js): where their images must be decoded.
const POOL_SERVERS = ['pool', 'pool-libvips'];
const INLINE_SERVERS = ['main'];

/**
 * A copy of examples/digits/digits (config.json, labels, model) in a new temp dir, its config's
 * preprocess.resampler set to 'libvips' (placed after `interpolation`). Returns the repository dir
 * (the temp dir) and the config written; the caller removes the dir.
 */
function makeLibvipsRepository() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nimify-bench-predict-'));
  fs.cpSync(path.join(REPOSITORY, MODEL), path.join(dir, MODEL), { recursive: true });
  const file = path.join(dir, MODEL, 'config.json');
  const config = JSON.parse(fs.readFileSync(file, 'utf8'));
  const pre = {};
  for (const [k, v] of Object.entries(config.preprocess)) {
    if (k === 'resampler') continue;
    pre[k] = v;
    if (k === 'interpolation') pre.resampler = 'libvips';
  }
  pre.resampler = 'libvips';
  config.preprocess = pre;
  fs.writeFileSync(file, JSON.stringify(config, null, 2) + '\n');
  return { dir, config };
}
const READY = /listening at (http:\/\/\S+)/;

/**
 * Spawns `node args...` with IPC; resolves once it prints its URL. Besides the shared server's
 * fields (bench/lib/children.js: url, log, command, ask(), stop()...): `extra`, the lines written
 * after the ready line (warnings, errors; the first 50), and eld().
 */
async function startServer(name, args) {
  const extra = [];
  const onLine = (line) => {
    if (extra.length < 50) extra.push(line.slice(0, 300));
  };
  const server = await startChild(name, args, { ready: READY, ipc: true, onLine });
  return Object.assign(server, {
    extra,
    /** Event-loop delay: 'reset' or 'read' (bench/eld.js). */
    eld: (kind) => server.ask({ eld: kind }),
  });
}

/** Busy CPU seconds of the whole machine, all cores (Linux /proc/stat; null elsewhere). */
function machineBusySeconds() {
  try {
    const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
    const [user, nice, system, , , irq, softirq, steal] = f;
    return (user + nice + system + irq + softirq + (steal ?? 0)) / 100;
  } catch {
    return null;
  }
}

/** Waits until the server is idle (under 5 % of a core over 200 ms, at most 15 s), then 300 ms. */
const quiesce = (pid) => quiesceFor(pid, { intervalMs: 200, maxMs: 15_000, settleMs: 300 });

// ---------------------------------------------------------------------------------------------
// Bodies: synthetic photo-like JPEGs, deterministic.

/** An RGB picture: a sky-to-ground gradient, soft coloured blobs, a dark stroke, pixel noise. */
async function syntheticJpeg(width, height, seed) {
  const rand = prng(seed);
  const px = Buffer.alloc(width * height * 3);
  const blobs = Array.from({ length: 12 }, () => ({
    x: rand() * width,
    y: rand() * height,
    r: (0.05 + rand() * 0.25) * width,
    c: [rand() * 255, rand() * 255, rand() * 255],
    a: 0.3 + rand() * 0.6,
  }));
  // A thick dark arc, a bit like a hand-drawn digit.
  const cx = width * (0.35 + rand() * 0.3);
  const cy = height * (0.35 + rand() * 0.3);
  const rad = Math.min(width, height) * (0.2 + rand() * 0.1);
  const thick = rad * 0.18;
  const top = [90 + rand() * 60, 140 + rand() * 60, 200 + rand() * 55];
  const bottom = [60 + rand() * 60, 90 + rand() * 60, 40 + rand() * 40];
  for (let y = 0; y < height; y++) {
    const g = y / (height - 1);
    for (let x = 0; x < width; x++) {
      const c = [0, 1, 2].map((k) => top[k] * (1 - g) + bottom[k] * g + 20 * Math.sin(x / 37 + k + y / 53));
      for (const b of blobs) {
        const d2 = ((x - b.x) ** 2 + (y - b.y) ** 2) / (b.r * b.r);
        if (d2 < 4) {
          const w = b.a * Math.exp(-d2 * 1.5);
          for (let k = 0; k < 3; k++) c[k] = c[k] * (1 - w) + b.c[k] * w;
        }
      }
      const d = Math.abs(Math.hypot(x - cx, y - cy) - rad);
      if (d < thick && Math.atan2(y - cy, x - cx) > -2.4) for (let k = 0; k < 3; k++) c[k] *= 0.15 + 0.85 * (d / thick) ** 2;
      const n = (rand() - 0.5) * 24;
      const i = (y * width + x) * 3;
      for (let k = 0; k < 3; k++) px[i + k] = Math.max(0, Math.min(255, Math.round(c[k] + n + (rand() - 0.5) * 8)));
    }
  }
  return sharp(px, { raw: { width, height, channels: 3 } }).jpeg({ quality: 85 }).toBuffer();
}

// ---------------------------------------------------------------------------------------------
// Measurement.

const round = (x, d = 2) => (x === null || x === undefined ? null : +x.toFixed(d));

/**
 * One closed-loop run of `connections` connections cycling through `requests`. Warm-up: at least
 * `t.warmupMs` and until every connection has had a response (at most `t.maxWarmupMs`); then the
 * server's event-loop delay histogram is reset and the window of `t.windowMs` is measured; the
 * histogram is read before the load stops. Status codes and errors count over the whole run.
 */
function measure(server, requests, connections, t) {
  return new Promise((resolve, reject) => {
    const lat = [];
    const allCodes = {};
    let okInWindow = 0;
    let errors = 0;
    const errorMessages = new Map();
    const seen = new Set();
    let phase = 'warmup'; // → 'starting' (resetting the histogram) → 'window' → 'done'
    const t0 = performance.now();
    let tStart = 0;
    let tEnd = 0;
    let cpu0 = null;
    let srv0 = null;
    let busy0 = null;
    let eld = null;
    const usage = {};
    let warmedUp = false;
    let failure = null;
    const startWindow = async () => {
      if (phase !== 'warmup') return;
      phase = 'starting';
      clearTimeout(capTimer);
      warmedUp = seen.size >= connections;
      try {
        await server.eld('reset');
      } catch (err) {
        failure = err;
        inst.stop();
        return;
      }
      phase = 'window';
      tStart = performance.now();
      cpu0 = process.cpuUsage();
      srv0 = cpuSeconds(server.pid);
      busy0 = machineBusySeconds();
      setTimeout(endWindow, t.windowMs);
    };
    const endWindow = async () => {
      tEnd = performance.now();
      phase = 'done';
      const c = process.cpuUsage(cpu0);
      const s = cpuSeconds(server.pid);
      const busy = machineBusySeconds();
      const sec = (tEnd - tStart) / 1000;
      usage.clientCpu = round((c.user + c.system) / 1e6 / sec);
      usage.serverCpu = s === null || srv0 === null ? null : round((s - srv0) / sec);
      // Everything else the machine ran meanwhile (other processes, the kernel's own work).
      usage.otherCpu = busy === null || busy0 === null || usage.serverCpu === null ? null : round(Math.max(0, (busy - busy0) / sec - usage.serverCpu - usage.clientCpu));
      try {
        eld = await server.eld('read');
      } catch (err) {
        failure = err;
      }
      inst.stop();
    };
    const inst = autocannon({ url: server.url, connections, duration: 3600, timeout: 60, requests }, (err) => {
      if (err) return reject(err);
      if (failure) return reject(failure);
      if (eld === null) return reject(new Error(`${server.name}: autocannon stopped before the measured window ended`));
      lat.sort((a, b) => a - b);
      const sec = (tEnd - tStart) / 1000;
      const non200 = Object.entries(allCodes).filter(([c]) => c !== '200').reduce((a, [, n]) => a + n, 0);
      resolve({
        reqPerSec: round(okInWindow / sec, 1),
        latencyP50Ms: round(pct(lat, 50)),
        latencyP99Ms: round(pct(lat, 99)),
        eldP50Ms: eld.p50Ms,
        eldP99Ms: eld.p99Ms,
        eldMaxMs: eld.maxMs,
        eldSamples: eld.samples,
        windowSeconds: round(sec),
        warmupSeconds: round((tStart - t0) / 1000),
        warmupAllConnections: warmedUp,
        ok: okInWindow,
        statusCodes: allCodes,
        non200,
        errors,
        errorMessages: Object.fromEntries(errorMessages),
        ...usage,
      });
    });
    inst.on('response', (client, status, _bytes, ms) => {
      if (phase === 'done') return;
      allCodes[status] = (allCodes[status] ?? 0) + 1;
      if (phase === 'warmup') {
        seen.add(client);
        if (seen.size >= connections && performance.now() - t0 >= t.warmupMs) startWindow();
        return;
      }
      if (phase !== 'window') return;
      if (status === 200) {
        okInWindow++;
        lat.push(ms);
      }
    });
    inst.on('reqError', (err) => {
      if (phase === 'done') return;
      errors++;
      const msg = String(err?.message ?? err).slice(0, 120);
      errorMessages.set(msg, (errorMessages.get(msg) ?? 0) + 1);
    });
    const capTimer = setTimeout(startWindow, t.maxWarmupMs);
  });
}

/** The largest |score difference| over the classes both top-k lists hold. */
function maxScoreDiff(a, b) {
  let d = 0;
  for (const p of a) {
    const q = b.find((x) => x.index === p.index);
    if (q) d = Math.max(d, Math.abs(p.score - q.score));
  }
  return d;
}

/** One request per body and server outside the load generator: status, shape, agreement. */
async function checkAnswers(servers, bodies) {
  const answers = {};
  for (const name of NAMES) {
    answers[name] = [];
    for (let i = 0; i < bodies.length; i++) {
      const srv = servers[name];
      const res = await fetch(srv.url + SERVERS[name].path, { method: 'POST', headers: { 'content-type': 'image/jpeg' }, body: bodies[i] });
      const text = await res.text();
      if (res.status !== 200) throw new Error(`${name}, body ${i}: HTTP ${res.status}: ${text.slice(0, 500)}\n${srv.log.slice(-10).join('\n')}`);
      const j = JSON.parse(text);
      if (j.model_name !== MODEL || j.model_version !== '1' || !Array.isArray(j.predictions) || j.predictions.length !== 3) {
        throw new Error(`${name}, body ${i}: unexpected answer ${text.slice(0, 500)}`);
      }
      answers[name].push(j);
    }
  }
  const top = (name) => answers[name].map((a) => a.predictions[0].label);
  const check = {
    poolEqualsMain: true,
    ortTopLabelAgrees: true,
    ortMaxAbsScoreDiff: 0,
    ortScoreTolerance: 0.02,
    resamplerTopLabelAgrees: true,
    resamplerMaxAbsScoreDiff: 0,
    topLabels: top('pool'),
    topLabelsLibvips: top('pool-libvips'),
    sample: answers.pool[0],
    sampleLibvips: answers['pool-libvips'][0],
  };
  for (let i = 0; i < bodies.length; i++) {
    // The same build, config and route: the same bytes.
    if (JSON.stringify(answers.pool[i]) !== JSON.stringify(answers.main[i])) {
      throw new Error(`body ${i}: pool and main answered differently:\n${JSON.stringify(answers.pool[i])}\n${JSON.stringify(answers.main[i])}`);
    }
    // Same model, same libvips resize, same BT.601 grayscale up to rounding (nimify's in integers, the baseline's in floating point).
    const v = answers['pool-libvips'][i].predictions;
    const o = answers['ort-node'][i].predictions;
    check.ortMaxAbsScoreDiff = Math.max(check.ortMaxAbsScoreDiff, maxScoreDiff(v, o));
    if (v[0].index !== o[0].index || !(check.ortMaxAbsScoreDiff <= check.ortScoreTolerance)) {
      throw new Error(`body ${i}: ort-node's predictions differ from pool-libvips' (top label or a score by more than ${check.ortScoreTolerance}):\n${JSON.stringify(v)}\n${JSON.stringify(o)}`);
    }
    // Pillow's resize vs libvips': other pixels, so other scores; the top label must hold.
    const p = answers.pool[i].predictions;
    check.resamplerMaxAbsScoreDiff = Math.max(check.resamplerMaxAbsScoreDiff, maxScoreDiff(p, v));
    if (p[0].index !== v[0].index) {
      throw new Error(`body ${i}: pool (resampler pillow) and pool-libvips disagree on the top label:\n${JSON.stringify(p)}\n${JSON.stringify(v)}`);
    }
  }
  check.ortMaxAbsScoreDiff = +check.ortMaxAbsScoreDiff.toExponential(2);
  check.resamplerMaxAbsScoreDiff = +check.resamplerMaxAbsScoreDiff.toExponential(2);
  return check;
}

/**
 * nimify's imageToTensor on this process's event loop, one image at a time, no load, with each
 * resampler: ms per image; and how far apart the two resamplers' tensors are on these bodies (the
 * largest difference of an input value, in grey levels: value ÷ scale).
 */
async function preprocessCost(bodies, configs) {
  const { imageToTensor, checkImagePreprocess } = require(path.join(NIMIFY_ROOT, 'dist', 'pipeline', 'image.js'));
  const specs = Object.fromEntries(Object.entries(configs).map(([k, c]) => [k, checkImagePreprocess('config.preprocess', c.preprocess)]));
  const out = {};
  for (const [k, spec] of Object.entries(specs)) {
    for (let i = 0; i < 8; i++) await imageToTensor(bodies[i % bodies.length], spec);
    const wall = [];
    const cpu = process.cpuUsage();
    const t0 = performance.now();
    while (performance.now() - t0 < 1500 || wall.length < 20) {
      const s = performance.now();
      await imageToTensor(bodies[wall.length % bodies.length], spec);
      wall.push(performance.now() - s);
    }
    const c = process.cpuUsage(cpu);
    wall.sort((a, b) => a - b);
    out[k] = { resampler: spec.resampler, wallMsMedian: round(pct(wall, 50)), wallMsP90: round(pct(wall, 90)), cpuMsPerImage: round((c.user + c.system) / 1000 / wall.length), samples: wall.length };
  }
  let maxLevels = 0;
  for (const body of bodies) {
    const a = (await imageToTensor(body, specs.pillow)).data;
    const b = (await imageToTensor(body, specs.libvips)).data;
    for (let i = 0; i < a.length; i++) maxLevels = Math.max(maxLevels, Math.abs(a[i] - b[i]) / (specs.pillow.scale / specs.pillow.std[0]));
  }
  out.tensorMaxAbsDiffLevels = round(maxLevels, 1);
  // The JavaScript part of the Pillow path alone (the thread that runs imageToTensor runs it; the
  // decode before it runs on libuv's threadpool): resample() on a body decoded at full size, as
  // pillowPixels() decodes it (examples/digits' fit is 'fill': the whole image to width × height).
  const { resample } = require(path.join(NIMIFY_ROOT, 'dist', 'pipeline', 'resample.js'));
  const { data, info } = await sharp(bodies[0], { sequentialRead: true }).toColourspace('srgb').flatten({ background: { r: 255, g: 255, b: 255 } }).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  const px = new Uint8Array(data.buffer, data.byteOffset, data.length);
  const sp = specs.pillow;
  const resampleOnce = () => resample(px, info.width, info.height, info.channels, sp.width, sp.height, sp.interpolation, [0, 0, info.width, info.height]);
  for (let i = 0; i < 5; i++) resampleOnce();
  const r0 = performance.now();
  for (let i = 0; i < 30; i++) resampleOnce();
  out.pillowResampleJsMs = round((performance.now() - r0) / 30);
  return out;
}

// ---------------------------------------------------------------------------------------------

async function main() {
  const quick = process.argv.includes('--quick');
  const started = performance.now();
  const envSeconds = Number(process.env.BENCH_PREDICT_SECONDS);
  const windowS = envSeconds > 0 ? envSeconds : quick ? 1 : 3;
  const envRounds = Number(process.env.BENCH_PREDICT_ROUNDS);
  const rounds = Number.isInteger(envRounds) && envRounds > 0 ? envRounds : quick ? 1 : 3;
  const connectionsList = (process.env.BENCH_PREDICT_CONNECTIONS ?? '1,8,32').split(',').map(Number).filter((n) => Number.isInteger(n) && n > 0);
  const [imgW, imgH] = (process.env.BENCH_PREDICT_IMAGE ?? '1024x768').split('x').map(Number);
  const envImages = Number(process.env.BENCH_PREDICT_IMAGES);
  const imageCount = Number.isInteger(envImages) && envImages > 0 ? envImages : 4;
  const t = { windowMs: windowS * 1000, warmupMs: Math.min(500, windowS * 300), maxWarmupMs: 30_000 };

  const releaseChildren = guardChildren();
  const servers = {};
  let libvipsRepo = null;
  const loadavgStart = os.loadavg().map((x) => +x.toFixed(2));
  const distBefore = distFingerprint();
  try {
    const g0 = performance.now();
    const bodies = [];
    for (let i = 0; i < imageCount; i++) bodies.push(await syntheticJpeg(imgW, imgH, 1000 + i));
    const meta = await sharp(bodies[0]).metadata();
    console.error(`  predict: ${bodies.length} JPEGs ${imgW}×${imgH} (${bodies.map((b) => `${(b.length / 1024).toFixed(0)} KiB`).join(', ')}), made in ${((performance.now() - g0) / 1000).toFixed(1)} s`);
    const config = JSON.parse(fs.readFileSync(path.join(REPOSITORY, MODEL, 'config.json'), 'utf8'));
    libvipsRepo = makeLibvipsRepository();
    const cost = await preprocessCost(bodies, { pillow: config, libvips: libvipsRepo.config });
    for (const k of ['pillow', 'libvips']) {
      console.error(`  predict: nimify imageToTensor (resampler ${cost[k].resampler}), one at a time, unloaded: ${cost[k].wallMsMedian} ms per image (p90 ${cost[k].wallMsP90}), ${cost[k].cpuMsPerImage} ms CPU`);
    }
    console.error(`  predict: of the pillow path, the resampling JavaScript alone: ${cost.pillowResampleJsMs} ms per image; the two resamplers' input tensors differ by at most ${cost.tensorMaxAbsDiffLevels} grey levels on these bodies`);

    const repos = { pillow: REPOSITORY, libvips: libvipsRepo.dir };
    for (const name of NAMES) servers[name] = await startServer(name, SERVERS[name].args(repos));
    const check = await checkAnswers(servers, bodies);
    console.error(`  predict: answers checked (pool = main; pool-libvips vs ort-node: top label agrees, max |Δ score| ${check.ortMaxAbsScoreDiff}; pool vs pool-libvips: top label agrees, max |Δ score| ${check.resamplerMaxAbsScoreDiff}); top labels ${check.topLabels.join(', ')}`);
    const requestsFor = (name) => bodies.map((body) => ({ method: 'POST', path: SERVERS[name].path, headers: { 'content-type': 'image/jpeg' }, body }));

    const rows = [];
    for (const connections of connectionsList) {
      const perRound = [];
      for (let r = 0; r < rounds; r++) {
        const order = NAMES.map((_, i) => NAMES[(i + r) % NAMES.length]);
        const measured = {};
        for (const name of order) {
          const srv = servers[name];
          await quiesce(srv.pid);
          const m = await measure(srv, requestsFor(name), connections, t);
          if (srv.exited()) throw new Error(`${name}: the server exited (${JSON.stringify(srv.exited())}) during the run\n${srv.log.slice(-20).join('\n')}`);
          measured[name] = m;
          console.error(`  predict @${connections}${rounds > 1 ? ` round ${r + 1}/${rounds}` : ''} ${name}: ${m.reqPerSec} req/s, p50 ${m.latencyP50Ms} ms, p99 ${m.latencyP99Ms} ms, event-loop delay p99 ${m.eldP99Ms} ms (max ${m.eldMaxMs}), server CPU ${m.serverCpu}, client CPU ${m.clientCpu}, other CPU ${m.otherCpu}${m.non200 || m.errors ? `, NON-200 ${JSON.stringify(m.statusCodes)} errors ${m.errors} ${JSON.stringify(m.errorMessages)}` : ''}`);
          if (m.non200 || m.errors) {
            throw new Error(`${name} @${connections} connections: ${m.non200} non-200 responses ${JSON.stringify(m.statusCodes)} and ${m.errors} socket errors ${JSON.stringify(m.errorMessages)}\nserver output:\n${[...srv.log.slice(-20)].join('\n')}`);
          }
        }
        perRound.push(measured);
      }
      const row = { connections, variants: {}, ratios: {} };
      for (const name of NAMES) {
        const all = perRound.map((p) => p[name]);
        const med = (k) => median(all.map((x) => x[k]));
        row.variants[name] = {
          reqPerSec: med('reqPerSec'),
          latencyP50Ms: med('latencyP50Ms'),
          latencyP99Ms: med('latencyP99Ms'),
          eldP50Ms: med('eldP50Ms'),
          eldP99Ms: med('eldP99Ms'),
          eldMaxMs: med('eldMaxMs'),
          serverCpu: med('serverCpu'),
          clientCpu: med('clientCpu'),
          otherCpu: med('otherCpu'),
          rounds: all,
        };
      }
      const ratio = (a, b) => round(median(perRound.map((p) => (p[b].reqPerSec > 0 ? p[a].reqPerSec / p[b].reqPerSec : null))));
      row.ratios.poolVsMain = ratio('pool', 'main');
      row.ratios.poolLibvipsVsOrt = ratio('pool-libvips', 'ort-node');
      row.ratios.poolVsPoolLibvips = ratio('pool', 'pool-libvips');
      rows.push(row);
    }
    // Where the images were decoded: main on its event loop only, the pool servers in their workers only.
    const sent = (name) => bodies.length + rows.reduce((n, row) => n + row.variants[name].rounds.reduce((m, x) => m + Object.values(x.statusCodes).reduce((a, c) => a + c, 0), 0), 0);
    const placement = {};
    for (const name of [...POOL_SERVERS, ...INLINE_SERVERS]) {
      const st = await servers[name].ask({ bench: 'stats' });
      placement[name] = { inlineImages: st.inlineImages, poolCompleted: st.poolCompleted, poolThreads: st.poolThreads, poolTasksPerThread: st.poolTasksPerThread, poolCapacity: st.poolCapacity, responses: sent(name) };
    }
    for (const name of INLINE_SERVERS) {
      if (placement[name].inlineImages < placement[name].responses || placement[name].poolCompleted !== null) throw new Error(`${name} did not decode every image on its event loop: ${JSON.stringify(placement[name])}`);
    }
    for (const name of POOL_SERVERS) {
      if (placement[name].inlineImages !== 0 || !(placement[name].poolCompleted >= placement[name].responses)) throw new Error(`${name} did not decode every image in its workers: ${JSON.stringify(placement[name])}`);
    }
    console.error(`  predict: images decoded: ${INLINE_SERVERS.map((n) => `${n} ${placement[n].inlineImages} on the event loop (${placement[n].responses} responses)`).join('; ')}; ${POOL_SERVERS.map((n) => `${n} ${placement[n].poolCompleted} in workers (${placement[n].responses} responses)`).join('; ')}`);
    // The servers loaded dist at start, but the pool's workers load dist/pipeline/worker.js
    // whenever Piscina starts one: a rebuild during the run could mix two builds.
    const distAfter = distFingerprint();
    if (distAfter !== distBefore) throw new Error(`dist/ changed during the run (${distBefore} → ${distAfter}): the servers may have mixed two builds; rerun once the build is done`);
    const serverLogs = Object.fromEntries(Object.entries(servers).filter(([, s]) => s.extra.length).map(([k, s]) => [k, s.extra.slice(0, 10)]));
    const { runtimeInfo } = require(path.join(NIMIFY_ROOT, 'dist'));
    return {
      kind: 'predict',
      runtime: runtimeInfo(),
      onnxruntimeNode: pkgVersion('onnxruntime-node'),
      sharp: sharp.versions?.sharp ?? pkgVersion('sharp'),
      libvips: sharp.versions?.vips ?? null,
      piscina: pkgVersion('piscina'),
      autocannon: pkgVersion('autocannon'),
      cpu: { model: os.cpus()[0]?.model ?? 'unknown', cores: os.cpus().length, availableParallelism: os.availableParallelism(), loadavgStart, loadavg: os.loadavg().map((x) => +x.toFixed(2)) },
      dist: distBefore,
      uvThreadpoolSize: process.env.UV_THREADPOOL_SIZE ?? '4 (default)',
      node: process.version,
      nimify: nimifyVersion(),
      model: { repository: path.relative(ROOT, REPOSITORY), name: MODEL, config, configLibvips: libvipsRepo.config },
      images: { count: bodies.length, width: meta.width, height: meta.height, format: meta.format, chromaSubsampling: meta.chromaSubsampling ?? null, bytes: bodies.map((b) => b.length), quality: 85 },
      preprocessCost: cost,
      check,
      connections: connectionsList,
      timing: { quick, rounds, windowSeconds: windowS, warmupSeconds: t.warmupMs / 1000, maxWarmupSeconds: t.maxWarmupMs / 1000, totalSeconds: round((performance.now() - started) / 1000, 1) },
      // The temp copy's path changes every run: named by what it is.
      commands: Object.fromEntries(Object.entries(servers).map(([k, s]) => [k, s.command.split(path.relative(ROOT, libvipsRepo.dir)).join('$TMPDIR/nimify-bench-predict-XXXXXX')])),
      routes: Object.fromEntries(NAMES.map((k) => [k, SERVERS[k].path])),
      serverLogs,
      placement,
      rows,
    };
  } finally {
    for (const srv of Object.values(servers)) await srv.stop();
    releaseChildren();
    if (libvipsRepo) fs.rmSync(libvipsRepo.dir, { recursive: true, force: true });
  }
}

/** A hash of the contents of <nimify>/dist's .js files: a rebuild that changes code changes it. */
function distFingerprint() {
  const hash = require('node:crypto').createHash('sha1');
  let files = 0;
  const walk = (dir) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true }).sort((x, y) => (x.name < y.name ? -1 : 1))) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.js')) {
        files++;
        hash.update(path.relative(NIMIFY_ROOT, p)).update('\0').update(fs.readFileSync(p));
      }
    }
  };
  walk(path.join(NIMIFY_ROOT, 'dist'));
  return `${files} .js files, sha1 ${hash.digest('hex').slice(0, 12)}`;
}

/** An installed package's version (some packages do not export their package.json). */
function pkgVersion(name) {
  try {
    return JSON.parse(fs.readFileSync(path.join(ROOT, 'node_modules', name, 'package.json'), 'utf8')).version;
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------------------------------------
// Report.

function toMarkdown(report) {
  const r = report;
  const kib = r.images.bytes.map((b) => `${(b / 1024).toFixed(0)}`).join(', ');
  const pp = r.placement.pool;
  const cost = (k) => `${ms(r.preprocessCost[k].wallMsMedian)} ms wall (p90 ${ms(r.preprocessCost[k].wallMsP90)}), ${ms(r.preprocessCost[k].cpuMsPerImage)} ms CPU`;
  const flags = [pp.poolThreads !== r.cpu.availableParallelism ? ` --preprocess-threads ${pp.poolThreads}` : ''].join('');
  const lines = [
    '| setup | |',
    '|---|---|',
    `| CPU | ${r.cpu.model}, ${r.cpu.cores} cores (load average at the start ${r.cpu.loadavgStart.join(', ')}, at the end ${r.cpu.loadavg.join(', ')}) |`,
    `| Node | ${r.node}; libuv threadpool ${r.uvThreadpoolSize} |`,
    `| nimify | commit ${r.nimify.commit}${r.nimify.srcModified ? ' + uncommitted changes in src/' : ''}${r.nimify.root !== '.' ? ` (served from ${r.nimify.root})` : ''}; dist ${r.dist}; buildServer defaults (as \`nimify serve --log-level warn${flags}\`${pp.poolTasksPerThread !== 2 ? `, preprocess.tasksPerThread ${pp.poolTasksPerThread}` : ''}): preprocessing pool of ${pp.poolThreads} threads × ${pp.poolTasksPerThread} tasks per thread (capacity ${pp.poolCapacity} images at once), dynamic batching, shedding |`,
    `| ONNX Runtime | ${r.runtime.version} (onnxruntime-node ${r.onnxruntimeNode}; nimify loads the same library) |`,
    `| image stack | sharp ${r.sharp} (libvips ${r.libvips}), Piscina ${r.piscina} |`,
    `| model | \`${r.model.repository}\` (${r.model.name}: 8×8 grayscale CNN, 10 classes), config ${'`'}${JSON.stringify(r.model.config)}${'`'} (no \`resampler\`: nimify's default, \`pillow\`); pool-libvips serves a temp copy of it whose config is ${'`'}${JSON.stringify(r.model.configLibvips)}${'`'} |`,
    `| bodies | ${r.images.count} synthetic photo-like JPEGs, ${r.images.width}×${r.images.height}, quality ${r.images.quality}${r.images.chromaSubsampling ? `, ${r.images.chromaSubsampling}` : ''} (${kib} KiB), made with sharp at bench time from a seeded PRNG, cycled per connection |`,
    `| preprocessing cost | nimify's imageToTensor on one image, unloaded, one at a time: resampler \`pillow\` ${cost('pillow')}; resampler \`libvips\` ${cost('libvips')}; of the pillow figure, ${ms(r.preprocessCost.pillowResampleJsMs)} ms is the resampling's JavaScript (resample() alone on a full-size decoded body: the part that runs on the calling thread, the rest is sharp's full-size decode); their input tensors differ by up to ${r.preprocessCost.tensorMaxAbsDiffLevels} grey levels (of 255) on these bodies |`,
    `| load generator | autocannon ${r.autocannon}, in the runner's process; servers are child processes |`,
    `| windows | ${r.timing.windowSeconds} s measured per cell after a warm-up until every connection had a response (≥ ${r.timing.warmupSeconds} s); ${r.timing.rounds} interleaved round(s), server order rotating${r.timing.quick ? ' (quick mode)' : ''}; whole run ${r.timing.totalSeconds} s |`,
    `| date | ${r.date ?? new Date().toISOString()} |`,
    '',
    'Closed loop, one request in flight per connection (C). req/s = 200 responses per second in the measured window; p50/p99 = their latency (ms); ELD p99 = the server\'s event-loop delay p99 over the window (ms; monitorEventLoopDelay at 1 ms resolution, the 1 ms sampling interval subtracted), measured inside the server process. Each figure is the median over the rounds; each ratio the median of the per-round req/s ratios.',
    '',
    `- **pool**: nimify's predict route as shipped, examples/digits' config (resampler \`pillow\`, the default): in a worker of the preprocessing pool (${pp.poolThreads} threads × ${pp.poolTasksPerThread} tasks), sharp decodes the JPEG at full size and nimify resamples it to 8×8 with Pillow's arithmetic in JavaScript.`,
    '- **main**: the same nimify server, route and config, its preprocessing pool swapped for nimify\'s imageToTensor called on the event loop: the same full-size decode (sharp, on libuv\'s threadpool) and the same Pillow resampling, in JavaScript on the event loop.',
    '- **pool-libvips**: the same server as pool (preprocessing in the pool), serving a copy of the model whose config adds `"resampler": "libvips"`: sharp decodes and resizes in one libvips pipeline (shrink-on-load, libvips\' bilinear), the resizing ort-node does.',
    '- **ort-node**: Fastify + sharp\'s resize (libvips) on the event loop + onnxruntime-node, written the usual way, same JSON answer.',
    '',
    'Ratios: **pool ÷ main** is where preprocessing runs (same work, pool vs event loop); **pool-libvips ÷ ort-node** is nimify vs onnxruntime-node doing the same resizing work; **pool ÷ pool-libvips** is what the exact (Pillow) resampler costs in the pool (the share of pool-libvips\' throughput that pool keeps).',
    '',
    `| C | ${NAMES.map((n) => `${n} req/s | p50 | p99 | ELD p99`).join(' | ')} | pool ÷ main | pool-libvips ÷ ort-node | pool ÷ pool-libvips |`,
    `|---:|${NAMES.map(() => '---:|---:|---:|---:|').join('')}---:|---:|---:|`,
  ];
  for (const row of r.rows) {
    const cells = NAMES.map((n) => {
      const v = row.variants[n];
      return `${fmt(v.reqPerSec)} | ${ms(v.latencyP50Ms)} | ${ms(v.latencyP99Ms)} | ${ms(v.eldP99Ms)}`;
    });
    lines.push(`| ${row.connections} | ${cells.join(' | ')} | ${row.ratios.poolVsMain} | ${row.ratios.poolLibvipsVsOrt} | ${row.ratios.poolVsPoolLibvips} |`);
  }
  lines.push(
    '',
    'Per cell and round: req/s, event-loop delay p50 / p99 / max (ms), CPU cores used over the window by the server process (all its threads), by the load generator (the runner\'s process) and by everything else on the machine (other processes, and kernel work charged to neither process such as loopback networking: the background), the server\'s CPU time per 200 response (ms), 200 responses in the window. Every response of every cell, warm-up included, was a 200 and there were no socket errors (the run fails otherwise).',
    '',
    '| C | server | req/s by round | ELD p50 | ELD p99 | ELD max | server CPU | client CPU | other CPU | server CPU ms/req | 200s in window |',
    '|---:|---|---|---|---|---|---|---|---|---|---|',
  );
  for (const row of r.rows) {
    for (const n of NAMES) {
      const rs = row.variants[n].rounds;
      const by = (k, f = String) => rs.map((x) => f(x[k])).join(' / ');
      lines.push(`| ${row.connections} | ${n} | ${by('reqPerSec', fmt)} | ${by('eldP50Ms', ms)} | ${by('eldP99Ms', ms)} | ${by('eldMaxMs', ms)} | ${by('serverCpu')} | ${by('clientCpu')} | ${by('otherCpu')} | ${rs.map((x) => (x.serverCpu !== null && x.reqPerSec > 0 ? ms((x.serverCpu * 1000) / x.reqPerSec) : '–')).join(' / ')} | ${by('ok', fmt)} |`);
    }
  }
  const pl = r.placement;
  lines.push(
    '',
    `Answers checked before the load: every server answered each body 200 with three predictions; pool and main answered identical JSON; pool-libvips and ort-node agreed on the top label, their scores differ by at most ${r.check.ortMaxAbsScoreDiff} (tolerance ${r.check.ortScoreTolerance}: the same libvips resize, and the same BT.601 grayscale, in floating point there and in integers in nimify); pool and pool-libvips agreed on the top label (top labels ${r.check.topLabels.join(', ')}), their scores differ by up to ${r.check.resamplerMaxAbsScoreDiff} (Pillow's resize vs libvips': input tensors up to ${r.preprocessCost.tensorMaxAbsDiffLevels} grey levels apart on these bodies).`,
    '',
    'What is and is not measured:',
    '',
    '- sharp runs its work (decode, and resize for libvips) on libuv\'s threadpool (4 threads by default; libvips may add its own threads), not on the JavaScript thread, even when it is called from the event loop. With the `libvips` resampler (pool-libvips, ort-node), libvips decodes a JPEG at a reduced size when the target is much smaller (shrink-on-load), so the full-resolution pixels are never produced, and what runs in JavaScript is trivial at 8×8 (building the sharp pipeline, the callbacks, the pixel → tensor loop). With `pillow` (pool, main), sharp decodes the full image into raw RGB (' + `${r.images.width}×${r.images.height}×3 bytes` + ') and nimify\'s resampling reads every one of those pixels in JavaScript (' + `${ms(r.preprocessCost.pillowResampleJsMs)} ms per image unloaded` + '): in a worker thread in pool, on the event loop in main. "pool" and "pool-libvips" also pay the transfer of the body to the worker and of the tensor back; their workers\' sharp calls go to the same process-wide libuv threadpool.',
    ...((() => {
      const other = r.rows.flatMap((row) => NAMES.flatMap((n) => row.variants[n].rounds.map((x) => x.otherCpu))).filter((x) => x !== null && x !== undefined);
      const worst = other.length ? Math.max(...other) : null;
      return worst !== null && worst >= 0.1 ? [`- CPU time outside the server and the load generator ("other CPU" in the per-cell table: other processes, and kernel work charged to neither, e.g. loopback networking) reached ${worst} cores in a measured window (median ${median(other)}); rounds with more of it are the noisier ones.`] : worst !== null ? [`- CPU time outside the server and the load generator ("other CPU" in the per-cell table) stayed at or under ${worst} cores in every measured window.`] : [];
    })()),
    '- The load generator shares the machine with the server (its CPU share is in the per-cell table); on a 2-core VM the server, its worker threads, libuv\'s threads, ONNX Runtime\'s threads and autocannon all compete for two cores, so these figures say little about a machine with more cores.',
    '- Event-loop delay is what the server\'s own event loop saw (a 1 ms timer\'s lateness), not request latency; the two are in separate columns. It counts JavaScript that ran long and also time the event-loop thread waited for a core: with decodes running on libuv\'s 4 threads, worker threads, ONNX Runtime\'s threads and the load generator on 2 cores, the main thread is often runnable but not running, so on this machine the ELD of every server shows the oversubscription as well as its own JavaScript.',
    `- Concurrency of the work differs by design: the pool servers run ${pp.poolTasksPerThread} tasks per worker (tasksPerThread; ${pp.poolThreads} workers here, so up to ${pp.poolCapacity} images in preprocessing at once, later ones waiting in the pool's queue); a task's decode runs on libuv's threadpool while the worker runs another task's JavaScript, but the JavaScript of a worker's tasks (the Pillow resampling, in pool) takes turns on its one thread. "main" and "ort-node" start a sharp call per request, up to 4 (the libuv threadpool size) decoding at once; in "main" every request's Pillow resampling then takes its turn on the event loop.`,
    `- Same bodies; main and pool are the same nimify build, configuration and route, so their difference is where preprocessing runs (checked: ${INLINE_SERVERS.map((n) => `${n} decoded ${pl[n].inlineImages} images on its event loop and started no pool`).join('; ')}; ${POOL_SERVERS.filter((n) => pl[n]).map((n) => `${n} decoded ${pl[n].poolCompleted} in its workers and none inline`).join('; ')}). pool-libvips differs from pool only in its config's resampler. ort-node is a different server (no request ids, logger, hooks, shedding, metrics or batching), which is part of what pool-libvips ÷ ort-node measures.`,
    '',
    'Servers:',
    '',
  );
  for (const [k, cmd] of Object.entries(r.commands)) lines.push(`- ${k}: \`${cmd}\`, \`POST ${r.routes[k]}\``);
  for (const [k, msgs] of Object.entries(r.serverLogs ?? {})) lines.push(`- ${k} wrote: ${msgs.map((m) => `\`${m}\``).join('; ')}`);
  return lines.join('\n');
}

module.exports = { main, toMarkdown };

if (require.main === module) {
  require('./run')
    .run(['predict'])
    .catch((err) => {
      console.error(err);
      process.exit(1);
    });
}
