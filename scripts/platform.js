'use strict';
// Which prebuilt platform package fits a process: the one source of truth for the loader
// (src/runtime/binding.ts, at run time), the install hook (scripts/install.js) and the release packer
// (scripts/pack-release.js). Plain CommonJS with no dependencies, because install.js runs before
// anything is compiled.
//
// A platform id is `<platform>[musl]-<arch>` as sharp names them (linux-x64, linuxmusl-arm64,
// darwin-arm64, win32-x64); its package is `@nimify/<id>` and holds `nimify.node` plus the ONNX
// Runtime library that the addon dlopen()s, named in the package's `nimify.ortLibrary` field.

let libcCache;

/** 'musl' on a musl libc Linux, '' elsewhere (glibc Linux, macOS, Windows). Computed once: a report costs milliseconds. */
function libcFamily() {
  if (libcCache === undefined) libcCache = detectLibc();
  return libcCache;
}

function detectLibc() {
  if (process.platform !== 'linux') return '';
  try {
    const report = process.report && process.report.getReport ? process.report.getReport() : undefined;
    // Node fills glibcVersionRuntime only when it runs on glibc.
    if (report && report.header && report.header.glibcVersionRuntime) return '';
    if (report && Array.isArray(report.sharedObjects) && report.sharedObjects.some((s) => /ld-musl-|libc\.musl-/.test(s))) return 'musl';
  } catch {
    // A sandbox may forbid the report; assume glibc, the common case, and let the load say otherwise.
  }
  return '';
}

/** The platform id of this process (or of the given platform/arch/libc, for packing). */
function platformId(platform = process.platform, arch = process.arch, libc = platform === process.platform ? libcFamily() : '') {
  return `${platform}${libc === 'musl' ? 'musl' : ''}-${arch}`;
}

function packageName(id = platformId()) {
  return `@nimify/${id}`;
}

/**
 * The platforms a platform package is published for: those whose ONNX Runtime library
 * onnxruntime-node ships (its bin/napi-v6/<platform>/<arch>/) and whose addon loader works
 * (dlopen: Linux and macOS). `ortDir` is that folder inside onnxruntime-node, `ortLibrary` the
 * file the addon opens. Windows is not listed: native/ort_api.cc loads ORT with dlopen only.
 */
const RELEASE_PLATFORMS = {
  'linux-x64': { os: 'linux', cpu: 'x64', libc: 'glibc', ortDir: 'linux/x64', ortLibrary: 'libonnxruntime.so.1' },
  'linux-arm64': { os: 'linux', cpu: 'arm64', libc: 'glibc', ortDir: 'linux/arm64', ortLibrary: 'libonnxruntime.so.1' },
  'darwin-arm64': { os: 'darwin', cpu: 'arm64', ortDir: 'darwin/arm64', ortLibrary: 'libonnxruntime.1.dylib' },
};

module.exports = { libcFamily, platformId, packageName, RELEASE_PLATFORMS };
