/**
 * Piscina worker: parses a large JSON inference request (parseInferJson: numeric arrays read by
 * the addon's scanner, loaded in this worker) and turns each input's `data` into the typed array
 * its datatype names, off the event loop. The typed arrays travel back transferred
 * (not copied); the main thread then runs the normal decode, which checks the pre-decoded data
 * against the model in O(1) per input. Data it cannot decode is reported as an error message
 * (a NimifyError cannot cross threads); the main thread answers 400 with it.
 */
import { JsonNumbers, parseInferJson } from './infer-json';
import { parseUntrustedJson } from './json';
import { Piscina } from 'piscina';
import { NimifyError } from '../runtime/errors';
import { isPlainObject } from '../runtime/validate';
import { isDatatype } from './datatypes';
import { jsonElements, shapeCount } from './request';

export type WorkerResult = { header: Record<string, unknown> } | { error: { code: string; message: string } };

/**
 * Each input's `data` as the typed array its datatype names, where the main thread can take it
 * as is; null when a JsonNumbers (infer-json.ts) would be left for the main thread.
 */
function decodeInputs(json: unknown): { json: Record<string, unknown>; transfer: ArrayBuffer[] } | null {
  if (!isPlainObject(json)) throw new NimifyError('INVALID_ARGUMENT', 'request body: expected a JSON object with `inputs`');
  const transfer: ArrayBuffer[] = [];
  if (Array.isArray(json.inputs)) {
    for (const [i, input] of json.inputs.entries()) {
      if (!isPlainObject(input) || input.data === undefined) continue;
      const count = shapeCount(input.shape);
      if (!isDatatype(input.datatype) || input.datatype === 'BYTES' || count === null) {
        // The main thread rejects the datatype or the shape with its own message, or decodes the strings.
        if (input.data instanceof JsonNumbers) return null;
        continue;
      }
      const arr = jsonElements(`inputs[${i}]`, input.datatype, input.data, input.shape as number[], count) as ArrayBufferView;
      input.data = arr;
      transfer.push(arr.buffer as ArrayBuffer);
    }
  }
  return { json, transfer };
}

export default function decodeJsonBody(task: { body: Uint8Array }): WorkerResult {
  try {
    const body = Buffer.from(task.body.buffer, task.body.byteOffset, task.body.byteLength);
    let decoded = decodeInputs(parseInferJson('request body', body));
    // A scanned array the loop left (a BYTES input, a datatype or shape the main thread refuses)
    // would reach it as a plain object: that body goes the plain way, for the plain messages.
    if (decoded === null) decoded = decodeInputs(parseUntrustedJson('request body', body.toString('utf8')))!;
    const { json, transfer } = decoded;
    // A Piscina transferable: the header is the value, the typed arrays' buffers move with it.
    // Only the fields the protocol defines go back (others are ignored anyway, and cloning an
    // arbitrarily deep unknown value would only cost time or the stack).
    const header: Record<string, unknown> = {};
    for (const key of ['id', 'parameters', 'inputs', 'outputs']) if (json[key] !== undefined) header[key] = json[key];
    return Piscina.move({ [Piscina.transferableSymbol]: transfer, [Piscina.valueSymbol]: { header } } as never) as never;
  } catch (err) {
    const e = err instanceof NimifyError ? err : new NimifyError('INVALID_ARGUMENT', `request body: ${(err as Error).message}`);
    return { error: { code: e.code, message: e.message } };
  }
}
