import { Tensor } from 'onnxruntime-node';
import { chooseInt8Mode, countMacs, reconsiderStatic, slowStaticWarning, staticIsSlower, staticLatency } from '../../lib/convert/int8-choice';
import { convStackModel, denseStackModel, prng } from '../helpers/models';

function images(count: number, size: number): Record<string, Tensor>[] {
  const rand = prng(9);
  return Array.from({ length: count }, () => ({ image: new Tensor('float32', Float32Array.from({ length: 3 * size * size }, rand), [1, 3, size, size]) }));
}

function vectors(count: number, width: number, batch: number): Record<string, Tensor>[] {
  const rand = prng(10);
  return Array.from({ length: count }, () => ({ x: new Tensor('float32', Float32Array.from({ length: batch * width }, rand), [batch, width]) }));
}

describe('mode int8: static or dynamic by where the multiply-accumulates are', () => {
  it('counts Conv and MatMul/Gemm multiply-accumulates from the shapes of a run', async () => {
    // 3 Convs of 8 channels, 3x3, on 16x16 (pad 1), then Gemm 8 -> 10.
    const macs = await countMacs(convStackModel(8, 3, 16), images(1, 16)[0]!, 1);
    const plane = 8 * 16 * 16;
    expect(macs).toEqual({ conv: plane * 3 * 9 + 2 * plane * 8 * 9, matmul: 10 * 8 });
    // 4 MatMuls of 64x64 with a dynamic batch of 5, read from the sample.
    expect(await countMacs(denseStackModel(64, 4), vectors(1, 64, 5)[0]!, 1)).toEqual({ conv: 0, matmul: 4 * 5 * 64 * 64 });
  });

  it('picks int8-static for a conv net with calibration data, and says why', async () => {
    const choice = await chooseInt8Mode(convStackModel(8, 3, 16), images(8, 16), 1);
    expect(choice.chosen).toBe('int8-static');
    // 350208 of 350288 multiply-accumulates.
    expect(choice.reason).toBe('100.0% of 3.50e+5 multiply-accumulates are in Conv, and 8 calibration samples are given');
  });

  it('picks int8-dynamic without enough calibration data, whatever the graph', async () => {
    expect(await chooseInt8Mode(convStackModel(8, 3, 16), images(3, 16), 1)).toEqual({
      chosen: 'int8-dynamic',
      reason: 'no calibration data (int8-static needs at least 8 samples in "sampleInputs" or "calibration"; 3 given)',
    });
    expect((await chooseInt8Mode(convStackModel(8, 3, 16), undefined, 1)).reason).toMatch(/; 0 given\)$/);
  });

  it('picks int8-dynamic when MatMul dominates, even with calibration data', async () => {
    const choice = await chooseInt8Mode(denseStackModel(64, 4), vectors(8, 64, 1), 1);
    expect(choice).toMatchObject({ chosen: 'int8-dynamic', macs: { conv: 0, matmul: 4 * 64 * 64 } });
    expect(choice.reason).toBe('0.0% of 1.64e+4 multiply-accumulates are in Conv; MatMul/Gemm dominate, and int8-dynamic quantizes those');
  });
});

describe('mode int8: an int8-static slower than float is not published as the choice', () => {
  const choice = { chosen: 'int8-static' as const, reason: '99.9% of 8.76e+4 multiply-accumulates are in Conv, and 8 calibration samples are given' };

  it('reads the ratio from the evaluation latencies (original = the float model)', () => {
    expect(staticLatency({ original: 2, converted: 2.74 })).toEqual({ floatMs: 2, int8Ms: 2.74, ratio: 1.37 });
    expect(staticIsSlower(staticLatency({ original: 2, converted: 2 }))).toBe(false);
    expect(staticIsSlower(staticLatency({ original: 2, converted: 2.002 }))).toBe(true);
  });

  it('keeps static when it is not slower, recording the figures', () => {
    const l = staticLatency({ original: 2, converted: 1.2 });
    expect(reconsiderStatic(choice, l, 'int8-dynamic')).toEqual({ ...choice, staticLatency: l });
    expect(slowStaticWarning(l)).toBeUndefined();
  });

  it('turns to int8-dynamic when static is slower, saying why and what was published', () => {
    const l = staticLatency({ original: 2, converted: 2.74 });
    expect(reconsiderStatic(choice, l, 'int8-dynamic')).toEqual({
      chosen: 'int8-dynamic',
      reason: `${choice.reason}; but int8-static measured 1.37x the float latency (2.740 ms vs 2.000 ms); published int8-dynamic instead`,
      staticLatency: l,
    });
    expect(reconsiderStatic(choice, l, 'float').reason).toBe(
      `${choice.reason}; but int8-static measured 1.37x the float latency (2.740 ms vs 2.000 ms); int8-dynamic found no weight to convert, so published the optimized float model instead`,
    );
  });

  it('warns an explicit int8-static that is slower', () => {
    expect(slowStaticWarning(staticLatency({ original: 2, converted: 2.74 }))).toBe(
      'int8-static measured 1.37x the float latency (2.740 ms vs 2.000 ms); published as asked (mode "int8" would have fallen back to int8-dynamic)',
    );
  });
});
