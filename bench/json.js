'use strict';
// JSON request decoding: the CPU a KServe v2 JSON inference body costs before the model runs, on
// the JS thread, in one process, side by side in the same run:
//   - nimify: parseInferJson (numbers of `data` read by the addon's scanner) + decodeInferRequest,
//     what the infer route and the JSON decode worker do;
//   - nimify, JSON.parse path: secure-json-parse over the whole body + decodeInferRequest, what
//     nimify did before the scanner (and still does for bodies the scanner leaves);
//   - plain: secure-json-parse (Fastify's JSON parser) + new ort.Tensor('float32', data, shape) of
//     onnxruntime-node, what bench/plain-server.js does.
// Bodies as Triton's Python client writes them (float32 values as the shortest double that reads
// back: up to 17 digits), flat; the image also nested as [1][3][224][224] lists. Rounds interleave
// the variants; each cell is the median round's µs per body. `node bench/run.js json`.
const path = require('node:path');
const { performance } = require('node:perf_hooks');
const sjson = require('secure-json-parse');
const ort = require('onnxruntime-node');
const { NIMIFY_ROOT, prng, median, fmt, runIfMain } = require('./lib/common');

const { parseInferJson } = require(path.join(NIMIFY_ROOT, 'dist', 'protocol', 'infer-json'));
const { parseUntrustedJson } = require(path.join(NIMIFY_ROOT, 'dist', 'protocol', 'json'));
const { decodeInferRequest } = require(path.join(NIMIFY_ROOT, 'dist', 'protocol', 'request'));
const { runtimeInfo } = require(path.join(NIMIFY_ROOT, 'dist'));

const BODIES = [
  { name: 'tiny MLP input, 64 FP32', shape: [1, 64] },
  { name: 'mid MLP input, 512 FP32', shape: [1, 512] },
  { name: 'image, 3×224×224 FP32, flat', shape: [1, 3, 224, 224] },
  { name: 'image, 3×224×224 FP32, nested lists', shape: [1, 3, 224, 224], nested: true },
];

function nest(flat, shape) {
  if (shape.length === 1) return flat;
  const step = flat.length / shape[0];
  return Array.from({ length: shape[0] }, (_, i) => nest(flat.slice(i * step, (i + 1) * step), shape.slice(1)));
}

function makeBody(spec) {
  const rand = prng(7);
  const count = spec.shape.reduce((a, b) => a * b, 1);
  const flat = Array.from({ length: count }, () => Math.fround(rand() * 2 - 1));
  const data = spec.nested ? nest(flat, spec.shape) : flat;
  return { bytes: Buffer.from(JSON.stringify({ inputs: [{ name: 'x', shape: spec.shape, datatype: 'FP32', data }], outputs: [{ name: 'y' }] })), flat };
}

const VARIANTS = {
  // As the infer route decodes (shared arrays where infer() copies the inputs: src/protocol/arrays.ts).
  nimify: (body, wire) => decodeInferRequest(wire, parseInferJson('request body', body), null, false, true).feeds.x,
  parse: (body, wire) => decodeInferRequest(wire, parseUntrustedJson('request body', body.toString('utf8')), null, false, true).feeds.x,
  plain: (body) => {
    const input = sjson.parse(body.toString('utf8'), { protoAction: 'error', constructorAction: 'error' }).inputs[0];
    // Nested lists must be flattened first: ort.Tensor takes a flat array.
    return new ort.Tensor('float32', Array.isArray(input.data[0]) ? input.data.flat(Infinity) : input.data, input.shape);
  },
};

/** µs per call of `fn` over a window of at least `ms` (after a warm-up of a fifth of it, at least 200 ms: the JIT's). */
function time(fn, ms) {
  const warm = performance.now() + Math.max(ms / 5, 200);
  while (performance.now() < warm) fn();
  let n = 0;
  const start = performance.now();
  let now = start;
  while (now - start < ms) {
    fn();
    n++;
    now = performance.now();
  }
  return ((now - start) * 1000) / n;
}

async function main({ quick = process.argv.includes('--quick') } = {}) {
  const rounds = quick ? 1 : 5;
  const ms = quick ? 150 : 600;
  const rows = [];
  for (const spec of BODIES) {
    const { bytes, flat } = makeBody(spec);
    const wire = { inputs: [{ name: 'x', datatype: 'FP32', shape: spec.shape.map(() => -1) }], outputs: [{ name: 'y', datatype: 'FP32', shape: [-1] }], batched: false };
    // Every variant decodes the same values before anything is timed.
    for (const [name, fn] of Object.entries(VARIANTS)) {
      const t = fn(bytes, wire);
      const got = t.data;
      if (got.length !== flat.length || got.some((v, i) => v !== flat[i])) throw new Error(`${name}: decoded values differ on ${spec.name}`);
    }
    const samples = { nimify: [], parse: [], plain: [] };
    for (let r = 0; r < rounds; r++) {
      for (const [name, fn] of Object.entries(VARIANTS)) samples[name].push(time(() => fn(bytes, wire), ms));
    }
    const row = { body: spec.name, bytes: bytes.length };
    for (const name of Object.keys(VARIANTS)) row[name] = median(samples[name]);
    row.vsPlain = +(row.plain / row.nimify).toFixed(2);
    row.vsParse = +(row.parse / row.nimify).toFixed(2);
    rows.push(row);
    console.error(`  ${spec.name}: nimify ${row.nimify.toFixed(1)} µs, JSON.parse path ${row.parse.toFixed(1)} µs, plain ${row.plain.toFixed(1)} µs`);
  }
  return { runtime: runtimeInfo(), rounds, windowMs: ms, rows };
}

const us = (x) => (x >= 1000 ? fmt(Math.round(x)) : x.toFixed(x >= 100 ? 0 : 1));

function toMarkdown(report) {
  const lines = [
    `CPU time to turn one KServe v2 JSON request body into the input tensor, on one thread, µs per body (median of ${report.rounds} interleaved rounds of ≥ ${report.windowMs} ms). nimify: parseInferJson + decodeInferRequest (the infer route and the JSON decode worker); JSON.parse path: secure-json-parse + decodeInferRequest (nimify before the native scanner); plain: secure-json-parse + \`new ort.Tensor('float32', data, shape)\` of onnxruntime-node (bench/plain-server.js; nested lists flattened first, as ort.Tensor needs). Values as Triton's Python client writes float32 (shortest round-trip doubles).`,
    '',
    '| body | bytes | nimify µs | JSON.parse path µs | plain µs | plain ÷ nimify | JSON.parse path ÷ nimify |',
    '|---|---:|---:|---:|---:|---:|---:|',
  ];
  for (const r of report.rows) lines.push(`| ${r.body} | ${fmt(r.bytes)} | ${us(r.nimify)} | ${us(r.parse)} | ${us(r.plain)} | ${r.vsPlain} | ${r.vsParse} |`);
  return lines.join('\n');
}

module.exports = { main, toMarkdown };

runIfMain(module, module.exports);
