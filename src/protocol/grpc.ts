/**
 * The KServe v2 gRPC codec (Triton's `inference.GRPCInferenceService`, proto/grpc_service.proto):
 * loading the .proto, ModelInferRequest → the same DecodedRequest the HTTP route decodes (through
 * decodeInferRequest, so every check and message is the HTTP codec's), and inference results →
 * ModelInferResponse with `raw_output_contents` (what Triton answers and its clients read).
 *
 * Messages are plain objects as @grpc/proto-loader makes them with PROTO_LOADER_OPTIONS: field
 * names as in the .proto, 64-bit integers as decimal strings (exact: int64 contents become a
 * BigInt64Array without passing through a double), bytes as Buffers (views of the received
 * message, which raw inputs are then views of too), enums as their names, defaults filled in.
 * Protocol layer: no server imports. Event-loop thread; O(inputs) for raw contents, O(elements)
 * for typed contents.
 */
import * as path from 'node:path';
import { loadSync, type Options, type PackageDefinition } from '@grpc/proto-loader';
import { NimifyError } from '../runtime/errors';
import type { Tensor } from '../runtime/tensor';
import { isDatatype, toDatatype, type Datatype } from './datatypes';
import { decodeInferRequest, type DecodedRequest, type WireModel } from './request';
import { tensorBytes } from './response';

/** The package's own proto/ folder (from src/protocol or dist/protocol alike). */
export const PROTO_DIR = path.resolve(__dirname, '..', '..', 'proto');
export const GRPC_SERVICE_PROTO = 'grpc_service.proto';
/** Fully qualified service name (what clients call). */
export const GRPC_SERVICE = 'inference.GRPCInferenceService';

/** How the server (and tests' clients) load the .proto: see the file comment. */
export const PROTO_LOADER_OPTIONS: Options = { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true, includeDirs: [PROTO_DIR] };

let loaded: PackageDefinition | null = null;
/** proto/grpc_service.proto (and model_config.proto) loaded once per process. */
export function loadInferenceProto(): PackageDefinition {
  return (loaded ??= loadSync(GRPC_SERVICE_PROTO, PROTO_LOADER_OPTIONS));
}

/** A decimal int64/uint64 as proto-loader hands it over (longs: String); numbers are accepted when encoding. */
export type Int64 = string | number;

export interface InferParameter {
  parameter_choice?: 'bool_param' | 'int64_param' | 'string_param' | 'double_param' | 'uint64_param';
  bool_param?: boolean;
  int64_param?: Int64;
  string_param?: string;
  double_param?: number;
  uint64_param?: Int64;
}

export interface InferTensorContents {
  bool_contents: boolean[];
  int_contents: number[];
  int64_contents: Int64[];
  uint_contents: number[];
  uint64_contents: Int64[];
  fp32_contents: number[];
  fp64_contents: number[];
  bytes_contents: Buffer[];
}

export interface InferInputTensor {
  name: string;
  datatype: string;
  shape: Int64[];
  parameters: Record<string, InferParameter>;
  contents: InferTensorContents | null;
}

export interface ModelInferRequest {
  model_name: string;
  model_version: string;
  id: string;
  parameters: Record<string, InferParameter>;
  inputs: InferInputTensor[];
  outputs: Array<{ name: string; parameters: Record<string, InferParameter> }>;
  raw_input_contents: Buffer[];
}

export interface InferOutputTensor {
  name: string;
  datatype: string;
  shape: Int64[];
  parameters: Record<string, InferParameter>;
}

export interface ModelInferResponse {
  model_name: string;
  model_version: string;
  id: string;
  parameters: Record<string, InferParameter>;
  outputs: InferOutputTensor[];
  raw_output_contents: Buffer[];
}

function bad(message: string): NimifyError {
  return new NimifyError('INVALID_ARGUMENT', message);
}

/**
 * The typed-contents field that carries each datatype's elements (Triton's pairing); null: no
 * typed form, raw_input_contents only.
 */
export const CONTENTS_FIELD: Record<Datatype, keyof InferTensorContents | null> = {
  BOOL: 'bool_contents',
  INT8: 'int_contents', INT16: 'int_contents', INT32: 'int_contents',
  INT64: 'int64_contents',
  UINT8: 'uint_contents', UINT16: 'uint_contents', UINT32: 'uint_contents',
  UINT64: 'uint64_contents',
  FP16: null, BF16: null,
  FP32: 'fp32_contents',
  FP64: 'fp64_contents',
  BYTES: 'bytes_contents',
};

const CONTENTS_FIELDS = ['bool_contents', 'int_contents', 'int64_contents', 'uint_contents', 'uint64_contents', 'fp32_contents', 'fp64_contents', 'bytes_contents'] as const;

/** A decimal 64-bit string as a number when it is exact as one, else left as the string (so the checks downstream name it). */
function int64Value(s: Int64): number | string {
  const n = Number(s);
  return Number.isSafeInteger(n) ? n : String(s);
}

/** One InferParameter as the JSON codec's parameter value (string, number or boolean). */
export function parameterValue(where: string, p: InferParameter): string | number | boolean {
  switch (p?.parameter_choice) {
    case 'bool_param': return p.bool_param === true;
    case 'int64_param': return int64Value(p.int64_param ?? 0);
    case 'uint64_param': return int64Value(p.uint64_param ?? 0);
    case 'string_param': return p.string_param ?? '';
    case 'double_param': return p.double_param ?? 0;
    default: throw bad(`${where}: an InferParameter with no value set (expected one of bool_param, int64_param, uint64_param, string_param, double_param)`);
  }
}

/**
 * Triton's one `triton_`-prefixed request parameter, accepted on gRPC only (Triton refuses every
 * `triton_` key over HTTP): a bool asking a decoupled model for an empty final response.
 * nimify's models answer each request once, so there is never an empty one to send; the flag is
 * checked and consumed, and every stream response carries TRITON_FINAL_RESPONSE = true.
 */
export const TRITON_ENABLE_EMPTY_FINAL = 'triton_enable_empty_final_response';
/** The parameter Triton sets on every ModelStreamInfer response: whether it is its request's last. */
export const TRITON_FINAL_RESPONSE = 'triton_final_response';

/** A stream response's parameters with TRITON_FINAL_RESPONSE = true (Triton's for a non-decoupled model). */
export function finalResponseParameters(p: Record<string, InferParameter> | undefined): Record<string, InferParameter> {
  return { ...p, [TRITON_FINAL_RESPONSE]: { parameter_choice: 'bool_param', bool_param: true } };
}

function parameters(where: string, map: Record<string, InferParameter> | undefined | null): Record<string, unknown> | undefined {
  if (map === undefined || map === null) return undefined;
  const keys = Object.keys(map);
  if (keys.length === 0) return undefined;
  const out: Record<string, unknown> = {};
  for (const k of keys) out[k] = parameterValue(`${where}.${k}`, map[k]);
  return out;
}

/**
 * An input's typed contents as the JSON codec's `data` (its element checks apply: integer
 * ranges, booleans, strings), or a BigInt64Array / BigUint64Array for 64-bit integers (exact).
 */
function contentsData(where: string, datatype: string, c: InferTensorContents): unknown {
  const set = CONTENTS_FIELDS.filter((f) => (c[f]?.length ?? 0) > 0);
  if (!isDatatype(datatype)) return []; // decodeInferRequest names the bad datatype
  const field = CONTENTS_FIELD[datatype];
  if (field === null) {
    if (set.length > 0) throw bad(`${where}.contents: ${datatype} has no typed contents field; send its bytes in raw_input_contents`);
    return [];
  }
  for (const f of set) if (f !== field) throw bad(`${where}.contents.${f}: a ${datatype} tensor's elements go in contents.${field}`);
  const values = c[field] ?? [];
  switch (field) {
    case 'int64_contents': return BigInt64Array.from(values as Int64[], (v) => BigInt(v));
    case 'uint64_contents': return BigUint64Array.from(values as Int64[], (v) => BigInt(v));
    case 'bytes_contents': return (values as Buffer[]).map((b) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('utf8'));
    default: return values;
  }
}

/**
 * ModelInferRequest → DecodedRequest for `model`. Inputs carry typed `contents`, or the request
 * carries `raw_input_contents` (one entry per input, in order) for all of them. Empty `outputs`:
 * every output. Request parameters (priority, timeout in µs, the caller's own) are read as the
 * HTTP codec reads them; the caller's own come back in `parameters` (see responseParameters).
 */
export function decodeGrpcInferRequest(model: WireModel, msg: ModelInferRequest): DecodedRequest {
  const raw = msg.raw_input_contents ?? [];
  const inputs = (msg.inputs ?? []).map((t, i) => {
    const where = `inputs[${i}]`;
    const input: Record<string, unknown> = {
      name: t.name,
      datatype: t.datatype,
      shape: (t.shape ?? []).map(int64Value),
      parameters: parameters(`${where}.parameters`, t.parameters),
    };
    if (input.parameters === undefined) delete input.parameters;
    if (raw.length === 0) {
      if (t.contents === null || t.contents === undefined) throw bad(`${where}.contents: missing; send the elements in contents, or every input's bytes in raw_input_contents`);
      input.data = contentsData(where, t.datatype, t.contents);
    } else if (t.contents !== null && t.contents !== undefined && CONTENTS_FIELDS.some((f) => (t.contents![f]?.length ?? 0) > 0)) {
      throw bad(`${where}.contents: set while the request has raw_input_contents; send one or the other for every input`);
    }
    return input;
  });
  const header: Record<string, unknown> = { inputs };
  if (msg.id) header.id = msg.id;
  let requestParameters = msg.parameters;
  if (requestParameters?.[TRITON_ENABLE_EMPTY_FINAL] !== undefined) {
    const { [TRITON_ENABLE_EMPTY_FINAL]: flag, ...rest } = requestParameters;
    if (flag?.parameter_choice !== 'bool_param') throw bad(`parameters.${TRITON_ENABLE_EMPTY_FINAL}: expected bool_param, received ${flag?.parameter_choice ?? 'no value'}`);
    requestParameters = rest;
  }
  const p = parameters('parameters', requestParameters);
  if (p !== undefined) header.parameters = p;
  if (msg.outputs !== undefined && msg.outputs.length > 0) {
    header.outputs = msg.outputs.map((o, i) => {
      const op = parameters(`outputs[${i}].parameters`, o.parameters);
      return op === undefined ? { name: o.name } : { name: o.name, parameters: op };
    });
  }
  return decodeInferRequest(model, header, raw.length > 0 ? raw : null);
}

/** The request's own parameters (those decodeInferRequest kept: not priority, timeout, …) as the request sent them, for the response. */
export function responseParameters(msg: ModelInferRequest, decoded: DecodedRequest): Record<string, InferParameter> {
  const out: Record<string, InferParameter> = {};
  if (decoded.parameters !== undefined) for (const k of Object.keys(decoded.parameters)) out[k] = msg.parameters[k];
  return out;
}

/** Results → ModelInferResponse: every output's bytes in raw_output_contents (views of what ORT wrote; BYTES length-prefixed), shapes as int64. */
export function encodeGrpcInferResponse(meta: { modelName: string; modelVersion: string; id: string | undefined; parameters: Record<string, InferParameter> }, results: Record<string, Tensor>, names: readonly string[]): ModelInferResponse {
  const outputs: InferOutputTensor[] = new Array(names.length);
  const raw: Buffer[] = new Array(names.length);
  for (let i = 0; i < names.length; i++) {
    const t = results[names[i]];
    outputs[i] = { name: names[i], datatype: toDatatype(t.type) ?? 'BYTES', shape: t.dims.slice(), parameters: {} };
    raw[i] = tensorBytes(t);
  }
  return { model_name: meta.modelName, model_version: meta.modelVersion, id: meta.id ?? '', parameters: meta.parameters, outputs, raw_output_contents: raw };
}
