import type { Tensor } from 'onnxruntime-node';
import { fromHalfBits } from '../protocol/half';
import type { MaskPostprocess } from './declarations';
import { loadSharp } from './image';

/** Batch, height and width of a mask output: `[N, 1, H, W]`, `[N, H, W, 1]`, `[N, H, W]` or `[H, W]`. */
export function maskGeometry(dims: readonly number[]): { count: number; height: number; width: number } {
  const d = dims.map(Number);
  if (d.length === 2) return { count: 1, height: d[0] as number, width: d[1] as number };
  if (d.length === 3) return { count: d[0] as number, height: d[1] as number, width: d[2] as number };
  if (d.length === 4 && d[1] === 1) return { count: d[0] as number, height: d[2] as number, width: d[3] as number };
  if (d.length === 4 && d[3] === 1) return { count: d[0] as number, height: d[1] as number, width: d[2] as number };
  throw new Error(`a mask output of shape [${d.join(', ')}] is not [N, 1, H, W], [N, H, W, 1], [N, H, W] or [H, W]`);
}

/** Each element as a score in [0, 1]: UINT8 masks are read as value / 255, floats after the activation. */
function scoreOf(tensor: Tensor, decl: MaskPostprocess): (i: number) => number {
  const data = tensor.data as Float32Array | Float64Array | Uint16Array | Uint8Array;
  if (tensor.type === 'uint8') return (i) => (data[i] as number) / 255;
  const raw = tensor.type === 'float16' ? (i: number) => fromHalfBits(data[i] as number) : (i: number) => data[i] as number;
  return decl.activation === 'sigmoid' ? (i) => 1 / (1 + Math.exp(-raw(i))) : raw;
}

/**
 * Encodes each mask of a batch as an 8-bit grey PNG: the score x 255 (a soft mask), or 255 where
 * the score reaches the threshold and 0 elsewhere. With `resizeToInput` and the request images'
 * sizes, each mask is resized back to its image (the soft scores are resized, then thresholded,
 * so edges follow the scores rather than blocky pixels).
 */
export async function masksToPng(tensor: Tensor, decl: MaskPostprocess, sizes?: readonly { width: number; height: number }[]): Promise<Buffer[]> {
  const { count, height, width } = maskGeometry(tensor.dims);
  const score = scoreOf(tensor, decl);
  const sharp = await loadSharp();
  const plane = height * width;
  const out: Buffer[] = [];
  for (let n = 0; n < count; n++) {
    const target = decl.resizeToInput ? sizes?.[n] : undefined;
    const resize = target !== undefined && (target.width !== width || target.height !== height);
    // Without a resize the threshold applies to the exact score; with one, to the resized 8-bit score.
    const exact = decl.threshold !== null && !resize;
    let pixels = Buffer.alloc(plane);
    for (let p = 0; p < plane; p++) {
      const s = score(n * plane + p);
      if (Number.isNaN(s)) pixels[p] = 0;
      else if (exact) pixels[p] = s >= (decl.threshold as number) ? 255 : 0;
      else pixels[p] = Math.round(Math.min(1, Math.max(0, s)) * 255);
    }
    let w = width;
    let h = height;
    if (resize) {
      // One band out: sharp would otherwise hand back a single-band raw image as sRGB.
      pixels = await sharp(pixels, { raw: { width, height, channels: 1 } }).resize(target.width, target.height, { fit: 'fill' }).extractChannel(0).raw().toBuffer();
      if (pixels.length !== target.width * target.height) throw new Error(`mask resize gave ${pixels.length} bytes, not ${target.width * target.height}`);
      w = target.width;
      h = target.height;
      if (decl.threshold !== null) {
        const cut = decl.threshold * 255;
        for (let p = 0; p < pixels.length; p++) pixels[p] = (pixels[p] as number) >= cut ? 255 : 0;
      }
    }
    out.push(await sharp(pixels, { raw: { width: w, height: h, channels: 1 } }).toColourspace('b-w').png().toBuffer());
  }
  return out;
}
