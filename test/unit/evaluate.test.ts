import { agreement } from '../../lib/convert/evaluate';

describe('output agreement', () => {
  test('error, cosine and top-1 over all rows and over decisive rows', () => {
    // Row 0: a clear winner (class 2) kept. Row 1: a near-tie between classes 0 and 1 that flips.
    const original = [Float32Array.from([0.1, 0.2, 0.9, 0.5000, 0.4999, 0.0])];
    const converted = [Float32Array.from([0.1, 0.2, 0.88, 0.4990, 0.5001, 0.0])];
    const a = agreement(original, converted, [2, 3]);
    expect(a.maxAbsError).toBeCloseTo(0.02, 6);
    expect(a.cosine).toBeGreaterThan(0.99);
    expect(a.top1Agreement).toBe(0.5);
    expect(a.decisiveRows).toBe(1);
    expect(a.top1DecisiveAgreement).toBe(1);
  });

  test('a row whose error swamps its margin is not decisive (the cosine gate judges it); vectors have no top-1', () => {
    const flipped = agreement([Float32Array.from([0.9, 0.1])], [Float32Array.from([0.1, 0.9])], [1, 2]);
    expect(flipped).toMatchObject({ top1Agreement: 0, decisiveRows: 0 });
    expect(flipped.cosine).toBeLessThan(0.5);
    const clear = agreement([Float32Array.from([0.9, 0.1])], [Float32Array.from([0.7, 0.3])], [1, 2]);
    expect(clear).toMatchObject({ top1Agreement: 1, decisiveRows: 1, top1DecisiveAgreement: 1 });
    const vector = agreement([Float32Array.from([1, 2, 3])], [Float32Array.from([1, 2, 3])], [3]);
    expect(vector).toEqual({ maxAbsError: 0, meanAbsError: 0, cosine: 1 });
  });
});
