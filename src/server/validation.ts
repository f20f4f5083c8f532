/**
 * Schema validation of the infer route's requests, one compiled validator per schema for both
 * ways a request can come (Fastify's route and the fast lane, fast-lane.ts), so a body is
 * accepted or refused — in the same words — whichever way it came. Ajv with the options
 * Fastify's default compiler uses (@fastify/ajv-compiler) and buildServer's overrides: no type
 * coercion, nothing removed, the first error only.
 */
import Ajv, { type ErrorObject, type ValidateFunction } from 'ajv';
import type { FastifySchemaCompiler } from 'fastify';
import { inferRequestBody } from './schemas';

const ajv = new Ajv({ coerceTypes: false, useDefaults: true, removeAdditional: false, allErrors: false, addUsedSchema: false });

/** The infer request body's validator (schemas.ts inferRequestBody). */
export const validateInferBody: ValidateFunction = ajv.compile(inferRequestBody);

/** The infer routes' validatorCompiler: the body through validateInferBody, params and headers compiled here too. */
export const inferValidatorCompiler: FastifySchemaCompiler<unknown> = ({ schema, httpPart }) => (httpPart === 'body' ? validateInferBody : ajv.compile(schema as object));

/**
 * The error a failed validation answers with (Fastify's schemaErrorFormatter signature; its
 * default wording): `<part><path> <message>`, e.g. "body/inputs must be array", which
 * toHttpError() turns into 400 INVALID_ARGUMENT "body: inputs must be array".
 */
export function formatSchemaErrors(errors: ErrorObject[] | null | undefined, dataVar: string): Error {
  const text = (errors ?? []).map((e) => `${dataVar}${e.instancePath || ''} ${e.message}`).join(', ');
  return new Error(text);
}

/** `body` refused by validateInferBody, as Fastify's route refuses it (a validation error: statusCode 400, validation, validationContext). */
export function bodyValidationError(errors: ErrorObject[] | null | undefined): Error {
  const err = formatSchemaErrors(errors, 'body') as Error & { statusCode: number; code: string; validation: unknown; validationContext: string };
  err.statusCode = 400;
  err.code = 'FST_ERR_VALIDATION';
  err.validation = errors;
  err.validationContext = 'body';
  return err;
}
