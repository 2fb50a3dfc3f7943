import { crc32, deflateSync } from 'node:zlib';
import sharp from 'sharp';
import { InvalidRequestError } from '../../lib/errors';
import { parseDeclarations, checkDeclarations, imageDeclaration, type ImageLayout, type ImagePreprocess } from '../../lib/prepost/declarations';
import { imagesToTensor } from '../../lib/prepost/image';
import { toHalfBits } from '../../lib/protocol/half';
import type { TensorDatatype, TensorSpec } from '../../lib/registry/manifest';

/** A photo-like RGB image made here: smooth gradients plus deterministic noise, so resizing has detail to get right. */
function photoPixels(width: number, height: number, seed = 1): Buffer {
  const px = Buffer.alloc(width * height * 3);
  let s = seed;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      s = (s * 1103515245 + 12345) >>> 0;
      const noise = (s >>> 24) % 32;
      const i = (y * width + x) * 3;
      px[i] = Math.min(255, Math.round((255 * x) / width) + noise);
      px[i + 1] = Math.min(255, Math.round((255 * y) / height) + noise);
      px[i + 2] = Math.min(255, Math.round((255 * (x + y)) / (width + height)) + noise);
    }
  }
  return px;
}

async function photo(width: number, height: number, format: 'jpeg' | 'png' | 'webp' = 'jpeg', seed = 1): Promise<Buffer> {
  const img = sharp(photoPixels(width, height, seed), { raw: { width, height, channels: 3 } });
  return (format === 'jpeg' ? img.jpeg({ quality: 90 }) : format === 'png' ? img.png() : img.webp({ quality: 90 })).toBuffer();
}

/** Solid blocks side by side: [r, g, b] per block, each `block` wide, `height` tall (lossless PNG). */
async function blocks(colours: [number, number, number][], block: number, height: number): Promise<Buffer> {
  const width = colours.length * block;
  const px = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) px.set(colours[Math.floor(x / block)]!, (y * width + x) * 3);
  return sharp(px, { raw: { width, height, channels: 3 } }).png().toBuffer();
}

const DTYPE: Record<string, TensorDatatype> = { float32: 'FP32', float16: 'FP16', uint8: 'UINT8' };

function declare(raw: Record<string, unknown>, shape: number[], dtype: 'float32' | 'float16' | 'uint8' = 'float32'): { decl: ImagePreprocess; spec: TensorSpec } {
  const spec: TensorSpec = { name: 'image', datatype: DTYPE[dtype]!, shape };
  const d = checkDeclarations(parseDeclarations({ image: { type: 'image', ...raw } }, undefined), { inputs: [spec], outputs: [] });
  return { decl: imageDeclaration(d, 'image')!, spec };
}

/**
 * The reference: sharp decodes and resizes to raw 8-bit pixels, then plain loops do what the
 * declaration says, straight from the formula, one element at a time.
 */
async function reference(bytes: Buffer, d: ImagePreprocess): Promise<{ values: number[]; dims: number[] }> {
  const fit = { stretch: 'fill', cover: 'cover', contain: 'contain' } as const;
  const background = { r: d.background[0], g: d.background[1], b: d.background[2], alpha: 1 };
  let img = sharp(bytes).autoOrient().flatten({ background }).resize(d.width, d.height, { fit: fit[d.resize], background });
  img = d.channels === 'gray' ? img.grayscale() : img.toColourspace('srgb');
  const { data, info } = await img.raw().toBuffer({ resolveWithObject: true });
  const C = info.channels;
  const at = (y: number, x: number, c: number): number => data[(y * d.width + x) * C + (d.channels === 'bgr' ? 2 - c : c)]!;
  const value = (p: number, c: number): number => (d.dtype === 'uint8' ? p : (p * d.scale - d.mean[c]!) / d.std[c]!);
  const values: number[] = [];
  const chw = d.layout === 'NCHW' || d.layout === 'CHW';
  if (chw) {
    for (let c = 0; c < C; c++) for (let y = 0; y < d.height; y++) for (let x = 0; x < d.width; x++) values.push(value(at(y, x, c), c));
  } else {
    for (let y = 0; y < d.height; y++) for (let x = 0; x < d.width; x++) for (let c = 0; c < C; c++) values.push(value(at(y, x, c), c));
  }
  const dims = chw ? [C, d.height, d.width] : [d.height, d.width, C];
  return { values, dims: d.layout.startsWith('N') ? [1, ...dims] : dims };
}

function expectMatches(actual: Awaited<ReturnType<typeof imagesToTensor>>['tensor'], expected: { values: number[]; dims: number[] }, d: ImagePreprocess): void {
  expect(actual.type).toBe(d.dtype);
  expect(actual.dims).toEqual(expected.dims);
  const got = actual.data as Float32Array | Uint16Array | Uint8Array;
  expect(got.length).toBe(expected.values.length);
  let worst = 0;
  for (let i = 0; i < got.length; i++) {
    const want = expected.values[i]!;
    if (d.dtype === 'uint8') {
      if (got[i] !== want) throw new Error(`element ${i}: ${got[i]} != ${want}`);
    } else if (d.dtype === 'float16') {
      if (got[i] !== toHalfBits(want)) throw new Error(`element ${i}: half bits ${got[i]} != ${toHalfBits(want)}`);
    } else {
      worst = Math.max(worst, Math.abs((got[i] as number) - want));
    }
  }
  expect(worst).toBeLessThanOrEqual(1e-6);
}

describe('image -> tensor equals a sharp + plain-loops reference', () => {
  const IMAGENET = { scale: 1 / 255, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };
  const cases: [string, Record<string, unknown>, number[], ('float32' | 'float16' | 'uint8')?][] = [
    ['stretch, RGB, NCHW, ImageNet normalization', { ...IMAGENET }, [1, 3, 32, 24]],
    ['cover (centre crop), BGR, NHWC, mean/std in pixel units', { resize: 'cover', channels: 'bgr', mean: [103.94, 116.78, 123.68], std: 58 }, [1, 20, 20, 3]],
    ['contain with padding colour, RGB, CHW (no batch dim)', { resize: 'contain', background: [114, 114, 114], layout: 'CHW', scale: 1 / 127.5, mean: 1 }, [3, 30, 18]],
    ['gray, HWC, scale only', { channels: 'gray', layout: 'HWC', scale: 1 / 255 }, [16, 16, 1]],
    ['gray, NCHW, float16', { channels: 'gray', ...{ scale: 1 / 255, mean: 0.5, std: 0.5 } }, [1, 1, 28, 28], 'float16'],
    ['float16 RGB NHWC', { ...IMAGENET }, [1, 24, 24, 3], 'float16'],
    ['uint8 RGB NHWC, pixels as they are', {}, [1, 40, 30, 3], 'uint8'],
    ['uint8 BGR NCHW, contain', { channels: 'bgr', resize: 'contain', background: [10, 200, 30] }, [1, 3, 12, 36], 'uint8'],
    ['dynamic dims with a declared size', { layout: 'NCHW', width: 48, height: 40, ...IMAGENET }, [-1, 3, -1, -1]],
  ];

  test.each(cases)('%s', async (_, raw, shape, dtype = 'float32') => {
    const { decl, spec } = declare(raw, shape, dtype);
    for (const bytes of [await photo(97, 61, 'jpeg'), await photo(50, 77, 'png', 2), await photo(64, 64, 'webp', 3)]) {
      const { tensor, sizes } = await imagesToTensor('image', [bytes], decl, spec);
      expectMatches(tensor, await reference(bytes, decl), decl);
      const meta = await sharp(bytes).metadata();
      expect(sizes).toEqual([{ width: meta.width, height: meta.height }]);
    }
  });

  test('a batch of images fills the batch dim, each image as it would be alone', async () => {
    const { decl, spec } = declare({ ...{ scale: 1 / 255 } }, [-1, 3, 16, 16]);
    const images = [await photo(40, 30, 'jpeg', 4), await photo(30, 40, 'png', 5), await photo(16, 16, 'webp', 6)];
    const { tensor, sizes } = await imagesToTensor('image', images, decl, spec);
    expect(tensor.dims).toEqual([3, 3, 16, 16]);
    expect(sizes).toEqual([{ width: 40, height: 30 }, { width: 30, height: 40 }, { width: 16, height: 16 }]);
    for (let i = 0; i < images.length; i++) {
      const alone = (await imagesToTensor('image', [images[i]!], decl, spec)).tensor.data as Float32Array;
      expect(Array.from((tensor.data as Float32Array).subarray(i * alone.length, (i + 1) * alone.length))).toEqual(Array.from(alone));
    }
  });
});

describe('image -> tensor: what each option means, checked without sharp on the output side', () => {
  const RED: [number, number, number] = [255, 0, 0];
  const GREEN: [number, number, number] = [0, 255, 0];
  const BLUE: [number, number, number] = [0, 0, 255];

  /** Pixel (y, x) of an NHWC uint8 tensor of one image. */
  const pixel = (data: Uint8Array, width: number, y: number, x: number): number[] => Array.from(data.subarray((y * width + x) * 3, (y * width + x) * 3 + 3));

  test('cover keeps the centre: of red | green x 3 | blue only green is left', async () => {
    const { decl, spec } = declare({ resize: 'cover' }, [1, 8, 8, 3], 'uint8');
    const data = (await imagesToTensor('image', [await blocks([RED, GREEN, GREEN, GREEN, BLUE], 32, 32)], decl, spec)).tensor.data as Uint8Array;
    for (let y = 0; y < 8; y++) for (let x = 0; x < 8; x++) expect(pixel(data, 8, y, x)).toEqual(GREEN);
  });

  test('contain pads with the background colour; stretch fills the frame', async () => {
    const wide = await blocks([RED, RED], 32, 32); // 64 x 32
    const contain = declare({ resize: 'contain', background: [0, 0, 255] }, [1, 8, 8, 3], 'uint8');
    const c = (await imagesToTensor('image', [wide], contain.decl, contain.spec)).tensor.data as Uint8Array;
    for (let x = 0; x < 8; x++) {
      for (const y of [0, 1, 6, 7]) expect(pixel(c, 8, y, x)).toEqual(BLUE);
      for (const y of [2, 3, 4, 5]) expect(pixel(c, 8, y, x)).toEqual(RED);
    }
    const stretch = declare({}, [1, 8, 8, 3], 'uint8');
    const s = (await imagesToTensor('image', [wide], stretch.decl, stretch.spec)).tensor.data as Uint8Array;
    for (let y = 0; y < 8; y++) for (let x = 0; x < 8; x++) expect(pixel(s, 8, y, x)).toEqual(RED);
  });

  test('BGR is RGB with the channels reversed; NCHW is NHWC transposed', async () => {
    const bytes = await photo(33, 21, 'png', 9);
    const rgb = declare({}, [1, 10, 12, 3], 'uint8');
    const bgr = declare({ channels: 'bgr', layout: 'NCHW' }, [1, 3, 10, 12], 'uint8');
    const a = (await imagesToTensor('image', [bytes], rgb.decl, rgb.spec)).tensor.data as Uint8Array;
    const b = (await imagesToTensor('image', [bytes], bgr.decl, bgr.spec)).tensor.data as Uint8Array;
    for (let p = 0; p < 120; p++) for (let c = 0; c < 3; c++) expect(b[(2 - c) * 120 + p]).toBe(a[p * 3 + c]);
  });

  test('EXIF orientation is applied: a landscape file tagged "rotate 90" is a portrait image', async () => {
    // Left half red, right half blue, 64 x 32; orientation 6 means display it turned 90 degrees clockwise.
    const px = Buffer.alloc(64 * 32 * 3);
    for (let y = 0; y < 32; y++) for (let x = 0; x < 64; x++) px.set(x < 32 ? RED : BLUE, (y * 64 + x) * 3);
    const tagged = await sharp(px, { raw: { width: 64, height: 32, channels: 3 } }).jpeg({ quality: 100 }).withMetadata({ orientation: 6 }).toBuffer();
    const { decl, spec } = declare({}, [1, 8, 4, 3], 'uint8');
    const { tensor, sizes } = await imagesToTensor('image', [tagged], decl, spec);
    expect(sizes).toEqual([{ width: 32, height: 64 }]);
    const data = tensor.data as Uint8Array;
    // Turned clockwise, the left (red) half is on top.
    for (let x = 0; x < 4; x++) {
      const top = pixel(data, 4, 1, x);
      const bottom = pixel(data, 4, 6, x);
      expect(top[0]).toBeGreaterThan(200);
      expect(top[2]).toBeLessThan(60);
      expect(bottom[2]).toBeGreaterThan(200);
      expect(bottom[0]).toBeLessThan(60);
    }
  });

  test('alpha is flattened onto the background colour', async () => {
    const px = Buffer.alloc(16 * 16 * 4);
    for (let i = 0; i < 16 * 16; i++) px.set(i < 128 ? [255, 0, 0, 0] : [0, 255, 0, 255], i * 4); // top half transparent red, bottom opaque green
    const png = await sharp(px, { raw: { width: 16, height: 16, channels: 4 } }).png().toBuffer();
    const { decl, spec } = declare({ background: [255, 255, 255] }, [1, 16, 16, 3], 'uint8');
    const data = (await imagesToTensor('image', [png], decl, spec)).tensor.data as Uint8Array;
    expect(pixel(data, 16, 0, 0)).toEqual([255, 255, 255]);
    expect(pixel(data, 16, 15, 15)).toEqual(GREEN);
  });
});

/** A PNG that is only a header claiming `width` x `height` (and an empty image stream): a bomb's first bytes. */
function pngHeader(width: number, height: number): Buffer {
  const chunk = (type: string, data: Buffer): Buffer => {
    const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
    const out = Buffer.alloc(body.length + 8);
    out.writeUInt32BE(data.length, 0);
    body.copy(out, 4);
    out.writeUInt32BE(crc32(body), body.length + 4);
    return out;
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8); // 8-bit RGB
  return Buffer.concat([Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]), chunk('IHDR', ihdr), chunk('IDAT', deflateSync(Buffer.alloc(1024))), chunk('IEND', Buffer.alloc(0))]);
}

describe('image -> tensor: the odd files real clients send decode to the declared channels', () => {
  const rgb = declare({}, [1, 12, 12, 3], 'uint8');
  const gray = declare({ channels: 'gray', layout: 'NHWC' }, [1, 12, 12, 1], 'uint8');

  async function odd(): Promise<[string, Buffer][]> {
    const px = photoPixels(30, 20, 7);
    const raw = { raw: { width: 30, height: 20, channels: 3 as const } };
    const rgba = Buffer.alloc(30 * 20 * 4, 128);
    const sixteenBit = await sharp(px, raw).toColourspace('rgb16').png().toBuffer();
    expect((await sharp(sixteenBit).metadata()).depth).toBe('ushort');
    return [
      ['a grey JPEG', await sharp(px, raw).grayscale().jpeg().toBuffer()],
      ['a CMYK JPEG', await sharp(px, raw).toColourspace('cmyk').jpeg().toBuffer()],
      ['a 16-bit PNG', sixteenBit],
      ['a palette PNG with transparency', await sharp(rgba, { raw: { width: 30, height: 20, channels: 4 } }).png({ palette: true }).toBuffer()],
      ['a grey PNG with alpha', await sharp(rgba, { raw: { width: 30, height: 20, channels: 4 } }).toColourspace('b-w').png().toBuffer()],
      ['a lossless WebP with alpha', await sharp(rgba, { raw: { width: 30, height: 20, channels: 4 } }).webp({ lossless: true }).toBuffer()],
    ];
  }

  test('each becomes an RGB and a grey tensor of the declared size', async () => {
    for (const [name, bytes] of await odd()) {
      for (const d of [rgb, gray]) {
        const { tensor } = await imagesToTensor('image', [bytes], d.decl, d.spec).catch((err: Error) => {
          throw new Error(`${name}: ${err.message}`);
        });
        expect([name, tensor.dims]).toEqual([name, d.spec.shape]);
      }
    }
  });
});

describe('image -> tensor: bad images are a 400 that names the input', () => {
  const rgb = (): { decl: ImagePreprocess; spec: TensorSpec } => declare({ scale: 1 / 255 }, [1, 3, 16, 16]);

  async function refused(images: Buffer[], message: string, d = rgb()): Promise<void> {
    const err = await imagesToTensor('image', images, d.decl, d.spec).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(InvalidRequestError);
    expect((err as InvalidRequestError).statusCode).toBe(400);
    expect((err as Error).message).toBe(message);
  }

  test('bytes that are not an image', async () => {
    await refused([Buffer.from('{"inputs": []}')], 'input "image": not an image (JPEG, PNG or WebP expected)');
    await refused([Buffer.alloc(0)], 'input "image": not an image (JPEG, PNG or WebP expected)');
  });

  test('a truncated JPEG, PNG or WebP', async () => {
    for (const [format, name] of [['jpeg', 'JPEG'], ['png', 'PNG'], ['webp', 'WebP']] as const) {
      const whole = await photo(200, 150, format);
      await refused([whole.subarray(0, Math.floor(whole.length * 0.6))], `input "image": the ${name} image could not be decoded (truncated or corrupt)`);
    }
  });

  test('formats other than JPEG, PNG and WebP', async () => {
    const gif = await sharp(photoPixels(8, 8), { raw: { width: 8, height: 8, channels: 3 } }).gif().toBuffer();
    await refused([gif], 'input "image": a gif image; send JPEG, PNG or WebP');
    const svg = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"><rect width="8" height="8"/></svg>');
    await refused([svg], 'input "image": a svg image; send JPEG, PNG or WebP');
  });

  test('a decompression bomb is refused from its header, before it is decoded', async () => {
    const bomb = pngHeader(100_000, 100_000);
    expect(bomb.length).toBeLessThan(200);
    await refused([bomb], 'input "image": the image is 100000x100000 = 10000000000 pixels, over this model\'s limit of 100000000');
    const small = declare({ maxPixels: 1000 }, [1, 3, 16, 16]);
    await refused([await photo(40, 30)], 'input "image": the image is 40x30 = 1200 pixels, over this model\'s limit of 1000', small);
  });

  test('the pixel limit bounds a batch\'s images together, checked from the headers before any is decoded', async () => {
    const d = declare({ maxPixels: 2000 }, [-1, 3, 16, 16]);
    // The third file is garbage: the limit is met on the second header, so it is never read.
    await refused([await photo(40, 30), await photo(40, 30), Buffer.from('never read')], 'input "image": the 2 images hold 2400 pixels together, over this model\'s limit of 2000 per request', d);
    const fits = await imagesToTensor('image', [await photo(30, 30), await photo(30, 30)], d.decl, d.spec);
    expect(fits.tensor.dims).toEqual([2, 3, 16, 16]);
  });

  test('the number of images must fit the batch dim', async () => {
    const one = await photo(20, 20);
    await refused([], 'input "image": no image was sent');
    await refused([one, one], 'input "image": 2 images were sent, but the model takes 1 at a time');
    await refused([one, one], 'input "image": 2 images were sent, but the model takes 1 at a time', declare({ layout: 'CHW' }, [3, 16, 16]));
  });

  test('the bad image of a batch is named by its position', async () => {
    const d = declare({}, [-1, 3, 16, 16]);
    await refused([await photo(20, 20), Buffer.from('nope')], 'input "image" image 1: not an image (JPEG, PNG or WebP expected)', d);
  });
});

test.each(['NCHW', 'NHWC', 'CHW', 'HWC'] as ImageLayout[])('layout %s gives dims in its order', async (layout) => {
  const shape = { NCHW: [2, 3, 6, 5], NHWC: [2, 6, 5, 3], CHW: [3, 6, 5], HWC: [6, 5, 3] }[layout];
  const { decl, spec } = declare({ layout }, shape);
  const images = layout.startsWith('N') ? [await photo(9, 9), await photo(9, 9)] : [await photo(9, 9)];
  expect((await imagesToTensor('image', images, decl, spec)).tensor.dims).toEqual(shape);
});
