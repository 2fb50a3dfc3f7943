import { Tensor } from 'onnxruntime-node';
import { activate, classificationString, scoreText, topK } from '../../lib/prepost/classify';
import { classifyResults } from '../../lib/prepost/serve-oip';
import { toHalfBits } from '../../lib/protocol/half';

describe('classification post-processing', () => {
  test('softmax is exp(x - max) / sum, stable for large logits; sigmoid per class; none leaves scores as they are', () => {
    const p = activate([1000, 999, 998], 'softmax');
    const e = [1, Math.exp(-1), Math.exp(-2)];
    const sum = e[0]! + e[1]! + e[2]!;
    p.forEach((v, i) => expect(v).toBeCloseTo(e[i]! / sum, 12));
    expect(activate([0, 2, -2], 'sigmoid')).toEqual([0.5, 1 / (1 + Math.exp(-2)), 1 / (1 + Math.exp(2))]);
    expect(activate([3, -1], 'none')).toEqual([3, -1]);
  });

  test("top-k per row, best first, labels attached; ties keep the lower index first; NaN sorts last", () => {
    const logits = new Tensor('float32', Float32Array.from([1.1, 3.3, 0.5, 2.4, 5, 5, NaN, 1]), [2, 4]);
    expect(topK(logits, 2, 'none', ['a', 'b', 'c', 'd'])).toEqual([
      [{ index: 1, score: Math.fround(3.3), label: 'b' }, { index: 3, score: Math.fround(2.4), label: 'd' }],
      [{ index: 0, score: 5, label: 'a' }, { index: 1, score: 5, label: 'b' }],
    ]);
    expect(topK(logits, 4, 'none')[1]!.map((c) => c.index)).toEqual([0, 1, 3, 2]);
  });

  test("Triton's strings: '<score>:<index>[:<label>]', float32 scores printed short", () => {
    const [[first]] = topK(new Tensor('float32', Float32Array.from([1.1, 3.3, 0.5, 2.4]), [4]), 1, 'none') as [[{ index: number; score: number }]];
    expect(classificationString(first)).toBe('3.3:1');
    expect(classificationString({ index: 7, score: 0.25, label: 'tabby cat' })).toBe('0.25:7:tabby cat');
    expect(scoreText(NaN)).toBe('NaN');
  });

  test('float16 scores are read as halves', () => {
    const half = new Tensor('float16', Uint16Array.from([0.5, 2, -1].map(toHalfBits)), [1, 3]);
    expect(topK(half, 3, 'none')).toEqual([[{ index: 1, score: 2 }, { index: 0, score: 0.5 }, { index: 2, score: -1 }]]);
  });

  test('classified outputs become BYTES [N, k] ([k] for a [C] output); others stay as they are', () => {
    const results = {
      batch: new Tensor('float32', Float32Array.from([0, 1, 2, 2, 1, 0]), [2, 3]),
      single: new Tensor('float32', Float32Array.from([0.2, 0.8]), [2]),
      other: new Tensor('int64', BigInt64Array.from([1n]), [1]),
    };
    const out = classifyResults(results, new Map([['batch', { k: 2, activation: 'none' as const }], ['single', { k: 5, activation: 'none' as const }]]), ['x', 'y', 'z']);
    expect(out.batch!.type).toBe('string');
    expect(out.batch!.dims).toEqual([2, 2]);
    expect(out.batch!.data).toEqual(['2:2:z', '1:1:y', '2:0:x', '1:1:y']);
    expect(out.single!.dims).toEqual([2]);
    expect(out.single!.data).toEqual(['0.8:1:y', '0.2:0:x']);
    expect(out.other).toBe(results.other);
  });
});
