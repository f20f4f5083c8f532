#!/usr/bin/env node
'use strict';
// `node scripts/fetch-gpu-ep.js`: prints, as JSON, the paths of ONNX Runtime 1.29's core library
// and its CUDA 13 execution-provider library for linux-x64, fetched once from the npm registry
// (Unity packages: com.github.asus4.onnxruntime@0.4.9, the CPU core; …linux-x64-gpu@0.4.9, the
// CUDA EP built for the plugin-EP API) into deps/gpu-ep/<version>/ (git-ignored, never committed).
// Later runs print the cached paths. CI runs it before the test suite; test/runtime/plugin-ep.test.ts
// uses the files (and `require`s this script for their paths: one source of truth).
//
// Only three files are kept, in one folder because ORT looks for them there:
//   - libonnxruntime.so (SONAME libonnxruntime.so.1): the core, used through NIMIFY_ORT_LIBRARY;
//   - libonnxruntime_providers_shared.so: the core's provider bridge. The CUDA EP imports
//     `Provider_GetHost` from it without a DT_NEEDED entry; ORT dlopens it (RTLD_GLOBAL) from the
//     core library's own folder before it loads a provider-bridge library, so it must sit beside
//     the core (the core package's copy, built with it);
//   - libonnxruntime_providers_cuda.so (~230 MB): exports CreateEpFactories/ReleaseEpFactory (the
//     plugin-EP API) and GetProvider (the legacy one). Its own DT_NEEDED: libcudart.so.13,
//     libcublas.so.13, libcublasLt.so.13 (symbols versioned by those SONAMEs), libcurand.so.10 and
//     libcuda.so.1 (no symbols imported), besides glibc/libstdc++; cuDNN is dlopened lazily.
// The TensorRT EP library in the GPU package is not kept: it needs TensorRT, which no machine here has.
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const VERSION = '0.4.9';
const CORE_PACKAGE = `com.github.asus4.onnxruntime@${VERSION}`;
const GPU_PACKAGE = `com.github.asus4.onnxruntime.linux-x64-gpu@${VERSION}`;
const MEMBER_DIR = 'package/Plugins/Linux/x64';
const DEPS = path.join(__dirname, '..', 'deps', 'gpu-ep');
const DIR = path.join(DEPS, VERSION);

// The files kept: what each is called in this script's JSON, its name, and which package holds it.
const FILES = [
  { key: 'ortLibrary', name: 'libonnxruntime.so', from: CORE_PACKAGE },
  { key: 'providersShared', name: 'libonnxruntime_providers_shared.so', from: CORE_PACKAGE },
  { key: 'cudaEpLibrary', name: 'libonnxruntime_providers_cuda.so', from: GPU_PACKAGE },
];

/** Where the files are (or will be): { version, dir, ortLibrary, providersShared, cudaEpLibrary }. */
function paths() {
  const out = { version: VERSION, dir: DIR };
  for (const f of FILES) out[f.key] = path.join(DIR, f.name);
  return out;
}

/** Whether every file is already in deps/gpu-ep/<version>/. */
function cached() {
  return FILES.every((f) => fs.existsSync(path.join(DIR, f.name)));
}

function fetch() {
  fs.mkdirSync(DEPS, { recursive: true });
  // Extracted into a scratch folder and renamed into place, so an interrupted run leaves no
  // half-filled cache that a later run would take as complete.
  const scratch = fs.mkdtempSync(path.join(DEPS, '.fetch-'));
  try {
    const started = Date.now();
    const packed = JSON.parse(
      execFileSync('npm', ['pack', '--json', CORE_PACKAGE, GPU_PACKAGE], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'inherit'],
        cwd: scratch,
        maxBuffer: 64 << 20,
      }),
    );
    const tarball = (spec) => {
      const name = spec.slice(0, spec.lastIndexOf('@'));
      const info = packed.find((p) => p.name === name);
      if (!info) throw new Error(`npm pack did not report ${spec}`);
      return path.join(scratch, info.filename);
    };
    const out = path.join(scratch, VERSION);
    fs.mkdirSync(out);
    for (const spec of [CORE_PACKAGE, GPU_PACKAGE]) {
      const members = FILES.filter((f) => f.from === spec).map((f) => `${MEMBER_DIR}/${f.name}`);
      execFileSync('tar', ['--no-same-owner', '-xzf', tarball(spec), '-C', out, '--strip-components=4', ...members]);
      fs.rmSync(tarball(spec));
    }
    for (const f of FILES) fs.chmodSync(path.join(out, f.name), 0o755);
    fs.rmSync(DIR, { recursive: true, force: true });
    fs.renameSync(out, DIR);
    process.stderr.write(`fetch-gpu-ep: ${CORE_PACKAGE} + ${GPU_PACKAGE} -> ${DIR} in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
  }
}

function main() {
  if (process.argv.length > 2) {
    process.stderr.write(`fetch-gpu-ep: takes no arguments, received ${JSON.stringify(process.argv.slice(2))}\n`);
    process.exit(2);
  }
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    process.stderr.write(`fetch-gpu-ep: the CUDA EP package is built for linux-x64 only (this is ${process.platform}-${process.arch})\n`);
    process.exit(2);
  }
  if (!cached()) fetch();
  process.stdout.write(`${JSON.stringify(paths())}\n`);
}

module.exports = { VERSION, paths, cached };
if (require.main === module) main();
