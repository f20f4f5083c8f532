'use strict';
// Memory kept by `nimify serve` under a fuzz-like load (issue 14 item 9): starts the server as a
// child process on a repository of fixture models, sends rounds of a seeded mix of requests
// (valid ones with small, varied and huge shapes up to the body limit, malformed JSON, large
// binary bodies that fail to decode, wrong types and shapes, a few bodies over the limit), and
// samples the server's memory after each round and after an idle pause:
//   - /proc/<pid>/status: VmRSS (resident now), VmHWM (peak resident), Threads;
//   - /proc/<pid>/smaps: resident anonymous memory split into the main malloc heap ([heap]),
//     glibc per-thread malloc arenas (64 MiB-aligned heaps: ORT's and the workers' threads) and
//     other anonymous mappings (V8's heap and large mmap'd blocks);
//   - the server's own /metrics: process_resident_memory_bytes, nodejs_heap_size_used_bytes,
//     nodejs_heap_size_total_bytes, nodejs_external_memory_bytes.
// Each variant is one server started fresh. Variants (--variants a,b,...):
//   baseline        nimify serve as it ships
//   malloc2         MALLOC_ARENA_MAX=2 in the server's environment
//   arena-on        config.json runtime.memoryArena = true (ORT's CPU memory arena on)
//   arena-off       config.json runtime.memoryArena = false (ORT's CPU memory arena off)
// (`nimify serve` without the memoryArena runtime key refuses the arena-* variants' config.json.)
// --variant name=<json> defines another: {"env": {...}, "runtime": {...}} (the server's extra
// environment; config.json runtime keys), e.g. --variant 'shrink={"runtime":{"arenaShrinkage":true}}'
// for a build that has that key. BENCH_NIMIFY_ROOT=<dir> serves <dir>/dist (another checkout).
//
//   node bench/memory.js [--variants baseline,malloc2] [--rounds 4] [--requests 300]
//                        [--concurrency 3] [--idle-ms 40000] [--seed 1] [--out bench/results/memory.md]
// Writes the table to --out (default bench/results/memory.md; `-` = none; in an existing file,
// between its `<!-- bench/memory.js: begin/end -->` markers) and prints JSON on stdout. The idle pause (40 s) is longer than the JSON worker pool's idle timeout (30 s), so the
// idle sample shows memory after the pool's threads have exited.
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');
const { performance } = require('node:perf_hooks');
const { ROOT, NIMIFY_ROOT, sleep, prng } = require('./lib/common');
const { startServer, guardChildren } = require('./lib/children');

const FIXTURES = path.join(ROOT, 'test', 'fixtures', 'models');
const BODY_LIMIT = 64 * 1024 * 1024; // nimify serve's default --body-limit

const VARIANTS = {
  baseline: { env: {}, runtime: {} },
  malloc2: { env: { MALLOC_ARENA_MAX: '2' }, runtime: {} },
  'arena-on': { env: {}, runtime: { memoryArena: true } },
  'arena-off': { env: {}, runtime: { memoryArena: false } },
};

function parseArgs(argv) {
  const o = { variants: ['baseline'], rounds: 4, requests: 300, concurrency: 3, idleMs: 40_000, seed: 1, out: path.join(ROOT, 'bench', 'results', 'memory.md') };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`${a}: expected a value`);
      return argv[++i];
    };
    const int = (v, min) => {
      const n = Number(v);
      if (!Number.isSafeInteger(n) || n < min) throw new Error(`${a}: expected an integer ≥ ${min}, received ${JSON.stringify(v)}`);
      return n;
    };
    if (a === '--variants') o.variants = next().split(',');
    else if (a === '--variant') {
      const def = next();
      const eq = def.indexOf('=');
      const spec = eq > 0 ? JSON.parse(def.slice(eq + 1)) : null;
      if (spec === null || typeof spec !== 'object') throw new Error(`--variant: expected name={"env":{...},"runtime":{...}}, received ${JSON.stringify(def)}`);
      VARIANTS[def.slice(0, eq)] = { env: spec.env ?? {}, runtime: spec.runtime ?? {} };
    } else if (a === '--rounds') o.rounds = int(next(), 1);
    else if (a === '--requests') o.requests = int(next(), 1);
    else if (a === '--concurrency') o.concurrency = int(next(), 1);
    else if (a === '--idle-ms') o.idleMs = int(next(), 0);
    else if (a === '--seed') o.seed = int(next(), 0);
    else if (a === '--out') o.out = next();
    else throw new Error(`unknown argument ${JSON.stringify(a)}`);
  }
  for (const v of o.variants) if (!(v in VARIANTS)) throw new Error(`--variants: unknown variant ${JSON.stringify(v)} (known: ${Object.keys(VARIANTS).join(', ')})`);
  return o;
}

// --------------------------------------------------------------------------------------------
// The repository: batching off where a huge non-batch shape must get through (identity's [n],
// embed's [batch, seq]); convnet batches up to 64 rows; mlp_tiny as serve configures it.

function makeRepository(runtime) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nimify-memory-'));
  const models = {
    mlp_tiny: { file: 'mlp_tiny.onnx', config: {} },
    identity: { file: 'identity_float32.onnx', config: { batching: false } },
    embed: { file: 'embed_int64.onnx', config: { batching: false } },
    convnet: { file: 'convnet.onnx', config: { batching: { maxBatchSize: 64 } } },
  };
  for (const [name, m] of Object.entries(models)) {
    fs.mkdirSync(path.join(dir, name, '1'), { recursive: true });
    fs.copyFileSync(path.join(FIXTURES, m.file), path.join(dir, name, '1', 'model.onnx'));
    const config = { ...m.config };
    if (Object.keys(runtime).length > 0) config.runtime = { ...runtime };
    fs.writeFileSync(path.join(dir, name, 'config.json'), JSON.stringify(config));
  }
  return dir;
}

// --------------------------------------------------------------------------------------------
// Requests. Each is { kind, path, headers, body }; bodies of the huge kinds are built once per
// size and reused (their content does not matter to memory).

function binaryRequest(model, inputs, outputs) {
  // inputs: [{ name, datatype, shape, bytes: Buffer }]
  const header = {
    inputs: inputs.map((t) => ({ name: t.name, datatype: t.datatype, shape: t.shape, parameters: { binary_data_size: t.bytes.length } })),
    outputs: outputs.map((name) => ({ name, parameters: { binary_data: true } })),
  };
  const json = Buffer.from(JSON.stringify(header));
  return {
    path: `/v2/models/${model}/infer`,
    headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(json.length) },
    body: Buffer.concat([json, ...inputs.map((t) => t.bytes)]),
  };
}

function jsonRequest(model, body) {
  return { path: `/v2/models/${model}/infer`, headers: { 'content-type': 'application/json' }, body: Buffer.from(typeof body === 'string' ? body : JSON.stringify(body)) };
}

function makeGenerator(seed) {
  const rnd = prng(seed);
  const int = (lo, hi) => lo + Math.floor(rnd() * (hi - lo + 1));
  const pick = (xs) => xs[Math.floor(rnd() * xs.length)];
  const floats = (n) => Array.from({ length: n }, () => Math.round((rnd() * 2 - 1) * 1e4) / 1e4);
  const cache = new Map();
  const cached = (key, make) => {
    if (!cache.has(key)) cache.set(key, make());
    return cache.get(key);
  };
  const f32 = (n) => Buffer.from(new Float32Array(n).map(() => rnd() * 2 - 1).buffer);
  const i64 = (n) => Buffer.from(BigInt64Array.from({ length: n }, () => BigInt(int(0, 99))).buffer);

  const kinds = [
    // Valid, small: the bulk of real traffic.
    [30, 'mlp-json', () => {
      const b = int(1, 32);
      return jsonRequest('mlp_tiny', { inputs: [{ name: 'x', datatype: 'FP32', shape: [b, 64], data: floats(b * 64) }] });
    }],
    [15, 'mlp-binary', () => {
      const b = int(1, 32);
      return binaryRequest('mlp_tiny', [{ name: 'x', datatype: 'FP32', shape: [b, 64], bytes: cached(`mlp${b}`, () => f32(b * 64)) }], ['y']);
    }],
    // Valid, huge shapes up to the body limit: the tensor memory ORT allocates grows with them.
    [6, 'identity-huge-binary', () => {
      const n = pick([1 << 18, 1 << 20, 1 << 22, (BODY_LIMIT - 4096) / 4]);
      return binaryRequest('identity', [{ name: 'x', datatype: 'FP32', shape: [n], bytes: cached(`id${n}`, () => f32(n)) }], ['y']);
    }],
    [4, 'identity-big-json', () => {
      const n = pick([70_000, 250_000, 1_000_000]);
      return cached(`idjson${n}`, () => jsonRequest('identity', { inputs: [{ name: 'x', datatype: 'FP32', shape: [n], data: floats(n) }], parameters: { binary_data_output: true } }));
    }],
    [5, 'embed-long-seq', () => {
      // Gather makes a [batch, seq, 8] float intermediate: 32 bytes per id (up to 128 MiB).
      const [b, seq] = pick([[1, 1 << 16], [4, 1 << 18], [1, 1 << 22], [16, 1 << 18]]);
      return binaryRequest('embed', [{ name: 'ids', datatype: 'INT64', shape: [b, seq], bytes: cached(`emb${b}x${seq}`, () => i64(b * seq)) }], ['pooled', 'argmax']);
    }],
    [5, 'convnet-batch', () => {
      const b = pick([1, 8, 32, 64]);
      return binaryRequest('convnet', [{ name: 'x', datatype: 'FP32', shape: [b, 3, 32, 32], bytes: cached(`conv${b}`, () => f32(b * 3 * 32 * 32)) }], ['y']);
    }],
    // Refused: malformed JSON (small, and large enough for the JSON worker pool).
    [8, 'malformed-json', () => {
      if (rnd() < 0.5) return jsonRequest('mlp_tiny', '{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 64], "data": [1, 2,');
      return cached('malformed-big', () => {
        const s = JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape: [200_000], data: floats(200_000) }] });
        return jsonRequest('identity', s.slice(0, s.length - 1000));
      });
    }],
    // Refused: wrong datatypes, shapes that do not match the data, bad shapes.
    [8, 'wrong-type', () => pick([
      () => jsonRequest('mlp_tiny', { inputs: [{ name: 'x', datatype: 'INT64', shape: [1, 64], data: Array(64).fill(1) }] }),
      () => jsonRequest('mlp_tiny', { inputs: [{ name: 'x', datatype: 'FP32', shape: [2, 64], data: floats(64) }] }),
      () => jsonRequest('mlp_tiny', { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, -3], data: [] }] }),
      () => jsonRequest('mlp_tiny', { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 64], data: Array(64).fill('a') }] }),
      () => jsonRequest('identity', { inputs: [{ name: 'x', datatype: 'BYTES', shape: [2], data: ['a', 'b'] }] }),
      () => cached('wrong-big-json', () => jsonRequest('identity', { inputs: [{ name: 'x', datatype: 'FP32', shape: [100_001], data: floats(100_000) }] })),
    ])()],
    // Refused after the body was read: large binary bodies whose header does not match.
    [5, 'bad-big-binary', () => {
      const bytes = cached('bad-big', () => f32(8 << 20)); // 32 MiB
      const r = binaryRequest('identity', [{ name: 'x', datatype: 'FP32', shape: [(8 << 20) + 1], bytes }], ['y']);
      if (rnd() < 0.5) r.headers['inference-header-content-length'] = String(r.body.length + 1);
      return r;
    }],
    // Refused before the body is parsed: over the body limit (413).
    [1, 'over-limit', () => cached('over', () => ({ path: '/v2/models/identity/infer', headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': '0' }, body: Buffer.alloc(BODY_LIMIT + 1024) }))],
  ];
  const total = kinds.reduce((s, k) => s + k[0], 0);
  return () => {
    let r = rnd() * total;
    for (const [w, kind, make] of kinds) {
      if ((r -= w) < 0) return { kind, ...make() };
    }
    throw new Error('unreachable');
  };
}

function send(agent, url, req) {
  return new Promise((resolve) => {
    const u = new URL(req.path, url);
    const t0 = performance.now();
    const r = http.request(u, { method: 'POST', agent, headers: { ...req.headers, 'content-length': String(req.body.length) } }, (res) => {
      res.on('data', () => {});
      res.on('end', () => resolve({ status: res.statusCode, ms: performance.now() - t0 }));
      res.on('error', () => resolve({ status: 'error', ms: performance.now() - t0 }));
    });
    // A server that answers 413 early may close the socket while the body is still being sent.
    r.on('error', () => resolve({ status: 'error', ms: performance.now() - t0 }));
    r.end(req.body);
  });
}

// --------------------------------------------------------------------------------------------
// Sampling.

const MiB = 1024 * 1024;

function procStatus(pid) {
  const text = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k) => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(text)?.[1] ?? NaN) * 1024;
  return { rss: kb('VmRSS'), hwm: kb('VmHWM'), threads: Number(/^Threads:\s+(\d+)/m.exec(text)?.[1]) };
}

/**
 * Resident anonymous memory by kind, from /proc/<pid>/smaps. glibc's per-thread arenas are
 * 64 MiB-aligned reservations (HEAP_MAX_SIZE), mapped read-write as far as they have grown and
 * PROT_NONE beyond: a read-write anonymous mapping at a 64 MiB-aligned address followed by a
 * PROT_NONE mapping that ends on the next 64 MiB boundary is one.
 */
function smapsSplit(pid) {
  const text = fs.readFileSync(`/proc/${pid}/smaps`, 'utf8');
  const maps = [];
  let cur = null;
  for (const line of text.split('\n')) {
    const m = /^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ (\d+)\s*(.*)$/.exec(line);
    if (m) {
      cur = { start: BigInt(`0x${m[1]}`), end: BigInt(`0x${m[2]}`), perms: m[3], inode: m[4], name: m[5].trim(), rss: 0 };
      maps.push(cur);
    } else if (cur && line.startsWith('Rss:')) cur.rss = Number(/(\d+)/.exec(line)[1]) * 1024;
  }
  const ARENA = 64n * 1024n * 1024n;
  const out = { heap: 0, arenas: 0, arenaCount: 0, otherAnon: 0, file: 0 };
  for (let i = 0; i < maps.length; i++) {
    const m = maps[i];
    if (m.name === '[heap]') out.heap += m.rss;
    else if (m.inode !== '0' || (m.name !== '' && !m.name.startsWith('['))) out.file += m.rss;
    else if (m.name === '' && m.perms.startsWith('rw') && m.start % ARENA === 0n && m.end - m.start <= ARENA) {
      const next = maps[i + 1];
      const arenaEnd = m.start + ARENA;
      if (m.end === arenaEnd || (next && next.perms.startsWith('---') && next.start === m.end && next.end === arenaEnd)) {
        out.arenas += m.rss;
        out.arenaCount++;
      } else out.otherAnon += m.rss;
    } else if (m.name === '' || m.name.startsWith('[anon')) out.otherAnon += m.rss;
  }
  return out;
}

async function metrics(url) {
  const text = await new Promise((resolve, reject) => {
    http.get(new URL('/metrics', url), (res) => {
      let s = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (s += c));
      res.on('end', () => resolve(s));
    }).on('error', reject);
  });
  const get = (name) => Number(new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.e+]+)`, 'm').exec(text)?.[1] ?? NaN);
  return {
    promRss: get('process_resident_memory_bytes'),
    heapUsed: get('nodejs_heap_size_used_bytes'),
    heapTotal: get('nodejs_heap_size_total_bytes'),
    external: get('nodejs_external_memory_bytes'),
  };
}

async function sample(server, label, extra = {}) {
  const m = await metrics(server.url);
  return { label, ...procStatus(server.pid), ...smapsSplit(server.pid), ...m, ...extra };
}

// --------------------------------------------------------------------------------------------

async function runVariant(name, o) {
  const variant = VARIANTS[name];
  const repo = makeRepository(variant.runtime);
  const saved = { ...process.env };
  Object.assign(process.env, variant.env); // inherited by the child at spawn time
  let server;
  try {
    server = await startServer(name, [path.join(NIMIFY_ROOT, 'dist', 'cli', 'index.js'), 'serve', repo, '--port', '0', '--log-level', 'warn', '--no-docs'], { ready: /nimify serving .* at (http:\/\/\S+)/ });
  } finally {
    for (const k of Object.keys(variant.env)) if (saved[k] === undefined) delete process.env[k]; else process.env[k] = saved[k];
  }
  const samples = [];
  const statuses = {};
  try {
    await sleep(1000);
    samples.push(await sample(server, 'start'));
    const next = makeGenerator(o.seed);
    const agent = new http.Agent({ keepAlive: true, maxSockets: o.concurrency });
    for (let round = 1; round <= o.rounds; round++) {
      let left = o.requests;
      const t0 = performance.now();
      const worker = async () => {
        while (left > 0) {
          left--;
          const req = next();
          const r = await send(agent, server.url, req);
          const key = `${req.kind} ${r.status}`;
          statuses[key] = (statuses[key] ?? 0) + 1;
        }
      };
      await Promise.all(Array.from({ length: o.concurrency }, worker));
      samples.push(await sample(server, `round ${round}`, { seconds: (performance.now() - t0) / 1000 }));
      process.stderr.write(`${name}: round ${round}/${o.rounds} done in ${((performance.now() - t0) / 1000).toFixed(1)} s, RSS ${(samples.at(-1).rss / MiB).toFixed(0)} MiB\n`);
    }
    agent.destroy();
    await sleep(o.idleMs);
    samples.push(await sample(server, `idle ${Math.round(o.idleMs / 1000)} s`));
    if (server.exited()) throw new Error(`${name}: the server exited (${JSON.stringify(server.exited())})\n${server.log.slice(-20).join('\n')}`);
  } finally {
    await server.stop();
    fs.rmSync(repo, { recursive: true, force: true });
  }
  return { variant: name, env: variant.env, runtime: variant.runtime, samples, statuses };
}

function table(results, o) {
  const mb = (b) => (Number.isFinite(b) ? (b / MiB).toFixed(0) : '–');
  const lines = [
    `\`node bench/memory.js --variants ${results.map((r) => r.variant).join(',')} --rounds ${o.rounds} --requests ${o.requests} --concurrency ${o.concurrency} --idle-ms ${o.idleMs} --seed ${o.seed}\``,
    `(${new Date().toISOString().slice(0, 10)}, ${os.cpus().length} CPUs, Node ${process.version}). MiB; RSS and peak from /proc/<pid>/status,`,
    'heap / thread arenas / other anon from /proc/<pid>/smaps (resident), JS heap and external from the server\'s /metrics.',
    '',
    '| variant | sample | RSS | peak (HWM) | [heap] | thread arenas (n) | other anon | JS heap used / total | external | threads |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const r of results) {
    for (const s of r.samples) {
      lines.push(`| ${r.variant} | ${s.label} | ${mb(s.rss)} | ${mb(s.hwm)} | ${mb(s.heap)} | ${mb(s.arenas)} (${s.arenaCount}) | ${mb(s.otherAnon)} | ${mb(s.heapUsed)} / ${mb(s.heapTotal)} | ${mb(s.external)} | ${s.threads} |`);
    }
  }
  lines.push('', 'Responses per request kind (all variants together):', '');
  const all = {};
  for (const r of results) for (const [k, n] of Object.entries(r.statuses)) all[k] = (all[k] ?? 0) + n;
  lines.push('| kind status | count |', '|---|---:|');
  for (const k of Object.keys(all).sort()) lines.push(`| ${k} | ${all[k]} |`);
  return lines.join('\n') + '\n';
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const release = guardChildren();
  const results = [];
  try {
    for (const v of o.variants) results.push(await runVariant(v, o));
  } finally {
    release();
  }
  if (o.out !== '-') {
    // The table replaces what lies between the markers of an existing file (notes written around
    // it stay), or makes the whole file.
    const BEGIN = '<!-- bench/memory.js: begin -->\n';
    const END = '<!-- bench/memory.js: end -->\n';
    const old = fs.existsSync(o.out) ? fs.readFileSync(o.out, 'utf8') : '';
    const [b, e] = [old.indexOf(BEGIN), old.indexOf(END)];
    const body = BEGIN + table(results, o) + END;
    fs.mkdirSync(path.dirname(o.out), { recursive: true });
    fs.writeFileSync(o.out, b >= 0 && e > b ? old.slice(0, b) + body + old.slice(e + END.length) : body);
  }
  process.stdout.write(JSON.stringify({ options: o, results }, null, 2) + '\n');
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
