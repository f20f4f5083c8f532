/**
 * docs/config.md stays true to the config.json parser: every field the parser accepts (each
 * section's key list, read from the parser itself) has a row in that section's table, every row
 * names a field the parser accepts, every JSON example is a config the parser takes, and the
 * automatic warmup's figures are the code's.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { NimifyError } from '../../src';
import { INLINE_BELOW_MICROS_DEFAULT } from '../../src/runtime/options';
import { CONFIG_KEYS, DEFAULT_BATCHING, parseModelConfig, RUNTIME_KEYS, WARMUP_DIM, WARMUP_MAX_ELEMENTS } from '../../src/repository/config';
import { ROOT } from '../helpers';

const doc = fs.readFileSync(path.join(ROOT, 'docs', 'config.md'), 'utf8');

/** The keys a section of the parser accepts, from its "unknown option" error (its own list). */
function acceptedKeys(config: unknown): string[] {
  try {
    parseModelConfig('config', config);
  } catch (err) {
    expect(err).toBeInstanceOf(NimifyError);
    const m = /unknown option 'zzProbe' \(known: ([^)]*)\)/.exec((err as Error).message);
    if (m) return m[1].split(', ');
    throw err;
  }
  throw new Error(`the parser accepted the probe key in ${JSON.stringify(config)}`);
}

/** The text of the doc from `heading` to the next heading of the same or a higher level. */
function section(heading: string): string {
  const lines = doc.split('\n');
  const start = lines.indexOf(heading);
  expect(start, `docs/config.md has no heading ${heading}`).toBeGreaterThanOrEqual(0);
  const level = heading.indexOf(' ');
  const end = lines.findIndex((l, i) => i > start && /^#+ /.test(l) && l.indexOf(' ') <= level);
  return lines.slice(start + 1, end < 0 ? undefined : end).join('\n');
}

/** Field names in the first column of a section's table(s): `a`, `a`, `b`, `inputs.<name>.c` → c. */
function documentedFields(text: string): string[] {
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const cell = /^\| ([^|]+) \|/.exec(line)?.[1];
    if (cell === undefined || /^-+$/.test(cell) || cell === 'field') continue;
    for (const m of cell.matchAll(/`([^`]+)`/g)) out.push(m[1].split('.').at(-1)!);
  }
  return out;
}

const SECTIONS: Array<{ heading: string; keys: () => string[] }> = [
  { heading: '## Top-level fields', keys: () => [...CONFIG_KEYS] },
  { heading: '## batching', keys: () => acceptedKeys({ batching: { zzProbe: 1 } }) },
  { heading: '## runtime', keys: () => acceptedKeys({ runtime: { zzProbe: 1 } }) },
  { heading: '## inputs and outputs', keys: () => acceptedKeys({ inputs: [{ name: 'x', zzProbe: 1 }] }) },
  {
    heading: '## warmup',
    keys: () => [...acceptedKeys({ warmup: [{ inputs: {}, zzProbe: 1 }] }), ...acceptedKeys({ warmup: [{ inputs: { x: { shape: [1], zzProbe: 1 } } }] })],
  },
  { heading: '### type `image`', keys: () => acceptedKeys({ preprocess: { type: 'image', zzProbe: 1 } }) },
  { heading: '### type `text`', keys: () => acceptedKeys({ preprocess: { type: 'text', zzProbe: 1 } }) },
  { heading: '## postprocess', keys: () => acceptedKeys({ postprocess: { zzProbe: 1 } }) },
];

describe('docs/config.md', () => {
  it('the probe reads the parser\'s own key lists', () => {
    expect(acceptedKeys({ zzProbe: 1 })).toEqual([...CONFIG_KEYS]);
    expect(acceptedKeys({ runtime: { zzProbe: 1 } })).toEqual([...RUNTIME_KEYS]);
  });

  for (const { heading, keys } of SECTIONS) {
    it(`${heading}: a row for every field the parser accepts, and no row for one it does not`, () => {
      const accepted = keys();
      const documented = documentedFields(section(heading));
      expect(accepted.filter((k) => !documented.includes(k)), 'accepted but not documented').toEqual([]);
      expect(documented.filter((k) => !accepted.includes(k)), 'documented but not accepted').toEqual([]);
    });
  }

  it('every JSON example parses and is a config the parser accepts', () => {
    const blocks = [...doc.matchAll(/```json\n([\s\S]*?)```/g)].map((m) => m[1]);
    expect(blocks.length).toBeGreaterThanOrEqual(8);
    for (const block of blocks) {
      let json: unknown;
      expect(() => (json = JSON.parse(block)), block).not.toThrow();
      expect(() => parseModelConfig('docs/config.md', json), block).not.toThrow();
    }
    // Every section with fields shows at least one of them in an example.
    const examples = blocks.join('\n');
    for (const key of ['batching', 'runtime', 'inputs', 'outputs', 'warmup', 'preprocess', 'postprocess', 'versionPolicy', 'timeoutMs', 'instances']) {
      expect(examples, key).toContain(`"${key}"`);
    }
  });

  it('states the defaults and the automatic warmup\'s figures the code uses', () => {
    expect(doc).toContain(`{"maxBatchSize": ${DEFAULT_BATCHING.maxBatchSize}, "adaptive": ${DEFAULT_BATCHING.adaptive}}`);
    expect(section('## runtime')).toContain(`| \`inlineBelowMicros\` | integer | ${INLINE_BELOW_MICROS_DEFAULT} |`);
    const auto = section('### Automatic warmup');
    expect(auto).toContain(`is ${WARMUP_DIM} `);
    expect(auto).toContain(`at most ${WARMUP_MAX_ELEMENTS} elements`);
  });
});
