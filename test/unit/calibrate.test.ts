import { Tensor } from 'onnxruntime-node';
import {
  addToHistogram,
  calibrate,
  calibrateMinMax,
  emptyHistogram,
  entropyRange,
  percentileRange,
} from '../../lib/convert/calibrate';
import { parseUploadOptions } from '../../lib/convert/options';
import { encodeModel, floatTensor } from '../../lib/onnx/writer';
import { ONNX, prng } from '../helpers/models';

/** Values of a standard normal distribution (Box-Muller on the seeded generator). */
function normal(count: number, seed: number): Float32Array {
  const rand = prng(seed);
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) out[i] = Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
  return out;
}

function histogramOf(values: Float32Array) {
  let min = Infinity;
  let max = -Infinity;
  for (const v of values) [min, max] = [Math.min(min, v), Math.max(max, v)];
  const h = emptyHistogram({ min, max });
  addToHistogram(h, values);
  return h;
}

/** x[1, 1, 8, 8] -> 1x1 Conv with weight 1 -> y: y is x, read back as a calibrated intermediate. */
function passThroughModel(): Uint8Array {
  return encodeModel({
    graph: {
      name: 'pass',
      inputs: [{ name: 'x', elemType: ONNX.FLOAT, shape: [1, 1, 8, 8] }],
      outputs: [{ name: 'z', elemType: ONNX.FLOAT, shape: [1, 1, 8, 8] }],
      initializers: [floatTensor('w', [1, 1, 1, 1], [1])],
      nodes: [
        { opType: 'Conv', inputs: ['x', 'w'], outputs: ['y'] },
        { opType: 'Relu', inputs: ['y'], outputs: ['z'] },
      ],
    },
    opsets: [{ domain: '', version: 17 }],
  });
}

/** 16 samples of values uniform in [0, 1], one of which holds a single outlier of 1000. */
function samplesWithOutlier(): Record<string, Tensor>[] {
  const rand = prng(5);
  return Array.from({ length: 16 }, (_, s) => {
    const data = Float32Array.from({ length: 64 }, () => rand());
    if (s === 3) data[10] = 1000;
    return { x: new Tensor('float32', data, [1, 1, 8, 8]) };
  });
}

describe('calibration methods', () => {
  it('percentile clips a lone outlier that minmax keeps', () => {
    const values = Float32Array.from({ length: 10000 }, (_, i) => i / 9999);
    values[0] = -50;
    values[5000] = 100;
    const h = histogramOf(values);
    expect([h.min, h.max]).toEqual([-50, 100]);
    const r = percentileRange(h, 99.9);
    // 0.1% on each side is 10 values: the outlier and the 9 lowest/highest of [0, 1], found to
    // within one bin (150 / 2048 wide).
    const bin = 150 / 2048;
    expect(Math.abs(r.min)).toBeLessThan(bin);
    expect(Math.abs(r.max - 1)).toBeLessThan(bin);
    // At 100 nothing is clipped.
    expect(percentileRange(h, 100)).toEqual({ min: -50, max: 100 });
  });

  it('percentile of a normal distribution lands on its quantile', () => {
    const h = histogramOf(normal(200000, 1));
    const r = percentileRange(h, 99);
    // The normal's 1% and 99% quantiles are -/+2.326.
    expect(r.max).toBeCloseTo(2.326, 1);
    expect(r.min).toBeCloseTo(-2.326, 1);
  });

  it('entropy on a Relu of a heavy-tailed distribution clips only its thin tail, whatever the share of zeros', () => {
    const rand = prng(3);
    const values = Float32Array.from({ length: 200000 }, () => (rand() < 0.5 ? 0 : -Math.log(1 - rand())));
    const h = histogramOf(values);
    const r = entropyRange(h);
    expect(r.min).toBe(0);
    expect(r.max).toBeLessThan(h.max * 0.9);
    const positive = values.filter((v) => v > 0);
    const kept = positive.filter((v) => v <= r.max).length / positive.length;
    expect(kept).toBeGreaterThan(0.999);
    expect(kept).toBeLessThan(1);
    // The exact zeros are exact on any grid: twice as many of them does not move the range.
    const moreZeros = histogramOf(Float32Array.from([...values, ...new Float32Array(values.length)]));
    expect(entropyRange(moreZeros)).toEqual(r);
  });

  it('a uniform distribution keeps its whole range under entropy', () => {
    const r = entropyRange(histogramOf(Float32Array.from({ length: 50000 }, (_, i) => -1 + (2 * i) / 49999)));
    expect(r.min).toBeCloseTo(-1, 2);
    expect(r.max).toBeCloseTo(1, 2);
  });
});

describe('calibrate on a real model, one sample at a time', () => {
  const model = passThroughModel();
  const samples = samplesWithOutlier();

  it('minmax keeps the outlier, percentile clips it to the bulk, entropy gives a range within minmax', async () => {
    const minmax = await calibrate(model, ['y'], samples, { method: 'minmax', percentile: 99.99 });
    expect(minmax.get('y')!.max).toBe(1000);
    expect(minmax).toEqual(await calibrateMinMax(model, ['y'], samples));

    // 1024 values: at 99.9% about one value is clipped on each side, the outlier at the top.
    const percentile = (await calibrate(model, ['y'], samples, { method: 'percentile', percentile: 99.9 })).get('y')!;
    expect(percentile.max).toBeGreaterThan(0.9);
    expect(percentile.max).toBeLessThan(1.5);
    expect(percentile.min).toBeGreaterThanOrEqual(0);
    expect(percentile.min).toBeLessThan(0.01);

    const entropy = (await calibrate(model, ['y'], samples, { method: 'entropy', percentile: 99.99 })).get('y')!;
    // Entropy runs on the same histograms; it clips long tails, not a lone value beyond a gap.
    expect(entropy.min).toBeGreaterThanOrEqual(0);
    expect(entropy.max).toBeLessThanOrEqual(1000);
    expect(entropy.max).toBeGreaterThan(0.9);
  });
});

describe('calibration options', () => {
  it('parses calibrationMethod and calibrationPercentile (percentile defaults to 99.99)', () => {
    expect(parseUploadOptions({}).pipeline.calibration).toEqual({ method: 'minmax', percentile: 99.99 });
    expect(parseUploadOptions({ calibrationMethod: 'percentile' }).pipeline.calibration).toEqual({ method: 'percentile', percentile: 99.99 });
    expect(parseUploadOptions({ calibrationMethod: 'percentile', calibrationPercentile: 99.9 }).pipeline.calibration.percentile).toBe(99.9);
    expect(parseUploadOptions({ calibrationMethod: 'entropy' }).pipeline.calibration.method).toBe('entropy');
  });

  it.each([
    [{ calibrationMethod: 'kl' }, 'options: "calibrationMethod" must be one of minmax, percentile, entropy'],
    [{ calibrationMethod: 'percentile', calibrationPercentile: 101 }, 'options: "calibrationPercentile" must be a number in [50, 100]'],
    [{ calibrationPercentile: 99 }, 'options: "calibrationPercentile" applies only with "calibrationMethod": "percentile"'],
  ])('refuses %j', (raw, message) => {
    expect(() => parseUploadOptions(raw)).toThrow(message);
  });
});
