'use strict';
// HTTP serving: nimify's server (`nimify serve`, defaults: dynamic batching, load shedding) against
// a plain Fastify + onnxruntime-node server written the way a typical user would
// (bench/plain-server.js). Both run as child processes, so they do not share an event loop with
// the load generator (autocannon, closed loop, keep-alive, one request in flight per connection).
// Same pre-built request bodies (seeded random inputs) for both servers, at 1, 16 and 64
// connections, KServe v2 JSON on both, the binary tensor extension on nimify (binary inputs and
// outputs). Each cell: the first response is checked (200, output shape, values equal to the
// plain server's), then a warm-up that lasts until every connection has had a response (so the
// measurement is steady state, even when one request waits seconds), then the measured window.
// req/s counts 2xx responses in the window; p50/p99 are 2xx latencies; non-2xx and socket
// errors are counted apart.
// Targets (SPEC P5), at 64 connections: the tiny MLP ≥ 1.3 × the plain server's req/s (JSON),
// the mid MLP ≥ 3 ×; the ResNet-class model over the binary extension ≥ 0.9 × the one-batch
// compute ideal (64 ÷ the time of one batch-64 onnxruntime-node run, measured here before its
// cells on the idle machine) with p99 ≤ 2 s.
//
//   npm run bench -- http [--quick]
// `--quick` (or BENCH_HTTP_SECONDS=<s>) shortens the windows (default 5 s, quick 1 s).
// BENCH_HTTP_ROUNDS=<n> sets the rounds per cell (default 3 on the tiny and mid MLPs — one
// round of the mid MLP at 64 connections ranged 2.6-4.1 x the plain server on the shared VM —
// and 1 on the image model; quick: 1): the variants run interleaved n times; medians are reported.
// BENCH_HTTP_NOSHED=1 adds a reference variant on the image model: nimify JSON with load
// shedding off (--max-event-loop-delay-ms 0). BENCH_HTTP_MODELS=<roles> runs only those models
// (tiny, mid, image; comma-separated): a report marked partial, for probing.
// BENCH_NIMIFY_ROOT=<dir> serves <dir>/dist instead of this checkout's dist (a snapshot of a
// build, say).
const os = require('node:os');
const path = require('node:path');
const { performance } = require('node:perf_hooks');
const autocannon = require('autocannon');
// ROOT: this checkout; NIMIFY_ROOT: the nimify package whose dist/ is served (BENCH_NIMIFY_ROOT).
const { ROOT, NIMIFY_ROOT, sleep, nimifyVersion, prng, pct, median, fmt, ms } = require('./lib/common');
const { startServer: startChild, guardChildren, cpuSeconds, quiesce: quiesceFor } = require('./lib/children');

const FIXTURES = path.join(ROOT, 'test', 'fixtures', 'models');
const CONNECTIONS = [1, 16, 64];

// ---------------------------------------------------------------------------------------------
// Child servers (bench/lib/children.js: every spawned child is tracked and killed on the way out,
// whatever the way).

/**
 * Spawns `node args...`, resolves once a line of its output matches `ready` (its group 1 = the
 * URL). The server's `name` is `label` (its name in the report); `messages` counts the lines it
 * writes after its start-up output, by message with numbers and ids masked.
 */
async function startServer(label, args, ready) {
  const messages = new Map();
  const onLine = (line) => {
    if (/^( {2}inference| {2}model | {4}config )/.test(line)) return;
    let msg = line;
    try {
      const j = JSON.parse(line);
      msg = `${j.level >= 50 ? 'error' : j.level >= 40 ? 'warn' : `level ${j.level}`}: ${j.code ? `${j.code} ` : ''}${j.msg ?? ''}`;
    } catch {}
    msg = msg.replace(/[0-9a-f]{8}-[0-9a-f-]{27}/g, '<id>').replace(/\d+(\.\d+)?/g, 'N').slice(0, 160);
    messages.set(msg, (messages.get(msg) ?? 0) + 1);
  };
  const server = await startChild(label, args, { ready, onLine });
  return Object.assign(server, { messages });
}

const NIMIFY_SERVE = (model, extra = []) => [path.join(NIMIFY_ROOT, 'dist', 'cli', 'index.js'), 'serve', model, '--port', '0', '--log-level', 'warn', ...extra];
const SERVERS = {
  plain: { label: 'plain', args: (model) => [path.join(__dirname, 'plain-server.js'), model, '0'], ready: /listening at (http:\/\/\S+)/ },
  nimify: { label: 'nimify', args: (model) => NIMIFY_SERVE(model), ready: /^nimify serving .* at (http:\/\/\S+)$/, metrics: true },
  // Reference: Fastify parsing the same bodies with no model behind it (tiny model only).
  echo: { label: 'echo', args: (model, m) => [path.join(__dirname, 'echo-server.js'), m.output, m.outDims.join(','), '0'], ready: /listening at (http:\/\/\S+)/ },
  // Every request through Fastify's route (no fast lane: src/server/fast-lane.ts), tiny model only.
  'nimify-route': { label: 'nimify --no-fast-lane', args: (model) => NIMIFY_SERVE(model, ['--no-fast-lane']), ready: /^nimify serving .* at (http:\/\/\S+)$/, metrics: true },
  // Load shedding off: what JSON costs without the event-loop-delay guard (image model only).
  'nimify-noshed': { label: 'nimify --max-event-loop-delay-ms 0', args: (model) => NIMIFY_SERVE(model, ['--max-event-loop-delay-ms', '0']), ready: /^nimify serving .* at (http:\/\/\S+)$/, metrics: true },
};

/**
 * Waits until the server is idle (under 5 % of a core over 250 ms, at most 60 s), then 1.2 s more:
 * a cell's leftovers (requests the server still decodes or runs after the load generator hung up)
 * must not spill into the next cell, nor into nimify's event-loop delay sample (taken each second).
 */
const quiesce = (pid) => quiesceFor(pid, { intervalMs: 250, maxMs: 60_000, settleMs: 1200 });

/** nimify's /metrics: shed counts by reason, inferences and executions (for the mean batch). */
async function nimifyCounters(url) {
  const text = await (await fetch(`${url}/metrics`)).text();
  const out = { shed: {}, inferences: 0, executions: 0 };
  for (const line of text.split('\n')) {
    let m = /^nimify_requests_shed_total\{reason="([^"]+)"\} (\S+)/.exec(line);
    if (m) out.shed[m[1]] = Number(m[2]);
    m = /^nv_inference_count\{[^}]*\} (\S+)/.exec(line);
    if (m) out.inferences += Number(m[1]);
    m = /^nv_inference_exec_count\{[^}]*\} (\S+)/.exec(line);
    if (m) out.executions += Number(m[1]);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Requests.

/** Deterministic uniform [-1, 1) inputs. */
function randomInputs(size, count, seed) {
  const rand = prng(seed);
  return Array.from({ length: count }, () => Float32Array.from({ length: size }, () => rand() * 2 - 1));
}

/** A typical client's JSON body: the flat tensor as a JSON array (what JSON.stringify writes). */
function jsonRequest(m, x) {
  const body = Buffer.from(JSON.stringify({ inputs: [{ name: m.input, shape: m.dims, datatype: 'FP32', data: Array.from(x) }] }));
  return { method: 'POST', path: `/v2/models/${m.name}/infer`, headers: { 'content-type': 'application/json' }, body };
}

/** The binary tensor extension: JSON header, then the raw little-endian bytes; outputs binary too. */
function binaryRequest(m, x) {
  const header = Buffer.from(JSON.stringify({ inputs: [{ name: m.input, shape: m.dims, datatype: 'FP32', parameters: { binary_data_size: x.byteLength } }], parameters: { binary_data_output: true } }));
  const body = Buffer.concat([header, Buffer.from(x.buffer, x.byteOffset, x.byteLength)]);
  return { method: 'POST', path: `/v2/models/${m.name}/infer`, headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(header.length) }, body };
}

/** One request outside the load generator; returns the output tensor (shape, Float32Array). */
async function checkedRequest(url, req, m) {
  const res = await fetch(url + req.path, { method: 'POST', headers: req.headers, body: req.body });
  const buf = Buffer.from(await res.arrayBuffer());
  if (res.status !== 200) throw new Error(`${url}${req.path}: HTTP ${res.status}: ${buf.toString('utf8', 0, 500)}`);
  let header;
  let binary = null;
  const hl = res.headers.get('inference-header-content-length');
  if (hl !== null) {
    header = JSON.parse(buf.toString('utf8', 0, Number(hl)));
    binary = buf.subarray(Number(hl));
  } else {
    header = JSON.parse(buf.toString('utf8'));
  }
  const out = header.outputs?.find((o) => o.name === m.output);
  if (!out) throw new Error(`${url}${req.path}: no output '${m.output}' in ${JSON.stringify(header).slice(0, 300)}`);
  if (JSON.stringify(out.shape) !== JSON.stringify(m.outDims)) throw new Error(`${url}${req.path}: output shape ${JSON.stringify(out.shape)}, expected ${JSON.stringify(m.outDims)}`);
  const n = m.outDims.reduce((a, b) => a * b, 1);
  let data;
  if (out.parameters?.binary_data_size !== undefined) {
    if (out.parameters.binary_data_size !== n * 4 || binary.length !== n * 4) throw new Error(`${url}${req.path}: binary output of ${binary.length} bytes, expected ${n * 4}`);
    data = new Float32Array(Uint8Array.from(binary).buffer);
  } else {
    if (!Array.isArray(out.data) || out.data.length !== n) throw new Error(`${url}${req.path}: output data of length ${out.data?.length}, expected ${n}`);
    data = Float32Array.from(out.data);
  }
  return data;
}

function maxAbsDiff(a, b) {
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
}

// ---------------------------------------------------------------------------------------------
// Measurement.

/**
 * One closed-loop run of `connections` connections cycling through `requests`. Warm-up: at least
 * `warmupMs`, and until every connection has had a response (at most `maxWarmupMs`). Then the
 * measured window: max(`windowMs`, `factor` × the warm-up), at most `maxWindowMs`.
 */
function measure(url, requests, connections, t, serverPid) {
  return new Promise((resolve, reject) => {
    const lat = [];
    const latBad = [];
    const codes = {};
    let errors = 0;
    let timeouts = 0;
    const seen = new Set();
    let measuring = false;
    let done = false;
    const t0 = performance.now();
    let tStart = 0;
    let tEnd = 0;
    let warmupMs = 0;
    let cpu0 = null;
    let srv0 = null;
    const usage = {};
    let capTimer = null;
    let warmedUp = false;
    const startWindow = () => {
      if (measuring) return;
      warmedUp = seen.size >= connections;
      clearTimeout(capTimer);
      measuring = true;
      tStart = performance.now();
      warmupMs = tStart - t0;
      cpu0 = process.cpuUsage();
      srv0 = cpuSeconds(serverPid);
      const windowMs = Math.min(t.maxWindowMs, Math.max(t.windowMs, t.factor * warmupMs));
      setTimeout(() => {
        done = true;
        tEnd = performance.now();
        const c = process.cpuUsage(cpu0);
        const s = cpuSeconds(serverPid);
        const sec = (tEnd - tStart) / 1000;
        usage.clientCpu = +((c.user + c.system) / 1e6 / sec).toFixed(2);
        usage.serverCpu = s === null || srv0 === null ? null : +((s - srv0) / sec).toFixed(2);
        inst.stop();
      }, windowMs);
    };
    const inst = autocannon(
      { url, connections, duration: 3600, timeout: 120, requests },
      (err, result) => {
        if (err) return reject(err);
        if (!measuring) return reject(new Error('autocannon stopped before the measured window'));
        lat.sort((a, b) => a - b);
        latBad.sort((a, b) => a - b);
        const seconds = (tEnd - tStart) / 1000;
        const ok = lat.length;
        const non2xx = Object.entries(codes).filter(([c]) => !c.startsWith('2')).reduce((a, [, n]) => a + n, 0);
        resolve({
          connections,
          reqPerSec: +(ok / seconds).toFixed(1),
          latencyP50Ms: lat.length ? +pct(lat, 50).toFixed(2) : null,
          latencyP99Ms: lat.length ? +pct(lat, 99).toFixed(2) : null,
          latencyMaxMs: lat.length ? +lat.at(-1).toFixed(2) : null,
          ok,
          non2xx,
          statusCodes: codes,
          non2xxP50Ms: latBad.length ? +pct(latBad, 50).toFixed(2) : null,
          errors,
          timeouts,
          warmupSeconds: +(warmupMs / 1000).toFixed(2),
          // false when the warm-up hit its cap with some connection still waiting for a response.
          warmupAllConnections: warmedUp,
          windowSeconds: +seconds.toFixed(2),
          ...usage,
          // autocannon's own totals over the whole run (warm-up included), as a cross-check.
          wholeRun: { requests: result.requests.total, non2xx: result.non2xx, errors: result.errors, timeouts: result.timeouts, resets: result.resets },
        });
      },
    );
    inst.on('response', (client, status, _bytes, ms) => {
      if (done) return;
      if (!measuring) {
        seen.add(client);
        if (seen.size >= connections && performance.now() - t0 >= t.warmupMs) startWindow();
        return;
      }
      codes[status] = (codes[status] ?? 0) + 1;
      if (status >= 200 && status < 300) lat.push(ms);
      else latBad.push(ms);
    });
    inst.on('reqError', (err) => {
      if (!measuring || done) return;
      errors++;
      if (/timed out/.test(err?.message ?? '')) timeouts++;
    });
    capTimer = setTimeout(startWindow, t.maxWarmupMs);
  });
}

/** Variants: [name, server kind, request kind]. The no-shedding one runs on the image model only. */
const VARIANTS = [
  ['plain JSON', 'plain', 'json'],
  ['nimify JSON', 'nimify', 'json'],
  ['nimify binary', 'nimify', 'binary'],
];
const NOSHED = ['nimify JSON, no shedding', 'nimify-noshed', 'json'];
const ECHO = ['Fastify JSON, no model', 'echo', 'json'];
const ROUTE = ['nimify JSON, Fastify route', 'nimify-route', 'json'];

/**
 * The one-batch compute ideal at `c` connections: c ÷ the median time of one batch-c run of
 * onnxruntime-node (the library both servers use), in this process, before the model's cells.
 */
async function computeIdeal(m, c, runs) {
  const ort = require('onnxruntime-node');
  const session = await ort.InferenceSession.create(m.file);
  try {
    const size = m.dims.reduce((a, b) => a * b, 1) * c;
    const x = new ort.Tensor('float32', Float32Array.from({ length: size }, (_, i) => Math.sin(i * 0.001)), [c, ...m.dims.slice(1)]);
    await session.run({ [m.input]: x }); // warm-up
    const times = [];
    for (let r = 0; r < runs; r++) {
      const t0 = performance.now();
      await session.run({ [m.input]: x });
      times.push(performance.now() - t0);
    }
    const msPerBatch = median(times);
    return { connections: c, runs, msPerBatch: +msPerBatch.toFixed(1), samplesPerSec: +((c / msPerBatch) * 1000).toFixed(1) };
  } finally {
    await session.release();
  }
}

async function benchModel(m, t) {
  const ideal = m.idealAt ? await computeIdeal(m, m.idealAt, m.idealRuns) : null;
  if (ideal) console.error(`  ${m.label}: one batch-${ideal.connections} run ${ideal.msPerBatch} ms, ideal ${ideal.samplesPerSec} samples/s`);
  const size = m.dims.reduce((a, b) => a * b, 1);
  const xs = randomInputs(size, m.bodies, 42);
  const bodies = { json: xs.map((x) => jsonRequest(m, x)), binary: xs.map((x) => binaryRequest(m, x)) };
  const bodyBytes = { json: bodies.json[0].body.length, binary: bodies.binary[0].body.length };
  console.error(`  ${m.label}: ${m.bodies} bodies, JSON ${(bodyBytes.json / 1024).toFixed(0)} KiB, binary ${(bodyBytes.binary / 1024).toFixed(0)} KiB`);
  const list = [...VARIANTS, ...(m.noShedVariant ? [NOSHED] : []), ...(m.echoVariant ? [ECHO, ROUTE] : [])];
  const servers = {};
  try {
    for (const [, kind] of list) {
      if (servers[kind]) continue;
      const spec = SERVERS[kind];
      servers[kind] = await startServer(spec.label, spec.args(m.file, m), spec.ready);
    }
    // Correctness first: every variant answers 200 with the right shape, and the same values.
    const check = {};
    let ref = null;
    for (const [name, kind, req] of list) {
      for (let i = 0; i < bodies[req].length; i++) {
        let out;
        try {
          out = await checkedRequest(servers[kind].url, bodies[req][i], m);
        } catch (err) {
          await sleep(200);
          throw new Error(`${m.label} ${name}, body ${i}: ${err.message}\n${servers[kind].name} output:\n${servers[kind].log.slice(-10).join('\n')}`);
        }
        if (i > 0) continue;
        if (kind === 'echo') {
          check[name] = { status: 200, shape: m.outDims, maxAbsDiffVsPlain: null }; // no model: values are not the model's
          continue;
        }
        ref ??= out;
        const diff = maxAbsDiff(ref, out);
        check[name] = { status: 200, shape: m.outDims, maxAbsDiffVsPlain: +diff.toExponential(2) };
        if (diff > 1e-3 * (1 + Math.max(...ref.map(Math.abs)))) throw new Error(`${m.label} ${name}: outputs differ from the plain server's by ${diff}`);
      }
    }
    const rows = [];
    for (const connections of CONNECTIONS) {
      const row = { connections, variants: {} };
      // Interleaved: the variants run back to back at each concurrency, so that noise on the
      // shared machine hits them alike; `rounds` times over. A variant's reported cell is its
      // median round (by req/s); a ratio is the median of the per-round ratios.
      const perRound = [];
      for (let round = 0; round < m.rounds; round++) {
      const measured = {};
      for (const [name, kind, req] of list) {
        const server = servers[kind];
        await quiesce(server.pid);
        const before = SERVERS[kind].metrics ? await nimifyCounters(server.url) : null;
        const r = await measure(server.url, bodies[req], connections, t, server.pid);
        if (server.exited()) throw new Error(`${m.label} ${name}: the ${server.name} server exited (${JSON.stringify(server.exited())}) during the run\n${server.log.slice(-20).join('\n')}`);
        if (before) {
          await quiesce(server.pid);
          const after = await nimifyCounters(server.url);
          const shed = {};
          for (const [k, n] of Object.entries(after.shed)) if (n - (before.shed[k] ?? 0) > 0) shed[k] = n - (before.shed[k] ?? 0);
          r.shed = shed;
          const exec = after.executions - before.executions;
          r.meanBatch = exec > 0 ? +((after.inferences - before.inferences) / exec).toFixed(2) : null;
        }
        measured[name] = r;
        const bad = r.non2xx || r.errors ? ` non-2xx ${r.non2xx} ${JSON.stringify(r.statusCodes)} (p50 ${r.non2xxP50Ms} ms) errors ${r.errors}` : '';
        console.error(`  ${m.label} @${connections}${m.rounds > 1 ? ` round ${round + 1}/${m.rounds}` : ''} ${name}: ${r.reqPerSec} req/s, p50 ${r.latencyP50Ms} ms, p99 ${r.latencyP99Ms} ms (window ${r.windowSeconds} s, server CPU ${r.serverCpu}, client CPU ${r.clientCpu}${r.meanBatch ? `, mean batch ${r.meanBatch}` : ''})${bad}`);
      }
      perRound.push(measured);
      }
      for (const [name] of list) {
        const all = perRound.map((r) => r[name]);
        const mid = median(all.map((r) => r.reqPerSec));
        row.variants[name] = { ...all.find((r) => r.reqPerSec === mid), roundsReqPerSec: all.map((r) => r.reqPerSec) };
      }
      const ratio = (a, b) => {
        const v = median(perRound.map((r) => (r[a] && r[b]?.reqPerSec > 0 ? r[a].reqPerSec / r[b].reqPerSec : null)));
        return v === null ? null : +v.toFixed(2);
      };
      row.ratios = {
        nimifyJsonVsPlain: ratio('nimify JSON', 'plain JSON'),
        nimifyBinaryVsPlain: ratio('nimify binary', 'plain JSON'),
        nimifyBinaryVsJson: ratio('nimify binary', 'nimify JSON'),
      };
      if (m.echoVariant) {
        row.ratios.plainVsEcho = ratio('plain JSON', ECHO[0]);
        row.ratios.nimifyJsonVsEcho = ratio('nimify JSON', ECHO[0]);
        row.ratios.routeJsonVsPlain = ratio(ROUTE[0], 'plain JSON');
        row.ratios.nimifyJsonVsRoute = ratio('nimify JSON', ROUTE[0]);
      }
      if (ideal && ideal.connections === connections) {
        row.idealSamplesPerSec = ideal.samplesPerSec;
        row.ratios.nimifyBinaryVsIdeal = +(row.variants['nimify binary'].reqPerSec / ideal.samplesPerSec).toFixed(2);
      }
      if (m.noShedVariant) {
        row.ratios.noShedJsonVsPlain = ratio(NOSHED[0], 'plain JSON');
        row.ratios.nimifyBinaryVsNoShedJson = ratio('nimify binary', NOSHED[0]);
      }
      rows.push(row);
    }
    // What the servers wrote besides their start-up lines (nimify logs at warn and above), by message.
    const logs = {};
    for (const srv of Object.values(servers)) if (srv.messages.size) logs[srv.name] = Object.fromEntries([...srv.messages].sort((x, y) => y[1] - x[1]).slice(0, 10));
    const commands = Object.fromEntries(Object.entries(servers).map(([k, srv]) => [k, `node ${SERVERS[k].args(path.relative(ROOT, m.file), m).map((a) => path.relative(ROOT, a) || a).join(' ')}`]));
    return { role: m.role, model: m.label, file: path.relative(ROOT, m.file), dims: m.dims, bodies: m.bodies, rounds: m.rounds, bodyBytes, ideal, commands, check, rows, serverLogs: logs };
  } finally {
    for (const srv of Object.values(servers)) await srv.stop();
  }
}

function imageModel() {
  const resnet = path.join(ROOT, 'bench', 'models', 'resnet18.onnx');
  try {
    return { label: 'ResNet-18-class conv net (3×224×224)', file: require('../scripts/bench-models').benchModel('resnet18.onnx'), dims: [1, 3, 224, 224], outDims: [1, 1000] };
  } catch (err) {
    console.error(`  ${resnet} unavailable (${err.message}); falling back to convnet_bench.onnx`);
    return { label: 'conv net (3×112×112, fallback)', file: path.join(FIXTURES, 'convnet_bench.onnx'), dims: [1, 3, 112, 112], outDims: [1, 10] };
  }
}

async function main() {
  const quick = process.argv.includes('--quick');
  const envSeconds = Number(process.env.BENCH_HTTP_SECONDS);
  const windowS = envSeconds > 0 ? envSeconds : quick ? 1 : 5;
  const envRounds = Number(process.env.BENCH_HTTP_ROUNDS);
  const rounds = Number.isInteger(envRounds) && envRounds > 0 ? envRounds : undefined;
  const only = process.env.BENCH_HTTP_MODELS ? process.env.BENCH_HTTP_MODELS.split(',') : null;
  const roles = ['tiny', 'mid', 'image'];
  if (only !== null && only.some((r) => !roles.includes(r))) throw new Error(`BENCH_HTTP_MODELS: expected a comma-separated list of ${roles.join(', ')}; received ${process.env.BENCH_HTTP_MODELS}`);
  const t = {
    windowMs: windowS * 1000,
    warmupMs: Math.min(1000, windowS * 300),
    maxWarmupMs: 30_000,
    // The window covers at least `factor` × the warm-up (≈ one request's latency), so every
    // connection contributes several requests even when one takes seconds.
    factor: quick ? 1 : 2,
    maxWindowMs: Math.max(windowS * 1000, quick ? 10_000 : 30_000),
  };
  // Specs are made only for the models that run (the mid and image models are generated or
  // downloaded on first use).
  const specs = {
    // The tiny model's cells are short and the noisiest (a shared 2-core VM): several rounds.
    tiny: () => ({ role: 'tiny', label: 'tiny MLP (64→256→10)', file: path.join(FIXTURES, 'mlp_tiny.onnx'), dims: [1, 64], outDims: [1, 10], bodies: 8, echoVariant: true, rounds: rounds ?? (quick ? 1 : 3) }),
    mid: () => ({ role: 'mid', label: 'mid MLP (512→2048→2048→512)', file: require('../scripts/bench-models').benchModel('mlp_mid.onnx'), dims: [1, 512], outDims: [1, 512], bodies: 4, rounds: rounds ?? (quick ? 1 : 3) }),
    image: () => ({ role: 'image', ...imageModel(), bodies: 2, noShedVariant: process.env.BENCH_HTTP_NOSHED === '1', idealAt: 64, idealRuns: quick ? 1 : 3, rounds: rounds ?? 1 }),
  };
  const models = roles
    .filter((role) => only === null || only.includes(role))
    .map((role) => {
      const m = specs[role]();
      return { ...m, name: path.basename(m.file, '.onnx'), input: 'x', output: 'y' };
    });

  const releaseChildren = guardChildren();
  try {
    const results = [];
    for (const m of models) results.push(await benchModel(m, t));
    const { runtimeInfo } = require(path.join(NIMIFY_ROOT, 'dist'));
    return {
      kind: 'http',
      runtime: runtimeInfo(),
      onnxruntimeNode: require('onnxruntime-node/package.json').version,
      autocannon: require('autocannon/package.json').version,
      cpu: { model: os.cpus()[0]?.model ?? 'unknown', cores: os.cpus().length, loadavg: os.loadavg().map((x) => +x.toFixed(2)) },
      node: process.version,
      nimify: nimifyVersion(),
      connections: CONNECTIONS,
      // BENCH_HTTP_MODELS: a partial run (the report says so).
      onlyModels: only,
      timing: { quick, windowSeconds: windowS, maxWarmupSeconds: t.maxWarmupMs / 1000, warmupSeconds: t.warmupMs / 1000, windowFactor: t.factor, maxWindowSeconds: t.maxWindowMs / 1000 },
      models: results,
      targets: targets(results),
    };
  } finally {
    releaseChildren();
  }
}

/** SPEC P5, evaluated on this run (each model's row at 64 connections). */
function targets(results) {
  const of = (role) => results.find((r) => r.role === role);
  const at64 = (r) => r.rows.find((x) => x.connections === 64);
  const tiny = of('tiny');
  const mid = of('mid');
  const img = of('image');
  const list = [];
  const t64 = tiny && at64(tiny);
  if (tiny) list.push({ id: 'P5 tiny', what: `${tiny.model}, 64 connections: nimify JSON ≥ 1.3 × plain req/s`, value: t64.ratios.nimifyJsonVsPlain, met: t64.ratios.nimifyJsonVsPlain >= 1.3 });
  if (mid) {
    const m64 = at64(mid);
    list.push({ id: 'P5 mid', what: `${mid.model}, 64 connections: nimify JSON ≥ 3 × plain req/s`, value: m64.ratios.nimifyJsonVsPlain, met: m64.ratios.nimifyJsonVsPlain >= 3 });
  }
  const i64 = img && at64(img);
  if (img) {
    const bin = i64.variants['nimify binary'];
    list.push(
      { id: 'P5 image ideal', what: `${img.model}, 64 connections: nimify binary ≥ 0.9 × the one-batch compute ideal (${img.ideal.samplesPerSec} samples/s: one batch-64 run ${img.ideal.msPerBatch} ms)`, value: i64.ratios.nimifyBinaryVsIdeal, met: i64.ratios.nimifyBinaryVsIdeal >= 0.9 },
      { id: 'P5 image p99', what: `${img.model}, 64 connections: nimify binary p99 ≤ 2000 ms`, value: bin.latencyP99Ms, met: bin.latencyP99Ms !== null && bin.latencyP99Ms <= 2000 },
      { id: 'info', what: `(reference) ${img.model}, 64 connections: nimify binary ÷ plain JSON req/s; ÷ nimify JSON`, value: `${i64.ratios.nimifyBinaryVsPlain}; ${i64.ratios.nimifyBinaryVsJson}`, met: null },
    );
  }
  if (tiny && t64.ratios.plainVsEcho !== undefined && t64.ratios.plainVsEcho !== null) {
    list.push({ id: 'info', what: `(reference) ${tiny.model}, 64 connections: Fastify parsing the same JSON with no model ÷ plain req/s — the most any Fastify JSON server could reach here`, value: +(1 / t64.ratios.plainVsEcho).toFixed(2), met: null });
    list.push({ id: 'info', what: `(reference) ${tiny.model}, 64 connections: nimify JSON ÷ that no-model Fastify server`, value: t64.ratios.nimifyJsonVsEcho, met: null });
  }
  if (img && i64.ratios.nimifyBinaryVsNoShedJson !== undefined) {
    list.push({ id: 'info', what: `(reference) ${img.model}, 64 connections: nimify binary ÷ nimify JSON with shedding off`, value: i64.ratios.nimifyBinaryVsNoShedJson, met: null });
  }
  return list;
}

// ---------------------------------------------------------------------------------------------
// Report.

function toMarkdown(report) {
  const lines = [
    `| setup | |`,
    '|---|---|',
    `| CPU | ${report.cpu.model}, ${report.cpu.cores} cores (load average at the end ${report.cpu.loadavg.join(', ')}) |`,
    `| Node | ${report.node} |`,
    `| nimify | commit ${report.nimify.commit}${report.nimify.srcModified ? ' + uncommitted changes in src/' : ''}${report.nimify.root !== '.' ? ` (served from ${report.nimify.root})` : ''}, \`nimify serve\` defaults |`,
    `| ONNX Runtime | ${report.runtime.version} (onnxruntime-node ${report.onnxruntimeNode}; nimify loads the same library) |`,
    `| load generator | autocannon ${report.autocannon}, same process as the runner; servers are child processes |`,
    `| windows | ≥ ${report.timing.windowSeconds} s measured per cell (≥ ${report.timing.windowFactor} × the warm-up, ≤ ${report.timing.maxWindowSeconds} s), after a warm-up until every connection had a response (at most ${report.timing.maxWarmupSeconds} s)${report.timing.quick ? ' (quick mode)' : ''} |`,
    `| date | ${report.date ?? new Date().toISOString()} |`,
    ...(report.onlyModels ? [`| partial run | only ${report.onlyModels.join(', ')} (BENCH_HTTP_MODELS) |`] : []),
    '',
    `Closed loop, one request in flight per connection (C). Rounds per cell: ${report.models.map((m) => `${m.model} ${m.rounds}`).join(', ')}; with several, the variants run interleaved that many times and each cell shows the variant's median round (its req/s range in the per-cell table), each ratio the median of the per-round ratios. ` +
    'req/s = 2xx responses per second in the measured window; p50/p99 = latency of the 2xx responses (ms). Plain = Fastify + onnxruntime-node written the usual way (bench/plain-server.js, JSON only); nimify = `nimify serve` with its defaults (dynamic batching, shedding). × plain = nimify req/s ÷ plain req/s; bin/JSON = nimify binary ÷ nimify JSON.',
    '',
    '| model | C | plain JSON req/s | p50 | p99 | nimify JSON req/s | p50 | p99 | × plain | nimify binary req/s | p50 | p99 | × plain | bin/JSON |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const m of report.models) {
    for (const r of m.rows) {
      const p = r.variants['plain JSON'];
      const j = r.variants['nimify JSON'];
      const b = r.variants['nimify binary'];
      lines.push(`| ${m.model} | ${r.connections} | ${fmt(p.reqPerSec)} | ${ms(p.latencyP50Ms)} | ${ms(p.latencyP99Ms)} | ${fmt(j.reqPerSec)} | ${ms(j.latencyP50Ms)} | ${ms(j.latencyP99Ms)} | ${r.ratios.nimifyJsonVsPlain} | ${fmt(b.reqPerSec)} | ${ms(b.latencyP50Ms)} | ${ms(b.latencyP99Ms)} | ${r.ratios.nimifyBinaryVsPlain} | ${r.ratios.nimifyBinaryVsJson} |`);
    }
  }
  // A reference variant's own table: its req/s, latencies and two ratios, for the models that ran it.
  const referenceTable = (variant, text, ratioHeads, ratioKeys) => {
    const models = report.models.filter((m) => m.rows.some((r) => r.variants[variant]));
    if (!models.length) return;
    lines.push('', text, '', `| model | C | ${variant} req/s | p50 | p99 | ${ratioHeads.join(' | ')} |`, '|---|---:|---:|---:|---:|---:|---:|');
    for (const m of models) {
      for (const r of m.rows) {
        const v = r.variants[variant];
        lines.push(`| ${m.model} | ${r.connections} | ${fmt(v.reqPerSec)} | ${ms(v.latencyP50Ms)} | ${ms(v.latencyP99Ms)} | ${ratioKeys.map((k) => r.ratios[k]).join(' | ')} |`);
      }
    }
  };
  referenceTable(
    NOSHED[0],
    `For reference, nimify with load shedding off (\`--max-event-loop-delay-ms 0\`): what the JSON path delivers when it is not refusing requests. By default nimify answers 503 OVERLOADED while the event loop is more than 200 ms late, which large JSON bodies cause (see the per-cell table).`,
    ['× plain', 'nimify binary ÷ this'],
    ['noShedJsonVsPlain', 'nimifyBinaryVsNoShedJson'],
  );
  referenceTable(
    ECHO[0],
    'Reference: the same Fastify setup and route as the plain server with no model behind it (bench/echo-server.js: parse the JSON body, answer an output of the right shape). It bounds what any Fastify server parsing these bodies can do on this machine, inference or not.',
    ['plain ÷ this', 'nimify JSON ÷ this'],
    ['plainVsEcho', 'nimifyJsonVsEcho'],
  );
  referenceTable(
    ROUTE[0],
    'Reference: nimify with every inference request through its Fastify route (`--no-fast-lane`), as before the fast lane (src/server/fast-lane.ts): same answers, Fastify\'s request machinery per request.',
    ['× plain', 'nimify JSON ÷ this'],
    ['routeJsonVsPlain', 'nimifyJsonVsRoute'],
  );
  lines.push('', 'Targets (SPEC P5) on this run:', '', '| target | value | met |', '|---|---:|---|');
  for (const t of report.targets) lines.push(`| ${t.what} | ${t.value ?? '–'} | ${t.met === null ? '–' : t.met ? 'yes' : 'no'} |`);
  lines.push(
    '',
    'Per cell: measured window (s; * = some connection still had no response when the warm-up ended at its cap), 2xx responses, non-2xx responses (by status; their median latency), socket errors / timeouts, CPU cores used by the server process and by the load generator during the window, nimify mean batch size and 503s shed (by reason) over the whole cell (warm-up included).',
    '',
    '| model | C | variant | req/s over rounds | window s | 2xx | non-2xx | errors | server CPU | client CPU | mean batch | shed |',
    '|---|---:|---|---|---:|---:|---|---:|---:|---:|---:|---|',
  );
  for (const m of report.models) {
    for (const r of m.rows) {
      for (const [name, v] of Object.entries(r.variants)) {
        const non = v.non2xx ? `${v.non2xx} (${Object.entries(v.statusCodes).filter(([c]) => !c.startsWith('2')).map(([c, n]) => `${c}×${n}`).join(', ')}; p50 ${ms(v.non2xxP50Ms)} ms)` : '0';
        const shed = v.shed && Object.keys(v.shed).length ? Object.entries(v.shed).map(([k, n]) => `${k} ${n}`).join(', ') : v.shed ? '0' : '–';
        lines.push(`| ${m.model} | ${r.connections} | ${name} | ${(v.roundsReqPerSec ?? [v.reqPerSec]).map(fmt).join(' / ')} | ${v.windowSeconds}${v.warmupAllConnections ? '' : ' *'} | ${fmt(v.ok)} | ${non} | ${v.errors}${v.timeouts ? ` (${v.timeouts} timeouts)` : ''} | ${v.serverCpu ?? '–'} | ${v.clientCpu} | ${v.meanBatch ?? '–'} | ${shed} |`);
      }
    }
  }
  lines.push('', 'Models and requests:', '');
  for (const m of report.models) {
    const checks = Object.entries(m.check).map(([k, c]) => (c.maxAbsDiffVsPlain === null ? `${k}: status and shape only (no model)` : `${k} max |Δ| vs plain ${c.maxAbsDiffVsPlain}`)).join('; ');
    lines.push(`- ${m.model}: \`${m.file}\`, input ${JSON.stringify(m.dims)} FP32, ${m.bodies} pre-built random bodies cycled per connection (JSON ${(m.bodyBytes.json / 1024).toFixed(0)} KiB, binary ${(m.bodyBytes.binary / 1024).toFixed(0)} KiB). First responses: 200, right shape; ${checks}.`);
    for (const [kind, cmd] of Object.entries(m.commands)) lines.push(`  - ${kind}: \`${cmd}\``);
    for (const [label, msgs] of Object.entries(m.serverLogs)) lines.push(`  - ${label} logged: ${Object.entries(msgs).map(([msg, n]) => `${n} × \`${msg}\``).join('; ')}`);
  }
  return lines.join('\n');
}

// ---------------------------------------------------------------------------------------------
// Chart: one panel per model, req/s (log scale) against connections, one line per variant.

const COLORS = { 'plain JSON': '#d62728', 'nimify JSON': '#7f7f7f', 'nimify binary': '#1f77b4', [NOSHED[0]]: '#7f7f7f', [ECHO[0]]: '#bcbd22', [ROUTE[0]]: '#9467bd' };
const NAMES = [...VARIANTS, NOSHED, ECHO, ROUTE].map((v) => v[0]);
const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const short = (n) => (n >= 1e6 ? `${+(n / 1e6).toFixed(1)}M` : n >= 1e3 ? `${+(n / 1e3).toFixed(1)}k` : `${+n.toFixed(1)}`);

function panel(m, x0, y0, w, h) {
  const all = m.rows.flatMap((r) => Object.values(r.variants).map((v) => v.reqPerSec)).filter((v) => v > 0);
  const lo = Math.floor(Math.log10(Math.min(...all)));
  const hi = Math.ceil(Math.log10(Math.max(...all)));
  const xs = m.rows.map((r) => r.connections);
  const px = (c) => x0 + 40 + (xs.indexOf(c) / Math.max(1, xs.length - 1)) * (w - 60);
  const py = (v) => y0 + h - 30 - ((Math.log10(v) - lo) / Math.max(1, hi - lo)) * (h - 60);
  const out = [`<text x="${x0 + w / 2}" y="${y0 + 14}" text-anchor="middle" font-weight="bold">${esc(m.model)}</text>`];
  for (let e = lo; e <= hi; e++) {
    const y = py(10 ** e);
    out.push(`<line x1="${x0 + 40}" y1="${y}" x2="${x0 + w - 20}" y2="${y}" stroke="#ddd"/>`, `<text x="${x0 + 36}" y="${y + 4}" text-anchor="end">${short(10 ** e)}</text>`);
  }
  for (const c of xs) out.push(`<text x="${px(c)}" y="${y0 + h - 12}" text-anchor="middle">${c}</text>`);
  for (const name of NAMES) {
    const pts = m.rows.filter((r) => r.variants[name]).map((r) => [r.connections, r.variants[name].reqPerSec]).filter((p) => p[1] > 0);
    if (!pts.length) continue;
    out.push(`<path d="${pts.map(([c, v], i) => `${i ? 'L' : 'M'}${px(c).toFixed(1)},${py(v).toFixed(1)}`).join(' ')}" fill="none" stroke="${COLORS[name]}" stroke-width="2"${name === NOSHED[0] || name === ECHO[0] || name === ROUTE[0] ? ' stroke-dasharray="5,4"' : ''}/>`);
    for (const [c, v] of pts) out.push(`<circle cx="${px(c).toFixed(1)}" cy="${py(v).toFixed(1)}" r="3" fill="${COLORS[name]}"><title>${esc(`${name} @${c}: ${v} req/s`)}</title></circle>`);
  }
  return out.join('\n');
}

function toSvg(report, machine) {
  const w = 360;
  const h = 260;
  const width = Math.max(w * report.models.length + 20, 20 + 170 * NAMES.length);
  const height = h + 70;
  const legend = NAMES.map((name, i) => `<line x1="${20 + i * 170}" y1="${h + 26}" x2="${34 + i * 170}" y2="${h + 26}" stroke="${COLORS[name]}" stroke-width="3"${name === NOSHED[0] || name === ECHO[0] || name === ROUTE[0] ? ' stroke-dasharray="4,2"' : ''}/><text x="${40 + i * 170}" y="${h + 30}">${esc(name)}</text>`);
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="11">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    ...report.models.map((m, i) => panel(m, 10 + i * w, 10, w, h)),
    ...legend,
    `<text x="20" y="${h + 52}" fill="#555">HTTP req/s (log) vs connections (closed loop); ${esc(machine)}</text>`,
    '</svg>',
    '',
  ].join('\n');
}

module.exports = { main, toMarkdown, toSvg };
