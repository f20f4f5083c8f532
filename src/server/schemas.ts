/**
 * JSON schemas of the routes: they validate requests (Ajv, as Fastify compiles them) and
 * generate the OpenAPI document. Tensor `data` is deliberately unconstrained here: the codec
 * checks every element against the model in one pass, which a schema walk would only repeat.
 */
import { DATATYPES } from '../protocol/datatypes';
import { MAX_RANK } from '../protocol/request';

export const errorSchema = {
  type: 'object',
  properties: { error: { type: 'string' }, code: { type: 'string' } },
  required: ['error'],
} as const;

export const errorResponses = {
  400: { description: 'Invalid request', ...errorSchema },
  401: { description: 'Missing or invalid API key', ...errorSchema },
  404: { description: 'Unknown model, version or route', ...errorSchema },
  429: { description: 'Rate limited (Retry-After)', ...errorSchema },
  503: { description: 'Not ready, queue full, overloaded or circuit open (Retry-After)', ...errorSchema },
} as const;

export const modelParams = {
  type: 'object',
  properties: {
    model_name: { type: 'string', maxLength: 256 },
    model_version: { type: 'string', maxLength: 32 },
  },
  required: ['model_name'],
} as const;

const parameters = {
  type: 'object',
  additionalProperties: { anyOf: [{ type: 'string' }, { type: 'number' }, { type: 'boolean' }] },
} as const;

const tensorMetadata = {
  type: 'object',
  properties: {
    name: { type: 'string' },
    datatype: { type: 'string', enum: DATATYPES },
    shape: { type: 'array', items: { type: 'integer' } },
  },
  required: ['name', 'datatype', 'shape'],
} as const;

export const modelMetadataResponse = {
  type: 'object',
  properties: {
    name: { type: 'string' },
    versions: { type: 'array', items: { type: 'string' } },
    platform: { type: 'string' },
    inputs: { type: 'array', items: tensorMetadata },
    outputs: { type: 'array', items: tensorMetadata },
    parameters: { type: 'object', additionalProperties: true },
    state: { type: 'string', enum: ['LOADING', 'UNLOADING', 'UNAVAILABLE'], description: 'nimify: only for a version that is not ready (its inputs and outputs are known)' },
    reason: { type: 'string', description: 'nimify: why the version is not ready' },
  },
  required: ['name', 'platform', 'inputs', 'outputs'],
} as const;

export const serverMetadataResponse = {
  type: 'object',
  properties: { name: { type: 'string' }, version: { type: 'string' }, extensions: { type: 'array', items: { type: 'string' } } },
  required: ['name', 'version', 'extensions'],
} as const;

export const inferRequestBody = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    parameters,
    inputs: {
      type: 'array',
      maxItems: 1024,
      items: {
        type: 'object',
        properties: {
          name: { type: 'string' },
          shape: { type: 'array', maxItems: MAX_RANK, items: { type: 'integer', minimum: 0 } },
          datatype: { type: 'string', enum: DATATYPES },
          parameters,
          data: { description: 'Tensor elements, flat or nested (row-major); absent when parameters.binary_data_size is set' },
        },
        required: ['name', 'shape', 'datatype'],
      },
    },
    outputs: {
      type: 'array',
      maxItems: 1024,
      items: { type: 'object', properties: { name: { type: 'string' }, parameters }, required: ['name'] },
    },
  },
  required: ['inputs'],
} as const;

export const inferResponse = {
  description: 'JSON, or with binary outputs a JSON header of Inference-Header-Content-Length bytes followed by the tensors',
  type: 'object',
  properties: {
    model_name: { type: 'string' },
    model_version: { type: 'string' },
    id: { type: 'string' },
    parameters: { type: 'object', additionalProperties: true },
    outputs: {
      type: 'array',
      items: {
        type: 'object',
        properties: { name: { type: 'string' }, datatype: { type: 'string' }, shape: { type: 'array', items: { type: 'integer' } }, parameters, data: {} },
      },
    },
  },
} as const;
