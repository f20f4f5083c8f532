#!/usr/bin/env node
'use strict';
// The install a user gets: packs nimify (with its prebuilds), installs the tarball into an empty
// temporary project with every compiler on PATH replaced by a stub that fails, and runs an
// inference there. Proves that the prebuild is used (no build/ folder appears) and that nothing
// needs a compiler or a network beyond the npm registry. Exits non-zero on failure.
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..');
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'nimify-pack-'));
const run = (cmd, args, opts = {}) => execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8', ...opts });

try {
  if (!fs.existsSync(path.join(ROOT, 'prebuilds', `${process.platform}-${process.arch}`))) {
    throw new Error('no prebuilds: run `npm run prebuilds` first');
  }
  const packed = JSON.parse(run('npm', ['pack', '--json', '--pack-destination', work], { cwd: ROOT }));
  const tarball = path.join(work, packed[0].filename);
  const files = packed[0].files.map((f) => f.path);
  for (const must of ['dist/index.js', 'dist/index.d.ts', 'binding.gyp', 'CMakeLists.txt', 'scripts/fetch-ort-headers.js']) {
    if (!files.includes(must)) throw new Error(`package lacks ${must}`);
  }
  if (!files.some((f) => f.startsWith('prebuilds/') && f.endsWith('.node'))) throw new Error('package has no prebuild');
  if (files.some((f) => f.startsWith('deps/') || f.startsWith('build/'))) throw new Error('package ships build outputs or third-party headers');

  const stubs = path.join(work, 'no-compiler');
  fs.mkdirSync(stubs);
  for (const tool of ['cc', 'gcc', 'g++', 'c++', 'clang', 'clang++', 'make', 'cmake']) {
    fs.writeFileSync(path.join(stubs, tool), `#!/bin/sh\necho "pack-test: ${tool} is not available" >&2\nexit 127\n`, { mode: 0o755 });
  }
  const app = path.join(work, 'app');
  fs.mkdirSync(app);
  fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, version: '1.0.0' }));
  fs.copyFileSync(path.join(ROOT, 'test', 'fixtures', 'models', 'mlp_tiny.onnx'), path.join(app, 'model.onnx'));
  const env = { ...process.env, PATH: `${stubs}${path.delimiter}${process.env.PATH}`, ONNXRUNTIME_NODE_INSTALL: 'skip' };
  run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', tarball], { cwd: app, env, stdio: ['ignore', 'inherit', 'inherit'] });
  if (fs.existsSync(path.join(app, 'node_modules', 'nimify', 'build'))) throw new Error('install compiled from source instead of using the prebuild');
  const script = `
    const { loadModel, Tensor, runtimeInfo } = require('nimify');
    (async () => {
      const m = await loadModel('model.onnx');
      const out = await m.infer({ x: new Tensor('float32', new Float32Array(64).fill(0.5), [1, 64]) });
      if (out.y.dims.join() !== '1,10' || !Number.isFinite(out.y.data[0])) throw new Error('bad output');
      console.log('pack-test: inference ok with', runtimeInfo().library);
    })().catch((e) => { console.error(e); process.exit(1); });`;
  process.stdout.write(run(process.execPath, ['-e', script], { cwd: app, env }));
  // The installed `nimify` bin serves the model: one inference over HTTP, then SIGTERM → exit 0.
  const serveScript = `
    const { spawn } = require('node:child_process');
    const child = spawn(require('node:path').join('node_modules', '.bin', 'nimify'), ['serve', 'model.onnx', '--port', '0', '--log-level', 'warn'], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    const timer = setTimeout(() => { console.error('pack-test: serve did not start:', out); child.kill('SIGKILL'); process.exit(1); }, 30000);
    child.stdout.on('data', async (d) => {
      out += d;
      const m = /serving .* at (http:\\/\\/\\S+)/.exec(out);
      if (!m || child.asked) return;
      child.asked = true;
      const r = await fetch(m[1] + '/v2/models/model/infer', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', data: new Array(64).fill(0.5) }] }) });
      const body = await r.json();
      if (r.status !== 200 || body.outputs[0].shape.join() !== '1,10') { console.error('pack-test: bad HTTP answer', r.status, body); process.exit(1); }
      child.kill('SIGTERM');
    });
    child.on('exit', (code) => { clearTimeout(timer); if (code !== 0) { console.error('pack-test: serve exited', code); process.exit(1); } console.log('pack-test: nimify serve ok'); });`;
  process.stdout.write(run(process.execPath, ['-e', serveScript], { cwd: app, env }));
  console.log('pack-test: PASS');
} catch (err) {
  console.error(`pack-test: FAIL: ${err.message}`);
  process.exitCode = 1;
} finally {
  fs.rmSync(work, { recursive: true, force: true });
}
