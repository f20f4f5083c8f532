/**
 * Piscina worker: parses a large JSON inference request (parseInferJson: numeric arrays read by
 * the addon's scanner, loaded in this worker) and turns each input's `data` into the typed array
 * its datatype names, off the event loop. The typed arrays travel back transferred
 * (not copied); the main thread then runs the normal decode, which checks the pre-decoded data
 * against the model in O(1) per input. Data it cannot decode is reported as an error message
 * (a NimifyError cannot cross threads); the main thread answers 400 with it.
 */
import { parseInferJson } from './infer-json';
import { Piscina } from 'piscina';
import { NimifyError } from '../runtime/errors';
import { isPlainObject } from '../runtime/validate';
import { isDatatype } from './datatypes';
import { jsonElements, shapeCount } from './request';

export type WorkerResult = { header: Record<string, unknown> } | { error: { code: string; message: string } };

export default function decodeJsonBody(task: { body: Uint8Array }): WorkerResult {
  try {
    const json = parseInferJson('request body', Buffer.from(task.body.buffer, task.body.byteOffset, task.body.byteLength));
    if (!isPlainObject(json)) throw new NimifyError('INVALID_ARGUMENT', 'request body: expected a JSON object with `inputs`');
    const transfer: ArrayBuffer[] = [];
    if (Array.isArray(json.inputs)) {
      for (const [i, input] of json.inputs.entries()) {
        if (!isPlainObject(input) || input.data === undefined || !isDatatype(input.datatype) || input.datatype === 'BYTES') continue;
        const count = shapeCount(input.shape);
        if (count === null) continue; // the main thread rejects the shape with its own message
        const arr = jsonElements(`inputs[${i}]`, input.datatype, input.data, input.shape as number[], count) as ArrayBufferView;
        input.data = arr;
        transfer.push(arr.buffer as ArrayBuffer);
      }
    }
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
