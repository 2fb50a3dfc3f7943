import { Tensor } from 'onnxruntime-node';
import type { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { InvalidRequestError } from '../errors';
import type { TensorSpec } from '../registry/manifest';
import { DeclarationError, type TextPreprocess } from './declarations';

/** Longest text a request may send, per string: far beyond any model's context, short of a memory problem. */
export const MAX_TEXT_CHARS = 1_000_000;

/** One text's tokens with the template's special tokens, and where its own tokens sit among them. */
interface Encoded {
  ids: number[];
  typeIds: number[];
  /** Index of the text's first own token in `ids`, and how many there are. */
  start: number;
  length: number;
}

/**
 * A Hugging Face `tokenizer.json`, ready to turn texts into the tensors a declaration names.
 * Tokenizing itself is done by `@huggingface/tokenizers` (the reference implementation's
 * pure-JS port: every normalizer, pre-tokenizer and model kind the format has); truncation
 * and padding are done here, by the declaration, so they do not depend on what the file says.
 */
export class TextTokenizer {
  readonly padId: number;
  readonly padTypeId: number;
  readonly padLeft: boolean;
  private shape: { ids: number[]; typeIds: number[]; start: number; textTypeId: number } | undefined;

  private constructor(private readonly tokenizer: HfTokenizer, json: Record<string, unknown>) {
    const padding = isObject(json.padding) ? json.padding : undefined;
    const padToken = typeof padding?.pad_token === 'string' ? padding.pad_token : undefined;
    const known = [padToken, '[PAD]', '<pad>', '<|padding|>'].map((t) => (t === undefined ? undefined : tokenizer.token_to_id(t))).find((id) => id !== undefined);
    this.padId = typeof padding?.pad_id === 'number' ? padding.pad_id : (known ?? 0);
    this.padTypeId = typeof padding?.pad_type_id === 'number' ? padding.pad_type_id : 0;
    this.padLeft = padding?.direction === 'Left';
  }

  /** Parses a tokenizer file; one the library cannot build is a {@link DeclarationError} naming the file. */
  static parse(bytes: Uint8Array, file: string): TextTokenizer {
    let json: unknown;
    try {
      json = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8'));
    } catch (err) {
      throw new DeclarationError(`${file} is not valid JSON (${(err as Error).message})`);
    }
    if (!isObject(json) || !isObject(json.model)) throw new DeclarationError(`${file} is not a Hugging Face tokenizer.json: it has no "model" object`);
    try {
      const built = new TextTokenizer(new (loadTokenizers().Tokenizer)(json, {}), json);
      // Tokenize a probe now: a file the library reads but cannot use fails the upload, not a request.
      built.template();
      return built;
    } catch (err) {
      throw new DeclarationError(`${file}: the tokenizer cannot be built from it (${(err as Error).message})`);
    }
  }

  /** Token id of a token string, if the vocabulary has it. */
  tokenId(token: string): number | undefined {
    return this.tokenizer.token_to_id(token);
  }

  /** The template's special tokens around one text, worked out once from a probe text. */
  private template(): { ids: number[]; typeIds: number[]; start: number; textTypeId: number } {
    if (this.shape) return this.shape;
    const probe = 'probe';
    const full = this.tokenizer.encode(probe, { add_special_tokens: true, return_token_type_ids: true });
    const own = this.tokenizer.encode(probe, { add_special_tokens: false }).ids;
    const start = findRun(full.ids, own);
    if (start < 0) throw new DeclarationError('the tokenizer\'s template does not keep a text\'s own tokens together');
    const typeIds = full.token_type_ids ?? new Array<number>(full.ids.length).fill(0);
    const cut = (list: number[]): number[] => [...list.slice(0, start), ...list.slice(start + own.length)];
    this.shape = { ids: cut(full.ids), typeIds: cut(typeIds), start, textTypeId: typeIds[start] ?? 0 };
    return this.shape;
  }

  /**
   * One text's tokens: its own, tokenized once, placed in the template (`[CLS] ... [SEP]` and
   * the like) when special tokens are added, so truncation can cut the text and keep the template.
   */
  private encode(text: string, addSpecialTokens: boolean): Encoded {
    const own = this.tokenizer.encode(text, { add_special_tokens: false }).ids;
    if (!addSpecialTokens) return { ids: own, typeIds: new Array<number>(own.length).fill(0), start: 0, length: own.length };
    const t = this.template();
    return {
      ids: [...t.ids.slice(0, t.start), ...own, ...t.ids.slice(t.start)],
      typeIds: [...t.typeIds.slice(0, t.start), ...new Array<number>(own.length).fill(t.textTypeId), ...t.typeIds.slice(t.start)],
      start: t.start,
      length: own.length,
    };
  }

  /**
   * The tensors for a batch of texts: ids, and the mask and type ids when the declaration
   * names inputs for them; `[N, S]` (or `[S]` for a rank-1 model input, one text).
   */
  toFeeds(name: string, texts: readonly string[], decl: TextPreprocess, inputs: readonly TensorSpec[]): Record<string, Tensor> {
    const ids = inputs.find((s) => s.name === decl.ids);
    if (!ids) throw new Error(`input ${decl.ids} of a checked text declaration is missing`);
    if (texts.length === 0) throw new InvalidRequestError(`input "${name}": no texts given`);
    if (ids.shape.length === 1 && texts.length !== 1) throw new InvalidRequestError(`input "${name}": the model takes one text per request (its input "${ids.name}" has no batch dim); got ${texts.length}`);
    if (ids.shape.length === 2 && ids.shape[0] !== -1 && ids.shape[0] !== texts.length) {
      throw new InvalidRequestError(`input "${name}": the model takes exactly ${ids.shape[0]} text${ids.shape[0] === 1 ? '' : 's'} per request; got ${texts.length}`);
    }
    const rows = texts.map((text, i) => {
      if (text.length > MAX_TEXT_CHARS) throw new InvalidRequestError(`input "${name}": text ${i} is ${text.length} characters, over the ${MAX_TEXT_CHARS} a request may send`);
      const encoded = this.encode(text, decl.addSpecialTokens);
      if (encoded.ids.length <= decl.maxLength) return encoded;
      if (!decl.truncation) throw new InvalidRequestError(`input "${name}": text ${i} is ${encoded.ids.length} tokens, over the model's maxLength of ${decl.maxLength}, and truncation is off`);
      const keep = decl.maxLength - (encoded.ids.length - encoded.length);
      if (keep < 0) throw new InvalidRequestError(`input "${name}": maxLength ${decl.maxLength} is shorter than the tokenizer's own special tokens`);
      const cut = (list: number[]): number[] => [...list.slice(0, encoded.start + keep), ...list.slice(encoded.start + encoded.length)];
      return { ids: cut(encoded.ids), typeIds: cut(encoded.typeIds), start: encoded.start, length: keep };
    });
    const width = decl.padding === 'max_length' ? decl.maxLength : Math.max(1, ...rows.map((r) => r.ids.length));
    const size = rows.length * width;
    const idData = new Array<number>(size).fill(this.padId);
    const maskData = new Array<number>(size).fill(0);
    const typeData = new Array<number>(size).fill(this.padTypeId);
    rows.forEach((row, r) => {
      const offset = r * width + (this.padLeft ? width - row.ids.length : 0);
      row.ids.forEach((id, j) => {
        idData[offset + j] = id;
        maskData[offset + j] = 1;
        typeData[offset + j] = row.typeIds[j] ?? 0;
      });
    });
    const dims = ids.shape.length === 1 ? [width] : [rows.length, width];
    const feeds: Record<string, Tensor> = { [decl.ids]: tokenTensor(ids, idData, dims) };
    const add = (input: string | null, data: number[]): void => {
      const spec = input ? inputs.find((s) => s.name === input) : undefined;
      if (spec && input) feeds[input] = tokenTensor(spec, data, dims);
    };
    add(decl.attentionMask, maskData);
    add(decl.tokenTypeIds, typeData);
    return feeds;
  }
}

function tokenTensor(spec: TensorSpec, values: readonly number[], dims: number[]): Tensor {
  if (spec.datatype === 'INT32') return new Tensor('int32', Int32Array.from(values), dims);
  return new Tensor('int64', BigInt64Array.from(values, (v) => BigInt(v)), dims);
}

/** Index where `run` starts inside `list`, or -1. */
function findRun(list: readonly number[], run: readonly number[]): number {
  if (run.length === 0) return -1;
  outer: for (let i = 0; i + run.length <= list.length; i++) {
    for (let j = 0; j < run.length; j++) if (list[i + j] !== run[j]) continue outer;
    return i;
  }
  return -1;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

type TokenizersModule = typeof import('@huggingface/tokenizers');
let tokenizers: TokenizersModule | undefined;

/**
 * The tokenizer library, loaded on first use: models without a text input never load it,
 * so a tensor-only cold start does not grow.
 */
function loadTokenizers(): TokenizersModule {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  tokenizers ??= require('@huggingface/tokenizers') as TokenizersModule;
  return tokenizers;
}

/**
 * The texts of one input as a request sends them: OIP `BYTES` strings (`data` flat or nested
 * one level, `shape` [n]) or a TF Serving value (a string or an array of strings).
 */
export function readTexts(value: unknown, name: string): string[] {
  const list = typeof value === 'string' ? [value] : Array.isArray(value) && value.length === 1 && Array.isArray(value[0]) ? (value[0] as unknown[]) : value;
  if (!Array.isArray(list) || list.length === 0 || !list.every((t) => typeof t === 'string')) {
    throw new InvalidRequestError(`input "${name}": a text input takes a string or an array of strings`);
  }
  return list;
}
