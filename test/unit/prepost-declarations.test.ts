import { checkDeclarations, DEFAULT_MAX_PIXELS, parseDeclarations } from '../../lib/prepost/declarations';
import type { TensorSpec } from '../../lib/registry/manifest';

const inputs: TensorSpec[] = [
  { name: 'pixels', datatype: 'FP32', shape: [-1, 3, 224, 224] },
  { name: 'nhwc', datatype: 'UINT8', shape: [1, 160, 120, 3] },
  { name: 'dyn', datatype: 'FP16', shape: [-1, 3, -1, -1] },
  { name: 'ids', datatype: 'INT64', shape: [-1, 128] },
];
const outputs: TensorSpec[] = [
  { name: 'logits', datatype: 'FP32', shape: [-1, 10] },
  { name: 'mask', datatype: 'FP32', shape: [-1, 1, 64, 64] },
  { name: 'boxes', datatype: 'FP32', shape: [-1, 100, 4, 2] },
  { name: 'counts', datatype: 'INT64', shape: [-1, 10] },
];
const model = { inputs, outputs };

function check(pre: unknown, post?: unknown, labels?: string[]) {
  return checkDeclarations(parseDeclarations(pre, post), model, labels);
}

describe('declared pre- and post-processing: parsed', () => {
  test('defaults are filled in and stated', () => {
    const d = parseDeclarations({ pixels: { type: 'image' } }, { logits: { type: 'classification' }, mask: { type: 'mask' } });
    expect(d.preprocess.pixels).toEqual({
      type: 'image', width: 0, height: 0, resize: 'stretch', background: [0, 0, 0], channels: 'rgb', layout: '', dtype: '',
      scale: 1, mean: [0, 0, 0], std: [1, 1, 1], maxPixels: DEFAULT_MAX_PIXELS,
    });
    expect(d.postprocess).toEqual({
      logits: { type: 'classification', activation: 'softmax', topK: 0 },
      mask: { type: 'mask', activation: 'none', threshold: 0.5, resizeToInput: false },
    });
  });

  test('a single mean or std applies to every channel; gray has one channel', () => {
    expect(parseDeclarations({ p: { type: 'image', mean: 0.5, std: [0.1, 0.2, 0.3] } }, undefined).preprocess.p).toMatchObject({ mean: [0.5, 0.5, 0.5], std: [0.1, 0.2, 0.3] });
    expect(parseDeclarations({ p: { type: 'image', channels: 'gray', mean: [0.5] } }, undefined).preprocess.p).toMatchObject({ mean: [0.5], std: [1] });
  });

  test.each([
    [{ pixels: { type: 'image', mena: [0.5] } }, undefined, 'preprocess.pixels: unknown key "mena"; known keys: type, width, height, resize, background, channels, layout, dtype, scale, mean, std, maxPixels'],
    [{ pixels: { type: 'video' } }, undefined, 'preprocess.pixels.type must be one of image'],
    [{ text: { type: 'text', tokenizer: 'a/tokenizer.json' } }, undefined, 'preprocess.text.tokenizer must be the file name of a tokenizer.json uploaded beside the model'],
    [{ text: { type: 'text', tokenizer: 'manifest.json' } }, undefined, 'preprocess.text.tokenizer must be the file name of a tokenizer.json uploaded beside the model'],
    [{ text: { type: 'text', padding: 'right' } }, undefined, 'preprocess.text.padding must be one of max_length, longest'],
    [{ text: { type: 'text', truncation: 'yes' } }, undefined, 'preprocess.text.truncation must be true or false'],
    [{ pixels: 'image' }, undefined, 'preprocess.pixels must be an object with a "type"'],
    [['pixels'], undefined, '"preprocess" must be an object keyed by input name'],
    [{ pixels: { type: 'image', resize: 'crop' } }, undefined, 'preprocess.pixels.resize must be one of stretch, cover, contain'],
    [{ pixels: { type: 'image', channels: 'RGB' } }, undefined, 'preprocess.pixels.channels must be one of rgb, bgr, gray'],
    [{ pixels: { type: 'image', layout: 'nchw' } }, undefined, 'preprocess.pixels.layout must be one of NCHW, NHWC, CHW, HWC'],
    [{ pixels: { type: 'image', dtype: 'float64' } }, undefined, 'preprocess.pixels.dtype must be one of float32, float16, uint8'],
    [{ pixels: { type: 'image', width: 0 } }, undefined, 'preprocess.pixels.width must be an integer in [1, 16384]'],
    [{ pixels: { type: 'image', height: 2.5 } }, undefined, 'preprocess.pixels.height must be an integer in [1, 16384]'],
    [{ pixels: { type: 'image', mean: [0.5, 0.5] } }, undefined, 'preprocess.pixels.mean must be a number or an array of 3 numbers (one per channel)'],
    [{ pixels: { type: 'image', std: [1, 0, 1] } }, undefined, 'preprocess.pixels.std[1] must not be 0'],
    [{ pixels: { type: 'image', scale: 'x' } }, undefined, 'preprocess.pixels.scale must be a finite number'],
    [{ pixels: { type: 'image', background: [0, 0, 256] } }, undefined, 'preprocess.pixels.background[2] must be an integer in [0, 255]'],
    [{ pixels: { type: 'image', maxPixels: -1 } }, undefined, 'preprocess.pixels.maxPixels must be an integer in [1, 1000000000]'],
    [undefined, { logits: { type: 'classification', topk: 3 } }, 'postprocess.logits: unknown key "topk"; known keys: type, activation, topK'],
    [undefined, { logits: { type: 'classification', activation: 'relu' } }, 'postprocess.logits.activation must be one of softmax, sigmoid, none'],
    [undefined, { logits: { type: 'classification', topK: 0 } }, 'postprocess.logits.topK must be an integer in [1, 1000000]'],
    [undefined, { mask: { type: 'mask', threshold: 2 } }, 'postprocess.mask.threshold must be a number in [0, 1] or null (a soft mask)'],
    [undefined, { mask: { type: 'mask', activation: 'softmax' } }, 'postprocess.mask.activation must be one of sigmoid, none'],
    [undefined, { mask: { type: 'mask', resizeToInput: 'yes' } }, 'postprocess.mask.resizeToInput must be true or false'],
    [undefined, { mask: { type: 'image' } }, 'postprocess.mask.type must be one of classification, mask'],
    [undefined, { constructor: { type: 'toString' } }, 'postprocess.constructor.type must be one of classification, mask'],
  ])('refused: %j %j', (pre, post, message) => {
    expect(() => parseDeclarations(pre, post)).toThrow(message);
  });
});

describe('declared pre- and post-processing: checked against the model', () => {
  test('size, layout and dtype come from the model when it fixes them', () => {
    const d = check({ pixels: { type: 'image', mean: [0.485, 0.456, 0.406] }, nhwc: { type: 'image' }, dyn: { type: 'image', layout: 'NCHW', width: 320, height: 240 } });
    expect(d.preprocess.pixels).toMatchObject({ layout: 'NCHW', dtype: 'float32', width: 224, height: 224 });
    expect(d.preprocess.nhwc).toMatchObject({ layout: 'NHWC', dtype: 'uint8', width: 120, height: 160 });
    expect(d.preprocess.dyn).toMatchObject({ layout: 'NCHW', dtype: 'float16', width: 320, height: 240 });
  });

  test('topK defaults to 5, or to every class when the model has fewer', () => {
    const few = { inputs, outputs: [{ name: 'p', datatype: 'FP32' as const, shape: [-1, 3] }, { name: 'q', datatype: 'FP32' as const, shape: [-1, -1] }] };
    const d = checkDeclarations(parseDeclarations(undefined, { logits: { type: 'classification' }, p: { type: 'classification' }, q: { type: 'classification' } }), { inputs, outputs: [...outputs, ...few.outputs] });
    expect([d.postprocess.logits, d.postprocess.p, d.postprocess.q].map((c) => (c as { topK: number }).topK)).toEqual([5, 3, 5]);
  });

  test('outputs: classification with labels of the right count, a mask resized to an image input', () => {
    const labels = Array.from({ length: 10 }, (_, i) => `class ${i}`);
    const d = check({ pixels: { type: 'image' } }, { logits: { type: 'classification', topK: 10 }, mask: { type: 'mask', resizeToInput: true } }, labels);
    expect(d.postprocess.logits).toEqual({ type: 'classification', activation: 'softmax', topK: 10 });
    expect(d.postprocess.mask).toMatchObject({ type: 'mask', resizeToInput: true });
  });

  test.each([
    [{ image: { type: 'image' } }, undefined, undefined, 'preprocess.image: the model has no input "image"; its inputs are "pixels", "nhwc", "dyn", "ids"'],
    [{ ids: { type: 'image', layout: 'HWC' } }, undefined, undefined, 'preprocess.ids: input "ids" is INT64; an image input must be FP32, FP16 or UINT8'],
    [{ pixels: { type: 'image', dtype: 'float16' } }, undefined, undefined, 'preprocess.pixels.dtype is float16 but input "pixels" is FP32 (float32)'],
    [{ pixels: { type: 'image', width: 256 } }, undefined, undefined, 'preprocess.pixels.width is 256 but input "pixels" fixes it at 224 in [-1, 3, 224, 224]'],
    [{ pixels: { type: 'image', channels: 'gray' } }, undefined, undefined, 'preprocess.pixels.layout is required: the shape [-1, 3, 224, 224] of input "pixels" does not say whether channels come first or last'],
    [{ pixels: { type: 'image', channels: 'gray', layout: 'NCHW' } }, undefined, undefined, 'preprocess.pixels.channels gray gives 1 channel, but input "pixels" has 3 in its NCHW shape [-1, 3, 224, 224]'],
    [{ pixels: { type: 'image', layout: 'CHW' } }, undefined, undefined, 'preprocess.pixels.layout CHW needs a rank-3 input, but "pixels" has shape [-1, 3, 224, 224]'],
    [{ dyn: { type: 'image', layout: 'NCHW', width: 320 } }, undefined, undefined, 'preprocess.dyn.height is required: input "dyn" has a dynamic height in [-1, 3, -1, -1]'],
    [{ nhwc: { type: 'image', scale: 0.5 } }, undefined, undefined, 'preprocess.nhwc: a uint8 input takes pixels as they are; scale, mean and std apply to float inputs only'],
    [undefined, { nothing: { type: 'mask' } }, undefined, 'postprocess.nothing: the model has no output "nothing"; its outputs are "logits", "mask", "boxes", "counts"'],
    [undefined, { counts: { type: 'classification' } }, undefined, 'postprocess.counts: output "counts" is INT64; classification needs float scores (FP32, FP16 or FP64)'],
    [undefined, { mask: { type: 'classification' } }, undefined, 'postprocess.mask: output "mask" has shape [-1, 1, 64, 64]; classification needs [C] or [N, C]'],
    [undefined, { logits: { type: 'classification', topK: 11 } }, undefined, 'postprocess.logits.topK is 11 but output "logits" has 10 classes'],
    [undefined, { logits: { type: 'classification' } }, ['cat', 'dog'], 'postprocess.logits: classLabels has 2 names but output "logits" has 10 classes'],
    [undefined, { boxes: { type: 'mask' } }, undefined, 'postprocess.boxes: output "boxes" has shape [-1, 100, 4, 2]; a mask needs [N, 1, H, W], [N, H, W, 1], [N, H, W] or [H, W]'],
    [undefined, { mask: { type: 'mask', resizeToInput: true } }, undefined, 'postprocess.mask.resizeToInput needs an image input declared in preprocess'],
  ])('refused: %j %j', (pre, post, labels, message) => {
    expect(() => check(pre, post, labels)).toThrow(message);
  });
});
