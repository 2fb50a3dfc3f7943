import { Tensor } from 'onnxruntime-node';
import type { Sharp, SharpOptions } from 'sharp';
import { InvalidRequestError } from '../errors';
import { toHalfBits } from '../protocol/half';
import type { TensorSpec } from '../registry/manifest';
import { layoutAxes, type ImagePreprocess } from './declarations';

type SharpFactory = (input: Uint8Array, options?: SharpOptions) => Sharp;

let sharpLoad: Promise<SharpFactory> | undefined;

/**
 * sharp, loaded on first use: libvips is ~20 MB of native code, and a model that declares no
 * image input must not pay for it at cold start. The promise is shared by concurrent callers
 * and dropped when it rejects, so a failed load is tried again.
 */
export function loadSharp(): Promise<SharpFactory> {
  // require, not import(): the bundle keeps a dynamic import() as a real ES module import,
  // which does not search Lambda's layer folder (/opt/nodejs/node_modules); require does.
  sharpLoad ??= Promise.resolve().then(() => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const sharp = require('sharp') as SharpFactory & { cache(enabled: boolean): unknown };
    // libvips' operation cache keeps recent images for reuse; every request's image is new, so
    // it would only hold memory the next request needs.
    sharp.cache(false);
    return sharp;
  });
  sharpLoad.catch(() => {
    sharpLoad = undefined;
  });
  return sharpLoad;
}

/** The formats a request may send; others (SVG, TIFF, raw, PDF...) are refused by name. */
const FORMATS: Readonly<Record<string, string>> = { jpeg: 'JPEG', png: 'PNG', webp: 'WebP' };
const FIT = { stretch: 'fill', cover: 'cover', contain: 'contain' } as const;

/** One image as the model will see it, with the size it had (after EXIF orientation). */
export interface ImageTensor {
  tensor: Tensor;
  /** Width and height of each request image, upright: what a mask is resized back to. */
  sizes: { width: number; height: number }[];
}

function refuse(where: string, message: string, cause?: unknown): never {
  throw new InvalidRequestError(`${where}: ${message}`, cause === undefined ? undefined : { cause });
}

/**
 * Decodes one image to raw 8-bit pixels of the declared size and channels. The pixel count is
 * read from the header and checked before anything is decoded, so a small file that claims a
 * huge image (a decompression bomb) costs a header read, not gigabytes.
 */
async function readHeader(sharp: SharpFactory, bytes: Uint8Array, decl: ImagePreprocess, where: string): Promise<{ format: string; width: number; height: number }> {
  let meta;
  try {
    // Only the header is read here, so sharp's own pixel limit is off: ours follows, with its message.
    meta = await sharp(bytes, { limitInputPixels: false }).metadata();
  } catch (err) {
    const claimed = sniffFormat(bytes);
    if (claimed) refuse(where, `the ${claimed} image could not be decoded (truncated or corrupt)`, err);
    refuse(where, `not an image (${FORMATS_TEXT} expected)`, err);
  }
  const format = meta.format as string | undefined;
  if (!format || !Object.hasOwn(FORMATS, format)) refuse(where, `a ${format ?? 'unknown'} image; send ${FORMATS_TEXT}`);
  const { width, height } = meta.autoOrient;
  if (!(width > 0 && height > 0)) refuse(where, 'the image header gives no size');
  const pixels = width * height;
  if (pixels > decl.maxPixels) refuse(where, `the image is ${width}x${height} = ${pixels} pixels, over this model's limit of ${decl.maxPixels}`);
  return { format, width, height };
}

/** Decodes one image whose header {@link readHeader} accepted, to raw 8-bit pixels of the declared size and channels. */
async function decodeOne(sharp: SharpFactory, bytes: Uint8Array, decl: ImagePreprocess, where: string, format: string): Promise<Buffer> {
  const background = { r: decl.background[0], g: decl.background[1], b: decl.background[2], alpha: 1 };
  let pipeline = sharp(bytes, { limitInputPixels: decl.maxPixels, failOn: 'error', autoOrient: true })
    .flatten({ background })
    .resize(decl.width, decl.height, { fit: FIT[decl.resize], position: 'centre', background });
  pipeline = decl.channels === 'gray' ? pipeline.grayscale() : pipeline.toColourspace('srgb');
  let out;
  try {
    out = await pipeline.raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
  } catch (err) {
    refuse(where, `the ${FORMATS[format]} image could not be decoded (truncated or corrupt)`, err);
  }
  const expected = decl.channels === 'gray' ? 1 : 3;
  if (out.info.channels !== expected || out.info.width !== decl.width || out.info.height !== decl.height) {
    throw new Error(`image pipeline gave ${out.info.width}x${out.info.height}x${out.info.channels}, not ${decl.width}x${decl.height}x${expected}`);
  }
  return out.data;
}

const FORMATS_TEXT = 'JPEG, PNG or WebP';

/** The format a file's first bytes claim, so a damaged photo is told apart from something that is no image at all. */
function sniffFormat(bytes: Uint8Array): string | undefined {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, Math.min(bytes.byteLength, 12));
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return 'JPEG';
  if (b.length >= 8 && b.subarray(0, 8).equals(Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]))) return 'PNG';
  if (b.length >= 12 && b.toString('latin1', 0, 4) === 'RIFF' && b.toString('latin1', 8, 12) === 'WEBP') return 'WebP';
  return undefined;
}

/** Per channel, the value of each of the 256 pixel levels: the normalization done once, not per pixel. */
function levels(decl: ImagePreprocess): Float64Array[] {
  return decl.mean.map((mean, c) => {
    const std = decl.std[c] as number;
    const table = new Float64Array(256);
    for (let p = 0; p < 256; p++) table[p] = (p * decl.scale - mean) / std;
    return table;
  });
}

/**
 * Turns encoded images (JPEG, PNG, WebP) into the tensor an input declared as an image takes:
 * EXIF orientation applied, alpha flattened onto the background colour, resized as declared,
 * channels reordered, normalized and laid out. Several images fill the batch dim, in order.
 * An input without a batch dim takes exactly one image.
 */
export async function imagesToTensor(name: string, images: readonly Uint8Array[], decl: ImagePreprocess, spec: TensorSpec): Promise<ImageTensor> {
  const axes = layoutAxes(decl.layout);
  const fixedBatch = axes.batch === undefined ? 1 : (spec.shape[axes.batch] ?? -1);
  if (images.length === 0) refuse(`input "${name}"`, 'no image was sent');
  if (fixedBatch !== -1 && images.length !== fixedBatch) {
    refuse(`input "${name}"`, `${images.length} images were sent, but the model takes ${fixedBatch} at a time`);
  }
  const sharp = await loadSharp();
  const where = (i: number): string => (images.length > 1 ? `input "${name}" image ${i}` : `input "${name}"`);
  // Every header first: the pixel limit bounds the request's images together, so a batch of
  // many images each just under it cannot cost many times what one may.
  const headers = [];
  let total = 0;
  for (let i = 0; i < images.length; i++) {
    const header = await readHeader(sharp, images[i] as Uint8Array, decl, where(i));
    total += header.width * header.height;
    if (total > decl.maxPixels) refuse(`input "${name}"`, `the ${i + 1} images hold ${total} pixels together, over this model's limit of ${decl.maxPixels} per request`);
    headers.push(header);
  }
  const decoded = [];
  for (let i = 0; i < images.length; i++) {
    const { format, width, height } = headers[i] as { format: string; width: number; height: number };
    decoded.push({ data: await decodeOne(sharp, images[i] as Uint8Array, decl, where(i), format), width, height });
  }

  const { width: w, height: h } = decl;
  const channels = decl.channels === 'gray' ? 1 : 3;
  const plane = w * h;
  const perImage = plane * channels;
  const count = perImage * images.length;
  const planar = decl.layout === 'NCHW' || decl.layout === 'CHW';
  const out = decl.dtype === 'float32' ? new Float32Array(count) : decl.dtype === 'float16' ? new Uint16Array(count) : new Uint8Array(count);
  const tables = decl.dtype === 'uint8' ? undefined : levels(decl);
  const half = decl.dtype === 'float16';
  for (let n = 0; n < decoded.length; n++) {
    const src = (decoded[n] as { data: Buffer }).data;
    const base = n * perImage;
    for (let c = 0; c < channels; c++) {
      // BGR reads the source's channels back to front; RGB and gray in order.
      const from = decl.channels === 'bgr' ? channels - 1 - c : c;
      const table = tables?.[c];
      for (let p = 0; p < plane; p++) {
        const pixel = src[p * channels + from] as number;
        const at = base + (planar ? c * plane + p : p * channels + c);
        if (!table) out[at] = pixel;
        else out[at] = half ? toHalfBits(table[pixel] as number) : (table[pixel] as number);
      }
    }
  }
  const dims = axes.batch === undefined ? [] : [images.length];
  if (planar) dims.push(channels, h, w);
  else dims.push(h, w, channels);
  return { tensor: new Tensor(decl.dtype, out, dims), sizes: decoded.map(({ width, height }) => ({ width, height })) };
}
