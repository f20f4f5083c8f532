#!/usr/bin/env node
'use strict';
// Scale-out on one machine (issue 13 point 4): the image `nimify build` wrote for examples/digits,
// run as 1 container and then as 2 behind a round-robin TCP balancer (each new connection to the
// next container), load-tested with `nimify bench <url> --binary` at the same concurrency. On a
// 2-core machine two containers share the same cores, so no gain is expected; the point is that
// replicas are independent and nothing breaks: every request answered, every container drains
// on SIGTERM and exits 0. Needs root podman and the image scripts/container-test.js leaves
// (localhost/nimify-ci/digits:test), or --image. Writes bench/results/scale-out.{json,md}.
const { execFileSync, spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..');
const args = process.argv.slice(2);
const opt = (name, dflt) => (args.includes(name) ? args[args.indexOf(name) + 1] : dflt);
const IMAGE = opt('--image', 'localhost/nimify-ci/digits:test');
const DURATION = opt('--duration', '10s');
const CONCURRENCY = opt('--concurrency', '16,64');
const conf = path.join(os.tmpdir(), 'nimify-scale-out-containers.conf');
fs.writeFileSync(conf, '[engine]\nruntime = "runc"\n\n[containers]\ndefault_ulimits = ["nofile=16384:16384", "nproc=32768:32768"]\n');
const env = { ...process.env, CONTAINERS_CONF: conf };
const podman = (...argv) => execFileSync('podman', argv, { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();

/** Each accepted connection is piped to the next backend in turn. */
function balancer(ports) {
  let next = 0;
  const server = net.createServer((client) => {
    const upstream = net.connect(ports[next++ % ports.length], '127.0.0.1');
    client.pipe(upstream).pipe(client);
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end);
    upstream.on('error', end);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

async function ready(port) {
  for (let i = 0; i < 240; i++) {
    if (await fetch(`http://127.0.0.1:${port}/v2/health/ready`, { signal: AbortSignal.timeout(2000) }).then((r) => r.ok, () => false)) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`container on ${port} not ready`);
}

async function measure(replicas) {
  const ports = Array.from({ length: replicas }, (_, i) => 19100 + i);
  process.stderr.write(`scale-out: ${replicas} container(s)\n`);
  const ids = ports.map((p) => podman('run', '-d', '--read-only', '--tmpfs', '/tmp', '--memory', '1g', '--health-interval', 'disable', '-p', `127.0.0.1:${p}:8000`, IMAGE));
  try {
    await Promise.all(ports.map(ready));
    process.stderr.write(`scale-out: ready on ${ports.join(', ')}\n`);
    const lb = await balancer(ports);
    const url = `http://127.0.0.1:${lb.address().port}/v2/models/digits`;
    const file = path.join(os.tmpdir(), `nimify-scale-out-${replicas}.json`);
    // A child process, not execFileSync: the balancer runs on this process's event loop.
    const code = await new Promise((resolve) => spawn(process.execPath, [path.join(ROOT, 'dist', 'cli', 'index.js'), 'bench', url, '--binary', '--concurrency', CONCURRENCY, '--duration', DURATION, '--warmup', '2s', '--json', file], { stdio: ['ignore', 'inherit', 'inherit'] }).on('exit', resolve));
    if (code !== 0) throw new Error(`nimify bench exited ${code}`);
    lb.close();
    const report = JSON.parse(fs.readFileSync(file, 'utf8'));
    // Each replica drains on SIGTERM and exits 0.
    const exits = ids.map((id) => {
      podman('stop', '-t', '40', id);
      return Number(podman('inspect', '--format', '{{.State.ExitCode}}', id));
    });
    return { replicas, exits, levels: report.engines[0].levels };
  } finally {
    for (const id of ids) {
      try {
        podman('rm', '-f', id);
      } catch {
        // gone
      }
    }
  }
}

async function main() {
  try {
    podman('image', 'exists', IMAGE);
  } catch {
    throw new Error(`no image ${IMAGE}: run scripts/container-test.js first (it builds it), or pass --image`);
  }
  const runs = [];
  for (const n of [1, 2]) runs.push(await measure(n));
  const machine = `${os.cpus()[0]?.model ?? 'unknown CPU'}, ${os.cpus().length} cores, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB`;
  const rows = [];
  for (const level of runs[0].levels) {
    const two = runs[1].levels.find((l) => l.concurrency === level.concurrency);
    for (const [r, l] of [[1, level], [2, two]]) rows.push(`| ${l.concurrency} | ${r} | ${l.inferencesPerSec.toFixed(0)} | ${l.latencyMs.p50.toFixed(2)} | ${l.latencyMs.p99.toFixed(2)} | ${l.errors} |`);
    rows.push(`| ${level.concurrency} | 2 ÷ 1 | ${(two.inferencesPerSec / level.inferencesPerSec).toFixed(2)} × | | ${(two.latencyMs.p99 / level.latencyMs.p99).toFixed(2)} × | |`);
  }
  const md = [
    '## scale-out: 1 vs 2 containers behind a round-robin balancer',
    '',
    `Machine: ${machine}. Image ${IMAGE} (\`nimify build examples/digits\`), each container --memory 1g, no CPU pinning; \`nimify bench <url> --binary\`, ${DURATION} per level.`,
    '',
    '| connections | containers | req/s | p50 ms | p99 ms | errors |',
    '|---:|---:|---:|---:|---:|---:|',
    ...rows,
    '',
    `Exit codes after SIGTERM: 1 container ${runs[0].exits.join(', ')}; 2 containers ${runs[1].exits.join(', ')}.`,
    '',
  ].join('\n');
  const dir = path.join(__dirname, 'results');
  fs.writeFileSync(path.join(dir, 'scale-out.json'), `${JSON.stringify({ machine, image: IMAGE, date: new Date().toISOString(), runs }, null, 2)}\n`);
  fs.writeFileSync(path.join(dir, 'scale-out.md'), md);
  process.stdout.write(md);
  if (runs.some((r) => r.exits.some((c) => c !== 0) || r.levels.some((l) => l.errors > 0))) process.exitCode = 1;
}

main().catch((err) => {
  process.stderr.write(`scale-out: ${err.message}\n`);
  process.exitCode = 1;
});
