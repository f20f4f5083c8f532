#!/usr/bin/env node
'use strict';
// `npm run pack:release [-- --platform linux-x64] [--reuse-build]`: writes into release/ every
// tarball a user installs on a platform, as sharp splits them:
//   nimify-<v>.tgz               the JS package (dist/, the source-build fallback, the demo model),
//                                with an exact optionalDependency on every platform package;
//   nimify-<platform>-<v>.tgz    @nimify/<platform>: the prebuilt nimify.node and the ONNX Runtime
//                                library it dlopen()s, taken from onnxruntime-node's published
//                                tarball (npm pack, the registry's bytes) with ORT's MIT notice.
// The addon is built here (node-gyp rebuild, stripped) unless --reuse-build takes build/Release's.
// It must be built on the platform it is for: the release workflow
// (.github/workflows/release.yml) runs this once per platform and publishes the results.
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { platformId, packageName, RELEASE_PLATFORMS } = require('./platform');

const ROOT = path.resolve(__dirname, '..');
const OUT = path.join(ROOT, 'release');
const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
const log = (m) => process.stdout.write(`pack-release: ${m}\n`);
const run = (cmd, args, opts = {}) => execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], ...opts });

function parseArgs(argv) {
  const opts = { platform: platformId(), reuseBuild: false };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--platform') opts.platform = argv[++i];
    else if (argv[i] === '--reuse-build') opts.reuseBuild = true;
    else throw new Error(`unknown argument ${JSON.stringify(argv[i])} (expected --platform <id> or --reuse-build)`);
  }
  if (!RELEASE_PLATFORMS[opts.platform]) throw new Error(`--platform: expected one of ${Object.keys(RELEASE_PLATFORMS).join(', ')}, received ${JSON.stringify(opts.platform)}`);
  if (opts.platform !== platformId()) throw new Error(`--platform ${opts.platform}: the addon must be built on that platform (this is ${platformId()})`);
  return opts;
}

/** npm pack of a staged folder (no lifecycle scripts: the stage holds built files only). */
function npmPack(dir) {
  const [info] = JSON.parse(run('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', OUT], { cwd: dir }));
  return { file: path.join(OUT, info.filename), size: info.size, unpackedSize: info.unpackedSize, files: info.files.map((f) => f.path) };
}

const ORT_NOTICE = (version) => `# Third-party software in this package

## ONNX Runtime ${version}

The ONNX Runtime shared library in this package is taken unchanged from the npm package
onnxruntime-node@${version} (https://github.com/microsoft/onnxruntime), under this licence:

MIT License

Copyright (c) Microsoft Corporation

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
`;

/** The ORT library for `target`, extracted from onnxruntime-node's published tarball. */
function ortLibrary(target, work) {
  const version = pkg.devDependencies['onnxruntime-node'];
  if (!/^\d+\.\d+\.\d+$/.test(version)) throw new Error(`devDependencies.onnxruntime-node must be an exact version, found ${version}`);
  const [info] = JSON.parse(run('npm', ['pack', '--json', '--prefer-offline', `onnxruntime-node@${version}`, '--pack-destination', work]));
  const inTar = `package/bin/napi-v6/${target.ortDir}/${target.ortLibrary}`;
  run('tar', ['-xzf', path.join(work, info.filename), '-C', work, inTar]);
  fs.rmSync(path.join(work, info.filename));
  log(`ONNX Runtime ${version}: ${inTar} from ${info.filename} (${info.integrity.slice(0, 20)}…)`);
  return { file: path.join(work, inTar), version };
}

function buildAddon(reuse) {
  const built = path.join(ROOT, 'build', 'Release', 'nimify.node');
  if (!reuse || !fs.existsSync(built)) {
    log('building the addon (node-gyp rebuild)');
    run(process.execPath, [require.resolve('node-gyp/bin/node-gyp.js', { paths: [ROOT] }), 'rebuild'], { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'] });
  }
  return built;
}

function platformPackage(id, target, addon, ort, stage) {
  const dir = path.join(stage, id);
  fs.mkdirSync(dir, { recursive: true });
  fs.copyFileSync(addon, path.join(dir, 'nimify.node'));
  if (process.platform !== 'darwin') run('strip', ['--strip-unneeded', path.join(dir, 'nimify.node')]);
  fs.copyFileSync(ort.file, path.join(dir, target.ortLibrary));
  fs.writeFileSync(path.join(dir, 'THIRD-PARTY-NOTICES.md'), ORT_NOTICE(ort.version));
  fs.writeFileSync(
    path.join(dir, 'README.md'),
    `# ${packageName(id)}\n\nThe prebuilt native part of nimify for ${id}` +
      `${target.libc ? ` (${target.libc})` : ''}: \`nimify.node\` (N-API ${pkg.binary.napi_versions.join(', ')}, any Node.js nimify supports) and ` +
      `the ONNX Runtime ${ort.version} library it loads. Installed by nimify as an optional dependency; not meant to be used alone.\n`,
  );
  const manifest = {
    name: packageName(id),
    version: pkg.version,
    description: `nimify's prebuilt addon and ONNX Runtime ${ort.version} for ${id}`,
    license: 'MIT',
    os: [target.os],
    cpu: [target.cpu],
    ...(target.libc ? { libc: [target.libc] } : {}),
    files: ['nimify.node', target.ortLibrary, 'THIRD-PARTY-NOTICES.md'],
    exports: { './package.json': './package.json', './nimify.node': './nimify.node' },
    // Read by src/runtime/binding.ts: the library the addon dlopen()s, and its version.
    nimify: { ortLibrary: target.ortLibrary, ortVersion: ort.version },
  };
  fs.writeFileSync(path.join(dir, 'package.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  return npmPack(dir);
}

function jsPackage(stage) {
  const dir = path.join(stage, 'nimify');
  fs.mkdirSync(dir, { recursive: true });
  if (!fs.existsSync(path.join(ROOT, 'dist', 'index.js'))) throw new Error('dist/ is missing: run `npm run build:ts` first');
  // Exactly the files the root manifest lists (npm's own selection), copied into the stage.
  const [listed] = JSON.parse(run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT }));
  for (const f of listed.files) {
    if (f.path === 'package.json') continue;
    fs.mkdirSync(path.dirname(path.join(dir, f.path)), { recursive: true });
    fs.copyFileSync(path.join(ROOT, f.path), path.join(dir, f.path));
  }
  const manifest = { ...pkg };
  delete manifest.devDependencies;
  delete manifest.allowScripts;
  // A user's install runs only the hook (and only where allowed); the rest is development.
  manifest.scripts = { install: pkg.scripts.install };
  manifest.optionalDependencies = Object.fromEntries(Object.keys(RELEASE_PLATFORMS).map((id) => [packageName(id), pkg.version]));
  fs.writeFileSync(path.join(dir, 'package.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  return npmPack(dir);
}

function main() {
  const opts = parseArgs(process.argv.slice(2));
  const target = RELEASE_PLATFORMS[opts.platform];
  fs.rmSync(OUT, { recursive: true, force: true });
  fs.mkdirSync(OUT, { recursive: true });
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'nimify-release-'));
  try {
    const addon = buildAddon(opts.reuseBuild);
    const ort = ortLibrary(target, work);
    const js = jsPackage(path.join(work, 'stage'));
    const plat = platformPackage(opts.platform, target, addon, ort, path.join(work, 'stage'));
    const mb = (n) => `${(n / 1e6).toFixed(1)} MB`;
    for (const t of [js, plat]) log(`${path.relative(ROOT, t.file)}: ${mb(t.size)} packed, ${mb(t.unpackedSize)} unpacked, ${t.files.length} files`);
    fs.writeFileSync(path.join(OUT, 'manifest.json'), `${JSON.stringify({ version: pkg.version, platform: opts.platform, tarballs: [js, plat].map((t) => path.basename(t.file)) }, null, 2)}\n`);
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

try {
  main();
} catch (err) {
  process.stderr.write(`pack-release: ${err.message}\n`);
  process.exitCode = 1;
}
