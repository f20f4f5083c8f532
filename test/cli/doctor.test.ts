/**
 * `nimify doctor`: the real command in a child process (it loads ORT process-wide), human and JSON
 * output, exit 3 when ONNX Runtime cannot be loaded, and the GPU-provider diagnosis on real ELF
 * files built here (a provider library whose CUDA dependency is missing is named as such).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { providerStatus } from '../../src/cli/doctor';
import { elfDeps, missingLibraries } from '../../src/cli/elf';
import { ROOT } from '../helpers';

const CLI = path.join(ROOT, 'dist', 'cli', 'index.js');

function doctor(args: string[], env: Record<string, string | undefined> = {}): { status: number | null; out: string; err: string } {
  const r = spawnSync(process.execPath, [CLI, 'doctor', ...args], { cwd: os.tmpdir(), env: { ...process.env, ...env }, encoding: 'utf8' });
  return { status: r.status, out: r.stdout, err: r.stderr };
}

// dist/ is built by `npm test`'s pretest.
describe('nimify doctor', () => {
  it('reports the addon, ONNX Runtime, a model run, CPU, providers and packages; exit 0', () => {
    const r = doctor([]);
    expect(r.status).toBe(0);
    expect(r.out).toMatch(/addon +(source build|prebuilt \(@nimify\/linux-x64\)): \S+nimify\.node/);
    expect(r.out).toMatch(/onnxruntime +1\.\d+\.\d+ \(C API 23\): \S+libonnxruntime/);
    expect(r.out).toContain('a built-in model loaded and ran: ok');
    expect(r.out).toMatch(/AVX2 (yes|no), AVX-512 (yes|no), AMX (yes|no)/);
    expect(r.out).toContain('CPUExecutionProvider: available');
    expect(r.out).toMatch(/sharp [\d.]+: available \(libvips/);
    expect(r.out).toContain('result: nimify can run models on this machine');
  });

  it('--json is one document with every path tried', () => {
    const r = doctor(['--json']);
    expect(r.status).toBe(0);
    const j = JSON.parse(r.out);
    expect(j.runnable).toBe(true);
    expect(j.modelRun.ok).toBe(true);
    expect(fs.existsSync(j.onnxRuntime.library)).toBe(true);
    expect(j.onnxRuntime.tried.at(-1).path).toBe(j.onnxRuntime.library);
    expect(j.addon.tried.map((c: { origin: string }) => c.origin)).toEqual(['source-build', 'prebuilt']);
    expect(j.node.napi).toBe(process.versions.napi);
    expect(j.cpu.logical).toBe(os.cpus().length);
    expect(j.providers.find((p: { name: string }) => p.name === 'CPUExecutionProvider')).toEqual({ name: 'CPUExecutionProvider', available: true, selectable: true });
    expect(j.packages.map((p: { name: string }) => p.name)).toEqual(['sharp', 'tokenizers']);
  });

  it('exits 3 and names the library tried when ONNX Runtime cannot load', () => {
    const r = doctor([], { NIMIFY_ORT_LIBRARY: '/nonexistent/libonnxruntime.so.1' });
    expect(r.status).toBe(3);
    expect(r.out).toContain('onnxruntime  NOT LOADED');
    expect(r.out).toMatch(/tried \/nonexistent\/libonnxruntime\.so\.1 \[NIMIFY_ORT_LIBRARY\]: .*No such file/);
    expect(r.out).toContain('result: nimify CANNOT run a model');
    const j = JSON.parse(doctor(['--json'], { NIMIFY_ORT_LIBRARY: '/nonexistent/libonnxruntime.so.1' }).out);
    expect(j.runnable).toBe(false);
    expect(j.onnxRuntime.ok).toBe(false);
  });

  it('usage errors exit 2; --help exits 0', () => {
    expect(doctor(['extra']).status).toBe(2);
    const bad = doctor(['--jsn']);
    expect(bad.status).toBe(2);
    expect(bad.err).toContain('--jsn');
    const help = doctor(['--help']);
    expect(help.status).toBe(0);
    expect(help.out).toContain('usage: nimify doctor');
  });
});

describe('GPU provider diagnosis on real ELF files', () => {
  let dir: string;
  beforeAll(() => {
    // A stand-in ORT folder: a "CUDA provider" library linked against a libcudart.so.12 that is
    // then removed, as on a machine without the CUDA runtime.
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nimify-doctor-'));
    const stubs = path.join(dir, 'stubs');
    fs.mkdirSync(stubs);
    fs.writeFileSync(path.join(dir, 'a.c'), 'int cuda_stub(void) { return 0; }\n');
    fs.writeFileSync(path.join(dir, 'p.c'), 'extern int cuda_stub(void); int provider(void) { return cuda_stub(); }\n');
    execFileSync('cc', ['-shared', '-fPIC', '-o', path.join(stubs, 'libcudart.so.12'), '-Wl,-soname,libcudart.so.12', path.join(dir, 'a.c')]);
    execFileSync('cc', ['-shared', '-fPIC', '-o', path.join(dir, 'libonnxruntime_providers_cuda.so'), path.join(dir, 'p.c'), path.join(stubs, 'libcudart.so.12')]);
    fs.writeFileSync(path.join(dir, 'libonnxruntime_providers_shared.so'), '');
    fs.writeFileSync(path.join(dir, 'libonnxruntime.so.1'), '');
  });

  it('reads DT_NEEDED and finds what is missing', () => {
    const lib = path.join(dir, 'libonnxruntime_providers_cuda.so');
    expect(elfDeps(lib)?.needed).toContain('libcudart.so.12');
    expect(missingLibraries(lib, {})).toEqual(['libcudart.so.12']);
    expect(missingLibraries(lib, { LD_LIBRARY_PATH: path.join(dir, 'stubs') })).toEqual([]);
    expect(elfDeps(path.join(dir, 'a.c'))).toBeNull();
    // A truncated library is "not readable", not a crash.
    const cut = path.join(dir, 'truncated.so');
    fs.writeFileSync(cut, fs.readFileSync(lib).subarray(0, 200));
    expect(elfDeps(cut)).toBeNull();
    expect(missingLibraries(cut, {})).toBeNull();
  });

  it('names the missing provider library, the missing CUDA libraries and the missing driver', () => {
    const [cuda, trt, cpu, webgpu] = providerStatus(path.join(dir, 'libonnxruntime.so.1'), ['CUDAExecutionProvider', 'TensorrtExecutionProvider', 'CPUExecutionProvider', 'WebGpuExecutionProvider'], {});
    expect(cuda!.available).toBe(false);
    expect(cuda!.selectable).toBe(true); // executionProviders: ['cuda'] is accepted (and skipped or refused with this reason)
    expect(cuda!.reason).toContain('missing libraries: libcudart.so.12');
    if (!fs.existsSync('/proc/driver/nvidia/version')) expect(cuda!.reason).toMatch(/no NVIDIA driver \(libcuda\.so\.1 not found\)|no NVIDIA device node/);
    expect(trt!.reason).toContain('libonnxruntime_providers_tensorrt.so is not installed');
    expect(cpu).toEqual({ name: 'CPUExecutionProvider', available: true, selectable: true });
    expect(webgpu!.reason).toContain('nimify does not use it');
    const found = providerStatus(path.join(dir, 'libonnxruntime.so.1'), ['CUDAExecutionProvider'], { LD_LIBRARY_PATH: path.join(dir, 'stubs') })[0]!;
    expect(found.reason ?? '').not.toContain('missing libraries');
  });
});
