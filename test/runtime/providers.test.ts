// Execution providers (issue 15 item 1): the options table and its validation, and what real ONNX
// Runtime does with the requests. The ORT library here is onnxruntime-node's, installed without
// its GPU provider libraries (ONNXRUNTIME_NODE_INSTALL=skip), so the CUDA and TensorRT providers
// are compiled in but cannot load: exactly the "library missing" fallback path.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadModel, NimifyError, runtimeInfo, Tensor } from '../../src';
import { findFileOption, PROVIDERS, toProviderRequests } from '../../src/runtime/providers';
import { parseModelConfig } from '../../src/repository/config';
import { serveOptions } from '../../src/cli/serve';
import { invalidArg, model } from '../helpers';


describe('toProviderRequests: options table and validation', () => {
  it('translates names and camelCase options into ORT provider keys, in order, without cpu', () => {
    const r = toProviderRequests('eps', [
      { name: 'tensorrt', fp16: true, engineCache: { path: '/cache' }, maxWorkspaceSize: 1 << 30, profiles: { min: { x: [1, 64] }, opt: { x: [8, 64] }, max: { x: [32, 64] } }, dlaCore: 1 },
      { name: 'cuda', deviceId: 1, gpuMemLimit: 2 ** 31, arenaExtendStrategy: 'sameAsRequested', cudnnConvAlgoSearch: 'heuristic', enableCudaGraph: false, required: true },
      'cpu',
    ]);
    expect(r).toHaveLength(2);
    const [trt, cuda] = r;
    expect(trt).toMatchObject({ name: 'tensorrt', ortName: 'TensorrtExecutionProvider', required: false, library: '' });
    expect(Object.fromEntries(trt!.keys.map((k, i) => [k, trt!.values[i]]))).toEqual({
      trt_fp16_enable: '1',
      trt_engine_cache_enable: '1',
      trt_engine_cache_path: '/cache',
      trt_max_workspace_size: String(1 << 30),
      trt_profile_min_shapes: 'x:1x64',
      trt_profile_opt_shapes: 'x:8x64',
      trt_profile_max_shapes: 'x:32x64',
      trt_dla_enable: '1',
      trt_dla_core: '1',
    });
    expect(cuda).toMatchObject({ name: 'cuda', ortName: 'CUDAExecutionProvider', required: true });
    expect(Object.fromEntries(cuda!.keys.map((k, i) => [k, cuda!.values[i]]))).toEqual({
      device_id: '1',
      gpu_mem_limit: String(2 ** 31),
      arena_extend_strategy: 'kSameAsRequested',
      cudnn_conv_algo_search: 'HEURISTIC',
      enable_cuda_graph: '0',
    });
    expect(toProviderRequests('eps', ['cpu'])).toEqual([]);
    expect(PROVIDERS.cuda.ortName).toBe('CUDAExecutionProvider');
  });

  it('passes a plugin provider through with its library and options as strings', () => {
    const [p] = toProviderRequests('eps', [{ name: 'MyEp', library: '/opt/libmyep.so', options: { level: 3, fast: true, mode: 'x' } }]);
    expect(p).toEqual({ name: 'MyEp', ortName: '', required: false, library: '/opt/libmyep.so', keys: ['level', 'fast', 'mode'], values: ['3', '1', 'x'] });
    // A known provider from a plugin library keeps its typed options.
    const [c] = toProviderRequests('eps', [{ name: 'cuda', library: '/opt/libcuda_ep.so', deviceId: 0 }]);
    expect(c).toMatchObject({ name: 'cuda', ortName: 'CUDAExecutionProvider', library: '/opt/libcuda_ep.so', keys: ['device_id'], values: ['0'] });
  });

  it('refuses what ORT would misread, naming the field, the expectation and the value', () => {
    invalidArg(() => toProviderRequests('eps', []), /^eps: expected a non-empty array/);
    invalidArg(() => toProviderRequests('eps', 'cuda'), /^eps: expected a non-empty array .*received the string "cuda"/);
    invalidArg(() => toProviderRequests('eps', ['tpu']), /^eps\[0\]\.name: expected one of cpu, cuda, tensorrt .*received the string "tpu"/);
    invalidArg(() => toProviderRequests('eps', [42]), /^eps\[0\]: expected a provider name such as 'cuda' or an object .*received number 42/);
    invalidArg(() => toProviderRequests('eps', [{ deviceId: 0 }]), /^eps\[0\]\.name: expected a provider name/);
    invalidArg(() => toProviderRequests('eps', ['cuda', { name: 'cuda' }]), /^eps\[1\]: expected each provider listed once/);
    invalidArg(() => toProviderRequests('eps', [{ name: 'cuda', deviceID: 0 }]), /^eps\[0\]: unknown option 'deviceID'/);
    invalidArg(() => toProviderRequests('eps', [{ name: 'cuda', deviceId: -1 }]), /^eps\[0\]\.deviceId: expected an integer in \[0, 1023\], received number -1/);
    invalidArg(() => toProviderRequests('eps', [{ name: 'cuda', gpuMemLimit: 1.5 }]), /^eps\[0\]\.gpuMemLimit: expected an integer/);
    invalidArg(() => toProviderRequests('eps', [{ name: 'cuda', arenaExtendStrategy: 'grow' }]), /^eps\[0\]\.arenaExtendStrategy: expected one of/);
    invalidArg(() => toProviderRequests('eps', [{ name: 'cuda', enableCudaGraph: 'yes' }]), /^eps\[0\]\.enableCudaGraph: expected true or false/);
    invalidArg(() => toProviderRequests('eps', [{ name: 'cuda', required: 1 }]), /^eps\[0\]\.required: expected true or false/);
    invalidArg(() => toProviderRequests('eps', [{ name: 'cuda', library: '' }]), /^eps\[0\]\.library: expected a non-empty string/);
    invalidArg(() => toProviderRequests('eps', [{ name: 'cpu', deviceId: 0 }]), /^eps\[0\]: unknown option 'deviceId'/);
    invalidArg(() => toProviderRequests('eps', [{ name: 'tensorrt', engineCache: '/tmp' }]), /^eps\[0\]\.engineCache: expected a plain object/);
    invalidArg(() => toProviderRequests('eps', [{ name: 'tensorrt', builderOptimizationLevel: 6 }]), /builderOptimizationLevel: expected an integer in \[0, 5\]/);
    invalidArg(() => toProviderRequests('eps', [{ name: 'tensorrt', profiles: { min: { x: [1] }, opt: { x: [1] } } }]), /profiles\.max: expected a plain object/);
    invalidArg(() => toProviderRequests('eps', [{ name: 'tensorrt', profiles: { min: { x: [1, 2] }, opt: { x: [1] }, max: { x: [1, 2] } } }]), /profiles\.opt\.x: expected dims of rank 2/);
    invalidArg(() => toProviderRequests('eps', [{ name: 'tensorrt', profiles: { min: { 'a,b': [1] }, opt: {}, max: {} } }]), /profiles\.min: expected input names without/);
    invalidArg(() => toProviderRequests('eps', [{ name: 'MyEp', library: '/x.so', options: { k: {} } }]), /options\.k: expected a string, number or boolean/);
    invalidArg(() => toProviderRequests('eps', [{ name: 'MyEp', library: '/x.so', deviceId: 0 }]), /unknown option 'deviceId'/);
  });

  it('finds the options that name files, which only the operator may set', () => {
    expect(findFileOption(['cuda', { name: 'cuda', deviceId: 0 }])).toBeNull();
    expect(findFileOption(['cpu', { name: 'MyEp', library: '/x.so' }])).toBe('[1].library');
    expect(findFileOption([{ name: 'tensorrt', timingCache: { path: '/t' } }])).toBe('[0].timingCache');
  });
});

// True where onnxruntime-node was installed without its GPU providers (the project's setup).
const providerLibsAbsent = (() => {
  const lib = runtimeInfo()?.library;
  return lib !== undefined && !fs.existsSync(path.join(path.dirname(lib), 'libonnxruntime_providers_shared.so'));
})();

describe.runIf(providerLibsAbsent)('loadModel() with providers whose libraries are missing (real ONNX Runtime)', () => {
  const warnings: Error[] = [];
  const onWarning = (w: Error): void => void warnings.push(w);
  afterEach(() => {
    process.off('warning', onWarning);
    warnings.length = 0;
  });

  it('skips cuda and tensorrt with ORT\'s reason and a process warning, runs on the CPU, and says so', async () => {
    process.on('warning', onWarning);
    const m = await loadModel(model('mlp_tiny.onnx'), { executionProviders: ['tensorrt', { name: 'cuda', deviceId: 0 }, 'cpu'] });
    try {
      expect(m.providers).toEqual(['cpu']);
      expect(m.skippedProviders.map((s) => s.name)).toEqual(['tensorrt', 'cuda']);
      for (const s of m.skippedProviders) {
        expect(s.reason).toMatch(/libonnxruntime_providers_shared\.so/);
        expect(s.reason).toMatch(/must sit beside the ONNX Runtime library/);
      }
      const out = await m.infer({ x: new Tensor('float32', new Float32Array(64).fill(0.5), [1, 64]) });
      expect(out.y!.dims).toEqual([1, 10]);
      await new Promise((r) => setImmediate(r)); // process warnings are emitted on the next tick
      const ours = warnings.filter((w) => (w as Error & { code?: string }).code === 'NIMIFY_EP_SKIPPED');
      expect(ours.map((w) => w.message)).toEqual([expect.stringMatching(/^execution provider 'tensorrt' skipped: /), expect.stringMatching(/^execution provider 'cuda' skipped: /)]);
    } finally {
      await m.dispose();
    }
  });

  it('a CPU-only model reports its provider and skips nothing', async () => {
    const m = await loadModel(model('mlp_tiny.onnx'));
    expect(m.providers).toEqual(['cpu']);
    expect(m.skippedProviders).toEqual([]);
    await m.dispose();
  });

  it('fails the load with EP_UNAVAILABLE when a required provider cannot be used, listing what was tried', async () => {
    await expect(loadModel(model('mlp_tiny.onnx'), { executionProviders: ['tensorrt', { name: 'cuda', required: true }] })).rejects.toMatchObject({
      code: 'EP_UNAVAILABLE',
      message: expect.stringMatching(/the required provider 'cuda' cannot be used: .*libonnxruntime_providers_shared\.so.*\(also tried: tensorrt \(/s),
    });
    const err = await loadModel(model('mlp_tiny.onnx'), { executionProviders: [{ name: 'tensorrt', required: true, fp16: true }] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NimifyError);
    expect((err as NimifyError).httpStatus).toBe(503);
  });

  it('a plugin library that is missing or is not an execution provider is skipped (or refused when required) with ORT\'s reason', async () => {
    const missing = '/nonexistent/libnimify_test_ep.so';
    const m = await loadModel(model('mlp_tiny.onnx'), { executionProviders: [{ name: 'cuda', library: missing }] });
    expect(m.providers).toEqual(['cpu']);
    expect(m.skippedProviders[0]!.reason).toMatch(/loading execution-provider library '\/nonexistent\/libnimify_test_ep\.so'.*cannot open shared object file/);
    await m.dispose();
    // A real shared library without the plugin-EP entry point: ORT's own message names it.
    const notAnEp = runtimeInfo()!.library;
    await expect(loadModel(model('mlp_tiny.onnx'), { executionProviders: [{ name: 'SomeEp', library: notAnEp, required: true }] })).rejects.toMatchObject({
      code: 'EP_UNAVAILABLE',
      message: expect.stringMatching(/CreateEpFactories/),
    });
  });

  it('the addon re-checks the request shape and never trusts it', async () => {
    const { getBinding } = await import('../../src/runtime/binding');
    const binding = getBinding();
    await expect(Promise.resolve().then(() => binding.createSession(model('mlp_tiny.onnx'), { executionProviders: [{ name: 'cuda' }] } as never))).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/executionProviders\[0\] is malformed/) });
    await expect(Promise.resolve().then(() => binding.createSession(model('mlp_tiny.onnx'), { executionProviders: [{ name: 'cuda', ortName: '', library: '', required: false, keys: ['a'], values: [] }] } as never))).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });
});

describe('config.json and nimify serve accept the same providers', () => {
  it('config.json runtime.executionProviders is validated by the same table; file options are refused through the repository API', () => {
    const c = parseModelConfig('m', { runtime: { executionProviders: [{ name: 'cuda', deviceId: 1 }, 'cpu'] } });
    expect(c.runtime?.executionProviders).toEqual([{ name: 'cuda', deviceId: 1 }, 'cpu']);
    invalidArg(() => parseModelConfig('m', { runtime: { executionProviders: [{ name: 'cuda', deviceId: 'one' }] } }), /runtime\.executionProviders\[0\]\.deviceId: expected an integer/);
    expect(parseModelConfig('m', { runtime: { executionProviders: [{ name: 'cuda', library: '/opt/libcuda_ep.so' }] } }).runtime?.executionProviders).toHaveLength(1);
    invalidArg(() => parseModelConfig('m', { runtime: { executionProviders: [{ name: 'cuda', library: '/tmp/evil.so' }] } }, { fromApi: true }), /runtime\.executionProviders\[0\]\.library: cannot be set through the repository API/);
    invalidArg(() => parseModelConfig('m', { runtime: { executionProviders: [{ name: 'tensorrt', engineCache: { path: '/etc' } }] } }, { fromApi: true }), /\[0\]\.engineCache: cannot be set through the repository API/);
  });

  it('--execution-provider takes a list or JSON and is checked at startup', () => {
    const runtime = (argv: string[], env: NodeJS.ProcessEnv = {}) => serveOptions(['repo', ...argv], env).options.modelDefaults?.runtime;
    expect(runtime(['--execution-provider', 'cuda,cpu'])?.executionProviders).toEqual(['cuda', 'cpu']);
    expect(runtime(['--execution-provider', '{"name":"cuda","deviceId":1,"required":true}'])?.executionProviders).toEqual([{ name: 'cuda', deviceId: 1, required: true }]);
    expect(runtime([], { NIMIFY_EXECUTION_PROVIDER: '["tensorrt","cpu"]' })?.executionProviders).toEqual(['tensorrt', 'cpu']);
    invalidArg(() => serveOptions(['repo', '--execution-provider', 'gpu']), /--execution-provider\[0\]\.name: expected one of cpu, cuda, tensorrt/);
    invalidArg(() => serveOptions(['repo', '--execution-provider', '[{"name":"cuda",']), /--execution-provider: expected a list such as cuda,cpu or valid JSON/);
  });
});
