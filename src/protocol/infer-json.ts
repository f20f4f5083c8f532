/**
 * KServe v2 JSON inference requests, parsed with their numbers read natively.
 *
 * JSON.parse spends most of a small request's parse on the numbers of its `data` arrays (~6.6 µs
 * of a 1 KiB body with 64 float values on the 2-core VM), and the codec then walks the array it
 * built once more. Here the addon's scanner (native/json_scan.h) reads each numeric
 * `inputs[i].data` array (flat, or nested lists) straight into a Float64Array (correctly
 * rounded: the doubles JSON.parse gives) and leaves a placeholder in the text; the rest — names,
 * shapes, parameters — goes through parseUntrustedJson as any body does (the same `__proto__` /
 * `constructor` refusals), and the placeholders become JsonNumbers, which the codec (request.ts)
 * checks and converts exactly as it would the array (same elements, same errors). Whatever the
 * scanner does not take (mixed arrays, booleans, strings, escaped keys, a malformed body, no
 * addon) is parsed the usual way, so a client sees no difference but speed. One thread at a
 * time per module instance (the event loop, or a decode worker): the scratch buffers are this
 * module's, used synchronously.
 */
import { addonIfLoadable, type NativeBinding } from '../runtime/binding';
import { requestArray } from './arrays';
import { parseUntrustedJson } from './json';

/**
 * A numeric `data` array read by the scanner: its leaves in row-major order, the values JSON.parse
 * would have given, and how deep its arrays nest (1: flat).
 */
export class JsonNumbers {
  constructor(
    readonly values: Float64Array,
    readonly depth: number,
  ) {}
}

/** Scratch kept between requests up to these sizes; a larger body gets its own, dropped after it. */
const RETAIN_BYTES = 256 * 1024;
/** Arrays one body may have taken (the route schema allows 1024 inputs). */
const MAX_ARRAYS = 1024;

let scanner: NativeBinding['scanInferJson'] | null | undefined;
let nums = new Float64Array(0);
let out = Buffer.alloc(0);
const spans = new Uint32Array(1 + 3 * MAX_ARRAYS);

function scan(): NativeBinding['scanInferJson'] | null {
  if (scanner === undefined) {
    const addon = addonIfLoadable();
    scanner = addon !== null && typeof addon.scanInferJson === 'function' ? addon.scanInferJson.bind(addon) : null;
  }
  return scanner;
}

/**
 * Parses body[0, length) as a JSON inference request (`where` names it in errors): an object
 * whose numeric inputs[i].data arrays are JsonNumbers; any other value as JSON.parse gives it.
 * Throws INVALID_ARGUMENT for text that is not valid JSON or holds a forbidden key.
 */
export function parseInferJson(where: string, body: Buffer, length: number = body.length): unknown {
  // A body this small holds no array worth the native call.
  const native = length >= 64 ? scan() : null;
  if (native !== null) {
    let o = out;
    if (o.length < length) {
      o = Buffer.allocUnsafeSlow(Math.max(length, 4096));
      if (length <= RETAIN_BYTES) out = o;
    }
    // Most numbers take several bytes: room for length / 6 first, then for the most there can be
    // (each number takes a byte and a separator).
    let n = numsFor((length / 6) | 0);
    let taken = native(body, length, n, o, spans);
    if (taken === NEEDS_ROOM) {
      n = numsFor((length >> 1) + 1);
      taken = native(body, length, n, o, spans);
    }
    if (taken > 0) {
      const parsed = substitute(parseReduced(where, body, length, o.toString('utf8', 0, spans[0])), n, taken);
      if (parsed !== undefined) return parsed;
    }
  }
  return parseUntrustedJson(where, body.toString('utf8', 0, length));
}

/** native/json_scan.h kJsonScanNeedsRoom. */
const NEEDS_ROOM = -2;

/** Scratch for at least `count` numbers: the kept one, grown while it stays under RETAIN_BYTES. */
function numsFor(count: number): Float64Array {
  if (nums.length >= count) return nums;
  const n = new Float64Array(Math.max(count, 1024));
  if (n.byteLength <= RETAIN_BYTES) nums = n;
  return n;
}

/** The reduced text parsed; on any failure the body itself, for the error the client would get without the scanner. */
function parseReduced(where: string, body: Buffer, length: number, text: string): unknown {
  try {
    return parseUntrustedJson(where, text);
  } catch {
    return parseUntrustedJson(where, body.toString('utf8', 0, length));
  }
}

/**
 * Puts the numbers in place of the placeholders (each used once), copied out of the kept
 * scratch into requestArray()s (the request is decoded later, after other bodies have been
 * scanned) or viewed in a one-off one (a large body's: nothing else writes it, and no copy of
 * megabytes). undefined when
 * the parsed value does not hold the placeholders the scanner wrote (then the caller parses the
 * body as it is).
 */
function substitute(json: unknown, n: Float64Array, taken: number): unknown {
  const inputs = (json as { inputs?: unknown } | null)?.inputs;
  if (!Array.isArray(inputs)) return undefined;
  // Placeholders are numbered in the body's order, which JSON.parse keeps: increasing, each used once.
  let last = -1;
  for (const input of inputs) {
    if (input === null || typeof input !== 'object') continue;
    const data = (input as { data?: unknown }).data;
    if (typeof data !== 'string') continue;
    // The scanner leaves bodies with a string in a data slot, or an escaped key that JSON.parse
    // could read as one, to JSON.parse: a string here is a placeholder it wrote. Checked anyway.
    const k = data.charCodeAt(0) === 0 ? Number(data.slice(1)) : -1;
    if (!(k > last && k < taken) || data !== `\u0000${k}`) return undefined;
    last = k;
    const start = spans[1 + 3 * k];
    const end = start + spans[2 + 3 * k];
    let values = n.subarray(start, end);
    if (n === nums) {
      const copy = requestArray<Float64Array>(Float64Array, values.length);
      copy.set(values);
      values = copy;
    }
    (input as { data: unknown }).data = new JsonNumbers(values, spans[3 + 3 * k]);
  }
  // Duplicate keys keep their last value (JSON.parse): placeholders of the others are gone with them.
  return json;
}
