import type { Tensor } from 'onnxruntime-node';

/**
 * Compares a tensor with expected values: dtype, then dims, then each value within
 * `atol + rtol * |expected|`, NaN equal to NaN.
 */
export function expectTensorClose(
  actual: { datatype: string; shape: number[]; data: unknown[] },
  expected: Tensor,
  expectedDatatype: string,
  tolerance: { atol?: number; rtol?: number } = {},
): void {
  const { atol = 1e-6, rtol = 1e-5 } = tolerance;
  expect(actual.datatype).toBe(expectedDatatype);
  expect(actual.shape).toEqual([...expected.dims]);
  const want = Array.from(expected.data as ArrayLike<number | bigint | string>);
  expect(actual.data).toHaveLength(want.length);
  want.forEach((w, i) => {
    const got = actual.data[i];
    if (typeof w === 'number') {
      const g = typeof got === 'string' ? Number(got) : (got as number);
      if (Number.isNaN(w)) {
        expect(Number.isNaN(g)).toBe(true);
        return;
      }
      if (Math.abs(g - w) > atol + rtol * Math.abs(w)) {
        throw new Error(`element ${i}: got ${g}, expected ${w} (atol ${atol}, rtol ${rtol})`);
      }
    } else if (typeof w === 'bigint') {
      expect(String(got)).toBe(String(w));
    } else {
      expect(got).toBe(w);
    }
  });
}
