#!/usr/bin/env node
'use strict';
// The install a user gets, from the tarballs `npm run pack:release` wrote into release/:
//   1. prebuilt: the JS package and the platform package installed into an empty project with an
//      empty npm cache (everything else from the registry), every compiler and python on PATH
//      replaced by a stub that fails, no NIMIFY_* variable; npm run by the Node.js under test
//      (`--node <path>`, default this one) so its engine checks are that version's. Then: no
//      build/ and no onnxruntime-node or tokenizers installed, the addon and ORT come from the
//      platform package, an inference, a text pipeline refused naming `npm install tokenizers`,
//      `nimify serve` + one HTTP request + SIGTERM → exit 0, node_modules ≤ 100 MB; then the
//      README's Quickstart run line by line (npx, curl, SIGTERM to npx). Reports install time
//      (empty cache) and size.
//   2. fallback (--fallback): the JS package alone with "allowScripts": {"nimify": true}: the
//      install says there is no prebuild and builds from source, and an inference works with
//      NIMIFY_ORT_LIBRARY.
// Exits non-zero on failure; prints a JSON summary line `install-test: {...}`.
const { execFileSync, spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..');
const REL = path.join(ROOT, 'release');
const LIMIT_MB = 100;
const args = process.argv.slice(2);
const nodeBin = args.includes('--node') ? path.resolve(args[args.indexOf('--node') + 1]) : process.execPath;
const fallback = args.includes('--fallback');
const npmCli = path.join(path.dirname(fs.realpathSync(execFileSync('sh', ['-c', 'command -v npm'], { encoding: 'utf8' }).trim())), 'npm-cli.js');
const log = (m) => process.stdout.write(`install-test: ${m}\n`);

function duBytes(dir) {
  let total = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) total += duBytes(p);
    else if (e.isFile()) total += fs.statSync(p).size;
  }
  return total;
}

/** An environment as a user's shell would have it: no NIMIFY_*, no npm_* from the calling npm. */
function userEnv(extraPath) {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^(NIMIFY_|npm_|ONNXRUNTIME_NODE_)/i.test(k)) continue;
    env[k] = v;
  }
  env.PATH = [extraPath, path.dirname(nodeBin), process.env.PATH].filter(Boolean).join(path.delimiter);
  return env;
}

/** npm run by the Node.js under test; `out` is its stdout and stderr together (warnings, scripts' output). */
function npm(cwd, argv, env) {
  const t0 = Date.now();
  const r = spawnSync(nodeBin, [npmCli, ...argv], { cwd, env, encoding: 'utf8', maxBuffer: 64 << 20 });
  const out = `${r.stdout}${r.stderr}`;
  if (r.status !== 0) throw new Error(`npm ${argv.join(' ')} exited ${r.status}:\n${out}`);
  return { out, seconds: (Date.now() - t0) / 1000 };
}

function noCompilers(dir) {
  fs.mkdirSync(dir);
  for (const tool of ['cc', 'gcc', 'g++', 'c++', 'clang', 'clang++', 'make', 'cmake', 'python3', 'python']) {
    fs.writeFileSync(path.join(dir, tool), `#!/bin/sh\necho "install-test: ${tool} is not available" >&2\nexit 127\n`, { mode: 0o755 });
  }
  return dir;
}

const PROBE = `
const nimify = require('nimify');
const { addonInfo } = nimify;
(async () => {
  const m = await nimify.loadModel('model.onnx');
  const out = await m.infer({ x: new nimify.Tensor('float32', new Float32Array(64).fill(0.5), [1, 64]) });
  if (out.y.dims.join() !== '1,10' || !Number.isFinite(out.y.data[0])) throw new Error('bad output');
  const a = addonInfo();
  // tokenizers is an optional peer: a text pipeline without it names the package to install.
  const text = await nimify.loadModel('text_classifier.onnx', { pipeline: { preprocess: { type: 'text', tokenizer: 'wordpiece.json', maxLength: 8 }, postprocess: {} } }).then(
    () => 'loaded',
    (e) => e.code + ': ' + e.message,
  );
  // sharp too: an image pipeline (the shipped demo's) without it names the package.
  const demo = 'node_modules/nimify/examples/digits/digits';
  const image = await nimify.loadModel(demo + '/1/model.onnx', { pipeline: { ...JSON.parse(require('node:fs').readFileSync(demo + '/config.json', 'utf8')), dir: demo } }).then(
    () => 'loaded',
    (e) => e.code + ': ' + e.message,
  );
  console.log(JSON.stringify({ addon: a.path, origin: a.origin, runtime: nimify.runtimeInfo(), text, image }));
})().catch((e) => { console.error(e); process.exit(1); });`;

function serveOnce(app, env) {
  return new Promise((resolve, reject) => {
    const child = spawn(nodeBin, [path.join('node_modules', 'nimify', 'dist', 'cli', 'index.js'), 'serve', 'model.onnx', '--port', '0', '--log-level', 'warn'], { cwd: app, env, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    let asked = false;
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`nimify serve did not start: ${out}`));
    }, 60_000);
    child.stdout.on('data', async (d) => {
      out += d;
      const m = /serving .* at (http:\/\/\S+)/.exec(out);
      if (!m || asked) return;
      asked = true;
      try {
        const r = await fetch(`${m[1]}/v2/models/model/infer`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: new Array(64).fill(0.5) }] }) });
        const body = await r.json();
        if (r.status !== 200 || body.outputs[0].shape.join() !== '1,10') throw new Error(`bad HTTP answer ${r.status} ${JSON.stringify(body)}`);
      } catch (err) {
        child.kill('SIGKILL');
        reject(err);
        return;
      }
      child.kill('SIGTERM');
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve();
      else reject(new Error(`nimify serve exited ${code}`));
    });
  });
}

/** A free TCP port on 127.0.0.1. */
function freePort() {
  return new Promise((resolve, reject) => {
    const srv = require('node:net').createServer();
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
    srv.on('error', reject);
  });
}

/**
 * The README's Quickstart, line by line, in the installed project: `npm install nimify sharp`
 * (nimify from the tarballs, sharp from the registry), then each command through `sh -c` as a user
 * types it, with npx resolving the installed bin. The only change: the server's port comes from
 * NIMIFY_PORT (a free one) and the curl line's localhost:8000 follows it. `kill %1` becomes
 * SIGTERM to the npx process itself, which must drain and stop the server it started.
 */
async function quickstart(app, env, cache, jsTgz, platTgz) {
  const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## Quickstart'));
  const block = /```sh\n([\s\S]*?)```/.exec(section)[1].replace(/\\\n\s*/g, ' ');
  const lines = block.split('\n').filter((l) => l.trim() !== '');
  const port = await freePort();
  const qenv = { ...env, NIMIFY_PORT: String(port) };
  let server;
  try {
    for (const [i, line] of lines.entries()) {
      if (line.startsWith('# ')) continue; // the answer the line before it shows
      const expected = lines[i + 1]?.startsWith('# ') ? lines[i + 1].slice(2) : undefined;
      if (line === 'npm install nimify sharp') {
        npm(app, ['install', '--no-audit', '--no-fund', '--cache', cache, jsTgz, platTgz, 'sharp'], env);
      } else if (/ &$/.test(line)) {
        server = spawn('sh', ['-c', `exec ${line.slice(0, -2)}`], { cwd: app, env: qenv, stdio: ['ignore', 'pipe', 'pipe'] });
        server.log = '';
        server.stdout.on('data', (d) => (server.log += d));
        server.stderr.on('data', (d) => (server.log += d));
        server.exited = new Promise((resolve) => server.on('exit', (code, signal) => resolve({ code, signal })));
        const t0 = Date.now();
        while (!/serving .* at http/.test(server.log)) {
          if (Date.now() - t0 > 60_000 || server.exitCode !== null) throw new Error(`quickstart: \`${line}\` did not start serving:\n${server.log}`);
          await new Promise((r) => setTimeout(r, 100));
        }
      } else if (line === 'kill %1') {
        // npm passes SIGTERM to the shell it runs the bin under and then kills itself with it
        // (so npx's own status is the signal); nimify, a grandchild, must notice, drain and exit.
        // Its stdout is the pipe we read: it closes when nimify exits.
        const closed = new Promise((resolve) => server.stdout.on('close', resolve));
        server.kill('SIGTERM');
        await server.exited;
        const drained = await Promise.race([closed.then(() => true), new Promise((r) => setTimeout(() => r(false), 30_000))]);
        if (!drained || !/nimify: stopped/.test(server.log)) throw new Error(`quickstart: after SIGTERM to npx, nimify did not drain and stop:\n${server.log}`);
        if (await fetch(`http://127.0.0.1:${port}/v2/health/live`).then(() => true, () => false)) throw new Error('quickstart: the server still answers after SIGTERM to npx');
      } else {
        const r = spawnSync('sh', ['-c', line.replace('localhost:8000', `127.0.0.1:${port}`)], { cwd: app, env: qenv, encoding: 'utf8' });
        if (r.status !== 0) throw new Error(`quickstart: \`${line}\` exited ${r.status}:\n${r.stdout}${r.stderr}`);
        if (line.startsWith('curl')) {
          if (!expected) throw new Error(`quickstart: the README shows no answer after \`${line}\``);
          const body = JSON.parse(r.stdout);
          const want = JSON.parse(expected.replace(/…/g, '').replace(/,\{"label":"(\d)",\}/g, ',{"label":"$1"}'));
          const labels = body.predictions.map((p) => p.label);
          if (body.model_name !== want.model_name || labels.join() !== want.predictions.map((p) => p.label).join()) throw new Error(`quickstart: curl answered ${r.stdout}, the README shows ${expected}`);
        }
      }
      log(`quickstart ok: ${line}`);
    }
  } finally {
    // A failed step must not leave the server running (it would keep this process alive).
    if (server && server.exitCode === null && server.signalCode === null) server.kill('SIGKILL');
  }
  if (!server) throw new Error('quickstart: no server was started');
}

async function main() {
  const manifest = JSON.parse(fs.readFileSync(path.join(REL, 'manifest.json'), 'utf8'));
  const [jsTgz, platTgz] = manifest.tarballs.map((t) => path.join(REL, t));
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'nimify-install-'));
  try {
    const nodeVersion = execFileSync(nodeBin, ['--version'], { encoding: 'utf8' }).trim();
    const app = path.join(work, 'app');
    fs.mkdirSync(app);
    fs.copyFileSync(path.join(ROOT, 'test', 'fixtures', 'models', 'mlp_tiny.onnx'), path.join(app, 'model.onnx'));
    for (const f of ['text_classifier.onnx', 'wordpiece.json']) fs.copyFileSync(path.join(ROOT, 'test', 'fixtures', 'text', f), path.join(app, f));
    const summary = { node: nodeVersion, platform: manifest.platform };
    if (!fallback) {
      fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, version: '1.0.0' }));
      const env = userEnv(noCompilers(path.join(work, 'no-compiler')));
      const cache = path.join(work, 'npm-cache');
      const inst = npm(app, ['install', '--no-audit', '--no-fund', '--cache', cache, jsTgz, platTgz], env);
      const out = inst.out;
      if (/EBADENGINE/.test(out)) throw new Error(`npm warned about engines on ${nodeVersion}:\n${out}`);
      if (/Unknown (project|user) config/.test(out)) throw new Error(`npm warned about config:\n${out}`);
      const nm = path.join(app, 'node_modules');
      if (fs.existsSync(path.join(nm, 'nimify', 'build'))) throw new Error('the install compiled from source instead of using the prebuild');
      for (const absent of ['onnxruntime-node', 'tokenizers']) if (fs.existsSync(path.join(nm, absent))) throw new Error(`${absent} was installed; it must not be`);
      const probe = JSON.parse(execFileSync(nodeBin, ['-e', PROBE], { cwd: app, env, encoding: 'utf8' }));
      const platDir = path.join(nm, '@nimify', manifest.platform);
      if (probe.origin !== 'prebuilt' || !probe.addon.startsWith(platDir)) throw new Error(`the addon did not come from the platform package: ${JSON.stringify(probe)}`);
      if (!probe.runtime.library.startsWith(platDir)) throw new Error(`ONNX Runtime did not come from the platform package: ${probe.runtime.library}`);
      log(`inference ok (${probe.runtime.library.slice(app.length + 1)}, ORT ${probe.runtime.version})`);
      if (!/^UNSUPPORTED: .*npm install tokenizers/.test(probe.text)) throw new Error(`a text pipeline without tokenizers should name the package: ${probe.text}`);
      log(`text pipeline without tokenizers: ${probe.text.split(':')[0]} naming \`npm install tokenizers\``);
      if (!/^UNSUPPORTED: .*npm install sharp/.test(probe.image)) throw new Error(`an image pipeline without sharp should name the package: ${probe.image}`);
      log(`image pipeline without sharp: ${probe.image.split(':')[0]} naming \`npm install sharp\``);
      await serveOnce(app, env);
      log('nimify serve: one HTTP inference, SIGTERM, exit 0');
      // Tracing's SDK is an optional peer too: --trace without it exits 2 naming what to install.
      if (fs.existsSync(path.join(nm, '@opentelemetry', 'sdk-trace-base'))) throw new Error('@opentelemetry/sdk-trace-base was installed; it must not be');
      const traced = spawnSync(nodeBin, [path.join(nm, 'nimify', 'dist', 'cli', 'index.js'), 'serve', 'model.onnx', '--port', '0', '--trace', 'otlp=http://127.0.0.1:9/v1/traces'], { cwd: app, env, encoding: 'utf8', timeout: 60_000 });
      if (traced.status === 0 || !/npm install @opentelemetry\/core @opentelemetry\/sdk-trace-base/.test(traced.stderr)) throw new Error(`--trace without the OpenTelemetry SDK should name the packages (exit ${traced.status}):\n${traced.stderr}`);
      log(`nimify serve --trace without the SDK: exit ${traced.status} naming \`npm install @opentelemetry/…\``);
      const mb = duBytes(nm) / 1e6;
      Object.assign(summary, { installSeconds: inst.seconds, nodeModulesMB: Number(mb.toFixed(1)), limitMB: LIMIT_MB });
      if (mb > LIMIT_MB) throw new Error(`node_modules is ${mb.toFixed(1)} MB, over the ${LIMIT_MB} MB budget`);
      await quickstart(app, env, cache, jsTgz, platTgz);
    } else {
      fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, version: '1.0.0', allowScripts: { nimify: true } }));
      const env = userEnv();
      const inst = npm(app, ['install', '--no-audit', '--no-fund', '--foreground-scripts', jsTgz], env);
      for (const must of [`no prebuilt addon for ${manifest.platform}`, 'building from source', 'source build done']) {
        if (!inst.out.includes(must)) throw new Error(`the fallback install did not say "${must}":\n${inst.out}`);
      }
      const ortLib = execFileSync(process.execPath, ['-p', "require('./dist/runtime/binding').runtimeInfo().library"], { cwd: ROOT, encoding: 'utf8' }).trim();
      const probe = JSON.parse(execFileSync(nodeBin, ['-e', PROBE], { cwd: app, env: { ...env, NIMIFY_ORT_LIBRARY: ortLib }, encoding: 'utf8' }));
      if (probe.origin !== 'source-build') throw new Error(`expected the source-built addon: ${JSON.stringify(probe)}`);
      log(`fallback: built from source in the install (${inst.seconds.toFixed(0)} s), inference ok`);
      Object.assign(summary, { fallbackInstallSeconds: inst.seconds });
    }
    log(JSON.stringify(summary));
    log('PASS');
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

main().catch((err) => {
  process.stderr.write(`install-test: FAIL: ${err.stack || err.message}\n${err.stdout || ''}${err.stderr || ''}\n`);
  process.exitCode = 1;
});
