import sharp from 'sharp';
import { prng } from '../../lib/convert/random';

const WORDS = ['Invoice', 'TOTAL 42.50', 'Lambda', 'ONNX int8', 'Hello world', 'Receipt', 'QTY 3 x 9.99', 'Paid', 'Order 1187', 'Thank you', 'VAT 20%', 'Cash'];

/**
 * A picture of printed text drawn in SVG and rendered by sharp: a light, slightly tinted page
 * with `lines` words in dark ink at seeded places and sizes (180-degree rotated when `flip`).
 * Returns raw RGB pixels, row-major, `width` x `height` x 3.
 */
export async function textPicture(seed: number, width: number, height: number, options: { lines?: number; flip?: boolean } = {}): Promise<Buffer> {
  const rand = prng(1000 + seed);
  const { lines = 1, flip = false } = options;
  const shade = (lo: number, span: number) => lo + Math.floor(rand() * span);
  const texts: string[] = [];
  for (let l = 0; l < lines; l++) {
    const size = lines === 1 ? height * (0.45 + 0.2 * rand()) : 14 + rand() * 18;
    const x = lines === 1 ? 2 + rand() * 12 : rand() * width * 0.4;
    const y = lines === 1 ? height * 0.5 + size * 0.35 : ((l + 0.8) * height) / lines;
    const word = WORDS[Math.floor(rand() * WORDS.length)] as string;
    texts.push(`<text x="${x.toFixed(1)}" y="${y.toFixed(1)}" font-family="sans-serif" font-size="${size.toFixed(1)}" fill="rgb(${shade(0, 70)},${shade(0, 70)},${shade(0, 80)})">${word}</text>`);
  }
  const body = flip ? `<g transform="rotate(180 ${width / 2} ${height / 2})">${texts.join('')}</g>` : texts.join('');
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}"><rect width="${width}" height="${height}" fill="rgb(${shade(205, 50)},${shade(205, 50)},${shade(195, 60)})"/>${body}</svg>`;
  return sharp(Buffer.from(svg)).removeAlpha().raw().toBuffer();
}

/** Raw RGB pixels as a [1, 3, H, W] float tensor's data: (pixel / 255 - mean[c]) / std[c]. */
export function normalizedPlanes(pixels: Buffer, width: number, height: number, mean: readonly number[], std: readonly number[]): Float32Array {
  const plane = width * height;
  const data = new Float32Array(3 * plane);
  for (let p = 0; p < plane; p++) for (let c = 0; c < 3; c++) data[c * plane + p] = ((pixels[p * 3 + c] as number) / 255 - (mean[c] as number)) / (std[c] as number);
  return data;
}
