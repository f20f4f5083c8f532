'use strict';
// `npm run bench`: runs every benchmark and writes bench/results/<name>.json and .md (and
// <name>.svg for suites with a chart). `npm run bench -- throughput` runs one suite; `http` drives
// nimify's HTTP server and a plain Fastify + onnxruntime-node server (child processes).
// Needs the built package (npm run build). `--quick` shortens every run.
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const SUITES = { latency: require('./latency'), throughput: require('./throughput'), http: require('./http') };

async function main() {
  const only = process.argv.slice(2).filter((a) => !a.startsWith('--'));
  const machine = `${os.cpus()[0]?.model ?? 'unknown CPU'}, ${os.cpus().length} cores, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}`;
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

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
