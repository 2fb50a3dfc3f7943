import type { APIGatewayProxyEventV2 } from 'aws-lambda';
import { InferenceSession } from 'onnxruntime-node';
import sharp from 'sharp';
import type { HttpResponse } from '../../lib/http/handle';
import { activate } from '../../lib/prepost/classify';
import { checkDeclarations, imageDeclaration, parseDeclarations } from '../../lib/prepost/declarations';
import { imagesToTensor } from '../../lib/prepost/image';
import { keys } from '../../lib/registry/keys';
import type { TensorSpec } from '../../lib/registry/manifest';
import { ObjectStore } from '../../lib/storage/object-store';
import { convertUpload, createTestApp, type TestApp } from '../helpers/app';
import { binaryBody } from '../helpers/binary-wire';
import { httpEvent, lambdaContext } from '../helpers/events';
import { startLocalS3, type LocalS3 } from '../helpers/local-s3';
import { colourClassifierModel, mlpModel } from '../helpers/models';

let s3: LocalS3;
let store: ObjectStore;
let serving: TestApp;

const LABELS = ['red', 'green', 'blue'];
const OPTIONS = {
  mode: 'none',
  classLabels: LABELS,
  preprocess: { image: { type: 'image', resize: 'cover', scale: 1 / 255 } },
  postprocess: { logits: { type: 'classification', topK: 2 } },
};

/** A photo-like picture of mostly one colour: noise on top, so the JPEG is a real one. */
async function photo(colour: [number, number, number], width = 120, height = 90, format: 'jpeg' | 'png' = 'jpeg'): Promise<Buffer> {
  const px = Buffer.alloc(width * height * 3);
  let s = width * 31 + height;
  for (let i = 0; i < px.length; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    px[i] = Math.max(0, Math.min(255, (colour[i % 3] as number) + ((s >>> 24) % 40) - 20));
  }
  const img = sharp(px, { raw: { width, height, channels: 3 } });
  return (format === 'jpeg' ? img.jpeg({ quality: 85 }) : img.png()).toBuffer();
}

const RED: [number, number, number] = [220, 30, 30];
const BLUE: [number, number, number] = [20, 40, 230];

async function call(event: APIGatewayProxyEventV2): Promise<{ status: number; json: Record<string, any> }> {
  const res = (await serving.handler(event, lambdaContext('infer'))) as HttpResponse;
  return { status: res.statusCode, json: JSON.parse(res.body) as Record<string, any> };
}

function imagePost(model: string, bytes: Buffer, type = 'image/jpeg'): APIGatewayProxyEventV2 {
  const event = httpEvent('POST', `/v2/models/${model}/infer`, { headers: { 'content-type': type } });
  return { ...event, body: bytes.toString('base64'), isBase64Encoded: true };
}

/**
 * What the service must answer, computed here without it: the declared pre-processing, a bare
 * session.run of the published artifact, softmax and top-k written out in the test.
 */
async function expectedStrings(images: Buffer[], k: number): Promise<string[][]> {
  const manifest = (await store.getJson(keys.manifest('colours', 1))) as { inputs: TensorSpec[]; outputs: TensorSpec[]; preprocess: unknown; postprocess: unknown };
  const d = checkDeclarations(parseDeclarations(manifest.preprocess, manifest.postprocess), manifest);
  const { tensor } = await imagesToTensor('image', images, imageDeclaration(d, 'image')!, manifest.inputs[0]!);
  const session = await InferenceSession.create(await store.getBytes(keys.artifact('colours', 1)));
  try {
    const logits = (await session.run({ image: tensor })).logits!;
    const rows: string[][] = [];
    for (let r = 0; r < images.length; r++) {
      const p = activate(Array.from((logits.data as Float32Array).subarray(r * 3, r * 3 + 3)), 'softmax');
      const order = [0, 1, 2].sort((a, b) => p[b]! - p[a]!);
      rows.push(order.slice(0, k).map((i) => `${Number(p[i]!.toPrecision(7))}:${i}:${LABELS[i]}`));
    }
    return rows;
  } finally {
    await session.release();
  }
}

beforeAll(async () => {
  s3 = await startLocalS3();
  store = new ObjectStore(s3.client(), s3.bucket);
  serving = createTestApp(s3, { MANIFEST_TTL_MS: '0', MAX_BODY_BYTES: String(200 * 1024) });
  expect(await convertUpload(s3, 'colours', colourClassifierModel(), OPTIONS)).toMatchObject({ status: 'succeeded' });
  expect(await convertUpload(s3, 'mlp', mlpModel({ batch: 'N' }), { mode: 'none' })).toMatchObject({ status: 'succeeded' });
}, 120_000);

afterAll(async () => {
  await serving?.dispose();
  await s3?.stop();
});

describe('an image classifier uploaded with its declarations answers labels', () => {
  test('a plain POST of a JPEG (content-type image/jpeg) answers the declared top-2 with labels', async () => {
    const red = await photo(RED);
    const { status, json } = await call(imagePost('colours', red));
    expect(status).toBe(200);
    const expected = await expectedStrings([red], 2);
    expect(json).toEqual({ model_name: 'colours', model_version: '1', outputs: [{ name: 'logits', datatype: 'BYTES', shape: [1, 2], data: expected[0] }] });
    expect(json.outputs[0].data[0]).toMatch(/^0\.9\d*:0:red$/);
  });

  test('binary tensor data: the images as raw BYTES elements (no base64) answer the same labels', async () => {
    const images = [await photo(BLUE), await photo(RED, 50, 70, 'png')];
    const frames = Buffer.concat(images.flatMap((b) => [Buffer.from(new Uint32Array([b.byteLength]).buffer), b]));
    const { body, headerLength } = binaryBody({ inputs: [{ name: 'image', datatype: 'BYTES', shape: [2], parameters: { binary_data_size: frames.byteLength } }] }, [frames]);
    const event = httpEvent('POST', '/v2/models/colours/infer', { headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(headerLength) } });
    const { status, json } = await call({ ...event, body: body.toString('base64'), isBase64Encoded: true });
    expect(status).toBe(200);
    expect(json.outputs).toEqual([{ name: 'logits', datatype: 'BYTES', shape: [2, 2], data: (await expectedStrings(images, 2)).flat() }]);
    expect(json.outputs[0].data[0]).toMatch(/:2:blue$/);
  });

  test('OIP JSON: a BYTES input of base64 images fills the batch, one row of labels per image', async () => {
    const images = [await photo(RED), await photo(BLUE, 64, 64, 'png')];
    const { status, json } = await call(
      httpEvent('POST', '/v2/models/colours/infer', {
        body: { id: 'two', inputs: [{ name: 'image', datatype: 'BYTES', shape: [2], data: images.map((b) => b.toString('base64')) }] },
      }),
    );
    expect(status).toBe(200);
    expect(json).toEqual({ model_name: 'colours', model_version: '1', id: 'two', outputs: [{ name: 'logits', datatype: 'BYTES', shape: [2, 2], data: (await expectedStrings(images, 2)).flat() }] });
    expect(json.outputs[0].data[2]).toMatch(/:2:blue$/);
  });

  test("Triton's classification parameter picks k; 0 answers the raw tensor", async () => {
    const red = (await photo(RED)).toString('base64');
    const request = (k: number) => httpEvent('POST', '/v2/models/colours/infer', {
      body: { inputs: [{ name: 'image', datatype: 'BYTES', shape: [1], data: [red] }], outputs: [{ name: 'logits', parameters: { classification: k } }] },
    });
    const three = await call(request(3));
    expect(three.status).toBe(200);
    expect(three.json.outputs[0]).toEqual({ name: 'logits', datatype: 'BYTES', shape: [1, 3], data: (await expectedStrings([await photo(RED)], 3))[0] });
    const raw = await call(request(0));
    expect(raw.status).toBe(200);
    expect(raw.json.outputs[0]).toMatchObject({ name: 'logits', datatype: 'FP32', shape: [1, 3] });
    expect(raw.json.outputs[0].data[0]).toBeGreaterThan(raw.json.outputs[0].data[1]);
  });

  test('the image input still takes a tensor of the model\'s own datatype', async () => {
    const data = new Array(3 * 16 * 16).fill(0).map((_, i) => (i >= 512 ? 1 : 0)); // a blue image
    const { status, json } = await call(httpEvent('POST', '/v2/models/colours/infer', { body: { inputs: [{ name: 'image', datatype: 'FP32', shape: [1, 3, 16, 16], data }] } }));
    expect(status).toBe(200);
    expect(json.outputs[0].data[0]).toMatch(/:2:blue$/);
  });

  test('a model without declarations answers Triton classification strings of its raw scores, unlabelled', async () => {
    const { status, json } = await call(
      httpEvent('POST', '/v2/models/mlp/infer', {
        body: { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [0.5, -0.2, 0.1, 0.9] }], outputs: [{ name: 'probs', parameters: { classification: 1 } }] },
      }),
    );
    expect(status).toBe(200);
    const plain = await call(httpEvent('POST', '/v2/models/mlp/infer', { body: { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [0.5, -0.2, 0.1, 0.9] }] } }));
    const probs = plain.json.outputs[0].data as number[];
    const best = probs.indexOf(Math.max(...probs));
    expect(json.outputs[0]).toEqual({ name: 'probs', datatype: 'BYTES', shape: [1, 1], data: [`${Number(Math.fround(probs[best]!).toPrecision(7))}:${best}`] });
  });
});

describe('TF Serving: {"b64"} images in, labelled predictions out', () => {
  const predict = (body: unknown) => call(httpEvent('POST', '/v1/models/colours:predict', { body }));

  test('row format: one {"b64"} instance per image; predictions hold the same strings as OIP', async () => {
    const images = [await photo(RED), await photo(BLUE, 50, 70, 'png')];
    const { status, json } = await predict({ instances: images.map((b) => ({ b64: b.toString('base64') })) });
    expect(status).toBe(200);
    expect(json).toEqual({ predictions: await expectedStrings(images, 2) });
  });

  test('row format with named inputs, and columnar format', async () => {
    const red = await photo(RED);
    const named = await predict({ instances: [{ image: { b64: red.toString('base64') } }] });
    expect(named).toEqual({ status: 200, json: { predictions: await expectedStrings([red], 2) } });
    const columnar = await predict({ inputs: { image: [{ b64: red.toString('base64') }] } });
    expect(columnar).toEqual({ status: 200, json: { outputs: await expectedStrings([red], 2) } });
    const bare = await predict({ inputs: { b64: red.toString('base64') } });
    expect(bare).toEqual({ status: 200, json: { outputs: await expectedStrings([red], 2) } });
  });

  test('bad {"b64"} values and files are a 400 naming the input', async () => {
    expect(await predict({ instances: [{ b64: 'not base64!' }] })).toEqual({
      status: 400,
      json: { error: 'input "image": image 0 "b64" must hold a base64 string (the encoded JPEG, PNG or WebP file)' },
    });
    expect(await predict({ instances: [{ b64: Buffer.from('plain text').toString('base64') }] })).toEqual({
      status: 400,
      json: { error: 'input "image": not an image (JPEG, PNG or WebP expected)' },
    });
    expect(await predict({ instances: [{ b64: 'AAAA' }], signature_name: 'other' })).toEqual({
      status: 400,
      json: { error: 'unknown signature_name "other"; ONNX models have only "serving_default"' },
    });
  });
});

describe('bad image requests are a 4xx that names what is wrong', () => {
  test.each([
    ['not an image', () => imagePost('colours', Buffer.from('hello, this is text')), 400, 'input "image": not an image (JPEG, PNG or WebP expected)'],
    ['a truncated JPEG', async () => imagePost('colours', (await photo(RED)).subarray(0, 400)), 400, 'input "image": the JPEG image could not be decoded (truncated or corrupt)'],
    ['an empty body', () => imagePost('colours', Buffer.alloc(0)), 400, 'request body is empty; send the image file'],
    ['a body over the limit', () => imagePost('colours', Buffer.alloc(210 * 1024, 1)), 413, 'request body is larger than the 204800-byte limit'],
    ['an image to a model that declares none', async () => imagePost('mlp', await photo(RED)), 400, 'this model declares no image input; send application/json with its inputs (x)'],
    [
      'base64 that is not base64',
      () => httpEvent('POST', '/v2/models/colours/infer', { body: { inputs: [{ name: 'image', datatype: 'BYTES', shape: [1], data: ['not base64!'] }] } }),
      400,
      'input "image": image 0 is not a base64 string (the encoded JPEG, PNG or WebP file)',
    ],
    [
      'a shape that is not the image count',
      () => httpEvent('POST', '/v2/models/colours/infer', { body: { inputs: [{ name: 'image', datatype: 'BYTES', shape: [1, 3], data: ['AAAA'] }] } }),
      400,
      'input "image": an image input\'s shape is [n], the number of images; got [1,3] for 1 image',
    ],
    [
      'a classification parameter that is not a count',
      () => httpEvent('POST', '/v2/models/mlp/infer', { body: { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [0, 0, 0, 0] }], outputs: [{ name: 'probs', parameters: { classification: 'top' } }] } }),
      400,
      'output "probs": parameters.classification must be a whole number of classes (0 answers the raw tensor)',
    ],
    [
      'an image input given twice',
      () => httpEvent('POST', '/v2/models/colours/infer', { body: { inputs: [{ name: 'image', datatype: 'BYTES', shape: [1], data: ['AAAA'] }, { name: 'image', datatype: 'BYTES', shape: [1], data: ['AAAA'] }] } }),
      400,
      'input "image" is given more than once',
    ],
  ])('%s', async (_, event, status, message) => {
    const res = await call(await event());
    expect(res).toEqual({ status, json: { error: message } });
  });

  test('a decompression bomb is refused by its header', async () => {
    const big = await sharp({ create: { width: 12000, height: 9000, channels: 3, background: { r: 200, g: 0, b: 0 } } }).png({ compressionLevel: 9, palette: true, colours: 2 }).toBuffer();
    expect(big.length).toBeLessThan(200 * 1024);
    const bomb = { ...OPTIONS, preprocess: { image: { type: 'image', scale: 1 / 255, maxPixels: 50_000_000 } } };
    expect(await convertUpload(s3, 'bombproof', colourClassifierModel(), bomb)).toMatchObject({ status: 'succeeded' });
    const res = await call(imagePost('bombproof', big, 'image/png'));
    expect(res).toEqual({ status: 400, json: { error: "input \"image\": the image is 12000x9000 = 108000000 pixels, over this model's limit of 50000000" } });
  }, 60_000);
});
