/**
 * `nimify bench <url>`: the closed loop over HTTP against any KServe v2 / Open Inference
 * Protocol server (nimify, Triton, KServe). autocannon drives `concurrency` keep-alive
 * connections, one request in flight on each; the request bodies (JSON, or the binary tensor
 * extension with --binary) are built once from the model's metadata and cycled. Latency and
 * counts come from autocannon's per-response events inside the measured window.
 */
import { performance } from 'node:perf_hooks';
import autocannon from 'autocannon';
import { NimifyError } from '../runtime/errors';
import { DATATYPE_TO_TYPE, isDatatype, toDatatype } from '../protocol/datatypes';
import { tensorBytes, tensorJson } from '../protocol/response';
import type { Tensor } from '../runtime/tensor';
import { LatencyHistogram, levelResult, type InputSpec, type LevelResult, type LoopOptions, type PlannedInput } from './bench-engine';
import { parseServerUrl, urlModel } from './target';

export interface HttpTarget {
  /** Server base URL without a trailing slash. */
  base: string;
  model: string;
  version: string | undefined;
  inputs: InputSpec[];
  outputs: string[];
  /** Whether dim 0 is the batch dim (from the model's config where the server says, else every dim 0 variable). */
  batched: boolean;
  headers: Record<string, string>;
}

async function getJson(url: string, init: RequestInit): Promise<{ status: number; body: unknown }> {
  let res: Response;
  try {
    res = await fetch(url, { ...init, signal: AbortSignal.timeout(30_000) });
  } catch (err) {
    throw new NimifyError('NOT_READY', `${url}: the server did not answer (${(err as Error).cause instanceof Error ? ((err as Error).cause as Error).message : (err as Error).message})`);
  }
  const text = await res.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    /* not JSON: kept as text for the error message */
  }
  return { status: res.status, body };
}

/** Reads the model's metadata (and, where the server has it, its config) from a running server. */
export async function resolveHttpTarget(text: string, modelFlag: string | undefined, apiKey: string | undefined): Promise<HttpTarget> {
  const u = parseServerUrl(text);
  const headers: Record<string, string> = apiKey ? { authorization: `Bearer ${apiKey}` } : {};
  let model = urlModel(u, { model: modelFlag }).model;
  if (model === undefined) {
    const idx = await getJson(`${u.base}/v2/repository/index`, { method: 'POST', headers: { ...headers, 'content-type': 'application/json' }, body: '{}' });
    const names = Array.isArray(idx.body) ? [...new Set(idx.body.map((e) => (e as { name?: unknown }).name).filter((n): n is string => typeof n === 'string'))] : [];
    if (names.length !== 1) {
      throw new NimifyError('INVALID_ARGUMENT', `--model: the server at ${u.base} serves ${names.length === 0 ? 'no model it would list' : `${names.length} models (${names.join(', ')})`}; name one with --model`);
    }
    model = names[0];
  }
  const path = `${u.base}/v2/models/${encodeURIComponent(model)}${u.version ? `/versions/${encodeURIComponent(u.version)}` : ''}`;
  const meta = await getJson(path, { headers });
  if (meta.status !== 200) {
    throw new NimifyError(meta.status === 404 ? 'NOT_FOUND' : 'NOT_READY', `GET ${path} answered ${meta.status}: ${typeof meta.body === 'string' ? meta.body.slice(0, 200) : JSON.stringify(meta.body).slice(0, 200)}`);
  }
  const body = meta.body as { inputs?: Array<{ name: string; datatype: string; shape: number[] }>; outputs?: Array<{ name: string; datatype: string; shape: number[] }> };
  if (!Array.isArray(body.inputs) || !Array.isArray(body.outputs)) throw new NimifyError('INVALID_ARGUMENT', `GET ${path}: expected model metadata with inputs and outputs, received ${JSON.stringify(body).slice(0, 200)}`);
  const inputs: InputSpec[] = body.inputs.map((t) => {
    if (!isDatatype(t.datatype)) throw new NimifyError('UNSUPPORTED', `GET ${path}: input '${t.name}' has datatype ${JSON.stringify(t.datatype)}, which nimify bench cannot generate`);
    return { name: t.name, type: DATATYPE_TO_TYPE[t.datatype], shape: t.shape };
  });
  // nimify's config says batching.batchDim; Triton's says max_batch_size > 0. Else: every dim 0 variable.
  let batched: boolean | undefined;
  const config = await getJson(`${path}/config`, { headers }).catch(() => null);
  if (config?.status === 200 && typeof config.body === 'object' && config.body !== null) {
    const c = config.body as { batching?: { batchDim?: boolean } | false; max_batch_size?: number };
    if (c.batching === false) batched = [...body.inputs, ...body.outputs].every((t) => t.shape.length > 0 && t.shape[0] === -1);
    else if (typeof c.batching?.batchDim === 'boolean') batched = c.batching.batchDim;
    else if (typeof c.max_batch_size === 'number') batched = c.max_batch_size > 0;
  }
  batched ??= [...body.inputs, ...body.outputs].every((t) => t.shape.length > 0 && t.shape[0] === -1);
  return { base: u.base, model, version: u.version, inputs, outputs: body.outputs.map((o) => o.name), batched, headers };
}

/** One autocannon request per set of input tensors: JSON, or the binary extension (binary outputs too). */
export function buildRequests(target: HttpTarget, planned: readonly PlannedInput[], sets: ReadonlyArray<Record<string, Tensor>>, binary: boolean): autocannon.Request[] {
  const path = `${new URL(target.base).pathname.replace(/\/+$/, '')}/v2/models/${encodeURIComponent(target.model)}${target.version ? `/versions/${encodeURIComponent(target.version)}` : ''}/infer`;
  return sets.map((feeds) => {
    if (!binary) {
      const body = `{"inputs":[${planned.map((p) => tensorJson(p.name, feeds[p.name])).join(',')}]}`;
      return { method: 'POST', path, headers: { ...target.headers, 'content-type': 'application/json' }, body };
    }
    const chunks = planned.map((p) => tensorBytes(feeds[p.name]));
    const header = Buffer.from(JSON.stringify({
      inputs: planned.map((p, i) => ({ name: p.name, shape: p.dims, datatype: toDatatype(p.type), parameters: { binary_data_size: chunks[i].length } })),
      parameters: { binary_data_output: true },
    }));
    return {
      method: 'POST',
      path,
      headers: { ...target.headers, 'content-type': 'application/octet-stream', 'inference-header-content-length': String(header.length) },
      body: Buffer.concat([header, ...chunks]),
    };
  });
}

/**
 * One concurrency level over HTTP: `connections = concurrency`, warmup, then the measured window.
 * Non-2xx responses, socket errors and timeouts are errors; latency is of the 2xx responses.
 */
export function httpLevel(target: HttpTarget, requests: autocannon.Request[], o: LoopOptions & { timeoutS?: number }): Promise<LevelResult> {
  return new Promise<LevelResult>((resolve, reject) => {
    const hist = new LatencyHistogram();
    const statusCodes: Record<string, number> = {};
    let measuring = false;
    let ok = 0;
    let non2xx = 0;
    let socketErrors = 0;
    let timeouts = 0;
    let firstError: string | null = null;
    const t0 = performance.now();
    let windowStart = 0;
    let windowEnd = 0;
    const progress = o.onProgress ? setInterval(() => o.onProgress!(performance.now() - t0, o.warmupMs + o.durationMs, ok), 100) : undefined;
    const inst = autocannon(
      // The run ends on our timer (inst.stop()); autocannon's own duration is only a backstop.
      { url: target.base, connections: o.concurrency, duration: (o.warmupMs + o.durationMs) / 1000 + 3600, timeout: o.timeoutS ?? 60, requests },
      (err) => {
        if (progress) clearInterval(progress);
        if (err) {
          hist.destroy();
          reject(new NimifyError('NOT_READY', `load generator failed against ${target.base}: ${err.message}`));
          return;
        }
        o.onProgress?.(o.warmupMs + o.durationMs, o.warmupMs + o.durationMs, ok);
        resolve(levelResult(o, windowEnd - windowStart, hist, { ok, errors: non2xx + socketErrors, firstError }, null, { statusCodes, non2xx, socketErrors, timeouts }));
      },
    );
    inst.on('response', (_client: unknown, status: number, _bytes: number, ms: number) => {
      if (!measuring) return;
      statusCodes[status] = (statusCodes[status] ?? 0) + 1;
      if (status >= 200 && status < 300) {
        ok++;
        hist.recordMs(ms);
      } else {
        non2xx++;
        firstError ??= `HTTP ${status}`;
      }
    });
    inst.on('reqError', (err: Error) => {
      if (!measuring) return;
      socketErrors++;
      if (/timed out/.test(err?.message ?? '')) timeouts++;
      firstError ??= err?.message ?? String(err);
    });
    setTimeout(() => {
      windowStart = performance.now();
      measuring = true;
      setTimeout(() => {
        windowEnd = performance.now();
        measuring = false;
        inst.stop();
      }, o.durationMs);
    }, o.warmupMs);
  });
}
