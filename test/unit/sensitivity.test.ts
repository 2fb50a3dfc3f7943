import { Tensor } from 'onnxruntime-node';
import { calibrateMinMax } from '../../lib/convert/calibrate';
import { measureSensitivity } from '../../lib/convert/sensitivity';
import { quantizeStatic, staticCalibrationTargets } from '../../lib/convert/static-int8';
import { OnnxModel } from '../../lib/onnx/model';
import { convStackModel, prng } from '../helpers/models';

function images(count: number, size: number, seed: number): Record<string, Tensor>[] {
  const rand = prng(seed);
  return Array.from({ length: count }, () => ({ image: new Tensor('float32', Float32Array.from({ length: 3 * size * size }, rand), [1, 3, size, size]) }));
}

describe('sensitivity pass: each Conv quantized alone', () => {
  const source = convStackModel(8, 4, 12);
  const samples = images(8, 12, 4);

  it('measures a cost per Conv and keeps float exactly those over the threshold, saying why', async () => {
    const ranges = await calibrateMinMax(source, staticCalibrationTargets(OnnxModel.decode(source), { keepFloat: [] }), samples);
    const all = await measureSensitivity(source, ranges, { keepFloat: [] }, samples, 2, 1);
    const names = Object.keys(all.costs);
    expect(names).toEqual(['Conv_0', 'Conv_2', 'Conv_4', 'Conv_6']);
    for (const cost of Object.values(all.costs)) {
      expect(cost).toBeGreaterThan(0);
      expect(cost).toBeLessThan(0.01);
    }
    expect(all.sensitive).toEqual({});

    // A threshold between the costs keeps the costlier Convs only.
    const sorted = Object.values(all.costs).sort((a, b) => a - b);
    const threshold = (sorted[1]! + sorted[2]!) / 2;
    const some = await measureSensitivity(source, ranges, { keepFloat: [] }, samples, threshold, 1);
    const over = names.filter((n) => all.costs[n]! > threshold);
    expect(over).toHaveLength(2);
    expect(Object.keys(some.sensitive).sort()).toEqual(over.sort());
    expect(some.sensitive[over[0]!]).toMatch(/^sensitivity: quantized alone it costs \d\.\d\de-\d+ of the output cosine, over /);

    const model = OnnxModel.decode(source);
    const report = quantizeStatic(model, ranges, { keepFloat: [], sensitive: some.sensitive });
    expect(report.convs).toBe(2);
    expect(Object.keys(report.keptFloat).sort()).toEqual(over.sort());

    // A keepFloat Conv (here named by its output) is not measured.
    expect(Object.keys((await measureSensitivity(source, ranges, { keepFloat: ['c0'] }, samples, 2, 1)).costs)).toEqual(['Conv_2', 'Conv_4', 'Conv_6']);
  });
});
