'use strict';
// `npm run bench`: runs every benchmark and writes bench/results/<name>.json and .md (and
// <name>.svg for suites with a chart). `npm run bench -- throughput` runs one suite; `http` drives
// nimify's HTTP server and a plain Fastify + onnxruntime-node server (child processes); `predict`
// drives the image predict route with preprocessing in nimify's worker pool, on the event loop,
// and in a Fastify + sharp + onnxruntime-node server (child processes; `node bench/predict.js`
// runs it alone); `cache` the response cache on and off; `tracing` tracing off, off again (the noise
// floor), on unsampled and on for every request. Needs the built package (npm run build).
// `--quick` shortens every run.
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const SUITES = { latency: require('./latency'), throughput: require('./throughput'), http: require('./http'), predict: require('./predict'), cache: require('./cache'), grpc: require('./grpc'), tracing: require('./tracing'), json: require('./json') };

/** Runs the named suites (all when `only` is empty) and writes their results. */
async function run(only = []) {
  const machine = `${os.cpus()[0]?.model ?? 'unknown CPU'}, ${os.cpus().length} cores, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}`;
  const unknown = only.filter((n) => !SUITES[n]);
  if (unknown.length) throw new Error(`unknown benchmark ${unknown.join(', ')}; known: ${Object.keys(SUITES).join(', ')}`);
  for (const [name, suite] of Object.entries(SUITES)) {
    if (only.length && !only.includes(name)) continue;
    const report = { ...(await suite.main()), machine, date: new Date().toISOString() };
    const md = `## ${name}\n\nMachine: ${machine}\nONNX Runtime ${report.runtime.version} (${report.runtime.library})\n\n${suite.toMarkdown(report)}\n`;
    const dir = path.join(__dirname, 'results');
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, `${name}.json`), JSON.stringify(report, null, 2) + '\n');
    fs.writeFileSync(path.join(dir, `${name}.md`), md);
    if (suite.toSvg) fs.writeFileSync(path.join(dir, `${name}.svg`), suite.toSvg(report, machine));
    console.log(md);
  }
}

module.exports = { run };

if (require.main === module) {
  run(process.argv.slice(2).filter((a) => !a.startsWith('--'))).catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
