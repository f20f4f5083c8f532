/** Postprocessing (src/pipeline/postprocess.ts): config validation, softmax, top-k, labels. */
import { describe, expect, it } from 'vitest';
import { checkPostprocess, classify, parseLabels } from '../../src/pipeline/postprocess';

describe('postprocess', () => {
  it('validates the config, naming the field', () => {
    expect(checkPostprocess('p', {})).toEqual({ output: null, softmax: true, topK: 5, labels: null });
    expect(checkPostprocess('p', { output: 'logits', softmax: false, topK: 3, labels: 'labels.txt' })).toEqual({ output: 'logits', softmax: false, topK: 3, labels: 'labels.txt' });
    expect(() => checkPostprocess('p', { topK: 0 })).toThrow(/p\.topK: expected an integer in \[1, 100000\]/);
    expect(() => checkPostprocess('p', { softmax: 'yes' })).toThrow(/p\.softmax: expected true or false/);
    expect(() => checkPostprocess('p', { labels: '../secrets.txt' })).toThrow(/p\.labels: expected a file name in the model's folder/);
    expect(() => checkPostprocess('p', { labels: '/etc/passwd' })).toThrow(/p\.labels/);
    expect(() => checkPostprocess('p', { argmax: true })).toThrow(/argmax/);
  });

  it('softmax, top-k best first, labels; ties keep the lower index first', () => {
    const spec = checkPostprocess('p', { topK: 2 });
    const logits = [1, 3, 2, 0, 0, 5];
    const [a, b] = classify(spec, logits, [2, 3], ['cat', 'dog', 'owl']);
    const e = [Math.exp(1), Math.exp(3), Math.exp(2)];
    const s = e[0] + e[1] + e[2];
    expect(a.map((p) => p.label)).toEqual(['dog', 'owl']);
    expect(a[0].score).toBeCloseTo(e[1] / s, 12);
    expect(a[1].score).toBeCloseTo(e[2] / s, 12);
    expect(b.map((p) => [p.label, p.index])).toEqual([['owl', 2], ['cat', 0]]);
    // Without softmax the scores are the outputs as they are; without labels, indices.
    const raw = classify(checkPostprocess('p', { softmax: false, topK: 10 }), new Float32Array([0.5, 0.5, 0.25]), [1, 3], null)[0];
    expect(raw).toEqual([{ label: '0', index: 0, score: 0.5 }, { label: '1', index: 1, score: 0.5 }, { label: '2', index: 2, score: 0.25 }]);
  });

  it('refuses shapes it cannot rank and labels that do not fit', () => {
    const spec = checkPostprocess('p', {});
    expect(() => classify(spec, [1, 2, 3], [2, 3], null)).toThrow(/no classes to rank/);
    expect(() => classify(spec, [1, 2, 3], [1, 3], ['a', 'b'])).toThrow(/postprocess\.labels: 2 labels for 3 classes/);
    expect(parseLabels('zero\r\none\ntwo\n')).toEqual(['zero', 'one', 'two']);
  });
});
