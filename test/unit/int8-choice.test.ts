import { Tensor } from 'onnxruntime-node';
import { chooseInt8Mode, countMacs } from '../../lib/convert/int8-choice';
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
