import type { Tensor } from 'onnxruntime-node';
import { InvalidRequestError } from '../errors';
import { printable, type TensorSpec } from '../registry/manifest';
import { byOip } from './dtypes';
import { elementCount } from './tensor-codec';

/** Formats a model shape for messages: dynamic dims as -1. */
function shapeText(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

/** Checks a request shape against the model's declared shape (rank, then each fixed dim). */
export function checkShapeFits(spec: TensorSpec, shape: readonly number[]): void {
  if (shape.length !== spec.shape.length) {
    throw new InvalidRequestError(
      `input "${spec.name}": shape ${shapeText(shape)} has rank ${shape.length} but the model expects rank ${spec.shape.length} ${shapeText(spec.shape)}`,
    );
  }
  spec.shape.forEach((want, i) => {
    if (want >= 0 && shape[i] !== want) {
      throw new InvalidRequestError(
        `input "${spec.name}": dimension ${i} is ${shape[i]} but the model expects ${want} (model shape ${shapeText(spec.shape)}, -1 = any)`,
      );
    }
  });
  if (elementCount(shape) === Infinity) {
    throw new InvalidRequestError(`input "${spec.name}": shape ${shapeText(shape)} holds too many elements`);
  }
}

/** Finds the model input a request names, or says which inputs exist. */
export function findInput(specs: readonly TensorSpec[], name: unknown): TensorSpec {
  if (typeof name !== 'string' || name === '') throw new InvalidRequestError('every input needs a "name" string');
  const spec = specs.find((s) => s.name === name);
  if (!spec) {
    throw new InvalidRequestError(
      `unknown input "${printable(name)}"; the model's inputs are: ${specs.map((s) => s.name).join(', ')}`,
    );
  }
  return spec;
}

/** Checks the request named every model input exactly once. */
export function checkAllInputsGiven(specs: readonly TensorSpec[], feeds: Record<string, Tensor>): void {
  const missing = specs.filter((s) => !Object.prototype.hasOwnProperty.call(feeds, s.name));
  if (missing.length > 0) {
    throw new InvalidRequestError(
      `missing input${missing.length > 1 ? 's' : ''} ${missing.map((s) => `"${s.name}"`).join(', ')}; the model's inputs are: ${specs.map((s) => s.name).join(', ')}`,
    );
  }
}

/**
 * Resolves requested output names against the model's outputs. None requested, or an empty
 * list, means all (as Triton reads OIP `outputs` and TF Serving `output_filter`): onnxruntime
 * refuses to run with no outputs to fetch.
 */
export function selectOutputs(specs: readonly TensorSpec[], requested: readonly unknown[] | undefined): TensorSpec[] {
  if (requested === undefined || requested.length === 0) return [...specs];
  const chosen: TensorSpec[] = [];
  for (const name of requested) {
    if (typeof name !== 'string') throw new InvalidRequestError('every requested output needs a "name" string');
    const spec = specs.find((s) => s.name === name);
    if (!spec) {
      throw new InvalidRequestError(
        `unknown output "${printable(name)}"; the model's outputs are: ${specs.map((s) => s.name).join(', ')}`,
      );
    }
    if (chosen.includes(spec)) throw new InvalidRequestError(`output "${name}" is requested twice`);
    chosen.push(spec);
  }
  return chosen;
}

/** The protocol datatype info of a model tensor spec (always present: specs come from the table). */
export function infoOf(spec: TensorSpec) {
  const info = byOip(spec.datatype);
  if (!info) throw new Error(`no datatype info for ${spec.datatype}`);
  return info;
}

/** A dictionary with no prototype, so input names like "__proto__" are plain keys. */
export function emptyFeeds(): Record<string, Tensor> {
  return Object.create(null) as Record<string, Tensor>;
}
