import { Tensor } from 'onnxruntime-node';
import { byOip } from '../../lib/protocol/dtypes';
import { fromHalfBits, toHalfBits } from '../../lib/protocol/half';
import { elementCount, flatDataJson, flattenToShape, nestedDataJson, toOrtTensor } from '../../lib/protocol/tensor-codec';

const info = (name: string) => byOip(name)!;

describe('binary16', () => {
  test.each([
    [0, 0x0000],
    [-0, 0x8000],
    [1, 0x3c00],
    [-2, 0xc000],
    [65504, 0x7bff],
    [65520, 0x7c00], // rounds up to Infinity
    [Infinity, 0x7c00],
    [-Infinity, 0xfc00],
    [2 ** -24, 0x0001], // smallest subnormal
    [2 ** -25, 0x0000], // ties to even: rounds to zero
    [1 + 2 ** -11, 0x3c00], // ties to even: stays at 1
    [1 + 3 * 2 ** -11, 0x3c02], // ties to even: rounds up
    [0.1, 0x2e66],
  ])('%p <-> 0x%s', (value, bits) => {
    expect(toHalfBits(value)).toBe(bits);
  });

  test('NaN stays NaN and every finite pattern round-trips', () => {
    expect(Number.isNaN(fromHalfBits(toHalfBits(NaN)))).toBe(true);
    for (let bits = 0; bits < 0x10000; bits++) {
      const exp = (bits >> 10) & 0x1f;
      if (exp === 0x1f) continue;
      expect(toHalfBits(fromHalfBits(bits))).toBe(bits);
    }
  });
});

describe('tensor codec', () => {
  test('element counts stop at the limit instead of overflowing', () => {
    expect(elementCount([2, 3, 4])).toBe(24);
    expect(elementCount([])).toBe(1);
    expect(elementCount([1e9, 1e9, 1e9])).toBe(Infinity);
  });

  test('nested data is flattened row-major and checked level by level', () => {
    expect(flattenToShape('x', [[1, 2, 3], [4, 5, 6]], [2, 3])).toEqual([1, 2, 3, 4, 5, 6]);
    expect(() => flattenToShape('x', [[1, 2], [3, 4, 5]], [2, 2])).toThrow('input "x": nested data does not match shape [2,2] at depth 1');
    expect(() => flattenToShape('x', [[1, 2]], [2, 2])).toThrow('at depth 0');
  });

  test('non-finite floats travel as protobuf-JSON strings both ways', () => {
    const t = toOrtTensor('x', info('FP32'), [4], [1.5, 'NaN', 'Infinity', '-Infinity']);
    const data = t.data as Float32Array;
    expect(data[0]).toBe(1.5);
    expect(Number.isNaN(data[1])).toBe(true);
    expect([data[2], data[3]]).toEqual([Infinity, -Infinity]);
    expect(flatDataJson(t)).toBe('[1.5,"NaN","Infinity","-Infinity"]');
    expect(flatDataJson(new Tensor('float32', Float32Array.from([0.5, -2]), [2]))).toBe('[0.5,-2]');
  });

  test('numeric outputs of any size, one after another, encode to the same text as JSON.stringify', () => {
    // The encoder reuses one array across calls: shrinking and growing it must never leave a
    // stale or missing element behind.
    const rand = Array.from({ length: 10_001 }, (_, i) => Math.sin(i) * 1e3);
    const f32 = new Tensor('float32', Float32Array.from(rand), [10_001]);
    expect(flatDataJson(f32)).toBe(JSON.stringify(Array.from(f32.data)));
    const i32 = new Tensor('int32', Int32Array.from(rand, (v) => Math.round(v)), [10_001]);
    expect(flatDataJson(i32)).toBe(JSON.stringify(Array.from(i32.data)));
    expect(flatDataJson(new Tensor('float32', new Float32Array(5000), [5000]))).toBe(`[${new Array(5000).fill(0).join(',')}]`);
    expect(flatDataJson(new Tensor('float32', Float32Array.from([0.25, -1]), [2]))).toBe('[0.25,-1]');
    expect(flatDataJson(new Tensor('float32', new Float32Array(0), [0]))).toBe('[]');
    const u8 = new Tensor('uint8', Uint8Array.from({ length: 7000 }, (_, i) => i % 256), [7000]);
    expect(flatDataJson(u8)).toBe(JSON.stringify(Array.from(u8.data)));
    const f64 = new Tensor('float64', Float64Array.from(rand.slice(0, 9000), (v) => v / 7), [9000]);
    expect(flatDataJson(f64)).toBe(JSON.stringify(Array.from(f64.data)));
  });

  test('64-bit integers: exact digits out, numbers or decimal strings in', () => {
    const t = toOrtTensor('x', info('INT64'), [3], ['-9223372036854775808', 42, '9223372036854775807']);
    expect(flatDataJson(t)).toBe('[-9223372036854775808,42,9223372036854775807]');
    expect(() => toOrtTensor('x', info('INT64'), [1], ['9223372036854775808'])).toThrow(/element 0 is "9223372036854775808", expected an integer in/);
    expect(() => toOrtTensor('x', info('UINT64'), [1], [1.5])).toThrow(/element 0 is 1.5/);
  });

  test('bool, fp16 and bytes encode as JSON values', () => {
    expect(flatDataJson(toOrtTensor('b', info('BOOL'), [2], [true, false]))).toBe('[true,false]');
    expect(flatDataJson(toOrtTensor('h', info('FP16'), [3], [0.5, 'Infinity', 0.1]))).toBe('[0.5,"Infinity",0.0999755859375]');
    expect(flatDataJson(toOrtTensor('s', info('BYTES'), [2], ['a"b', 'ü']))).toBe('["a\\"b","ü"]');
  });

  test('nested output follows the shape, from any offset', () => {
    const t = new Tensor('int32', Int32Array.from([1, 2, 3, 4, 5, 6]), [2, 3]);
    expect(nestedDataJson(t, [2, 3])).toBe('[[1,2,3],[4,5,6]]');
    expect(nestedDataJson(t, [3], 3)).toBe('[4,5,6]');
    expect(nestedDataJson(new Tensor('float32', Float32Array.from([7]), []), [])).toBe('7');
  });

  test('error messages quote the offending element, shortened', () => {
    const long = 'x'.repeat(500);
    expect(() => toOrtTensor('x', info('FP32'), [1], [long])).toThrow(/^input "x": element 0 is "x{39}\.\.\., expected a number for FP32$/);
    expect(() => toOrtTensor('x', info('INT16'), [1], [40000])).toThrow('input "x": element 0 is 40000, out of range for INT16 [-32768, 32767]');
  });
});
