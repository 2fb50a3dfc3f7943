import type { Tensor } from 'onnxruntime-node';
import { AppError } from '../errors';
import { checkDeclarations, DeclarationError, type Declarations } from '../prepost/declarations';
import { imagesToTensor } from '../prepost/image';
import { decodeOipRequest, decodeRawBinaryRequest } from '../protocol/oip';
import type { TensorSpec } from '../registry/manifest';
import { isNotFound, type ObjectStore } from '../storage/object-store';
import { ConversionError } from './errors';

/** Most files one sample set (calibration or evaluation) may hold. */
export const MAX_SAMPLE_FILES = 512;
/** Most bytes the files of one sample set may hold together, as stored. */
export const MAX_SAMPLE_FILE_BYTES = 64 * 1024 * 1024;
/** Most bytes the decoded tensors of one sample set may hold together. */
export const MAX_SAMPLE_TENSOR_BYTES = 256 * 1024 * 1024;

const IMAGE = /\.(jpe?g|png|webp)$/i;
const KINDS = /\.(json|bin|jpe?g|png|webp)$/i;

/** One file of a sample set, decoded into the model's feeds. */
export interface SampleFile {
  key: string;
  feeds: Record<string, Tensor>;
  /** The file's JSON body, for fields beside `inputs` (an evaluation's expected answer). */
  body?: Record<string, unknown>;
  /** For an image under `<prefix>/<class>/`: the class folder's name. */
  folder?: string;
}

/**
 * Checks a `calibration` or `evaluationSet` reference and returns the key or prefix it names
 * under `uploads/<model>/`. Only a relative path below that folder is accepted: no `..`, no
 * leading `/` or `\`, no empty or `.` segments, so nothing named can reach another model's
 * uploads or anything outside them.
 */
export function sampleLocation(option: string, model: string, value: unknown): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > 512) throw new ConversionError(`options: "${option}" must be a key or prefix under uploads/${model}/`);
  const path = value.endsWith('/') ? value.slice(0, -1) : value;
  const bad = /[\\\u0000-\u001f]/.test(value) || value.startsWith('/') || path.split('/').some((s) => s === '' || s === '.' || s === '..');
  if (bad) throw new ConversionError(`options: "${option}" must be a relative key or prefix under uploads/${model}/ (no "..", "." or empty segments, no leading "/", no "\\"); got ${JSON.stringify(value.slice(0, 100))}`);
  return `uploads/${model}/${value}`;
}

/**
 * The keys a location names: the object itself when it exists and does not end in `/`, else
 * every file of a known kind under it as a folder, in key order.
 */
async function keysAt(store: ObjectStore, option: string, location: string): Promise<{ key: string; relative: string }[]> {
  if (!location.endsWith('/')) {
    const head = await store.head(location);
    if (head) return [{ key: location, relative: location.slice(location.lastIndexOf('/') + 1) }];
  }
  const prefix = location.endsWith('/') ? location : `${location}/`;
  const found = (await store.listKeys(prefix)).filter((k) => KINDS.test(k)).sort();
  if (found.length === 0) throw new ConversionError(`options: "${option}": nothing at ${location} (a .json, .bin, .jpg, .png or .webp file, or a folder of them)`);
  if (found.length > MAX_SAMPLE_FILES) throw new ConversionError(`options: "${option}": ${found.length} files under ${prefix}, over the limit of ${MAX_SAMPLE_FILES}`);
  return found.map((key) => ({ key, relative: key.slice(prefix.length) }));
}

function tensorBytes(feeds: Record<string, Tensor>): number {
  let n = 0;
  for (const t of Object.values(feeds)) n += (t.data as { byteLength?: number }).byteLength ?? t.size * 8;
  return n;
}

/**
 * Reads a sample set named by an option: OIP JSON request bodies (`{"inputs": [...]}`), raw
 * binary tensors (`.bin`, the body of a raw binary request: the data of the model's only
 * input), or images (`.jpg`, `.png`, `.webp`) that go through the input's declared
 * pre-processing, one image per sample. Each file is checked against the model as a request
 * would be; a file that does not fit fails the job, naming the file and what is wrong. Counts
 * and bytes are bounded.
 */
export async function readSampleFiles(
  store: ObjectStore,
  option: string,
  location: string,
  model: { inputs: readonly TensorSpec[]; outputs: readonly TensorSpec[] },
  declarations: Declarations | undefined,
): Promise<SampleFile[]> {
  const files = await keysAt(store, option, location);
  let fitted: Declarations | undefined;
  try {
    // Only image declarations matter here: sample files carry tensors or images, never texts.
    const images = Object.fromEntries(Object.entries(declarations?.preprocess ?? {}).filter(([, d]) => d.type === 'image'));
    fitted = declarations ? checkDeclarations({ preprocess: images, postprocess: {} }, model) : undefined;
  } catch (err) {
    if (err instanceof DeclarationError) throw new ConversionError(`options: ${err.message}`, { cause: err });
    throw err;
  }
  const imageInputs = Object.entries(fitted?.preprocess ?? {}).flatMap(([name, d]) => (d.type === 'image' ? [name] : []));
  const out: SampleFile[] = [];
  let stored = 0;
  let decoded = 0;
  for (const { key, relative } of files) {
    const head = await store.head(key);
    if (!head) throw new ConversionError(`options: "${option}": ${key} no longer exists`);
    stored += head.bytes;
    if (stored > MAX_SAMPLE_FILE_BYTES) throw new ConversionError(`options: "${option}": the files up to ${key} hold ${stored} bytes, over the limit of ${MAX_SAMPLE_FILE_BYTES}`);
    let bytes: Buffer;
    try {
      bytes = await store.getBytes(key, { expectedBytes: head.bytes });
    } catch (err) {
      if (isNotFound(err)) throw new ConversionError(`options: "${option}": ${key} no longer exists`);
      throw err;
    }
    let sample: SampleFile;
    try {
      if (IMAGE.test(key)) {
        const input = imageInputs[0];
        const spec = model.inputs.find((i) => i.name === input);
        const decl = input === undefined ? undefined : fitted?.preprocess[input];
        if (!input || !spec || decl?.type !== 'image' || model.inputs.length !== 1) {
          throw new ConversionError(`options: "${option}": ${key} is an image; images are accepted for a model whose only input is declared in preprocess as an image`);
        }
        const { tensor } = await imagesToTensor(input, [bytes], decl, spec);
        const slash = relative.lastIndexOf('/');
        const folder = slash > 0 ? relative.slice(0, slash).split('/').pop() : undefined;
        sample = { key, feeds: { [input]: tensor }, ...(folder ? { folder } : {}) };
      } else if (key.toLowerCase().endsWith('.bin')) {
        sample = { key, feeds: decodeRawBinaryRequest(bytes, model.inputs, model.outputs).feeds };
      } else {
        let body: unknown;
        try {
          body = JSON.parse(bytes.toString('utf8'));
        } catch (err) {
          throw new ConversionError(`options: "${option}": ${key} is not valid JSON (${(err as Error).message})`);
        }
        const request = decodeOipRequest(body, model.inputs, model.outputs);
        if (request.staged.length > 0) throw new ConversionError(`options: "${option}": ${key}: staged inputs are not read here; put the data in the file`);
        sample = { key, feeds: request.feeds, body: body as Record<string, unknown> };
      }
    } catch (err) {
      if (err instanceof AppError) throw new ConversionError(`options: "${option}": ${key}: ${err.message}`, { cause: err });
      throw err;
    }
    decoded += tensorBytes(sample.feeds);
    if (decoded > MAX_SAMPLE_TENSOR_BYTES) throw new ConversionError(`options: "${option}": the samples up to ${key} decode to ${decoded} bytes of tensors, over the limit of ${MAX_SAMPLE_TENSOR_BYTES}`);
    out.push(sample);
  }
  return out;
}
