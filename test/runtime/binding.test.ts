import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runtimeInfo } from '../../src';
import { runtimeCandidates } from '../../src/runtime/binding';
import { ROOT, model } from '../helpers';

/** Runs a snippet against the built package in a fresh process (ORT loads once per process). */
function inChild(code: string, env: Record<string, string | undefined>): { status: number | null; out: string } {
  const r = spawnSync(process.execPath, ['-e', code], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    encoding: 'utf8',
  });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

const PROBE = `
const nimify = require('./dist');
nimify.loadModel(${JSON.stringify(model('mlp_tiny.onnx'))}).then(
  () => console.log('LOADED', JSON.stringify(nimify.runtimeInfo())),
  (e) => console.log('ERR', e.code, e.message),
);`;

describe('finding and loading ONNX Runtime', () => {
  it('defaults to the library inside onnxruntime-node and requests a fixed C API version', () => {
    const info = runtimeInfo();
    expect(info.library).toContain(path.join('onnxruntime-node', 'bin', 'napi-v6'));
    expect(info.version).toMatch(/^1\.\d+\.\d+/);
    expect(info.apiVersion).toBe(23);
    const { candidates } = runtimeCandidates({});
    expect(candidates[0]).toBe(info.library);
  });

  it('uses NIMIFY_ORT_LIBRARY first and alone', () => {
    const explicit = runtimeCandidates({ NIMIFY_ORT_LIBRARY: '/opt/ort/libonnxruntime.so' });
    expect(explicit.candidates).toEqual(['/opt/ort/libonnxruntime.so']);
    const lib = runtimeInfo().library;
    const r = inChild(PROBE, { NIMIFY_ORT_LIBRARY: lib });
    expect(r.out).toContain('LOADED');
    expect(r.out).toContain(lib);
  });

  it('require() never fails when ORT is missing; the first use says which paths were tried and the fix', () => {
    const r = inChild(`require('./dist'); console.log('IMPORTED'); ${PROBE}`, { NIMIFY_ORT_LIBRARY: '/nonexistent/libonnxruntime.so.1' });
    expect(r.status).toBe(0);
    expect(r.out).toContain('IMPORTED');
    expect(r.out).toContain('ERR RUNTIME_UNAVAILABLE');
    expect(r.out).toContain('/nonexistent/libonnxruntime.so.1');
    expect(r.out).toMatch(/No such file/);
    expect(r.out).toContain('NIMIFY_ORT_LIBRARY');
  });

  it('refuses a shared library that is not ONNX Runtime', () => {
    const libz = ['/lib/x86_64-linux-gnu/libz.so.1', '/usr/lib/x86_64-linux-gnu/libz.so.1'].find((p) => fs.existsSync(p)) ?? process.execPath;
    const r = inChild(PROBE, { NIMIFY_ORT_LIBRARY: libz });
    expect(r.out).toContain('ERR RUNTIME_UNAVAILABLE');
    expect(r.out).toMatch(/not an ONNX Runtime library \(no OrtGetApiBase symbol\)|cannot dynamically load/);
  });

  it('refuses an ONNX Runtime too old for the requested API version', () => {
    // A stand-in "ORT" whose GetApi returns null for every version, as an old release does for 23.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nimify-oldort-'));
    const src = path.join(dir, 'old.c');
    fs.writeFileSync(
      src,
      `typedef struct { const void* (*GetApi)(unsigned); const char* (*GetVersionString)(void); } Base;
       static const void* get_api(unsigned v) { (void)v; return 0; }
       static const char* version(void) { return "1.9.0"; }
       static Base base = { get_api, version };
       const Base* OrtGetApiBase(void) { return &base; }`,
    );
    const lib = path.join(dir, 'libonnxruntime.so.1');
    try {
      execFileSync('cc', ['-shared', '-fPIC', '-o', lib, src]);
    } catch {
      return; // no C compiler here (the pack-and-install test runs without one)
    }
    const r = inChild(PROBE, { NIMIFY_ORT_LIBRARY: lib });
    expect(r.out).toContain('ERR RUNTIME_UNAVAILABLE');
    expect(r.out).toContain('ONNX Runtime 1.9.0 is too old: nimify needs C API version 23');
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('an installed layout loads the addon and ORT from the platform package, and a source build first when there is one', () => {
    // node_modules/nimify (dist/ and scripts/platform.js copied) beside node_modules/@nimify/<platform>
    // holding this build's addon and a link to onnxruntime-node's library, as pack:release lays
    // them out. Under deps/ so that nimify's own dependencies resolve from the checkout.
    const id = execFileSync(process.execPath, ['-p', "require('./scripts/platform.js').platformId()"], { cwd: ROOT, encoding: 'utf8' }).trim();
    const base = fs.mkdtempSync(path.join(ROOT, 'deps', 'layout-'));
    try {
      // Its own package.json, or `require('nimify')` would self-resolve to the checkout.
      fs.writeFileSync(path.join(base, 'package.json'), '{"name":"layout-test","private":true}');
      const nm = path.join(base, 'node_modules');
      const pkgDir = path.join(nm, 'nimify');
      fs.cpSync(path.join(ROOT, 'dist'), path.join(pkgDir, 'dist'), { recursive: true });
      fs.mkdirSync(path.join(pkgDir, 'scripts'));
      fs.copyFileSync(path.join(ROOT, 'scripts', 'platform.js'), path.join(pkgDir, 'scripts', 'platform.js'));
      fs.writeFileSync(path.join(pkgDir, 'package.json'), JSON.stringify({ name: 'nimify', version: '0.0.0', main: 'dist/index.js' }));
      const plat = path.join(nm, '@nimify', id);
      fs.mkdirSync(plat, { recursive: true });
      fs.copyFileSync(path.join(ROOT, 'build', 'Release', 'nimify.node'), path.join(plat, 'nimify.node'));
      fs.symlinkSync(runtimeInfo().library, path.join(plat, 'libonnxruntime.so.1'));
      fs.writeFileSync(path.join(plat, 'package.json'), JSON.stringify({ name: `@nimify/${id}`, version: '0.0.0', nimify: { ortLibrary: 'libonnxruntime.so.1' } }));
      const probe = `const n = require('nimify'); n.loadModel(${JSON.stringify(model('mlp_tiny.onnx'))}).then(() => console.log(JSON.stringify({ a: n.addonInfo(), r: n.runtimeInfo() })), (e) => console.log('ERR', e.message));`;
      const run = () => {
        const r = spawnSync(process.execPath, ['-e', probe], { cwd: base, env: { ...process.env, NIMIFY_ORT_LIBRARY: '' }, encoding: 'utf8' });
        expect(r.stderr).toBe('');
        return JSON.parse(r.stdout);
      };
      const prebuilt = run();
      expect(prebuilt.a.origin).toBe('prebuilt');
      expect(prebuilt.a.path).toBe(path.join(plat, 'nimify.node'));
      expect(prebuilt.a.tried[0]).toMatchObject({ origin: 'source-build', error: 'no such file' });
      expect(prebuilt.r.library).toBe(path.join(plat, 'libonnxruntime.so.1'));
      // A source build in the package (the install fallback, or `npm rebuild`) comes first.
      fs.mkdirSync(path.join(pkgDir, 'build', 'Release'), { recursive: true });
      fs.copyFileSync(path.join(ROOT, 'build', 'Release', 'nimify.node'), path.join(pkgDir, 'build', 'Release', 'nimify.node'));
      const source = run();
      expect(source.a.origin).toBe('source-build');
      expect(source.r.library).toBe(path.join(plat, 'libonnxruntime.so.1'));
    } finally {
      fs.rmSync(base, { recursive: true, force: true });
    }
  });

  it('names the platform package and how to build from source when no addon loads', () => {
    const base = fs.mkdtempSync(path.join(ROOT, 'deps', 'layout-'));
    try {
      fs.writeFileSync(path.join(base, 'package.json'), '{"name":"layout-test","private":true}');
      const pkgDir = path.join(base, 'node_modules', 'nimify');
      fs.cpSync(path.join(ROOT, 'dist'), path.join(pkgDir, 'dist'), { recursive: true });
      fs.mkdirSync(path.join(pkgDir, 'scripts'));
      fs.copyFileSync(path.join(ROOT, 'scripts', 'platform.js'), path.join(pkgDir, 'scripts', 'platform.js'));
      fs.writeFileSync(path.join(pkgDir, 'package.json'), JSON.stringify({ name: 'nimify', version: '0.0.0', main: 'dist/index.js' }));
      const r = spawnSync(process.execPath, ['-e', `require('nimify').loadModel(${JSON.stringify(model('mlp_tiny.onnx'))}).catch((e) => console.log(e.code, e.message))`], { cwd: base, encoding: 'utf8' });
      expect(r.stdout).toContain('RUNTIME_UNAVAILABLE the nimify native addon could not be loaded');
      expect(r.stdout).toMatch(/build\/Release\/nimify\.node: no such file/);
      expect(r.stdout).toMatch(/@nimify\/[a-z0-9-]+ is not installed/);
      expect(r.stdout).toContain('"allowScripts": {"nimify": true}');
    } finally {
      fs.rmSync(base, { recursive: true, force: true });
    }
  });
});
