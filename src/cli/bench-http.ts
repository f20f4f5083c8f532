/**
 * `nimify bench <url>`: the closed loop over HTTP against any KServe v2 / Open Inference
 * Protocol server (nimify, Triton, KServe). autocannon drives `concurrency` keep-alive
 * connections, one request in flight on each; the request bodies (JSON, or the binary tensor
 * extension with --binary) are built once from the model's metadata and cycled. Latency and
 * counts come from autocannon's per-response events inside the measured window.
 */
import { performance } from 'node:perf_hooks';
import autocannon from 'autocannon';
import { NimifyError } from '../errors';
import { DATATYPE_TO_TYPE, fromBf16Bits, fromHalfBits, isDatatype, type Datatype } from '../protocol/datatypes';
import type { Tensor } from '../tensor';
import { LatencyHistogram, type InputSpec, type LevelResult, type LoopOptions, type PlannedInput } from './bench-engine';

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

/** The URL the user gave, checked: http(s) only; a /v2/models/<m>[/versions/<v>] path names the model. */
export function parseServerUrl(text: string): { base: string; model: string | undefined; version: string | undefined } {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new NimifyError('INVALID_ARGUMENT', `<url>: expected http(s)://host:port of a KServe v2 server, received ${JSON.stringify(text)}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new NimifyError('INVALID_ARGUMENT', `<url>: expected an http: or https: URL, received ${JSON.stringify(text)}`);
  }
  if (url.search || url.hash) throw new NimifyError('INVALID_ARGUMENT', `<url>: expected no query or fragment, received ${JSON.stringify(text)}`);
  const m = /^(.*?)\/v2\/models\/([^/]+)(?:\/versions\/([^/]+))?\/?$/.exec(url.pathname);
  const prefix = (m ? m[1] : url.pathname).replace(/\/+$/, '');
  return { base: `${url.origin}${prefix}`, model: m ? decodeURIComponent(m[2]) : undefined, version: m?.[3] ? decodeURIComponent(m[3]) : undefined };
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
  if (u.model !== undefined && modelFlag !== undefined && modelFlag !== u.model) {
    throw new NimifyError('INVALID_ARGUMENT', `--model: the URL names model '${u.model}', --model says '${modelFlag}'`);
  }
  const headers: Record<string, string> = apiKey ? { authorization: `Bearer ${apiKey}` } : {};
  let model = u.model ?? modelFlag;
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

/** A tensor's values as the JSON encoding carries them (FP16/BF16 as numbers, INT64 as numbers, BOOL as booleans). */
function jsonData(t: Tensor): unknown[] {
  const d = t.data as ArrayLike<number | bigint | string>;
  switch (t.type) {
    case 'float16':
      return Array.from(d as ArrayLike<number>, fromHalfBits);
    case 'bfloat16':
      return Array.from(d as ArrayLike<number>, fromBf16Bits);
    case 'int64':
    case 'uint64':
      return Array.from(d as ArrayLike<bigint>, Number);
    case 'bool':
      return Array.from(d as ArrayLike<number>, (v) => v !== 0);
    default:
      return Array.from(d);
  }
}

/** The binary tensor extension's bytes of one tensor (BYTES: 4-byte little-endian length, then UTF-8). */
function binaryData(t: Tensor): Buffer {
  if (t.type === 'string') return Buffer.concat((t.data as string[]).flatMap((s) => {
    const b = Buffer.from(s, 'utf8');
    const len = Buffer.alloc(4);
    len.writeUInt32LE(b.length);
    return [len, b];
  }));
  const d = t.data as ArrayBufferView;
  return Buffer.from(d.buffer, d.byteOffset, d.byteLength);
}

const datatypeOf = (type: string): Datatype => (Object.entries(DATATYPE_TO_TYPE).find(([, t]) => t === type)![0] as Datatype);

/** One autocannon request per set of input tensors: JSON, or the binary extension (binary outputs too). */
export function buildRequests(target: HttpTarget, planned: readonly PlannedInput[], sets: ReadonlyArray<Record<string, Tensor>>, binary: boolean): autocannon.Request[] {
  const path = `${new URL(target.base).pathname.replace(/\/+$/, '')}/v2/models/${encodeURIComponent(target.model)}${target.version ? `/versions/${encodeURIComponent(target.version)}` : ''}/infer`;
  return sets.map((feeds) => {
    if (!binary) {
      const body = JSON.stringify({ inputs: planned.map((p) => ({ name: p.name, shape: p.dims, datatype: datatypeOf(p.type), data: jsonData(feeds[p.name]) })) });
      return { method: 'POST', path, headers: { ...target.headers, 'content-type': 'application/json' }, body };
    }
    const chunks = planned.map((p) => binaryData(feeds[p.name]));
    const header = Buffer.from(JSON.stringify({
      inputs: planned.map((p, i) => ({ name: p.name, shape: p.dims, datatype: datatypeOf(p.type), parameters: { binary_data_size: chunks[i].length } })),
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
        const seconds = (windowEnd - windowStart) / 1000;
        const result: LevelResult = {
          concurrency: o.concurrency,
          seconds: +seconds.toFixed(3),
          inferences: ok,
          errors: non2xx + socketErrors,
          firstError,
          inferencesPerSec: +(ok / seconds).toFixed(1),
          samplesPerSec: +((ok * o.samples) / seconds).toFixed(1),
          latencyMs: hist.summary(),
          eventLoopDelayP99Ms: null,
          http: { statusCodes, non2xx, socketErrors, timeouts },
        };
        hist.destroy();
        resolve(result);
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
