/**
 * Text preprocessing (src/pipeline/text.ts): config validation, and equivalence with the
 * reference tokenizer — nimify's tokenization (npm `tokenizers`, in the pool's worker threads)
 * gives exactly the ids, attention masks and type ids that Python's `tokenizers` computed at
 * fixture time (scripts/fixtures/text_reference.py → test/fixtures/text/reference.json) for
 * single texts, batches, pairs, truncation, both padding modes, unicode and empty strings, with
 * a WordPiece (BERT-style) and a byte-level BPE (RoBERTa-style) tokenizer.
 */
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { NimifyError } from '../../src';
import { PreprocessPool } from '../../src/pipeline/pool';
import { checkTextPreprocess, fileStamp, findPadId, openTokenizer, type TextSpec } from '../../src/pipeline/text';
import { reference, TEXT, type RefCase } from './text-fixtures';

const pool = new PreprocessPool({ threads: 2 });
afterAll(() => pool.close());

/** A spec resolved the way a model's pipeline resolves it (file, stamp, pad id). */
async function resolved(c: Pick<RefCase, 'tokenizer' | 'maxLength' | 'padding' | 'truncation'>, dtype: 'int64' | 'int32' = 'int64'): Promise<TextSpec> {
  const spec = checkTextPreprocess('preprocess', { type: 'text', tokenizer: c.tokenizer, maxLength: c.maxLength, padding: c.padding, truncation: c.truncation });
  const file = path.join(TEXT, c.tokenizer);
  const pad = findPadId('preprocess', openTokenizer('preprocess.tokenizer', file), file, null);
  return { ...spec, file, stamp: await fileStamp(file), padToken: pad.token, padId: pad.id, inputs: { ids: 'input_ids', attentionMask: 'attention_mask', typeIds: 'token_type_ids' }, dtype };
}

const rows = (a: BigInt64Array | Int32Array, [n, len]: number[]) => Array.from({ length: n }, (_, i) => Array.from(a.subarray(i * len, (i + 1) * len), Number));

describe('tokenization equals the Python tokenizers reference', () => {
  it('has cases of every kind', () => {
    const names = reference.cases.map((c) => c.name).join(' ');
    for (const kind of ['single', 'batch_longest', 'max_length', 'truncate_long', 'pairs_truncate', 'unicode', 'empty_whitespace', 'unknown_words']) expect(names).toContain(`wp_${kind}`);
    expect(reference.cases.filter((c) => c.tokenizer === 'bytelevel.json').length).toBeGreaterThanOrEqual(8);
  });

  it.each(reference.cases.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
    const t = await pool.text(c.texts, c.pairs, await resolved(c));
    expect(t.dims).toEqual([c.ids.length, c.ids[0].length]);
    expect(t.ids).toBeInstanceOf(BigInt64Array);
    expect(rows(t.ids, t.dims)).toEqual(c.ids);
    expect(rows(t.attentionMask, t.dims)).toEqual(c.attention_mask);
    expect(rows(t.typeIds, t.dims)).toEqual(c.token_type_ids);
  });

  it('makes int32 tensors for int32 models, with the same values', async () => {
    const c = reference.cases.find((x) => x.name === 'wp_pairs_truncate')!;
    const t = await pool.text(c.texts, c.pairs, await resolved(c, 'int32'));
    expect(t.ids).toBeInstanceOf(Int32Array);
    expect(rows(t.ids, t.dims)).toEqual(c.ids);
    expect(rows(t.typeIds, t.dims)).toEqual(c.token_type_ids);
  });

  it('without truncation, a text longer than maxLength is refused, naming it', async () => {
    const c = reference.cases.find((x) => x.name === 'wp_truncate_long')!;
    const spec = { ...(await resolved(c)), truncation: false };
    const err = await pool.text(['short', c.texts[0]], null, spec).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NimifyError);
    expect(err).toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/^texts\[1\]: \d+ tokens, more than maxLength 12 \(truncation is off/) });
    // Within the limit, the same spec tokenizes.
    expect((await pool.text(['short'], null, spec)).dims[0]).toBe(1);
  });

  it('a worker fault fails only its task; the pool keeps tokenizing', async () => {
    const c = reference.cases[0];
    const err = await pool.text(c.texts, null, await resolved(c), 'texts', 'throw').catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'INTERNAL', message: expect.stringMatching(/text preprocessing failed in its worker: injected fault/) });
    const crashed = await pool.text(c.texts, null, await resolved(c), 'texts', 'crash').catch((e: unknown) => e);
    expect(crashed).toMatchObject({ code: 'INTERNAL' });
    expect(rows((await pool.text(c.texts, null, await resolved(c))).ids, [1, c.ids[0].length])).toEqual(c.ids);
  });
});

describe('text config validation', () => {
  it('fills defaults and names the field of every mistake', () => {
    expect(checkTextPreprocess('p', { type: 'text', tokenizer: 'tokenizer.json' })).toMatchObject({
      tokenizer: 'tokenizer.json', maxLength: null, padding: null, truncation: true, addSpecialTokens: true, padToken: null, inputs: { ids: null, attentionMask: null, typeIds: null },
    });
    const bad: [unknown, RegExp][] = [
      [{ type: 'text' }, /p\.tokenizer: expected a non-empty string/],
      [{ type: 'text', tokenizer: '../tokenizer.json' }, /p\.tokenizer: expected a file name in the model's folder/],
      [{ type: 'text', tokenizer: '/etc/passwd' }, /p\.tokenizer: expected a file name/],
      [{ type: 'text', tokenizer: 't.json', maxLength: 0 }, /p\.maxLength: expected an integer/],
      [{ type: 'text', tokenizer: 't.json', padding: 'right' }, /p\.padding: expected one of 'longest', 'max_length'/],
      [{ type: 'text', tokenizer: 't.json', truncation: 'yes' }, /p\.truncation: expected true or false/],
      [{ type: 'text', tokenizer: 't.json', inputs: { mask: 'm' } }, /p\.inputs: unknown option 'mask' \(known: ids, attentionMask, typeIds\)/],
      [{ type: 'text', tokenizer: 't.json', inputs: { ids: 3 } }, /p\.inputs\.ids: expected a non-empty string/],
      [{ type: 'text', tokenizer: 't.json', vocab: 'v.txt' }, /p: unknown option 'vocab'/],
    ];
    for (const [value, pattern] of bad) expect(() => checkTextPreprocess('p', value)).toThrow(pattern);
  });

  it('finds the padding token: configured, the file\'s own, or [PAD] / <pad>', () => {
    const wp = path.join(TEXT, 'wordpiece.json');
    const bl = path.join(TEXT, 'bytelevel.json');
    expect(findPadId('p', openTokenizer('t', wp), wp, null)).toEqual({ token: '[PAD]', id: reference.tokenizers['wordpiece.json'].pad_id });
    expect(findPadId('p', openTokenizer('t', bl), bl, null)).toEqual({ token: '<pad>', id: reference.tokenizers['bytelevel.json'].pad_id });
    expect(findPadId('p', openTokenizer('t', wp), wp, '[SEP]')).toEqual({ token: '[SEP]', id: 3 });
    expect(() => findPadId('p', openTokenizer('t', wp), wp, '<nope>')).toThrow(/p\.padToken: "<nope>" is not in the tokenizer's vocabulary/);
    expect(() => openTokenizer('p.tokenizer', path.join(TEXT, 'labels3.txt'))).toThrow(/p\.tokenizer: cannot load .*labels3\.txt as a tokenizer\.json/);
  });
});
