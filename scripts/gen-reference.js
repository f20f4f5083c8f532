#!/usr/bin/env node
'use strict';
// Writes test/fixtures/reference/<model>.json: deterministic inputs and the outputs
// onnxruntime-node computes for them. nimify's tests must reproduce these outputs, which pins
// "same outputs as onnxruntime-node on the same inputs" to committed data.
// Run after scripts/fixtures/generate.py: `node scripts/gen-reference.js`.
const fs = require('node:fs');
const path = require('node:path');
const ort = require('onnxruntime-node');

const ROOT = path.resolve(__dirname, '..');
const MODELS = path.join(ROOT, 'test', 'fixtures', 'models');
const OUT = path.join(ROOT, 'test', 'fixtures', 'reference');

function mulberry32(seed) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = seed;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const rand = mulberry32(20261122);
const floats = (n) => Float32Array.from({ length: n }, () => rand() * 2 - 1);
const size = (dims) => dims.reduce((a, b) => a * b, 1);
const f32 = (dims) => new ort.Tensor('float32', floats(size(dims)), dims);

function encode(t) {
  const d = t.data;
  return { type: t.type, dims: [...t.dims], data: Buffer.from(d.buffer, d.byteOffset, d.byteLength).toString('base64') };
}

const CASES = {
  mlp_tiny: [() => ({ x: f32([1, 64]) }), () => ({ x: f32([5, 64]) })],
  convnet: [() => ({ x: f32([1, 3, 32, 32]) }), () => ({ x: f32([3, 3, 32, 32]) })],
  convnet_bench: [() => ({ x: f32([1, 3, 112, 112]) })],
  embed_int64: [() => ({ ids: new ort.Tensor('int64', BigInt64Array.from({ length: 14 }, () => BigInt(Math.floor(rand() * 100))), [2, 7]) })],
  nonzero: [
    () => {
      const x = floats(20);
      for (const i of [0, 3, 4, 9, 17]) x[i] = 0;
      return { x: new ort.Tensor('float32', x, [20]) };
    },
  ],
  two_inputs: [() => ({ a: f32([3, 4]), b: f32([3, 4]) })],
};

async function main() {
  fs.mkdirSync(OUT, { recursive: true });
  for (const [name, cases] of Object.entries(CASES)) {
    const session = await ort.InferenceSession.create(path.join(MODELS, `${name}.onnx`));
    const doc = { model: `${name}.onnx`, generator: `onnxruntime-node ${require('onnxruntime-node/package.json').version}`, cases: [] };
    for (const make of cases) {
      const feeds = make();
      const outputs = await session.run(feeds);
      doc.cases.push({
        inputs: Object.fromEntries(Object.entries(feeds).map(([k, v]) => [k, encode(v)])),
        outputs: Object.fromEntries(Object.entries(outputs).map(([k, v]) => [k, encode(v)])),
      });
    }
    await session.release();
    const file = path.join(OUT, `${name}.json`);
    const text = JSON.stringify(doc, null, 1) + '\n';
    if (text.length >= 300_000) throw new Error(`${name}.json would be ${text.length} bytes (limit 300 KB)`);
    fs.writeFileSync(file, text);
    console.log(`${path.relative(ROOT, file)}: ${text.length} bytes`);
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
