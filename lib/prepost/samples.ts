import type { Tensor } from 'onnxruntime-node';
import { AppError } from '../errors';
import type { TensorSpec } from '../registry/manifest';
import { checkDeclarations, DeclarationError, imageDeclaration, type Declarations } from './declarations';
import { imagesToTensor } from './image';

/** An evaluation sample's input given as encoded images, to go through the declared pre-processing. */
export interface ImageSample {
  /** Index of the sample in `sampleInputs`. */
  sample: number;
  input: string;
  files: Buffer[];
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

function isB64(value: unknown): value is { b64: unknown } {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && 'b64' in value && Object.keys(value).length === 1;
}

/**
 * Reads a sample input given as `{"b64": "<file>"}` or an array of them (a batch); undefined
 * when the value is not images (a tensor `{shape, datatype, data}`).
 */
export function readImageSample(value: unknown, where: string): Buffer[] | undefined {
  const list = isB64(value) ? [value] : Array.isArray(value) && value.length > 0 && value.every(isB64) ? value : undefined;
  if (!list) return undefined;
  return list.map((v, i) => {
    const b64 = (v).b64;
    if (typeof b64 !== 'string' || b64.length % 4 !== 0 || !BASE64.test(b64)) throw new DeclarationError(`${where}: image ${i} "b64" must hold a base64 string`);
    return Buffer.from(b64, 'base64');
  });
}

/**
 * Turns image samples into the tensors their inputs take, through the same declared
 * pre-processing the service applies, so the evaluation compares the models on what they will
 * be fed. An image that does not decode, or an input not declared as an image, fails the job.
 */
export async function imageSampleFeeds(samples: readonly ImageSample[], declared: Declarations, model: { inputs: readonly TensorSpec[]; outputs: readonly TensorSpec[] }): Promise<{ sample: number; input: string; tensor: Tensor }[]> {
  const fitted = checkDeclarations(declared, model);
  const out: { sample: number; input: string; tensor: Tensor }[] = [];
  for (const s of samples) {
    const where = `sampleInputs[${s.sample}].${s.input}`;
    const decl = imageDeclaration(fitted, s.input);
    const spec = model.inputs.find((i) => i.name === s.input);
    if (!decl || !spec) throw new DeclarationError(`${where}: images are accepted only for an input declared in preprocess as an image`);
    try {
      out.push({ sample: s.sample, input: s.input, tensor: (await imagesToTensor(s.input, s.files, decl, spec)).tensor });
    } catch (err) {
      if (err instanceof AppError) throw new DeclarationError(`${where}: ${err.message}`, { cause: err });
      throw err;
    }
  }
  return out;
}
