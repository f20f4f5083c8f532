/** The text fixtures (test/fixtures/text, made by scripts/fixtures/text_reference.py) shared by the pipeline tests. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ROOT } from '../helpers';

export const TEXT = path.join(ROOT, 'test', 'fixtures', 'text');
export interface RefCase {
  name: string;
  tokenizer: string;
  texts: string[];
  pairs: string[] | null;
  maxLength: number;
  padding: 'longest' | 'max_length';
  truncation: boolean;
  ids: number[][];
  attention_mask: number[][];
  token_type_ids: number[][];
}
export const reference = JSON.parse(fs.readFileSync(path.join(TEXT, 'reference.json'), 'utf8')) as {
  tokenizers: Record<string, { pad_id: number; pad_token: string }>;
  cases: RefCase[];
  models: Array<RefCase & { model: string; logits: number[][] }>;
};

