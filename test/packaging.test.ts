/**
 * What a user's install depends on, checked from the sources that define it: the manifest (no
 * runtime dependency on onnxruntime-node, tokenizers an optional peer, engines), the platform
 * table shared by the loader, the install hook and the release packer, the release workflow's
 * matrix against that table, and the error an optional package gives when it is missing. The
 * install itself (tarballs into an empty project, no compiler) is scripts/install-test.js, a CI step.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { NimifyError } from '../src';
import { optionalModule } from '../src/runtime/optional';
import { ROOT } from './helpers';

const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
// eslint-disable-next-line @typescript-eslint/no-require-imports
const platform = require(path.join(ROOT, 'scripts', 'platform.js'));

describe('the published manifest', () => {
  it('needs no onnxruntime-node, tokenizers or build tool at run time', () => {
    for (const name of ['onnxruntime-node', 'tokenizers', 'node-gyp-build', 'prebuildify', 'cmake-js', 'node-gyp']) expect(pkg.dependencies[name]).toBeUndefined();
    expect(pkg.peerDependencies.tokenizers).toBeDefined();
    expect(pkg.peerDependenciesMeta.tokenizers.optional).toBe(true);
    // Development installs onnxruntime-node (benchmarks, live comparisons) without its download.
    expect(pkg.devDependencies['onnxruntime-node']).toMatch(/^\d+\.\d+\.\d+$/);
    expect(pkg.allowScripts['onnxruntime-node']).toBe(false);
    expect(fs.existsSync(path.join(ROOT, '.npmrc'))).toBe(false);
    expect(pkg.scripts.install).toBe('node scripts/install.js');
    expect(pkg.engines.node).toBe('>=22');
  });

  it('ships what the install hook, the loader and the quickstart need', () => {
    for (const f of ['dist/', 'scripts/install.js', 'scripts/platform.js', 'scripts/fetch-ort-headers.js', 'binding.gyp', 'native/', 'examples/digits/', 'LICENSE']) expect(pkg.files).toContain(f);
  });
});

describe('platform ids (scripts/platform.js, one table for loader, install hook and packer)', () => {
  it('names platforms as sharp does', () => {
    expect(platform.platformId('linux', 'x64', '')).toBe('linux-x64');
    expect(platform.platformId('linux', 'arm64', 'musl')).toBe('linuxmusl-arm64');
    expect(platform.platformId('darwin', 'arm64')).toBe('darwin-arm64');
    expect(platform.packageName('linux-x64')).toBe('@nimify/linux-x64');
    if (process.platform === 'linux' && process.arch === 'x64') expect(platform.platformId()).toBe('linux-x64'); // this machine: glibc
  });

  it('every release platform takes its ORT library from onnxruntime-node, and the workflow builds exactly those', () => {
    const ortNode = path.join(ROOT, 'node_modules', 'onnxruntime-node', 'bin', 'napi-v6');
    for (const [id, t] of Object.entries(platform.RELEASE_PLATFORMS) as [string, { ortDir: string; ortLibrary: string; os: string; cpu: string }][]) {
      expect(fs.existsSync(path.join(ortNode, t.ortDir, t.ortLibrary)), `${id}: ${t.ortDir}/${t.ortLibrary}`).toBe(true);
      expect(id).toBe(platform.platformId(t.os, t.cpu, ''));
    }
    const wf = parse(fs.readFileSync(path.join(ROOT, '.github', 'workflows', 'release.yml'), 'utf8'));
    const matrix = wf.jobs.build.strategy.matrix.include.map((m: { platform: string }) => m.platform).sort();
    expect(matrix).toEqual(Object.keys(platform.RELEASE_PLATFORMS).sort());
    expect(wf.jobs.publish.needs).toBe('build');
  });
});

describe('the install hook (scripts/install.js)', () => {
  it('does nothing when the addon is already there (a built checkout)', () => {
    const r = spawnSync(process.execPath, ['scripts/install.js'], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, NIMIFY_BUILD_FROM_SOURCE: '' } });
    expect(r.status).toBe(0);
    expect(r.stderr).toBe('');
  });
});

describe('optional packages', () => {
  it('a missing package is UNSUPPORTED naming the package and the install command', () => {
    let err: unknown;
    try {
      optionalModule('nimify-no-such-package', 'text preprocessing');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(NimifyError);
    expect((err as NimifyError).code).toBe('UNSUPPORTED');
    expect((err as NimifyError).message).toBe("text preprocessing needs the package 'nimify-no-such-package', which is not installed: run `npm install nimify-no-such-package` in your project");
  });

  it('a present package loads', () => {
    expect(optionalModule<{ Tokenizer: unknown }>('tokenizers', 'text preprocessing').Tokenizer).toBeDefined();
  });
});
