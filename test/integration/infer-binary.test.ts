import { deflateRawSync, deflateSync, gunzipSync, gzipSync, createGzip } from 'node:zlib';
import { Readable } from 'node:stream';
import { ModelSession } from '../../lib/runtime/model-session';
import { httpEvent, lambdaContext } from '../helpers/events';
import { createTestApp, publishModel, type TestApp } from '../helpers/app';
import { startLocalS3, type LocalS3 } from '../helpers/local-s3';
import { allTypesModel, binaryExampleModel, constantModel, mlpModel, scaleModel } from '../helpers/models';
import { binaryBody, decodeElements, encodeElements, parseBinaryResponse, type BinaryOutput, type WireValue } from '../helpers/binary-wire';

/**
 * Triton's binary tensor data extension, compressed bodies and staged tensors, through the
 * real middy handler with API Gateway v2 events (binary bodies base64, as API Gateway hands
 * them over): the wire format is built in this test from the specification, and every binary
 * answer is compared with the JSON path's answer to the same inputs.
 */

let s3: LocalS3;
let t: TestApp;
/** A second app whose responses stop at 64 KiB, so large outputs are staged. */
let small: TestApp;

beforeAll(async () => {
  s3 = await startLocalS3();
  await publishModel(s3, 'types', 1, allTypesModel());
  await publishModel(s3, 'example', 1, binaryExampleModel());
  await publishModel(s3, 'mlp', 1, mlpModel({ batch: 'N' }));
  await publishModel(s3, 'mlp1', 1, mlpModel());
  await publishModel(s3, 'scale', 1, scaleModel());
  await publishModel(s3, 'constant', 1, constantModel());
  t = createTestApp(s3);
  small = createTestApp(s3, { MAX_RESPONSE_BYTES: String(64 * 1024) });
});

afterAll(async () => {
  await t?.dispose();
  await small?.dispose();
  await s3?.stop();
});

interface Answer {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
  json: () => Record<string, unknown>;
}

async function send(
  path: string,
  body: Buffer | string | undefined,
  headers: Record<string, string> = {},
  app: TestApp = t,
  method = 'POST',
): Promise<Answer> {
  const event = httpEvent(method, path, { headers });
  if (body !== undefined) {
    event.body = Buffer.from(body).toString('base64');
    event.isBase64Encoded = true;
  }
  const result = (await app.handler(event, lambdaContext())) as { statusCode: number; headers: Record<string, string>; body: string; isBase64Encoded?: boolean };
  const bytes = result.isBase64Encoded ? Buffer.from(result.body, 'base64') : Buffer.from(result.body, 'utf8');
  return { status: result.statusCode, headers: result.headers, body: bytes, json: () => JSON.parse(bytes.toString('utf8')) as Record<string, unknown> };
}

/** A binary request as tritonclient sends it by default: no content-type, the header's length. */
async function sendBinary(path: string, header: unknown, tensors: Buffer[], headers: Record<string, string> = {}, app: TestApp = t): Promise<Answer> {
  const { body, headerLength } = binaryBody(header, tensors);
  return send(path, body, { 'inference-header-content-length': String(headerLength), ...headers }, app);
}

function binaryOutputs(answer: Answer): BinaryOutput[] {
  expect(answer.status).toBe(200);
  expect(answer.headers['content-type']).toBe('application/octet-stream');
  return parseBinaryResponse(answer.body, Number(answer.headers['inference-header-content-length'])).outputs;
}

/** Every datatype, with its edge values; FP16 as bit patterns (binary) and their numbers (JSON). */
const VALUES: Record<string, { binary: WireValue[]; json: unknown[] }> = {
  BOOL: { binary: [true, false, true], json: [true, false, true] },
  UINT8: { binary: [0, 255, 7], json: [0, 255, 7] },
  UINT16: { binary: [0, 65535, 300], json: [0, 65535, 300] },
  UINT32: { binary: [0, 4294967295, 70000], json: [0, 4294967295, 70000] },
  UINT64: { binary: [0n, 18446744073709551615n, 9007199254740993n], json: ['0', '18446744073709551615', '9007199254740993'] },
  INT8: { binary: [-128, 127, 0], json: [-128, 127, 0] },
  INT16: { binary: [-32768, 32767, -1], json: [-32768, 32767, -1] },
  INT32: { binary: [-2147483648, 2147483647, 5], json: [-2147483648, 2147483647, 5] },
  INT64: { binary: [-9223372036854775808n, 9223372036854775807n, -9007199254740993n], json: ['-9223372036854775808', '9223372036854775807', '-9007199254740993'] },
  FP16: { binary: [0x3c00, 0xc000, 0x0001], json: [1, -2, 5.960464477539063e-8] },
  FP32: { binary: [1.5, -0, 3.4028234663852886e38], json: [1.5, -0, 3.4028234663852886e38] },
  FP64: { binary: [Math.PI, -1e-300, 2 ** 60], json: [Math.PI, -1e-300, 2 ** 60] },
  BYTES: { binary: ['', 'naïve ☃', 'x'.repeat(300)], json: ['', 'naïve ☃', 'x'.repeat(300)] },
};

describe('binary tensor data', () => {
  test('every datatype in and out as binary gives the same answer as the JSON path', async () => {
    const types = Object.keys(VALUES);
    const inputs = types.map((dt) => ({ name: `in_${dt.toLowerCase()}`, shape: [3], datatype: dt }));
    const tensors = types.map((dt) => encodeElements(dt, VALUES[dt]!.binary));
    const header = {
      inputs: inputs.map((i, k) => ({ ...i, parameters: { binary_data_size: tensors[k]!.byteLength } })),
      parameters: { binary_data_output: true },
    };
    const outputs = binaryOutputs(await sendBinary('/v2/models/types/infer', header, tensors));

    const json = await send('/v2/models/types/infer', JSON.stringify({ inputs: inputs.map((i) => ({ ...i, data: VALUES[i.datatype]!.json })) }), { 'content-type': 'application/json' });
    expect(json.status).toBe(200);
    const viaJson = json.json().outputs as { name: string; datatype: string; shape: number[]; data: unknown[] }[];

    for (const [k, dt] of types.entries()) {
      const out = outputs.find((o) => o.name === `out_${dt.toLowerCase()}`)!;
      expect(out.datatype).toBe(dt);
      expect(out.shape).toEqual([3]);
      expect(out.parameters).toEqual({ binary_data_size: tensors[k]!.byteLength });
      // The echo model returns what it was given, byte for byte.
      expect(out.bytes!.equals(tensors[k]!)).toBe(true);
      // And the JSON path says the same values.
      const fromBinary = decodeElements(dt, out.bytes!);
      if (dt === 'UINT64' || dt === 'INT64') {
        // JSON.parse would round these: read the exact digits the JSON path wrote.
        expect(json.body.toString('utf8')).toContain(`"name":"${out.name}","datatype":"${dt}","shape":[3],"data":[${fromBinary.join(',')}]`);
      } else {
        // JSON writes -0 as 0; the binary bytes above keep its sign.
        const expected = dt === 'FP16' ? VALUES.FP16!.json : fromBinary.map((v) => (v === 0 ? 0 : v));
        expect(viaJson.find((o) => o.name === out.name)!.data).toEqual(expected);
      }
    }
  });

  test("the specification's own example: UINT32 [2, 2] and BOOL [3] in, output0 as binary", async () => {
    const header = {
      model_name: 'example',
      inputs: [
        { name: 'input0', shape: [2, 2], datatype: 'UINT32', parameters: { binary_data_size: 16 } },
        { name: 'input1', shape: [3], datatype: 'BOOL', parameters: { binary_data_size: 3 } },
      ],
      outputs: [{ name: 'output0', parameters: { binary_data: true } }],
    };
    const answer = await sendBinary('/v2/models/example/infer', header, [encodeElements('UINT32', [1, 2, 3, 4]), encodeElements('BOOL', [true, false, true])], {
      'content-type': 'application/octet-stream',
    });
    const [out] = binaryOutputs(answer);
    expect(out).toMatchObject({ name: 'output0', datatype: 'FP32', shape: [2, 2], parameters: { binary_data_size: 16 } });
    expect(decodeElements('FP32', out!.bytes!)).toEqual([1, 2, 3, 4]);
    expect(Number(answer.headers['inference-header-content-length'])).toBe(answer.body.byteLength - 16);
  });

  test('JSON and binary inputs mixed; binary_data on an output wins over binary_data_output', async () => {
    const header = {
      inputs: [
        { name: 'input0', shape: [2, 2], datatype: 'UINT32', data: [[5, 6], [7, 8]] },
        { name: 'input1', shape: [3], datatype: 'BOOL', parameters: { binary_data_size: 3 } },
      ],
      outputs: [{ name: 'output0', parameters: { binary_data: false } }, { name: 'output1' }],
      parameters: { binary_data_output: true },
    };
    const outputs = binaryOutputs(await sendBinary('/v2/models/example/infer', header, [encodeElements('BOOL', [false, false, true])]));
    expect(outputs[0]).toMatchObject({ name: 'output0', data: [5, 6, 7, 8] });
    expect(outputs[0]!.bytes).toBeUndefined();
    expect(decodeElements('BOOL', outputs[1]!.bytes!)).toEqual([true, true, false]);
  });

  test('a request with no binary output is answered in plain JSON', async () => {
    const header = { inputs: [{ name: 'input1', shape: [3], datatype: 'BOOL', parameters: { binary_data_size: 3 } }, { name: 'input0', shape: [2, 2], datatype: 'UINT32', data: [0, 0, 0, 0] }] };
    const answer = await sendBinary('/v2/models/example/infer', header, [encodeElements('BOOL', [true, true, true])]);
    expect(answer.status).toBe(200);
    expect(answer.headers['content-type']).toBe('application/json');
    expect((answer.json().outputs as { data: unknown[] }[])[1]!.data).toEqual([false, false, false]);
  });

  test('a raw binary request (header length 0) fills the one input, its dynamic dimension from the size', async () => {
    const x = [0.5, -1, 2, 0.25, 1, 1, 1, 1];
    const outputs = binaryOutputs(await send('/v2/models/mlp/infer', encodeElements('FP32', x), { 'inference-header-content-length': '0', 'content-type': 'application/octet-stream' }));
    const json = await send('/v2/models/mlp/infer', JSON.stringify({ inputs: [{ name: 'x', shape: [2, 4], datatype: 'FP32', data: x }] }), { 'content-type': 'application/json' });
    const viaJson = (json.json().outputs as { data: number[] }[])[0]!.data;
    expect(outputs[0]!.shape).toEqual([2, 3]);
    expect(decodeElements('FP32', outputs[0]!.bytes!)).toEqual(viaJson.map((v) => Math.fround(v)));
  });

  test('bad framing is a 400 naming the input, and onnxruntime never sees the request', async () => {
    const run = jest.spyOn(ModelSession.prototype, 'run');
    const u32 = encodeElements('UINT32', [1, 2, 3, 4]);
    const bools = encodeElements('BOOL', [true, false, true]);
    const example = (size0: number, size1: number) => ({
      inputs: [
        { name: 'input0', shape: [2, 2], datatype: 'UINT32', parameters: { binary_data_size: size0 } },
        { name: 'input1', shape: [3], datatype: 'BOOL', parameters: { binary_data_size: size1 } },
      ],
    });
    const cases: [string, Promise<Answer>, RegExp][] = [];
    const { body, headerLength } = binaryBody(example(16, 3), [u32, bools]);
    cases.push(['header length past the body', send('/v2/models/example/infer', body, { 'inference-header-content-length': String(body.byteLength + 1) }), /Inference-Header-Content-Length \d+ is past the end of the \d+-byte body/]);
    cases.push(['header length not a number', send('/v2/models/example/infer', body, { 'inference-header-content-length': '12abc' }), /Inference-Header-Content-Length "12abc" is not a byte count/]);
    cases.push(['sizes past the body', sendBinary('/v2/models/example/infer', example(16, 3), [u32]), /input "input1": binary_data_size 3 runs past the end of the body \(0 bytes of binary data left at its offset 16\)/]);
    cases.push(['size other than shape x element size', sendBinary('/v2/models/example/infer', example(12, 3), [u32.subarray(0, 12), bools]), /input "input0": binary_data_size is 12 but shape \[2,2\] of UINT32 is 16 bytes/]);
    cases.push(['trailing bytes', sendBinary('/v2/models/example/infer', example(16, 3), [u32, bools, Buffer.from([9, 9])]), /2 bytes of binary data after the last input's/]);
    cases.push(['BOOL byte other than 0 or 1', sendBinary('/v2/models/example/infer', example(16, 3), [u32, Buffer.from([1, 2, 0])]), /input "input1": element 1 is byte 2; BOOL elements are one byte, 0 or 1/]);
    const bytesHeader = (size: number) => ({ inputs: Object.keys(VALUES).map((dt) => ({ name: `in_${dt.toLowerCase()}`, shape: [1], datatype: dt, ...(dt === 'BYTES' ? { parameters: { binary_data_size: size } } : { data: [VALUES[dt]!.json[0]] }) })) });
    const runaway = Buffer.concat([Buffer.from([10, 0, 0, 0]), Buffer.from('abc')]);
    cases.push(['BYTES length past its tensor', sendBinary('/v2/models/types/infer', bytesHeader(7), [runaway]), /input "in_bytes": BYTES element 0 says it is 10 bytes long, past the end of the tensor's binary data \(3 bytes left\)/]);
    const shortLength = Buffer.from([3, 0]);
    cases.push(['BYTES length cut short', sendBinary('/v2/models/types/infer', bytesHeader(2), [shortLength]), /input "in_bytes": BYTES element 0 of 1: its 4-byte length runs past the tensor's 2 bytes of binary data/]);
    cases.push(['binary data on a JSON content type', send('/v2/models/example/infer', body, { 'inference-header-content-length': String(headerLength), 'content-type': 'application/json' }), /carries 19 bytes of binary tensor data after its JSON header, but its content-type is JSON; send application\/octet-stream/]);
    cases.push(['octet-stream without the header', send('/v2/models/example/infer', body, { 'content-type': 'application/octet-stream' }), /a binary body \(content-type application\/octet-stream\) needs an Inference-Header-Content-Length header/]);
    cases.push(['binary_data_size in a JSON-only request', send('/v2/models/example/infer', JSON.stringify(example(16, 3)), { 'content-type': 'application/json' }), /input "input0": parameters.binary_data_size is given but the request carries no binary data/]);
    cases.push(['data and binary_data_size both', sendBinary('/v2/models/example/infer', { inputs: [{ ...example(16, 3).inputs[0], data: [1, 2, 3, 4] }, example(16, 3).inputs[1]] }, [u32, bools]), /input "input0": give its data one way only/]);
    cases.push(['raw binary body of the wrong size', send('/v2/models/mlp1/infer', Buffer.alloc(15), { 'inference-header-content-length': '0' }), /input "x": a raw body of 15 bytes does not fill shape \[1,4\] of FP32/]);
    cases.push(['raw binary request to a two-input model', send('/v2/models/example/infer', u32, { 'inference-header-content-length': '0' }), /needs a model with one input; this one has 2 \(input0, input1\)/]);
    for (const [name, pending, message] of cases) {
      const answer = await pending;
      expect({ name, status: answer.status }).toEqual({ name, status: 400 });
      expect({ name, error: answer.json().error }).toEqual({ name, error: expect.stringMatching(message) });
    }
    expect(run).not.toHaveBeenCalled();
    run.mockRestore();
  });

  test('server metadata lists the extensions the server implements', async () => {
    const answer = await send('/v2', undefined, {}, t, 'GET');
    expect(answer.json().extensions).toEqual(['binary_tensor_data', 'classification', 'staged_tensors']);
  });

  test('"inputs": [] calls a model that has no inputs; a model with inputs still needs them', async () => {
    const none = await send('/v2/models/constant/infer', '{"inputs":[]}', { 'content-type': 'application/json' });
    expect(none.status).toBe(200);
    expect((none.json().outputs as { data: number[] }[])[0]!.data).toEqual([1, 2, 3]);
    const missing = await send('/v2/models/mlp/infer', '{"inputs":[]}', { 'content-type': 'application/json' });
    expect(missing.status).toBe(400);
    expect(missing.json().error).toBe('"inputs" must be a non-empty array; the model\'s inputs are: x');
  });
});

describe('compressed bodies', () => {
  const request = JSON.stringify({ inputs: [{ name: 'x', shape: [2, 4], datatype: 'FP32', data: [1, 2, 3, 4, 5, 6, 7, 8] }] });

  test('gzip, deflate (zlib and raw) and identity requests answer as the plain one', async () => {
    const plain = await send('/v2/models/mlp/infer', request, { 'content-type': 'application/json' });
    expect(plain.status).toBe(200);
    const bodies: [string, Buffer][] = [
      ['gzip', gzipSync(request)],
      ['deflate', deflateSync(request)],
      ['deflate', deflateRawSync(request)],
      ['identity', Buffer.from(request)],
    ];
    for (const [encoding, body] of bodies) {
      const answer = await send('/v2/models/mlp/infer', body, { 'content-type': 'application/json', 'content-encoding': encoding });
      expect({ encoding, status: answer.status }).toEqual({ encoding, status: 200 });
      expect(answer.json()).toEqual(plain.json());
    }
    // A compressed JSON body may be declared binary (API Gateway passes JSON-typed bodies as
    // text, so compressed ones travel as binary); uncompressed, that is a 400 (above).
    const declaredBinary = await send('/v2/models/mlp/infer', gzipSync(request), { 'content-type': 'application/octet-stream', 'content-encoding': 'gzip' });
    expect(declaredBinary.json()).toEqual(plain.json());
    // A gzip binary request, as tritonclient sends one with request_compression_algorithm="gzip".
    const x = encodeElements('FP32', [1, 2, 3, 4, 5, 6, 7, 8]);
    const { body, headerLength } = binaryBody({ inputs: [{ name: 'x', shape: [2, 4], datatype: 'FP32', parameters: { binary_data_size: 32 } }] }, [x]);
    const zipped = await send('/v2/models/mlp/infer', gzipSync(body), { 'content-encoding': 'gzip', 'inference-header-content-length': String(headerLength) });
    expect(zipped.json()).toEqual(plain.json());
  });

  test('a response is gzipped when the client accepts it and it is large enough to gain', async () => {
    const big = JSON.stringify({ inputs: [{ name: 'x', shape: [4096], datatype: 'FP32', data: Array.from({ length: 4096 }, (_, i) => i % 7) }] });
    const answer = await send('/v2/models/scale/infer', big, { 'content-type': 'application/json', 'accept-encoding': 'br;q=1, gzip;q=0.8' });
    expect(answer.status).toBe(200);
    expect(answer.headers['content-encoding']).toBe('gzip');
    const text = JSON.parse(gunzipSync(answer.body).toString('utf8')) as { outputs: { data: number[] }[] };
    expect(text.outputs[0]!.data.slice(0, 8)).toEqual([0, 2, 4, 6, 8, 10, 12, 0]);
    const tiny = await send('/v2/models/mlp/infer', request, { 'content-type': 'application/json', 'accept-encoding': 'gzip' });
    expect(tiny.headers['content-encoding']).toBeUndefined();
    const refused = await send('/v2/models/scale/infer', big, { 'content-type': 'application/json', 'accept-encoding': 'gzip;q=0, identity' });
    expect(refused.headers['content-encoding']).toBeUndefined();
  });

  test('the size limit applies once decompressed: a bomb is refused before it expands', async () => {
    // 512 MiB of zeros, gzipped as a stream (about half a megabyte on the wire).
    const chunks: Buffer[] = [];
    const zeros = Buffer.alloc(1 << 20);
    await new Promise<void>((done, fail) => {
      const gz = createGzip({ level: 9 });
      gz.on('data', (c: Buffer) => chunks.push(c));
      gz.on('end', done);
      gz.on('error', fail);
      Readable.from((function* () { for (let i = 0; i < 512; i++) yield zeros; })()).pipe(gz);
    });
    const bomb = Buffer.concat(chunks);
    expect(bomb.byteLength).toBeLessThan(1 << 20);
    const before = process.memoryUsage().rss;
    const answer = await send('/v2/models/mlp/infer', bomb, { 'content-type': 'application/json', 'content-encoding': 'gzip' });
    const grew = process.memoryUsage().rss - before;
    expect(answer.status).toBe(413);
    expect(answer.json().error).toBe('request body is larger than the 6291456-byte limit once decompressed');
    expect(grew).toBeLessThan(128 * 1024 * 1024);
  });

  test('an unknown encoding is a 415, and data that is not what its encoding says a 400', async () => {
    const br = await send('/v2/models/mlp/infer', request, { 'content-type': 'application/json', 'content-encoding': 'br' });
    expect(br.status).toBe(415);
    expect(br.json().error).toBe('content-encoding "br" is not supported; send gzip, deflate or an uncompressed body');
    const notGzip = await send('/v2/models/mlp/infer', request, { 'content-type': 'application/json', 'content-encoding': 'gzip' });
    expect(notGzip.status).toBe(400);
    expect(notGzip.json().error).toMatch(/^request body is not valid gzip data \(content-encoding: gzip\)/);
    const cut = gzipSync(request).subarray(0, 20);
    const truncated = await send('/v2/models/mlp/infer', cut, { 'content-type': 'application/json', 'content-encoding': 'gzip' });
    expect(truncated.status).toBe(400);
    expect(truncated.json().error).toMatch(/^request body is not valid gzip data/);
  });
});

describe('staged tensors', () => {
  async function stage(bytes: Buffer): Promise<string> {
    const ticket = await send('/v2/staging', undefined, {});
    expect(ticket.status).toBe(200);
    const { id, upload_url: url, method, expires_in: expiresIn } = ticket.json() as { id: string; upload_url: string; method: string; expires_in: number };
    expect(id).toMatch(/^[0-9a-f]{32}$/);
    expect(method).toBe('PUT');
    expect(expiresIn).toBe(900);
    const put = await fetch(url, { method: 'PUT', body: bytes });
    expect(put.status).toBe(200);
    return id;
  }

  test('an input staged through a presigned PUT, and outputs asked to be staged, give the JSON path\'s answer', async () => {
    const x = Array.from({ length: 1000 }, (_, i) => Math.sin(i));
    const id = await stage(encodeElements('FP32', x));
    const answer = await send('/v2/models/scale/infer', JSON.stringify({ inputs: [{ name: 'x', shape: [1000], datatype: 'FP32', parameters: { staged_id: id } }], outputs: [{ name: 'y', parameters: { staged: true } }] }), { 'content-type': 'application/json' });
    expect(answer.status).toBe(200);
    const out = (answer.json().outputs as BinaryOutput[])[0]!;
    expect(out.data).toBeUndefined();
    expect(out.parameters).toMatchObject({ staged_id: expect.stringMatching(/^[0-9a-f]{32}$/), staged_size: 4000, staged_expires_in: 900 });
    const fetched = Buffer.from(await (await fetch(out.parameters!.staged_url as string)).arrayBuffer());
    expect(decodeElements('FP32', fetched)).toEqual(x.map((v) => Math.fround(Math.fround(v) * 2)));
  });

  test('an output too large for the response is staged by itself; TF Serving says what to ask instead', async () => {
    const n = 32 * 1024;
    const request = JSON.stringify({ inputs: [{ name: 'x', shape: [n], datatype: 'FP32', data: Array.from({ length: n }, (_, i) => i) }] });
    const answer = await send('/v2/models/scale/infer', request, { 'content-type': 'application/json' }, small);
    expect(answer.status).toBe(200);
    const out = (answer.json().outputs as BinaryOutput[])[0]!;
    expect(out.parameters).toMatchObject({ staged_size: n * 4 });
    const fetched = decodeElements('FP32', Buffer.from(await (await fetch(out.parameters!.staged_url as string)).arrayBuffer()));
    expect(fetched[n - 1]).toBe((n - 1) * 2);

    const tf = await send('/v1/models/scale:predict', JSON.stringify({ inputs: Array.from({ length: n }, (_, i) => i) }), { 'content-type': 'application/json' }, small);
    expect(tf.status).toBe(400);
    expect(tf.json().error).toMatch(/^the answer is \d+ bytes, over the \d+ bytes a response can carry: ask for fewer outputs \("output_filter"\) or a smaller batch, or use the Open Inference Protocol route \(POST \/v2\/models\/scale\/infer\), which returns large outputs as binary or stages them in S3$/);
  });

  test('a request can name only a staged id: anything else, or a missing or wrong-sized tensor, is a 400', async () => {
    const call = (staged: unknown, shape = [4]) =>
      send('/v2/models/scale/infer', JSON.stringify({ inputs: [{ name: 'x', shape, datatype: 'FP32', parameters: { staged_id: staged } }] }), { 'content-type': 'application/json' });
    for (const bad of ['../models/scale/1/model.onnx', 'models/scale/1/manifest.json', 'A'.repeat(32), 42]) {
      const answer = await call(bad);
      expect(answer.status).toBe(400);
      expect(answer.json().error).toMatch(/^input "x": parameters.staged_id must be the id a POST \/v2\/staging call returned \(32 hex digits\)/);
    }
    const unknown = await call('0'.repeat(32));
    expect(unknown.status).toBe(400);
    expect(unknown.json().error).toBe(`input "x": no staged tensor "${'0'.repeat(32)}" (never uploaded, or expired)`);
    const id = await stage(encodeElements('FP32', [1, 2, 3]));
    const wrong = await call(id);
    expect(wrong.status).toBe(400);
    expect(wrong.json().error).toBe(`input "x": staged tensor "${id}" is 12 bytes but its shape and datatype need 16`);
  });
});
