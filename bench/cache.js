'use strict';
// The response cache (issue 16 item 3): HTTP requests per second for a model with the cache on
// and the same model without it, in the same run, on two loads:
//   - repeated: every request carries the same input (all hits once the first ran);
//   - distinct: every request a new input (all misses: the cost of hashing and storing).
// One nimify server in this process (buildServer; the client, autocannon, shares the process:
// the ratios compare like with like), JSON bodies, 16 connections, mid MLP (512→2048→2048→512)
// and tiny MLP (64→256→10). `node bench/run.js cache`.
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const autocannon = require('autocannon');
const { ROOT, NIMIFY_ROOT, fmt, runIfMain } = require('./lib/common');
const { benchModel } = require(path.join(ROOT, 'scripts', 'bench-models.js'));

const { buildServer } = require(path.join(NIMIFY_ROOT, 'dist', 'server'));
const { runtimeInfo } = require(path.join(NIMIFY_ROOT, 'dist'));

const MODELS = [
  { key: 'mid', name: 'mid MLP (512→2048→2048→512)', file: () => benchModel('mlp_mid.onnx'), width: 512 },
  { key: 'tiny', name: 'tiny MLP (64→256→10)', file: () => path.join(ROOT, 'test', 'fixtures', 'models', 'mlp_tiny.onnx'), width: 64 },
];

function repository() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nimify-bench-cache-'));
  for (const m of MODELS) {
    for (const [suffix, config] of [['cached', { responseCache: { enable: true } }], ['plain', {}]]) {
      const folder = path.join(dir, `${m.key}_${suffix}`);
      fs.mkdirSync(path.join(folder, '1'), { recursive: true });
      fs.copyFileSync(m.file(), path.join(folder, '1', 'model.onnx'));
      fs.writeFileSync(path.join(folder, 'config.json'), JSON.stringify(config));
    }
  }
  return dir;
}

const body = (width, seed) => JSON.stringify({ inputs: [{ name: 'x', shape: [1, width], datatype: 'FP32', data: Array.from({ length: width }, (_, i) => Math.sin(i + seed)) }] });

async function load(url, width, distinct, durationS) {
  let seed = 0;
  const fixed = body(width, 0);
  const r = await autocannon({
    url,
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    connections: 16,
    duration: durationS,
    requests: [{ setupRequest: (req) => ({ ...req, body: distinct ? body(width, ++seed) : fixed }) }],
  });
  return { reqPerSec: r.requests.average, p99Ms: r.latency.p99, non2xx: r.non2xx, errors: r.errors };
}

async function main({ quick = process.argv.includes('--quick') } = {}) {
  const dir = repository();
  const app = await buildServer({ repository: dir, logger: false, responseCacheBytes: 256 * 1024 * 1024 });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const base = `http://127.0.0.1:${app.server.address().port}/v2/models`;
  const durationS = quick ? 1 : 4;
  const rows = [];
  try {
    for (const m of MODELS) {
      for (const distinct of [false, true]) {
        const row = { model: m.name, load: distinct ? 'distinct' : 'repeated' };
        // Interleaved, twice each: machine noise hits both alike; the better of two is kept.
        for (let round = 0; round < 2; round++) {
          for (const suffix of ['plain', 'cached']) {
            const r = await load(`${base}/${m.key}_${suffix}/infer`, m.width, distinct, durationS);
            if (r.non2xx > 0 || r.errors > 0) throw new Error(`${m.key}_${suffix}: ${r.non2xx} non-2xx, ${r.errors} errors`);
            if (!row[suffix] || r.reqPerSec > row[suffix].reqPerSec) row[suffix] = r;
          }
        }
        row.ratio = +(row.cached.reqPerSec / row.plain.reqPerSec).toFixed(2);
        rows.push(row);
        console.error(`  ${m.name} ${row.load}: cached ${fmt(row.cached.reqPerSec)} req/s vs ${fmt(row.plain.reqPerSec)} (${row.ratio}×)`);
      }
    }
  } finally {
    await app.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return { runtime: runtimeInfo(), rows };
}

function toMarkdown(report) {
  const lines = [
    'HTTP requests/s, 16 connections, JSON, one server in the benchmark process; the same model with the response cache on (`responseCache: { enable: true }`, 256 MiB) and off, interleaved, best of two 4 s runs each. repeated: one input for every request (hits); distinct: a new input each time (misses: hashing and storing).',
    '',
    '| model | load | cache on req/s | p99 ms | cache off req/s | p99 ms | on / off |',
    '|---|---|---:|---:|---:|---:|---:|',
  ];
  for (const r of report.rows) lines.push(`| ${r.model} | ${r.load} | ${fmt(r.cached.reqPerSec)} | ${r.cached.p99Ms} | ${fmt(r.plain.reqPerSec)} | ${r.plain.p99Ms} | ${r.ratio} |`);
  return lines.join('\n');
}

module.exports = { main, toMarkdown };

runIfMain(module, module.exports);
