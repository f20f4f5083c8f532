/**
 * Text preprocessing: the `preprocess: { type: 'text', ... }` section of a model's config,
 * validated here (errors name the field), and tokenization of request texts into the model's
 * token tensors with a Hugging Face `tokenizer.json` (the npm `tokenizers` package: the same
 * Rust code as Python's `tokenizers`, so ids match it exactly).
 *
 * Per text (or text pair): normalize, pre-tokenize, model, post-process (special tokens such as
 * [CLS]/[SEP]) as the tokenizer.json says → truncation to `maxLength` (strategy longest-first:
 * the longer of a pair loses tokens first) → right padding with the pad token to the batch's
 * longest row (`padding: 'longest'`) or to `maxLength` (`'max_length'`) → input_ids,
 * attention_mask (1 for tokens, 0 for padding), token_type_ids (0 for the first text, 1 for the
 * pair, 0 for padding), int64 (or int32 when the model's input is int32), shape [batch, length].
 *
 * Tokenization runs in the preprocessing pool's workers (pool.ts, worker.ts); each worker keeps
 * the tokenizers it loaded, keyed by file, modification stamp and settings.
 */
import { optionalModule } from '../runtime/optional';
import * as fs from 'node:fs';
import { NimifyError } from '../runtime/errors';
import { expectBoolean, expectFileName, expectInteger, expectKnownKeys, expectOneOf, expectPlainObject, expectString, invalid } from '../runtime/validate';

export const PADDINGS = ['longest', 'max_length'] as const;
export const TOKEN_DTYPES = ['int64', 'int32'] as const;

/** As written in config.json. */
export interface TextPreprocessConfig {
  type: 'text';
  /** A tokenizer.json (Hugging Face format) beside config.json, or beside the model file in the library. */
  tokenizer: string;
  /** Most tokens per row, special tokens included (default: the model's fixed sequence dim, else 512). */
  maxLength?: number;
  /** Pad to the longest row of the request, or always to maxLength (default: max_length when the model's sequence dim is fixed, else longest). */
  padding?: (typeof PADDINGS)[number];
  /** Cut rows longer than maxLength (default true); false rejects them. */
  truncation?: boolean;
  /** Add the tokenizer's special tokens, e.g. [CLS] … [SEP] (default true). */
  addSpecialTokens?: boolean;
  /** The padding token (default: the tokenizer.json's own padding token, else [PAD] or <pad>). */
  padToken?: string;
  /** Which model inputs get which tensor (default: inputs named input_ids, attention_mask, token_type_ids). */
  inputs?: { ids?: string; attentionMask?: string; typeIds?: string };
}

/** Every field filled in; what the worker receives (plain data: it crosses threads). */
export interface TextSpec {
  type: 'text';
  /** The file name as configured; `file` is its absolute path once resolved against the model. */
  tokenizer: string;
  file: string | null;
  /** Modification time and size of `file` when resolved: part of each worker's cache key. */
  stamp: string;
  maxLength: number | null;
  padding: (typeof PADDINGS)[number] | null;
  truncation: boolean;
  addSpecialTokens: boolean;
  padToken: string | null;
  padId: number;
  inputs: { ids: string | null; attentionMask: string | null; typeIds: string | null };
  /** Element type of each token tensor (the model's input type). */
  dtype: (typeof TOKEN_DTYPES)[number];
}

const KEYS = ['type', 'tokenizer', 'maxLength', 'padding', 'truncation', 'addSpecialTokens', 'padToken', 'inputs'] as const;
/** Validates a `preprocess` section of type text; `where` names it in errors (e.g. 'config.preprocess'). */
export function checkTextPreprocess(where: string, value: unknown): TextSpec {
  const o = expectPlainObject(where, value);
  expectKnownKeys(where, o, KEYS);
  if (o.type !== 'text') throw invalid(`${where}.type`, "'text'", o.type);
  const inputs: TextSpec['inputs'] = { ids: null, attentionMask: null, typeIds: null };
  if (o.inputs !== undefined) {
    const i = expectPlainObject(`${where}.inputs`, o.inputs);
    expectKnownKeys(`${where}.inputs`, i, ['ids', 'attentionMask', 'typeIds']);
    for (const k of ['ids', 'attentionMask', 'typeIds'] as const) if (i[k] !== undefined) inputs[k] = expectString(`${where}.inputs.${k}`, i[k]);
  }
  return {
    type: 'text',
    tokenizer: expectFileName(`${where}.tokenizer`, o.tokenizer),
    file: null,
    stamp: '',
    maxLength: o.maxLength === undefined ? null : expectInteger(`${where}.maxLength`, o.maxLength, 1, 1 << 20),
    padding: o.padding === undefined ? null : expectOneOf(`${where}.padding`, o.padding, PADDINGS),
    truncation: o.truncation === undefined ? true : expectBoolean(`${where}.truncation`, o.truncation),
    addSpecialTokens: o.addSpecialTokens === undefined ? true : expectBoolean(`${where}.addSpecialTokens`, o.addSpecialTokens),
    padToken: o.padToken === undefined ? null : expectString(`${where}.padToken`, o.padToken),
    padId: -1,
    inputs,
    dtype: 'int64',
  };
}

type TokenizersModule = typeof import('tokenizers');
type Tokenizer = import('tokenizers').Tokenizer;

/**
 * Loaded lazily: users who never tokenize never load the tokenizers addon. It is an optional peer
 * dependency (64 MB, every platform in one package): without it a text pipeline fails at model
 * load with UNSUPPORTED naming `npm install tokenizers`.
 */
export function tokenizersModule(): TokenizersModule {
  return optionalModule<TokenizersModule>('tokenizers', 'text preprocessing (preprocess.type "text")');
}

/** The file's modification stamp (a reload of an edited tokenizer.json gets a fresh cache entry). */
export async function fileStamp(file: string): Promise<string> {
  const st = await fs.promises.stat(file);
  return `${st.mtimeMs}:${st.size}`;
}

/**
 * Loads `file` as a tokenizer, for checking at model load: a file that is not a tokenizer.json
 * fails here with the parser's reason, naming `where`.
 */
export function openTokenizer(where: string, file: string): Tokenizer {
  const { Tokenizer } = tokenizersModule();
  try {
    return Tokenizer.fromFile(file);
  } catch (err) {
    throw new NimifyError('INVALID_ARGUMENT', `${where}: cannot load ${file} as a tokenizer.json (${(err as Error).message.split('\n')[0]})`);
  }
}

/**
 * The id of the padding token: the configured one, else the one tokenizer.json's own padding
 * section names, else [PAD] or <pad>. Throws naming `where`.padToken when there is none.
 */
export function findPadId(where: string, tokenizer: Tokenizer, file: string, padToken: string | null): { token: string; id: number } {
  const idOf = (t: string): number | null => tokenizer.tokenToId(t) ?? null;
  if (padToken !== null) {
    const id = idOf(padToken);
    if (id === null) throw new NimifyError('INVALID_ARGUMENT', `${where}.padToken: ${JSON.stringify(padToken)} is not in the tokenizer's vocabulary`);
    return { token: padToken, id };
  }
  type Own = { pad_token?: unknown; pad_id?: unknown } | null;
  let own: Own = null;
  try {
    own = (JSON.parse(fs.readFileSync(file, 'utf8')) as { padding?: Own }).padding ?? null;
  } catch {
    own = null;
  }
  if (own !== null && typeof own.pad_token === 'string' && typeof own.pad_id === 'number') return { token: own.pad_token, id: own.pad_id };
  for (const t of ['[PAD]', '<pad>']) {
    const id = idOf(t);
    if (id !== null) return { token: t, id };
  }
  throw new NimifyError('INVALID_ARGUMENT', `${where}.padToken: the tokenizer has no padding token ([PAD] or <pad>) and names none; set padToken`);
}

/** One worker thread's tokenizers, by file, stamp and settings. Worker thread only. */
const cache = new Map<string, Tokenizer>();

function tokenizerFor(spec: TextSpec): Tokenizer {
  const key = `${spec.file}\0${spec.stamp}\0${spec.maxLength}\0${spec.truncation}`;
  let t = cache.get(key);
  if (t === undefined) {
    if (spec.file === null) throw new NimifyError('INTERNAL', 'text preprocessing: the tokenizer was not resolved against the model');
    t = openTokenizer('preprocess.tokenizer', spec.file);
    // Padding is ours (to the batch's longest row or maxLength); the file's own settings are off.
    t.disablePadding();
    if (spec.truncation && spec.maxLength !== null) t.setTruncation(spec.maxLength, { strategy: 'LongestFirst' as never });
    else t.disableTruncation();
    if (cache.size >= 16) cache.delete(cache.keys().next().value!);
    cache.set(key, t);
  }
  return t;
}

export interface TokenTensors {
  ids: BigInt64Array | Int32Array;
  attentionMask: BigInt64Array | Int32Array;
  typeIds: BigInt64Array | Int32Array;
  dims: [number, number];
}

/**
 * Tokenizes `texts` (with `pairs[i]` as the second text of row i when given) into padded
 * [texts.length, length] tensors. Runs wherever it is called: the pool calls it in a worker.
 */
export async function textToTensors(texts: readonly string[], pairs: readonly (string | null)[] | null, spec: TextSpec, where = 'texts'): Promise<TokenTensors> {
  const tokenizer = tokenizerFor(spec);
  const options = { addSpecialTokens: spec.addSpecialTokens };
  const encodings = await Promise.all(texts.map((t, i) => tokenizer.encode(t, pairs?.[i] ?? null, options)));
  const rows = encodings.map((e) => ({ ids: e.getIds(), types: e.getTypeIds() }));
  const max = spec.maxLength ?? Infinity;
  rows.forEach((r, i) => {
    if (r.ids.length > max) {
      const name = texts.length === 1 && where !== 'texts' ? where : `${where}[${i}]`;
      throw new NimifyError(
        'INVALID_ARGUMENT',
        spec.truncation
          ? `${name}: ${r.ids.length} tokens even after truncation: maxLength ${max} is smaller than the tokenizer's special tokens (raise config.preprocess.maxLength)`
          : `${name}: ${r.ids.length} tokens, more than maxLength ${max} (truncation is off for this model)`,
      );
    }
  });
  const length = spec.padding === 'max_length' && spec.maxLength !== null ? spec.maxLength : Math.max(1, ...rows.map((r) => r.ids.length));
  const n = rows.length * length;
  const wide = spec.dtype === 'int64';
  const make = (): BigInt64Array | Int32Array => (wide ? new BigInt64Array(n) : new Int32Array(n));
  const ids = make();
  const mask = make();
  const types = make();
  const pad = wide ? BigInt(spec.padId) : spec.padId;
  const one = wide ? 1n : 1;
  ids.fill(pad as never);
  rows.forEach((r, i) => {
    const base = i * length;
    for (let j = 0; j < r.ids.length; j++) {
      ids[base + j] = (wide ? BigInt(r.ids[j]) : r.ids[j]) as never;
      mask[base + j] = one as never;
      types[base + j] = (wide ? BigInt(r.types[j]) : r.types[j]) as never;
    }
  });
  return { ids, attentionMask: mask, typeIds: types, dims: [rows.length, length] };
}
