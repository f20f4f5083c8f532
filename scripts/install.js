#!/usr/bin/env node
'use strict';
// nimify's install hook, as sharp's install/check.js: when the prebuilt platform package
// (@nimify/<platform>, an optional dependency npm picks by os/cpu/libc) is installed and its addon
// loads, there is nothing to do. Otherwise the addon is built from source with node-gyp, saying
// so first: which platform had no prebuild, what the build needs, and where ONNX Runtime will come
// from. A development checkout (no platform package) builds here too, on `npm ci`.
//
// npm >= 11.19 runs a dependency's install script only when the project allows it
// ("allowScripts": {"nimify": true}); the prebuilt path never needs it, and the loader's error
// (src/runtime/binding.ts) tells a user without a prebuild how to run this fallback.
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { platformId, packageName } = require('./platform');

const ROOT = path.resolve(__dirname, '..');
const say = (msg) => process.stderr.write(`nimify: ${msg}\n`);

/** Why `file` cannot serve as the addon, or '' when it loads. Loading the addon does not load ORT. */
function unusable(file) {
  if (!fs.existsSync(file)) return 'not found';
  try {
    require(file);
    return '';
  } catch (err) {
    return String(err.message).split('\n')[0];
  }
}

function prebuilt() {
  try {
    const manifest = require.resolve(`${packageName()}/package.json`, { paths: [ROOT] });
    const why = unusable(path.join(path.dirname(manifest), 'nimify.node'));
    return why ? `${packageName()} is installed but its addon does not load (${why})` : '';
  } catch {
    return `${packageName()} is not installed (none is published for ${platformId()}, or npm skipped the optional dependency)`;
  }
}

function nodeGyp() {
  if (process.env.npm_config_node_gyp && fs.existsSync(process.env.npm_config_node_gyp)) return process.env.npm_config_node_gyp;
  try {
    return require.resolve('node-gyp/bin/node-gyp.js', { paths: [ROOT] });
  } catch {
    return undefined;
  }
}

function main() {
  const fromSource = /^(1|true)$/i.test(process.env.npm_config_build_from_source || '') || /^(1|true)$/i.test(process.env.NIMIFY_BUILD_FROM_SOURCE || '');
  const why = fromSource ? 'a source build was asked for (--build-from-source)' : prebuilt();
  if (!why) return 0;
  const local = path.join(ROOT, 'build', 'Release', 'nimify.node');
  if (!fromSource && unusable(local) === '') return 0; // built before (a development checkout)

  say(`no prebuilt addon for ${platformId()}: ${why}.`);
  say('building from source with node-gyp: needs a C++17 compiler, make and python3, and the ONNX Runtime C headers');
  say('  (NIMIFY_ORT_INCLUDE, else Debian\'s libonnxruntime-dev fetched with apt-get download into deps/; see the README, "Building from source")');
  const gyp = nodeGyp();
  if (!gyp) {
    say('cannot build: node-gyp not found (npm ships it; set npm_config_node_gyp to its bin/node-gyp.js)');
    return 1;
  }
  const t0 = Date.now();
  const r = spawnSync(process.execPath, [gyp, 'rebuild'], { cwd: ROOT, stdio: 'inherit' });
  if (r.status !== 0) {
    say(`source build failed (node-gyp exit ${r.status ?? r.signal}); nimify cannot load until it succeeds. Install a compiler and retry with \`npm rebuild nimify\`.`);
    return 1;
  }
  say(`source build done in ${((Date.now() - t0) / 1000).toFixed(0)} s: ${path.relative(process.cwd(), local) || local}`);
  if (!process.env.NIMIFY_ORT_LIBRARY) {
    say('ONNX Runtime: a source build has no bundled library; nimify uses onnxruntime-node\'s when it is installed, or set NIMIFY_ORT_LIBRARY to libonnxruntime.so (>= 1.23)');
  }
  return 0;
}

process.exitCode = main();
