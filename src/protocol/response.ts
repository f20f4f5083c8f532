/**
 * Encoding of inference responses: JSON text built directly from the typed arrays (one
 * `join(',')` per tensor: exact digits for 64-bit integers, no intermediate JS arrays), or the
 * binary tensor data extension (JSON header + raw little-endian bytes, each output's bytes a view
 * of the tensor ORT wrote, concatenated once).
 */
import type { Tensor } from '../runtime/tensor';
import { fromBf16Bits, fromHalfBits, toDatatype } from './datatypes';

export interface ResponseMeta {
  modelName: string;
  modelVersion: string;
  id: string | undefined;
  parameters: Record<string, unknown> | undefined;
}

export interface EncodedResponse {
  /** The whole body. */
  body: string | Buffer;
  /** Set when outputs are binary: the byte length of the JSON header (Inference-Header-Content-Length). */
  headerLength: number | undefined;
}

/** JSON array text of numeric data; non-finite floats (not representable in JSON) become null. */
function numericJson(t: Tensor): string {
  const d = t.data as ArrayLike<number> & { join(sep: string): string };
  if (t.type === 'float16' || t.type === 'bfloat16') {
    const conv = t.type === 'float16' ? fromHalfBits : fromBf16Bits;
    const f = new Float64Array(d.length);
    for (let i = 0; i < d.length; i++) f[i] = conv(d[i]);
    return floatJson(f);
  }
  if (t.type === 'float32' || t.type === 'float64') return floatJson(d);
  if (t.type === 'bool') {
    let s = '[';
    for (let i = 0; i < d.length; i++) s += (i === 0 ? '' : ',') + (d[i] !== 0 ? 'true' : 'false');
    return `${s}]`;
  }
  return `[${d.join(',')}]`;
}

function floatJson(d: ArrayLike<number> & { join(sep: string): string }): string {
  for (let i = 0; i < d.length; i++) {
    if (!Number.isFinite(d[i])) return JSON.stringify(Array.from(d, (v) => (Number.isFinite(v) ? v : null)));
  }
  return `[${d.join(',')}]`;
}

/** BYTES element i: 4-byte little-endian length, then its UTF-8 bytes. */
function bytesBinary(strings: readonly string[]): Buffer {
  let total = 0;
  const parts = strings.map((s) => {
    const b = Buffer.from(s, 'utf8');
    total += 4 + b.length;
    return b;
  });
  const out = Buffer.allocUnsafe(total);
  let pos = 0;
  for (const b of parts) {
    out.writeUInt32LE(b.length, pos);
    b.copy(out, pos + 4);
    pos += 4 + b.length;
  }
  return out;
}

/** A tensor's bytes as the binary tensor data extension carries them (the typed array's own bytes; BYTES length-prefixed). */
export function tensorBytes(t: Tensor): Buffer {
  if (t.type === 'string') return bytesBinary(t.data as string[]);
  const d = t.data as ArrayBufferView;
  return Buffer.from(d.buffer, d.byteOffset, d.byteLength);
}

/** `{"name":…,"datatype":…,"shape":[…]` of one tensor, left open for its data or parameters. */
function tensorHead(name: string, t: Tensor): string {
  return `{"name":${JSON.stringify(name)},"datatype":"${toDatatype(t.type) ?? 'BYTES'}","shape":[${t.dims.join(',')}]`;
}

/**
 * One tensor as the JSON encoding carries it, `{"name","datatype","shape","data"}`: what the server
 * answers and what the CLI sends (exact digits for 64-bit integers, FP16/BF16 as numbers, BOOL as
 * booleans, non-finite floats null).
 */
export function tensorJson(name: string, t: Tensor): string {
  return `${tensorHead(name, t)},"data":${t.type === 'string' ? JSON.stringify(t.data) : numericJson(t)}}`;
}

export function encodeInferResponse(meta: ResponseMeta, results: Record<string, Tensor>, names: readonly string[], binary: readonly boolean[]): EncodedResponse {
  let json = `{"model_name":${JSON.stringify(meta.modelName)},"model_version":${JSON.stringify(meta.modelVersion)}`;
  if (meta.id !== undefined) json += `,"id":${JSON.stringify(meta.id)}`;
  if (meta.parameters !== undefined) json += `,"parameters":${JSON.stringify(meta.parameters)}`;
  json += ',"outputs":[';
  const chunks: Buffer[] = [];
  for (let i = 0; i < names.length; i++) {
    const t = results[names[i]];
    if (i > 0) json += ',';
    if (binary[i]) {
      const bytes = tensorBytes(t);
      chunks.push(bytes);
      json += `${tensorHead(names[i], t)},"parameters":{"binary_data_size":${bytes.length}}}`;
    } else {
      json += tensorJson(names[i], t);
    }
  }
  json += ']}';
  if (chunks.length === 0) return { body: json, headerLength: undefined };
  const head = Buffer.from(json, 'utf8');
  return { body: Buffer.concat([head, ...chunks]), headerLength: head.length };
}
