import { Tensor } from 'onnxruntime-node';
import { accuracyReport, iou, maskBits, scoreModel, type LabelledSet } from '../../lib/convert/accuracy';
import { parseEvaluationSet } from '../../lib/convert/evaluation-set';
import { parseUploadOptions } from '../../lib/convert/options';
import { colourClassifierModel } from '../helpers/models';

/** A 2x2 picture of one colour, as the colour classifier's input. */
function colour(r: number, g: number, b: number): Record<string, Tensor> {
  return { image: new Tensor('float32', Float32Array.from([r, r, r, r, g, g, g, g, b, b, b, b]), [1, 3, 2, 2]) };
}

describe('accuracy on a labelled set', () => {
  it('thresholds masks after the activation and measures IoU', () => {
    expect([...maskBits([-1, 0, 0.2, 3], { activation: 'sigmoid', threshold: 0.5 })]).toEqual([0, 1, 1, 1]);
    expect([...maskBits([0.49, 0.5, 0.9], { activation: 'none', threshold: 0.5 })]).toEqual([0, 1, 1]);
    expect(iou(Uint8Array.from([1, 1, 0, 0]), Uint8Array.from([1, 0, 1, 0]))).toEqual({ intersection: 1, union: 3 });
  });

  it('counts a classifier\'s rows whose argmax is their label; balance is accuracy per ms of median latency', async () => {
    const set: LabelledSet = {
      output: 'logits',
      tolerance: { atol: 0, rtol: 0 },
      examples: [
        { source: 'a', feeds: colour(1, 0, 0), expected: { kind: 'class', classes: [0] } },
        { source: 'b', feeds: colour(0, 1, 0), expected: { kind: 'class', classes: [1] } },
        { source: 'c', feeds: colour(0, 0, 1), expected: { kind: 'class', classes: [1] } },
        { source: 'd', feeds: colour(0, 0, 1), expected: { kind: 'class', classes: [2] } },
      ],
    };
    const score = await scoreModel(colourClassifierModel({ size: 2 }), set, 1);
    expect(score).toEqual({ correct: 3, total: 4, percent: 75 });
    const report = accuracyReport(set, score, { correct: 2, total: 4, percent: 50 }, { original: 2, converted: 0.5 });
    expect(report).toEqual({
      output: 'logits',
      kind: 'classification',
      examples: 4,
      original: { correct: 3, total: 4, percent: 75, balance: 37.5 },
      converted: { correct: 2, total: 4, percent: 50, balance: 100 },
      drop: 25,
    });
  });

  it('counts expected-tensor elements within atol + rtol x |expected|', async () => {
    // Logits of a pure red picture: 7, -3, -3.
    const set: LabelledSet = {
      output: 'logits',
      tolerance: { atol: 0.1, rtol: 0 },
      examples: [{ source: 'a', feeds: colour(1, 0, 0), expected: { kind: 'tensor', values: Float32Array.from([7.05, -3.2, -3]) } }],
    };
    expect(await scoreModel(colourClassifierModel({ size: 2 }), set, 1)).toEqual({ correct: 2, total: 3, percent: (2 / 3) * 100 });
  });

  it('a wrong number of labels for the rows fails naming the example', async () => {
    const set: LabelledSet = { output: 'logits', tolerance: { atol: 0, rtol: 0 }, examples: [{ source: 'evaluationSet.examples[0]', feeds: colour(1, 0, 0), expected: { kind: 'class', classes: [0, 1] } }] };
    await expect(scoreModel(colourClassifierModel({ size: 2 }), set, 1)).rejects.toThrow('evaluationSet: evaluationSet.examples[0]: 2 labels for 1 rows of output "logits" [1, 3]');
  });
});

describe('evaluationSet and maxAccuracyDrop options', () => {
  const image = { shape: [1, 3, 2, 2], datatype: 'FP32', data: new Array(12).fill(0) };

  it('parses inline examples, files, output and tolerance; the gate defaults to 1 point', () => {
    const set = parseEvaluationSet({ examples: [{ inputs: { image }, label: 2 }], files: 'eval/', output: 'logits', tolerance: { atol: 0.5 } });
    expect(set.examples[0]!.expected).toEqual({ kind: 'class', classes: [2] });
    expect(set.examples[0]!.feeds.image!.dims).toEqual([1, 3, 2, 2]);
    expect(set).toMatchObject({ files: 'eval/', output: 'logits', tolerance: { atol: 0.5, rtol: 0.01 } });
    expect(parseUploadOptions({}).pipeline.gates.maxAccuracyDrop).toBe(1);
    expect(parseUploadOptions({ gates: { maxAccuracyDrop: 0.5 } }).pipeline.gates.maxAccuracyDrop).toBe(0.5);
  });

  it.each([
    [[], 'options: "evaluationSet" must be an object {examples?, files?, output?, tolerance?}'],
    [{}, 'options: "evaluationSet" needs "examples", "files" or both'],
    [{ files: 'x', extra: 1 }, 'options: evaluationSet: unknown key "extra"; known keys: examples, files, output, tolerance'],
    [{ examples: [{ inputs: { image } }] }, 'options: evaluationSet.examples[0] must give either "label" (a class index, or one per row) or "expected" (a tensor {shape, datatype, data})'],
    [{ examples: [{ inputs: { image }, label: -1 }] }, 'options: evaluationSet.examples[0].label must be a class index (an integer >= 0) or an array of them, one per row'],
    [{ examples: [{ inputs: { image: { ...image, datatype: 'F32' } }, label: 0 }] }, 'options: evaluationSet.examples[0].inputs.image.datatype is not a known datatype'],
    [{ files: 'x', tolerance: { atol: -1 } }, 'options: "evaluationSet.tolerance" must be {atol?, rtol?}, numbers >= 0'],
  ])('refuses evaluationSet %j', (evaluationSet, message) => {
    expect(() => parseUploadOptions({ evaluationSet })).toThrow(message);
  });

  it('refuses a maxAccuracyDrop out of range', () => {
    expect(() => parseUploadOptions({ gates: { maxAccuracyDrop: -1 } })).toThrow('options: "gates.maxAccuracyDrop" must be a number in [0, 100]');
  });
});
