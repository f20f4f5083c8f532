'use strict';
// A reference for bench/http.js, not a competitor: the same Fastify 5 setup and route as
// bench/plain-server.js, minus the model. It parses the KServe v2 JSON body with Fastify's
// built-in parser and answers an output of the model's shape taken from the first input values,
// so it measures what HTTP, routing, JSON parsing and serialisation alone cost on this machine:
// the most any Fastify server that parses these bodies can deliver here. Its outputs are not the
// model's (bench/http.js checks only their status and shape).
//
//   node bench/echo-server.js <output-name> <output-dims, comma-separated> [port]
//
// When it is listening it prints `echo server listening at http://127.0.0.1:<port>`. SIGTERM and
// SIGINT close it.
const Fastify = require('fastify');

async function main() {
  const [output, dimsArg, port = '8080'] = process.argv.slice(2);
  if (!output || !dimsArg) {
    console.error('usage: node bench/echo-server.js <output-name> <output-dims> [port]');
    process.exit(2);
  }
  const shape = dimsArg.split(',').map(Number);
  const n = shape.reduce((a, b) => a * b, 1);
  const app = Fastify({ logger: false, bodyLimit: 64 * 1024 * 1024 });
  app.post('/v2/models/:model/infer', async (request, reply) => {
    const input = request.body?.inputs?.[0];
    if (!Array.isArray(input?.data)) return reply.code(400).send({ error: 'expected inputs[0].data' });
    const data = new Array(n);
    for (let i = 0; i < n; i++) data[i] = input.data[i % input.data.length];
    return { model_name: request.params.model, outputs: [{ name: output, shape, datatype: 'FP32', data }] };
  });
  const address = await app.listen({ port: Number(port), host: '127.0.0.1' });
  console.log(`echo server listening at ${address}`);
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
