'use strict';
// The baseline for bench/predict.js: an image classifier served the way a user would write it
// without nimify, with Fastify 5, sharp and onnxruntime-node. The raw image bytes as the body
// (Content-Type image/*), sharp on the event loop (decode, flatten onto white, resize to the
// model's 8×8 with bilinear, raw RGB bytes), grayscale with the BT.601 weights the model's
// config asks for (nimify's `color: grayscale`, Pillow's convert('L'): 0.299 R + 0.587 G +
// 0.114 B; sharp's own .grayscale() computes another luminance, up to ~50/255 apart on colour
// photos, which would change the scores), scaled by
// 1/255 into a Float32Array, one InferenceSession, `await session.run()`, then softmax and
// top-3 with the labels file, answered as `{ model_name, model_version, predictions: [{ label,
// index, score }] }` like nimify's predict route. No logger (as bench/plain-server.js).
//
//   node bench/predict-ort-server.js <model dir (config.json, labels.txt, 1/model.onnx)> [port]
//
// Prints `ort-node predict server listening at http://127.0.0.1:<port> route <path>` when
// ready. SIGTERM and SIGINT close it (the listen and shutdown lines are bench/lib/serve.js's,
// shared with bench/predict-nimify-server.js: scaffolding, not part of what is measured). With
// an IPC channel (spawned by bench/predict.js) it answers event-loop delay reads (bench/eld.js).
const fs = require('node:fs');
const path = require('node:path');
const Fastify = require('fastify');
const ort = require('onnxruntime-node');
const sharp = require('sharp');
const { attachEventLoopDelayMonitor } = require('./eld');
const { listen, runServer } = require('./lib/serve');

async function main() {
  const [dir, port = '8080'] = process.argv.slice(2);
  if (!dir) {
    console.error('usage: node bench/predict-ort-server.js <model dir> [port]');
    process.exit(2);
  }
  attachEventLoopDelayMonitor();
  const modelName = path.basename(dir);
  const labels = fs.readFileSync(path.join(dir, 'labels.txt'), 'utf8').split(/\r?\n/).filter((l) => l !== '');
  const session = await ort.InferenceSession.create(path.join(dir, '1', 'model.onnx'));
  const [inputName] = session.inputNames;
  const [outputName] = session.outputNames;
  const W = 8;
  const H = 8;
  const TOP_K = 3;

  const app = Fastify({ logger: false, bodyLimit: 64 * 1024 * 1024 });
  app.addContentTypeParser(/^image\/.+$/, { parseAs: 'buffer' }, (_req, body, done) => done(null, body));

  app.post('/v1/models/:model/predict', async (request, reply) => {
    if (request.params.model !== modelName) return reply.code(404).send({ error: `unknown model ${request.params.model}` });
    let pixels;
    let channels;
    try {
      const { data, info } = await sharp(request.body).flatten({ background: '#ffffff' }).resize(W, H, { fit: 'fill', kernel: 'linear' }).raw().toBuffer({ resolveWithObject: true });
      pixels = data;
      channels = info.channels;
    } catch (err) {
      return reply.code(400).send({ error: `cannot decode the image: ${err.message}` });
    }
    const x = new Float32Array(W * H);
    for (let i = 0, p = 0; i < x.length; i++, p += channels) {
      x[i] = (channels >= 3 ? 0.299 * pixels[p] + 0.587 * pixels[p + 1] + 0.114 * pixels[p + 2] : pixels[p]) / 255;
    }
    const results = await session.run({ [inputName]: new ort.Tensor('float32', x, [1, 1, H, W]) });
    const logits = results[outputName].data;
    const max = Math.max(...logits);
    const exp = Array.from(logits, (v) => Math.exp(v - max));
    const sum = exp.reduce((a, b) => a + b, 0);
    const predictions = exp
      .map((e, index) => ({ label: labels[index] ?? String(index), index, score: e / sum }))
      .sort((a, b) => b.score - a.score)
      .slice(0, TOP_K);
    return { model_name: modelName, model_version: '1', predictions };
  });

  await listen(app, port, (address) => `ort-node predict server listening at ${address} route /v1/models/:model/predict`);
}

runServer(main);
