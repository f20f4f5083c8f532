'use strict';
// The baseline for bench/http.js: an ONNX model served the way a typical user would write it with
// Fastify 5 and onnxruntime-node. One InferenceSession, Fastify's built-in JSON parser, an
// ort.Tensor built from the request's flat `data` array, `await session.run()`, and the outputs
// sent back as plain arrays. It takes KServe v2 JSON bodies only; a typical user does not write
// the binary tensor extension.
//
//   node bench/plain-server.js <model.onnx> [port]     (port 0 = any free port)
//
// When it is listening it prints `plain server listening at http://127.0.0.1:<port>`. SIGTERM
// and SIGINT close it.
const path = require('node:path');
const Fastify = require('fastify');
const ort = require('onnxruntime-node');

const TO_ORT = { FP32: 'float32', FP64: 'float64', INT32: 'int32', INT8: 'int8', UINT8: 'uint8' };
const FROM_ORT = Object.fromEntries(Object.entries(TO_ORT).map(([k, v]) => [v, k]));

async function main() {
  const [file, port = '8080'] = process.argv.slice(2);
  if (!file) {
    console.error('usage: node bench/plain-server.js <model.onnx> [port]');
    process.exit(2);
  }
  const modelName = path.basename(file, '.onnx');
  const session = await ort.InferenceSession.create(file);

  // Image-sized tensors as JSON are several MB, above Fastify's 1 MiB default.
  const app = Fastify({ logger: false, bodyLimit: 64 * 1024 * 1024 });

  app.post('/v2/models/:model/infer', async (request, reply) => {
    if (request.params.model !== modelName) return reply.code(404).send({ error: `unknown model ${request.params.model}` });
    const feeds = {};
    for (const input of request.body?.inputs ?? []) {
      const type = TO_ORT[input.datatype];
      if (!type) return reply.code(400).send({ error: `unsupported datatype ${input.datatype}` });
      feeds[input.name] = new ort.Tensor(type, input.data, input.shape);
    }
    try {
      const results = await session.run(feeds);
      return {
        model_name: modelName,
        outputs: Object.entries(results).map(([name, t]) => ({ name, shape: t.dims, datatype: FROM_ORT[t.type], data: Array.from(t.data) })),
      };
    } catch (err) {
      return reply.code(400).send({ error: err.message });
    }
  });

  const address = await app.listen({ port: Number(port), host: '127.0.0.1' });
  console.log(`plain server listening at ${address}`);

  const stop = () => {
    app.close().then(() => process.exit(0), () => process.exit(1));
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
