import type { Tensor } from 'onnxruntime-node';
import { byOip } from '../protocol/dtypes';
import { checkShapeValues, flattenToShape, toOrtTensor } from '../protocol/tensor-codec';
import { DeclarationError, isEmpty, parseDeclarations, type Declarations } from '../prepost/declarations';
import { readImageSample, type ImageSample } from '../prepost/samples';
import { checkLabel } from '../registry/manifest';
import { CALIBRATION_METHODS, type CalibrationMethod } from './calibrate';
import { ConversionError } from './errors';
import { parseEvaluationSet, type EvaluationSetOption } from './evaluation-set';
import { DEFAULT_PIPELINE_OPTIONS, type ConversionMode, type PipelineOptions } from './pipeline';
import { calibrationSamplesProblem } from './static-int8-mode';

/** What an upload's sidecar (`uploads/<model>/<file>.json`) may say. */
export interface UploadOptions {
  pipeline: PipelineOptions;
  /** Label to move when the gates pass; `null` publishes without moving any label. */
  label: string | null;
  /** Class names for classification outputs, kept in the manifest. */
  classLabels?: string[];
  /** Declared pre- and post-processing, parsed; checked against the model by the job. */
  declarations?: Declarations;
  /** Sample inputs given as images: the job decodes them into `pipeline.evaluate.samples`. */
  imageSamples?: ImageSample[];
  /** `calibration`: a key or prefix under `uploads/<model>/` the job reads calibration samples from. */
  calibration?: string;
  /** `evaluationSet`, parsed; the job completes it (files, output) once it knows the model. */
  evaluationSet?: EvaluationSetOption;
  /** Sample inputs given as texts: the job tokenizes them into `pipeline.evaluate.samples`. */
  textSamples?: TextSample[];
  /** Keras/TF.js uploads: least cosine of each output of the ONNX export against the original. */
  importMinCosine: number;
}

/** Default gate on every output's cosine between a Keras/TF.js original and its ONNX export. */
export const DEFAULT_IMPORT_MIN_COSINE = 0.9999;

/** A sample's text input (a string, or an array of them for a batch), for the declared tokenizer. */
export interface TextSample {
  sample: number;
  input: string;
  texts: string[];
}

const MODES: readonly ConversionMode[] = ['int8-dynamic', 'int8-static', 'int8', 'fp16', 'none'];
const KNOWN_KEYS = ['mode', 'gates', 'label', 'keepFloat', 'sampleInputs', 'dynamicDims', 'minElements', 'minGatherElements', 'reduceRange', 'classLabels', 'preprocess', 'postprocess', 'calibrationMethod', 'calibrationPercentile', 'calibration', 'evaluationSet', 'sensitivityThreshold', 'importMinCosine'];

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function fail(message: string): never {
  throw new ConversionError(`options: ${message}`);
}

function number(value: unknown, key: string, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > max) fail(`"${key}" must be a number in [${min}, ${max}]`);
  return value;
}

/**
 * One sample: `{input: {shape, datatype, data}}`, in OIP terms, decoded with the serving codec;
 * an input declared as an image may instead hold `{"b64": "<file>"}` (or an array of them),
 * collected in `images` for the job to decode once it knows the model.
 */
function sample(value: unknown, index: number, images: ImageSample[], texts: TextSample[]): Record<string, Tensor> {
  if (!isObject(value)) fail(`sampleInputs[${index}] must be an object of named inputs`);
  const feeds: Record<string, Tensor> = {};
  for (const [name, t] of Object.entries(value)) {
    if (typeof t === 'string' || (Array.isArray(t) && t.length > 0 && t.every((v) => typeof v === 'string'))) {
      texts.push({ sample: index, input: name, texts: typeof t === 'string' ? [t] : (t) });
      continue;
    }
    let files;
    try {
      files = readImageSample(t, `sampleInputs[${index}].${name}`);
    } catch (err) {
      fail((err as Error).message);
    }
    if (files) {
      images.push({ sample: index, input: name, files });
      continue;
    }
    if (!isObject(t)) fail(`sampleInputs[${index}].${name} must be {shape, datatype, data}`);
    const info = typeof t.datatype === 'string' ? byOip(t.datatype) : undefined;
    if (!info) fail(`sampleInputs[${index}].${name}.datatype is not a known datatype`);
    try {
      const shape = checkShapeValues(name, t.shape);
      feeds[name] = toOrtTensor(name, info, shape, flattenToShape(name, t.data, shape));
    } catch (err) {
      fail(`sampleInputs[${index}]: ${(err as Error).message}`);
    }
  }
  return feeds;
}

/**
 * Reads and checks an upload's options. Unknown keys are an error, not silently ignored: a
 * misspelt gate must not publish a model the user meant to hold back.
 */
export function parseUploadOptions(raw: unknown): UploadOptions {
  const pipeline: PipelineOptions = { ...DEFAULT_PIPELINE_OPTIONS, gates: { ...DEFAULT_PIPELINE_OPTIONS.gates }, evaluate: { ...DEFAULT_PIPELINE_OPTIONS.evaluate } };
  const out: UploadOptions = { pipeline, label: 'stable', importMinCosine: DEFAULT_IMPORT_MIN_COSINE };
  if (raw === undefined) return out;
  if (!isObject(raw)) fail('the sidecar must hold a JSON object');
  const unknown = Object.keys(raw).filter((k) => !KNOWN_KEYS.includes(k));
  if (unknown.length > 0) fail(`unknown key${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => `"${k}"`).join(', ')}; known keys: ${KNOWN_KEYS.join(', ')}`);

  if (raw.mode !== undefined) {
    if (!MODES.includes(raw.mode as ConversionMode)) fail(`"mode" must be one of ${MODES.join(', ')}`);
    pipeline.mode = raw.mode as ConversionMode;
  }
  if (raw.gates !== undefined) {
    if (!isObject(raw.gates)) fail('"gates" must be an object {minCosine?, minTop1?, maxAccuracyDrop?}');
    const extra = Object.keys(raw.gates).filter((k) => k !== 'minCosine' && k !== 'minTop1' && k !== 'maxAccuracyDrop');
    if (extra.length) fail(`unknown gate ${extra.map((k) => `"${k}"`).join(', ')}; gates are minCosine, minTop1, maxAccuracyDrop`);
    if (raw.gates.minCosine !== undefined) pipeline.gates.minCosine = number(raw.gates.minCosine, 'gates.minCosine', -1, 1);
    if (raw.gates.minTop1 !== undefined) pipeline.gates.minTop1 = number(raw.gates.minTop1, 'gates.minTop1', 0, 1);
    if (raw.gates.maxAccuracyDrop !== undefined) pipeline.gates.maxAccuracyDrop = number(raw.gates.maxAccuracyDrop, 'gates.maxAccuracyDrop', 0, 100);
  }
  if (raw.label !== undefined) {
    if (raw.label === null) out.label = null;
    else if (typeof raw.label === 'string') {
      try {
        out.label = checkLabel(raw.label);
      } catch (err) {
        fail((err as Error).message);
      }
    } else fail('"label" must be a label name or null');
  }
  if (raw.keepFloat !== undefined) {
    if (!Array.isArray(raw.keepFloat) || !raw.keepFloat.every((k) => typeof k === 'string')) fail('"keepFloat" must be an array of node or output names');
    pipeline.keepFloat = raw.keepFloat;
  }
  if (raw.minElements !== undefined) pipeline.minElements = number(raw.minElements, 'minElements', 0, 2 ** 31);
  if (raw.minGatherElements !== undefined) pipeline.minGatherElements = number(raw.minGatherElements, 'minGatherElements', 0, 2 ** 31);
  if (raw.reduceRange !== undefined) {
    if (typeof raw.reduceRange !== 'boolean') fail('"reduceRange" must be true or false');
    pipeline.reduceRange = raw.reduceRange;
  }
  if (raw.dynamicDims !== undefined) {
    if (!isObject(raw.dynamicDims)) fail('"dynamicDims" must be {first, other}');
    pipeline.evaluate.dynamicDims = {
      first: number(raw.dynamicDims.first ?? pipeline.evaluate.dynamicDims.first, 'dynamicDims.first', 1, 4096),
      other: number(raw.dynamicDims.other ?? pipeline.evaluate.dynamicDims.other, 'dynamicDims.other', 1, 65536),
    };
  }
  if (raw.sampleInputs !== undefined) {
    if (!Array.isArray(raw.sampleInputs) || raw.sampleInputs.length === 0) fail('"sampleInputs" must be a non-empty array');
    const images: ImageSample[] = [];
    const texts: TextSample[] = [];
    pipeline.evaluate.samples = raw.sampleInputs.map((v, i) => sample(v, i, images, texts));
    if (images.length > 0) out.imageSamples = images;
    if (texts.length > 0) out.textSamples = texts;
  }
  if (raw.calibrationMethod !== undefined) {
    if (!CALIBRATION_METHODS.includes(raw.calibrationMethod as CalibrationMethod)) fail(`"calibrationMethod" must be one of ${CALIBRATION_METHODS.join(', ')}`);
    pipeline.calibration = { ...pipeline.calibration, method: raw.calibrationMethod as CalibrationMethod };
  }
  if (raw.calibrationPercentile !== undefined) {
    if (pipeline.calibration.method !== 'percentile') fail('"calibrationPercentile" applies only with "calibrationMethod": "percentile"');
    pipeline.calibration = { ...pipeline.calibration, percentile: number(raw.calibrationPercentile, 'calibrationPercentile', 50, 100) };
  }
  if (raw.calibration !== undefined) {
    if (typeof raw.calibration !== 'string' || raw.calibration.length === 0) fail('"calibration" must be a key or prefix under uploads/<model>/');
    out.calibration = raw.calibration;
  }
  if (raw.sensitivityThreshold !== undefined) {
    if (pipeline.mode !== 'int8-static' && pipeline.mode !== 'int8') fail('"sensitivityThreshold" applies to mode int8-static or int8');
    pipeline.sensitivityThreshold = number(raw.sensitivityThreshold, 'sensitivityThreshold', 0, 2);
  }
  if (raw.evaluationSet !== undefined) out.evaluationSet = parseEvaluationSet(raw.evaluationSet);
  // Calibration files are counted once the job has read them.
  if (pipeline.mode === 'int8-static' && out.calibration === undefined) {
    const problem = calibrationSamplesProblem(pipeline.evaluate.samples?.length);
    if (problem) fail(problem);
  }
  if (raw.importMinCosine !== undefined) out.importMinCosine = number(raw.importMinCosine, 'importMinCosine', -1, 1);
  if (raw.classLabels !== undefined) {
    if (!Array.isArray(raw.classLabels) || !raw.classLabels.every((k) => typeof k === 'string')) fail('"classLabels" must be an array of strings');
    out.classLabels = raw.classLabels;
  }
  if (raw.preprocess !== undefined || raw.postprocess !== undefined) {
    try {
      const declarations = parseDeclarations(raw.preprocess, raw.postprocess);
      if (!isEmpty(declarations)) out.declarations = declarations;
    } catch (err) {
      if (err instanceof DeclarationError) fail(err.message);
      throw err;
    }
  }
  if (out.imageSamples && !out.declarations) fail(`sampleInputs[${out.imageSamples[0]?.sample}].${out.imageSamples[0]?.input}: images are accepted only for an input declared in preprocess as an image`);
  for (const t of out.textSamples ?? []) {
    if (out.declarations?.preprocess[t.input]?.type !== 'text') fail(`sampleInputs[${t.sample}].${t.input}: texts are accepted only for an input declared in preprocess as text`);
  }
  return out;
}
