#!/usr/bin/env node
'use strict';
// Finds or fetches the ONNX Runtime C API headers the addon compiles against, and prints the
// include directory on stdout (binding.gyp and CMakeLists.txt read it).
//
// Order: $NIMIFY_ORT_INCLUDE (a user-supplied dir holding onnxruntime_c_api.h), then the cache in
// deps/ort-include/, then Debian's libonnxruntime-dev package fetched with `apt-get download`
// under a private apt state dir (nothing is installed on the machine). The headers are
// third-party and never committed; deps/ is git-ignored.
//
// Everything but the final path goes to stderr so that `<!(node ...)` in binding.gyp sees one line.
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFileSync } = require('node:child_process');

// The addon asks ORT for this fixed C API version (native/ort_api.h); headers older than it
// lack declarations we use.
const MIN_API_VERSION = 23;
const ROOT = path.resolve(__dirname, '..');
const CACHE = path.join(ROOT, 'deps', 'ort-include');
const HEADER = 'onnxruntime_c_api.h';

function log(msg) {
  process.stderr.write(`[nimify:ort-headers] ${msg}\n`);
}

function apiVersionOf(dir) {
  const file = path.join(dir, HEADER);
  if (!fs.existsSync(file)) return 0;
  const m = /#define\s+ORT_API_VERSION\s+(\d+)/.exec(fs.readFileSync(file, 'utf8'));
  return m ? Number(m[1]) : 0;
}

function usable(dir, origin) {
  const v = apiVersionOf(dir);
  if (v === 0) return false;
  if (v < MIN_API_VERSION) {
    throw new Error(`${origin} ${dir} has ORT C API ${v}; nimify needs headers for API >= ${MIN_API_VERSION} (ONNX Runtime >= 1.${MIN_API_VERSION})`);
  }
  return true;
}

// Debian mirrors this machine already uses, so that a machine behind a local mirror keeps using it.
function debianMirrors() {
  const found = new Set();
  const files = [];
  if (fs.existsSync('/etc/apt/sources.list')) files.push('/etc/apt/sources.list');
  if (fs.existsSync('/etc/apt/sources.list.d')) {
    for (const f of fs.readdirSync('/etc/apt/sources.list.d')) {
      if (f.endsWith('.list') || f.endsWith('.sources')) files.push(path.join('/etc/apt/sources.list.d', f));
    }
  }
  for (const f of files) {
    const text = fs.readFileSync(f, 'utf8');
    for (const line of text.split('\n')) {
      const t = line.trim();
      if (t.startsWith('#')) continue;
      let urls = [];
      const deb = /^deb\s+(?:\[[^\]]*\]\s+)?(\S+)/.exec(t);
      if (deb) urls = [deb[1]];
      const uris = /^URIs:\s*(.+)$/i.exec(t);
      if (uris) urls = uris[1].split(/\s+/);
      for (const u of urls) {
        if (/\/debian\/?$/.test(u) && !/security/.test(u)) found.add(u.replace(/\/$/, ''));
      }
    }
  }
  if (found.size === 0) found.add('http://deb.debian.org/debian');
  return [...found];
}

function fetchFromDebian() {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'nimify-ort-headers-'));
  try {
    const lists = path.join(work, 'lists');
    const cache = path.join(work, 'cache');
    fs.mkdirSync(path.join(lists, 'partial'), { recursive: true });
    fs.mkdirSync(path.join(cache, 'archives', 'partial'), { recursive: true });
    const keyring = '/usr/share/keyrings/debian-archive-keyring.gpg';
    const signed = fs.existsSync(keyring) ? `[signed-by=${keyring}] ` : '[trusted=yes] ';
    const srcList = path.join(work, 'sources.list');
    // sid carries 1.23 (API 23), the first release with the plugin-EP API; trixie has 1.21.
    fs.writeFileSync(srcList, debianMirrors().map((m) => `deb ${signed}${m} sid main\n`).join(''));
    const aptOpts = [
      '-o', `Dir::Etc::SourceList=${srcList}`,
      '-o', 'Dir::Etc::SourceParts=/dev/null',
      '-o', `Dir::State::Lists=${lists}`,
      '-o', `Dir::Cache=${cache}`,
      '-o', 'Debug::NoLocking=1',
      '-o', 'APT::Architectures=amd64',
      '-o', 'APT::Sandbox::User=root',
      '-q',
    ];
    log('fetching libonnxruntime-dev from Debian (apt-get download, nothing is installed)');
    execFileSync('apt-get', [...aptOpts, 'update'], { stdio: ['ignore', 2, 2] });
    execFileSync('apt-get', [...aptOpts, 'download', 'libonnxruntime-dev'], { cwd: work, stdio: ['ignore', 2, 2] });
    const deb = fs.readdirSync(work).find((f) => f.startsWith('libonnxruntime-dev') && f.endsWith('.deb'));
    if (!deb) throw new Error('apt-get download produced no libonnxruntime-dev .deb');
    const extracted = path.join(work, 'x');
    execFileSync('dpkg-deb', ['-x', path.join(work, deb), extracted], { stdio: ['ignore', 2, 2] });
    const inc = path.join(extracted, 'usr', 'include', 'onnxruntime');
    if (!fs.existsSync(path.join(inc, HEADER))) throw new Error(`${deb} has no usr/include/onnxruntime/${HEADER}`);
    fs.rmSync(CACHE, { recursive: true, force: true });
    fs.mkdirSync(CACHE, { recursive: true });
    for (const f of fs.readdirSync(inc)) {
      if (f.endsWith('.h')) fs.copyFileSync(path.join(inc, f), path.join(CACHE, f));
    }
    fs.writeFileSync(path.join(CACHE, 'SOURCE'), `${deb}\n`);
    log(`headers from ${deb} -> ${CACHE}`);
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

function main() {
  const user = process.env.NIMIFY_ORT_INCLUDE;
  if (user) {
    if (!usable(user, 'NIMIFY_ORT_INCLUDE')) {
      throw new Error(`NIMIFY_ORT_INCLUDE=${user} does not contain ${HEADER}`);
    }
    return user;
  }
  if (usable(CACHE, 'cached headers in')) return CACHE;
  try {
    fetchFromDebian();
  } catch (err) {
    throw new Error(
      `could not fetch the ONNX Runtime C headers from Debian's libonnxruntime-dev (${err.message}). ` +
        `Set NIMIFY_ORT_INCLUDE to a directory containing ${HEADER} (ORT >= 1.${MIN_API_VERSION}).`,
    );
  }
  if (!usable(CACHE, 'fetched headers in')) throw new Error(`fetched package lacks ${HEADER}`);
  return CACHE;
}

try {
  process.stdout.write(main() + '\n');
} catch (err) {
  log(`error: ${err.message}`);
  process.exit(1);
}
