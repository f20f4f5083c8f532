'use strict';
// gRPC vs HTTP (issue 16 item 2): one `nimify serve` child process per model serves both
// protocols; this process drives it with C requests in flight (closed loop) over
//   - gRPC: ModelInfer on one @grpc/grpc-js channel, the input as raw_input_contents;
//   - HTTP binary: the binary tensor extension (Inference-Header-Content-Length), autocannon;
//   - HTTP JSON: the input as JSON numbers, autocannon.
// Tiny MLP (64→256→10) and the ResNet-18-class conv net (3×224×224), batch-1 requests.
// Both load generators run in this process, so their own CPU cost is in the figures: autocannon
// is lighter per request than a grpc-js client, which leans against gRPC on the tiny model.
// `node bench/run.js grpc`.
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const autocannon = require('autocannon');
const { ROOT, NIMIFY_ROOT, sleep, fmt, runIfMain } = require('./lib/common');
const { startServer, guardChildren } = require('./lib/children');
const { benchModel } = require(path.join(ROOT, 'scripts', 'bench-models.js'));

const { loadInferenceProto, GRPC_SERVICE } = require(path.join(NIMIFY_ROOT, 'dist', 'protocol', 'grpc'));
const { runtimeInfo } = require(path.join(NIMIFY_ROOT, 'dist'));

const MODELS = [
  { key: 'tiny', name: 'tiny MLP (64→256→10)', file: () => path.join(ROOT, 'test', 'fixtures', 'models', 'mlp_tiny.onnx'), dims: [1, 64], durationS: 4, inflight: [1, 16] },
  { key: 'resnet18', name: 'ResNet-18-class conv net (3×224×224)', file: () => benchModel('resnet18.onnx'), dims: [1, 3, 224, 224], durationS: 8, inflight: [1, 8] },
];

function input(dims) {
  const n = dims.reduce((a, b) => a * b, 1);
  return Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.01));
}

async function grpcLoad(address, name, data, dims, inflight, durationS) {
  const def = loadInferenceProto();
  const Service = grpc.loadPackageDefinition(def).inference.GRPCInferenceService;
  const client = new Service(address, grpc.credentials.createInsecure());
  const request = {
    model_name: name,
    inputs: [{ name: 'x', datatype: 'FP32', shape: dims.map(String) }],
    raw_input_contents: [Buffer.from(data.buffer, data.byteOffset, data.byteLength)],
  };
  const call = () => new Promise((resolve, reject) => client.ModelInfer(request, (err, res) => (err ? reject(err) : resolve(res))));
  await call();
  let stop = false;
  let counting = false;
  let done = 0;
  const lat = [];
  const loop = async () => {
    while (!stop) {
      const t0 = performance.now();
      await call();
      if (counting) {
        done++;
        lat.push(performance.now() - t0);
      }
    }
  };
  const loops = Array.from({ length: inflight }, loop);
  await sleep(500);
  counting = true;
  const t0 = performance.now();
  await sleep(durationS * 1000);
  const elapsed = performance.now() - t0;
  counting = false;
  stop = true;
  await Promise.all(loops);
  client.close();
  lat.sort((a, b) => a - b);
  return { reqPerSec: +((done / elapsed) * 1000).toFixed(1), p99Ms: +(lat[Math.floor(lat.length * 0.99)] ?? 0).toFixed(2) };
}

async function httpLoad(url, body, headers, inflight, durationS) {
  const r = await autocannon({ url, method: 'POST', headers, body, connections: inflight, duration: durationS });
  if (r.non2xx > 0 || r.errors > 0) throw new Error(`${url}: ${r.non2xx} non-2xx, ${r.errors} errors`);
  return { reqPerSec: r.requests.average, p99Ms: r.latency.p99 };
}

async function main({ quick = process.argv.includes('--quick') } = {}) {
  const release = guardChildren();
  const rows = [];
  try {
    for (const m of MODELS) {
      const server = await startServer(`nimify ${m.key}`, [path.join(NIMIFY_ROOT, 'dist', 'cli', 'index.js'), 'serve', m.file(), '--port', '0', '--grpc-port', '0', '--log-level', 'warn'], { ready: /grpc\s+(\S+:\d+) \(inference/ });
      try {
        const httpBase = server.log.map((l) => /at (http:\/\/\S+)/.exec(l)?.[1]).find(Boolean);
        const name = path.basename(m.file(), '.onnx');
        const url = `${httpBase}/v2/models/${name}/infer`;
        const data = input(m.dims);
        const header = Buffer.from(JSON.stringify({ inputs: [{ name: 'x', shape: m.dims, datatype: 'FP32', parameters: { binary_data_size: data.byteLength } }], outputs: [{ name: 'y', parameters: { binary_data: true } }] }));
        const binary = Buffer.concat([header, Buffer.from(data.buffer)]);
        const json = JSON.stringify({ inputs: [{ name: 'x', shape: m.dims, datatype: 'FP32', data: Array.from(data) }] });
        const durationS = quick ? 1 : m.durationS;
        for (const c of m.inflight) {
          const row = { model: m.name, inflight: c };
          row.grpc = await grpcLoad(server.url, name, data, m.dims, c, durationS);
          row.httpBinary = await httpLoad(url, binary, { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(header.length) }, c, durationS);
          row.httpJson = await httpLoad(url, json, { 'content-type': 'application/json' }, c, durationS);
          row.grpcVsBinary = +(row.grpc.reqPerSec / row.httpBinary.reqPerSec).toFixed(2);
          row.grpcVsJson = +(row.grpc.reqPerSec / row.httpJson.reqPerSec).toFixed(2);
          rows.push(row);
          console.error(`  ${m.name} @${c}: gRPC ${fmt(row.grpc.reqPerSec)}, HTTP binary ${fmt(row.httpBinary.reqPerSec)}, HTTP JSON ${fmt(row.httpJson.reqPerSec)} req/s`);
        }
      } finally {
        await server.stop();
      }
    }
  } finally {
    release();
  }
  return { runtime: runtimeInfo(), rows };
}

function toMarkdown(report) {
  const lines = [
    'Requests/s with C batch-1 requests in flight (closed loop) against one `nimify serve` child process serving both protocols; gRPC: ModelInfer with raw_input_contents on one @grpc/grpc-js channel; HTTP: autocannon with C connections, binary tensor extension or JSON. The load generators run in the benchmark process (their CPU cost is in the figures).',
    '',
    '| model | C | gRPC req/s | p99 ms | HTTP binary req/s | p99 ms | HTTP JSON req/s | p99 ms | gRPC / binary | gRPC / JSON |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const r of report.rows) {
    lines.push(`| ${r.model} | ${r.inflight} | ${fmt(r.grpc.reqPerSec)} | ${r.grpc.p99Ms} | ${fmt(r.httpBinary.reqPerSec)} | ${r.httpBinary.p99Ms} | ${fmt(r.httpJson.reqPerSec)} | ${r.httpJson.p99Ms} | ${r.grpcVsBinary} | ${r.grpcVsJson} |`);
  }
  return lines.join('\n');
}

module.exports = { main, toMarkdown, grpcLoad };

runIfMain(module, module.exports);
