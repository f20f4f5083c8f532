/**
 * `nimify doctor [--json]`: what this machine can run, and why not where it cannot. Loads the
 * addon and ONNX Runtime exactly as the library does (src/runtime/binding.ts), runs a tiny built-in model,
 * and reports every path tried, the CPU's features, thread counts, the execution providers ORT
 * was built with and why each non-CPU one cannot run here (missing provider library, missing
 * CUDA/cuDNN/TensorRT libraries by name, no driver), and the optional packages. Exit 0 when a
 * model runs, EXIT.NOT_RUNNABLE (3) when nimify cannot run one.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { addonCandidates, addonInfo, runtimeAttempts, runtimeCandidates, runtimeInfo, type LoaderCandidate } from '../runtime/binding';
import { NimifyError } from '../runtime/errors';
import { loadModel } from '../runtime/model';
import { optionalModule } from '../runtime/optional';
import { Tensor } from '../runtime/tensor';
import { version } from '../runtime/version';
import { missingLibraries, findLibrary } from './elf';
import { flagHelp, parseFlags, type FlagSpec } from './flags';
import { EXIT, type CliIo } from './io';

export const DOCTOR_FLAGS = {
  json: { type: 'boolean', help: 'print the report as one JSON document' },
  help: { type: 'boolean', short: 'h', help: 'show this help' },
} as const satisfies Record<string, FlagSpec>;

export const USAGE = `usage: nimify doctor [--json]

Checks that nimify can run a model here: which addon and ONNX Runtime library load (and every path
tried), a tiny built-in model run, CPU features and thread counts, the execution providers ONNX
Runtime was built with and why each GPU one is or is not usable, and the optional packages.
Exit codes: 0 a model runs; 3 nimify cannot run a model on this machine; 2 usage error.

options (each also read from the environment variable in brackets):
${flagHelp(DOCTOR_FLAGS, 'doctor')}`;

// Relu over float32 [1,4] (written with scripts/onnx-writer.js): small enough to inline, real
// enough that ORT parses, plans and runs it.
const PROBE_MODEL = 'CAgSDW5pbWlmeSBkb2N0b3I6QwoPCgF4EgF5GgF5IgRSZWx1EgZkb2N0b3JaEwoBeBIOCgwIARIICgIIAQoCCARiEwoBeRIOCgwIARIICgIIAQoCCARCBAoAEBE=';

export interface ProviderStatus {
  /** ORT's provider name, e.g. CUDAExecutionProvider. */
  name: string;
  /** Whether ONNX Runtime could run it on this machine. */
  available: boolean;
  /** Why not (or what it needs); absent for the CPU provider. */
  reason?: string;
  /** Whether executionProviders accepts it by name ('cpu', 'cuda', 'tensorrt'; others through a plugin `library`). */
  selectable: boolean;
}

export interface DoctorReport {
  nimify: string;
  node: { version: string; napi: string; platform: string; glibc: string | null };
  addon: { ok: boolean; path?: string; origin?: string; platformPackage: string; tried: LoaderCandidate[]; error?: string };
  onnxRuntime: { ok: boolean; library?: string; version?: string; apiVersion?: number; tried: LoaderCandidate[]; notes: string[]; error?: string };
  /** A built-in model loaded and run through the public API. */
  modelRun: { ok: boolean; error?: string };
  cpu: { model: string; logical: number; availableParallelism: number; cgroupLimit: number | null; features: string[]; avx2: boolean; avx512: boolean; amx: boolean };
  memory: { totalMB: number; freeMB: number };
  providers: ProviderStatus[];
  packages: Array<{ name: string; installed: boolean; version?: string; detail?: string; neededFor: string }>;
  runnable: boolean;
}

function glibcVersion(): string | null {
  try {
    const header = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header;
    return header?.glibcVersionRuntime ?? null;
  } catch {
    return null;
  }
}

function cpuInfo(): DoctorReport['cpu'] {
  let flags: string[] = [];
  let model = os.cpus()[0]?.model ?? 'unknown';
  try {
    const text = fs.readFileSync('/proc/cpuinfo', 'utf8');
    const line = /^(?:flags|Features)\s*:\s*(.*)$/m.exec(text);
    if (line) flags = line[1]!.trim().split(/\s+/);
    const name = /^model name\s*:\s*(.*)$/m.exec(text);
    if (name) model = name[1]!.trim();
  } catch {
    // not Linux: features unknown
  }
  const interesting = /^(sse4_2|avx|avx2|fma|f16c|avx512.*|amx.*|asimd.*|sve.*|i8mm|bf16|fphp|dotprod)$/;
  let cgroupLimit: number | null = null;
  try {
    const [quota, period] = fs.readFileSync('/sys/fs/cgroup/cpu.max', 'utf8').trim().split(/\s+/);
    if (quota !== 'max' && period) cgroupLimit = Number(quota) / Number(period);
  } catch {
    // cgroup v1 or none: no limit reported
  }
  return {
    model,
    logical: os.cpus().length,
    availableParallelism: os.availableParallelism(),
    cgroupLimit,
    features: flags.filter((f) => interesting.test(f)),
    avx2: flags.includes('avx2'),
    avx512: flags.includes('avx512f'),
    amx: flags.some((f) => f.startsWith('amx')),
  };
}

const SHARED_EXT = process.platform === 'win32' ? '.dll' : process.platform === 'darwin' ? '.dylib' : '.so';

/** Why a GPU provider of the ORT library at `ortLibrary` can or cannot run here. */
function gpuProvider(name: string, ortLibrary: string, file: string, env: NodeJS.ProcessEnv): ProviderStatus {
  const dir = path.dirname(ortLibrary);
  const lib = path.join(dir, `libonnxruntime_providers_${file}${SHARED_EXT}`);
  const shared = path.join(dir, `libonnxruntime_providers_shared${SHARED_EXT}`);
  const base = { name, available: false, selectable: true };
  if (!fs.existsSync(lib)) {
    // The platform package carries the CPU library only; onnxruntime-node downloads the GPU
    // provider libraries when its install script is allowed.
    return { ...base, reason: `compiled in, but ${path.basename(lib)} is not installed beside the ONNX Runtime library` };
  }
  const problems: string[] = [];
  if (!fs.existsSync(shared)) problems.push(`${path.basename(shared)} is missing`);
  const missing = missingLibraries(lib, env);
  if (missing === null) problems.push('its dependencies could not be read (not an ELF file)');
  else if (missing.length > 0) problems.push(`missing libraries: ${missing.join(', ')}`);
  if (findLibrary('libcuda.so.1', dir, [], env) === undefined) problems.push('no NVIDIA driver (libcuda.so.1 not found)');
  else if (!fs.existsSync('/dev/nvidia0') && !fs.existsSync('/dev/nvidiactl')) problems.push('no NVIDIA device node (/dev/nvidia0)');
  return problems.length > 0 ? { ...base, reason: problems.join('; ') } : { ...base, available: true, reason: `its libraries and a driver are present: executionProviders: ['${file}', 'cpu']` };
}

export function providerStatus(ortLibrary: string, compiledIn: string[], env: NodeJS.ProcessEnv): ProviderStatus[] {
  return compiledIn.map((name) => {
    if (name === 'CPUExecutionProvider') return { name, available: true, selectable: true };
    if (name === 'CUDAExecutionProvider') return gpuProvider(name, ortLibrary, 'cuda', env);
    if (name === 'TensorrtExecutionProvider') return gpuProvider(name, ortLibrary, 'tensorrt', env);
    return { name, available: false, selectable: false, reason: 'compiled into this ONNX Runtime; nimify does not use it' };
  });
}

/** The installed version of `name` as Node would find it from here or the cwd (its package.json need not be exported). */
function packageVersion(name: string): string | undefined {
  for (const start of [__dirname, process.cwd()]) {
    for (let dir = start; ; dir = path.dirname(dir)) {
      const file = path.join(dir, 'node_modules', name, 'package.json');
      if (fs.existsSync(file)) return (JSON.parse(fs.readFileSync(file, 'utf8')) as { version?: string }).version;
      if (path.dirname(dir) === dir) break;
    }
  }
  return undefined;
}

function optionalPackages(): DoctorReport['packages'] {
  const out: DoctorReport['packages'] = [];
  const sharpVersion = packageVersion('sharp');
  try {
    const sharp = optionalModule<{ versions?: { vips?: string } }>('sharp', 'image preprocessing');
    out.push({ name: 'sharp', installed: true, version: sharpVersion, detail: `libvips ${sharp.versions?.vips ?? '?'}`, neededFor: 'image preprocessing (predict)' });
  } catch (err) {
    out.push({ name: 'sharp', installed: false, version: sharpVersion, detail: (err as Error).message, neededFor: 'image preprocessing (predict)' });
  }
  const tokVersion = packageVersion('tokenizers');
  out.push(tokVersion ? { name: 'tokenizers', installed: true, version: tokVersion, neededFor: 'text preprocessing (predict)' } : { name: 'tokenizers', installed: false, detail: 'not installed: `npm install tokenizers` to use text pipelines', neededFor: 'text preprocessing (predict)' });
  return out;
}

/** Gathers the report. Loading ORT is process-wide: doctor runs in its own process. */
export async function diagnose(env: NodeJS.ProcessEnv = process.env): Promise<DoctorReport> {
  const report: DoctorReport = {
    nimify: version,
    node: { version: process.version, napi: process.versions.napi ?? '?', platform: '', glibc: glibcVersion() },
    addon: { ok: false, platformPackage: '', tried: [] },
    onnxRuntime: { ok: false, tried: [], notes: [] },
    modelRun: { ok: false },
    cpu: cpuInfo(),
    memory: { totalMB: Math.round(os.totalmem() / 2 ** 20), freeMB: Math.round(os.freemem() / 2 ** 20) },
    providers: [],
    packages: optionalPackages(),
    runnable: false,
  };
  try {
    const a = addonInfo();
    Object.assign(report.addon, { ok: true, path: a.path, origin: a.origin, platformPackage: a.platformPackage, tried: a.tried });
    report.node.platform = a.platform;
  } catch (err) {
    report.addon.error = (err as Error).message;
    report.addon.tried = addonCandidates();
    return report;
  }
  let compiledIn: string[] = [];
  try {
    const rt = runtimeInfo();
    Object.assign(report.onnxRuntime, { ok: true, library: rt.library, version: rt.version, apiVersion: rt.apiVersion });
    compiledIn = rt.providers;
  } catch (err) {
    report.onnxRuntime.error = (err as NimifyError).message;
  }
  if (report.onnxRuntime.library) report.providers = providerStatus(report.onnxRuntime.library, compiledIn, env);
  const attempts = runtimeAttempts() ?? { detail: runtimeCandidates(env).detail, notes: [] };
  report.onnxRuntime.tried = attempts.detail;
  report.onnxRuntime.notes = attempts.notes;
  if (!report.onnxRuntime.ok) return report;
  try {
    const model = await loadModel(Buffer.from(PROBE_MODEL, 'base64'));
    const out = model.inferSync({ x: new Tensor('float32', new Float32Array([-1, 0, 2, -3]), [1, 4]) });
    const y = Array.from(out.y!.data as Float32Array);
    await model.dispose();
    if (y.join() !== '0,0,2,0') throw new Error(`the probe model answered ${y.join()}, expected 0,0,2,0`);
    report.modelRun.ok = true;
  } catch (err) {
    report.modelRun.error = (err as Error).message;
  }
  report.runnable = report.modelRun.ok;
  return report;
}

function yesNo(b: boolean): string {
  return b ? 'yes' : 'no';
}

export function formatReport(r: DoctorReport): string {
  const lines: string[] = [`nimify ${r.nimify} doctor`];
  const row = (label: string, text: string) => lines.push(`  ${label.padEnd(13)}${text}`);
  const more = (text: string) => lines.push(`  ${''.padEnd(13)}${text}`);
  const tried = (list: LoaderCandidate[], used?: string) => {
    for (const c of list) more(`${c.path === used ? 'used ' : 'tried'} ${c.path} [${c.origin}]${c.error ? `: ${c.error}` : ''}`);
  };
  row('node', `${r.node.version} (N-API ${r.node.napi}), ${r.node.platform || `${process.platform}-${process.arch}`}${r.node.glibc ? `, glibc ${r.node.glibc}` : ''}`);
  if (r.addon.ok) row('addon', `${r.addon.origin === 'prebuilt' ? `prebuilt (${r.addon.platformPackage})` : 'source build'}: ${r.addon.path}`);
  else row('addon', `NOT LOADED: ${r.addon.error?.split('\n')[0]}`);
  tried(r.addon.tried, r.addon.path);
  if (r.addon.ok) {
    if (r.onnxRuntime.ok) row('onnxruntime', `${r.onnxRuntime.version} (C API ${r.onnxRuntime.apiVersion}): ${r.onnxRuntime.library}`);
    else row('onnxruntime', 'NOT LOADED');
    tried(r.onnxRuntime.tried, r.onnxRuntime.library);
    for (const n of r.onnxRuntime.notes) more(`note: ${n}`);
    if (r.onnxRuntime.ok) row('model run', r.modelRun.ok ? 'a built-in model loaded and ran: ok' : `FAILED: ${r.modelRun.error}`);
  }
  row('cpu', `${r.cpu.model}; ${r.cpu.logical} logical CPUs, ${r.cpu.availableParallelism} available${r.cpu.cgroupLimit !== null ? `, cgroup limit ${r.cpu.cgroupLimit}` : ''}`);
  more(`AVX2 ${yesNo(r.cpu.avx2)}, AVX-512 ${yesNo(r.cpu.avx512)}, AMX ${yesNo(r.cpu.amx)}; flags: ${r.cpu.features.join(' ') || 'unknown'}`);
  row('memory', `${r.memory.totalMB} MB total, ${r.memory.freeMB} MB free`);
  for (const [i, p] of r.providers.entries()) {
    (i === 0 ? (t: string) => row('providers', t) : more)(`${p.name}: ${p.available ? 'available' : 'not available'}${p.reason ? ` (${p.reason})` : ''}`);
  }
  for (const [i, p] of r.packages.entries()) {
    (i === 0 ? (t: string) => row('packages', t) : more)(`${p.name}${p.version ? ` ${p.version}` : ''}: ${p.installed ? 'available' : 'not available'}${p.detail ? ` (${p.detail})` : ''}; for ${p.neededFor}`);
  }
  lines.push(r.runnable ? 'result: nimify can run models on this machine (CPU)' : 'result: nimify CANNOT run a model on this machine (see above)');
  return lines.join('\n');
}

export async function run(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseFlags(argv, DOCTOR_FLAGS, io.env, 'doctor');
  if (values.help) {
    io.out(USAGE);
    return EXIT.OK;
  }
  if (positionals.length > 0) throw new NimifyError('INVALID_ARGUMENT', `doctor: expected no arguments, received ${positionals.join(' ')}`);
  const report = await diagnose(io.env);
  io.out(values.json ? JSON.stringify(report, null, 2) : formatReport(report));
  return report.runnable ? EXIT.OK : EXIT.NOT_RUNNABLE;
}
