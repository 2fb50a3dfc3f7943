import type { Tensor } from 'onnxruntime-node';
import type { Declarations } from '../prepost/declarations';
import { byOip } from '../protocol/dtypes';
import { checkShapeValues, flattenToShape, toOrtTensor } from '../protocol/tensor-codec';
import type { TensorSpec } from '../registry/manifest';
import type { ObjectStore } from '../storage/object-store';
import type { Expected, LabelledExample, LabelledSet } from './accuracy';
import { ConversionError } from './errors';
import { readSampleFiles, sampleLocation } from './sample-files';

/** The `evaluationSet` option as parsed, before the job knows the model. */
export interface EvaluationSetOption {
  examples: LabelledExample[];
  /** A key or folder under `uploads/<model>/` holding more labelled examples. */
  files?: string;
  output?: string;
  tolerance: { atol: number; rtol: number };
}

export const DEFAULT_TOLERANCE = { atol: 0.01, rtol: 0.01 };

/** Most inline examples an options file may hold (the files under `files` have their own bounds). */
export const MAX_INLINE_EXAMPLES = 1024;

const KEYS = ['examples', 'files', 'output', 'tolerance'];

function fail(message: string): never {
  throw new ConversionError(`options: ${message}`);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** One tensor given as `{shape, datatype, data}` in OIP terms, decoded with the serving codec. */
export function parseTensor(value: unknown, where: string): Tensor {
  if (!isObject(value)) fail(`${where} must be {shape, datatype, data}`);
  const info = typeof value.datatype === 'string' ? byOip(value.datatype) : undefined;
  if (!info) fail(`${where}.datatype is not a known datatype`);
  try {
    const shape = checkShapeValues(where, value.shape);
    return toOrtTensor(where, info, shape, flattenToShape(where, value.data, shape));
  } catch (err) {
    fail(`${where}: ${(err as Error).message}`);
  }
}

function floatsOf(t: Tensor): Float32Array {
  if (t.type === 'string') fail('an expected tensor must be numeric');
  return Float32Array.from(t.data as ArrayLike<number | bigint>, (v) => Number(v));
}

/** `label` (a class index, or one per row) or `expected` (a tensor), exactly one of them. */
function expectedOf(value: Record<string, unknown>, where: string): Expected {
  if ((value.label === undefined) === (value.expected === undefined)) fail(`${where} must give either "label" (a class index, or one per row) or "expected" (a tensor {shape, datatype, data})`);
  if (value.expected !== undefined) return { kind: 'tensor', values: floatsOf(parseTensor(value.expected, `${where}.expected`)) };
  const labels = Array.isArray(value.label) ? value.label : [value.label];
  if (labels.length === 0 || !labels.every((l) => Number.isInteger(l) && (l as number) >= 0)) fail(`${where}.label must be a class index (an integer >= 0) or an array of them, one per row`);
  return { kind: 'class', classes: labels as number[] };
}

/**
 * Reads `evaluationSet`: `{examples?: [{inputs: {<input>: {shape, datatype, data}}, label | expected}],
 * files?: "<key or folder under uploads/<model>/>", output?: "<output name>", tolerance?: {atol, rtol}}`.
 */
export function parseEvaluationSet(raw: unknown): EvaluationSetOption {
  if (!isObject(raw)) fail('"evaluationSet" must be an object {examples?, files?, output?, tolerance?}');
  const extra = Object.keys(raw).filter((k) => !KEYS.includes(k));
  if (extra.length) fail(`evaluationSet: unknown key ${extra.map((k) => `"${k}"`).join(', ')}; known keys: ${KEYS.join(', ')}`);
  if (raw.examples === undefined && raw.files === undefined) fail('"evaluationSet" needs "examples", "files" or both');
  const out: EvaluationSetOption = { examples: [], tolerance: { ...DEFAULT_TOLERANCE } };
  if (raw.examples !== undefined) {
    if (!Array.isArray(raw.examples) || raw.examples.length === 0) fail('"evaluationSet.examples" must be a non-empty array');
    if (raw.examples.length > MAX_INLINE_EXAMPLES) fail(`"evaluationSet.examples" holds ${raw.examples.length} examples, over the limit of ${MAX_INLINE_EXAMPLES}`);
    out.examples = raw.examples.map((e, i) => {
      const where = `evaluationSet.examples[${i}]`;
      if (!isObject(e) || !isObject(e.inputs)) fail(`${where} must be {inputs: {<input>: {shape, datatype, data}}, label | expected}`);
      const feeds: Record<string, Tensor> = {};
      for (const [name, t] of Object.entries(e.inputs)) feeds[name] = parseTensor(t, `${where}.inputs.${name}`);
      return { source: where, feeds, expected: expectedOf(e, where) };
    });
  }
  if (raw.files !== undefined) {
    if (typeof raw.files !== 'string' || raw.files.length === 0) fail('"evaluationSet.files" must be a key or prefix under uploads/<model>/');
    out.files = raw.files;
  }
  if (raw.output !== undefined) {
    if (typeof raw.output !== 'string') fail('"evaluationSet.output" must be an output name');
    out.output = raw.output;
  }
  if (raw.tolerance !== undefined) {
    const t = raw.tolerance;
    const ok = (v: unknown) => typeof v === 'number' && Number.isFinite(v) && v >= 0;
    if (!isObject(t) || !ok(t.atol ?? 0) || !ok(t.rtol ?? 0) || Object.keys(t).some((k) => k !== 'atol' && k !== 'rtol')) fail('"evaluationSet.tolerance" must be {atol?, rtol?}, numbers >= 0');
    out.tolerance = { atol: (t.atol as number | undefined) ?? DEFAULT_TOLERANCE.atol, rtol: (t.rtol as number | undefined) ?? DEFAULT_TOLERANCE.rtol };
  }
  return out;
}

/**
 * The labelled set, complete: inline examples and the files' (a JSON file gives `label` or
 * `expected` beside its `inputs`; an image under `<folder>/<class>/` is of that class, by index
 * or by name in `classLabels`), and the output judged: `output`, else the one output declared
 * in `postprocess`, else the model's only output. Every example must say the same kind of thing.
 */
export async function resolveEvaluationSet(
  option: EvaluationSetOption,
  store: ObjectStore,
  modelName: string,
  model: { inputs: readonly TensorSpec[]; outputs: readonly TensorSpec[] },
  declarations: Declarations | undefined,
  classLabels: readonly string[] | undefined,
): Promise<LabelledSet> {
  const examples = [...option.examples];
  if (option.files !== undefined) {
    const files = await readSampleFiles(store, 'evaluationSet.files', sampleLocation('evaluationSet.files', modelName, option.files), model, declarations);
    for (const f of files) {
      if (f.body) {
        examples.push({ source: f.key, feeds: f.feeds, expected: expectedOf(f.body, f.key) });
      } else if (f.folder !== undefined) {
        const index = /^\d+$/.test(f.folder) ? Number(f.folder) : (classLabels?.indexOf(f.folder) ?? -1);
        if (index < 0) fail(`evaluationSet.files: ${f.key}: its folder "${f.folder}" is neither a class index nor one of "classLabels"`);
        examples.push({ source: f.key, feeds: f.feeds, expected: { kind: 'class', classes: [index] } });
      } else {
        fail(`evaluationSet.files: ${f.key} carries no expected answer (a JSON file gives "label" or "expected"; an image sits in a folder named by its class)`);
      }
    }
  }
  const kinds = new Set(examples.map((e) => e.expected.kind));
  if (kinds.size > 1) fail('evaluationSet: mixes class labels and expected tensors; give one kind');
  const declared = Object.keys(declarations?.postprocess ?? {});
  const output = option.output ?? (declared.length === 1 ? declared[0] : model.outputs.length === 1 ? model.outputs[0]?.name : undefined);
  if (!output) fail(`evaluationSet: say which output the labels are about in "output"; the model's outputs are ${model.outputs.map((o) => `"${o.name}"`).join(', ')}`);
  if (!model.outputs.some((o) => o.name === output)) fail(`evaluationSet.output: the model has no output "${output}"; its outputs are ${model.outputs.map((o) => `"${o.name}"`).join(', ')}`);
  const post = declarations?.postprocess[output];
  const mask = post?.type === 'mask' ? { activation: post.activation, threshold: post.threshold ?? 0.5 } : undefined;
  return { output, examples, tolerance: option.tolerance, ...(mask ? { mask } : {}) };
}
