/**
 * Seeded generator of malformed, hostile and valid HTTP requests for the inference handler.
 * Each case says what it sends (method, path, body, headers) and what must come back: the
 * status, a pattern the error message must match, or the answer a valid request must get.
 *
 * Case `i` of seed `s` depends on nothing but `(s, i)`, so a failing case can be replayed on
 * its own, and the `npm test` share is the first N cases of the full run.
 */
import { deflateRawSync, deflateSync, gzipSync } from 'node:zlib';
import { ECHO_TYPES, prng } from '../helpers/models';

/** The models the fuzz test publishes (version 1 each; `mlp` also has the label `stable`). */
export const MODELS = {
  /** x FP32 [1, 4] -> probs FP32 [1, 3]. */
  mlp: 'mlp',
  /** x FP32 [-1, 4] -> probs FP32 [-1, 3], same weights as `mlp`. */
  dyn: 'mlp-dyn',
  /** in_<t> [-1] -> out_<t> [-1] for every datatype (Identity). */
  types: 'types',
  /** image (declared image, 32x32 RGB) -> logits, declared classification with labels. */
  image: 'colours',
  /** text (declared text: bert-base-uncased tokenizer, 16 tokens) -> logits, tokens, type_sum. */
  text: 'reviews',
} as const;

/** The configured body limit (the default MAX_BODY_BYTES, Lambda's synchronous payload limit). */
export const MAX_BODY_BYTES = 6291456;

export type Datatype = keyof typeof ECHO_TYPES;
export const DATATYPES = Object.keys(ECHO_TYPES) as Datatype[];
export const inName = (dt: Datatype): string => `in_${dt.toLowerCase()}`;
export const outName = (dt: Datatype): string => `out_${dt.toLowerCase()}`;

export type Protocol = 'oip' | 'tf-row' | 'tf-col';
/** A JSON scalar as the answer must carry it; 64-bit integers as decimal strings. */
export type Scalar = boolean | number | string;

export interface EchoColumn {
  output: string;
  datatype: Datatype;
  values: Scalar[];
}

/** What a request that must succeed has to get back. */
export type Answer =
  | { kind: 'mlp'; protocol: Protocol; model: string; rows: (number | string)[][]; id?: string }
  | { kind: 'echo'; protocol: Protocol; model: string; n: number; columns: EchoColumn[]; id?: string }
  | { kind: 'json'; subset: Record<string, unknown> };

/** A status for damaged input whose fate cannot be told in advance: any refusal (4xx) or a well-formed 200 (see {@link wellFormedAnswer}). */
export const ANY_ANSWER = -1;

/** A 200's body is an answer of one of the protocols: OIP `outputs` array, TF Serving `predictions` or `outputs`. */
export function wellFormedAnswer(json: unknown): boolean {
  const body = json as { outputs?: unknown; predictions?: unknown } | null;
  return body !== null && typeof body === 'object' && (Array.isArray(body.outputs) || Array.isArray(body.predictions) || (typeof body.outputs === 'object' && body.outputs !== null));
}

export interface Expectation {
  /** The status that must come back; a 200 comes with an answer to check ({@link ANY_ANSWER}: see there). */
  status: number;
  /** What the `error` message must match (every error message is also checked for sanity). */
  message?: RegExp;
  answer?: Answer;
}

export interface RequestCase {
  index: number;
  category: Category;
  /** One line on what the case sends, for failure reports. */
  what: string;
  method: string;
  path: string;
  /** The body text; base64-encoded into the event when `base64` is set. */
  body?: string;
  base64?: boolean;
  /** A body already base64-encoded (bytes that need not be UTF-8), sent with isBase64Encoded. */
  rawBase64?: string;
  /** The content-type header: application/json when a body is sent and this is undefined, absent when null. */
  contentType?: string | null;
  headers?: Record<string, string>;
  /** The API key to send; the valid test key when undefined, none when null. */
  apiKey?: string | null;
  expect: Expectation;
}

type CaseBody = Omit<RequestCase, 'index' | 'category'>;

// ---------------------------------------------------------------------------------------------
// Randomness

export class Rand {
  constructor(private readonly next: () => number) {}

  float(): number {
    return this.next();
  }

  /** An integer in [lo, hi], both included. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)] as T;
  }

  shuffle<T>(items: readonly T[]): T[] {
    const out = [...items];
    for (let i = out.length - 1; i > 0; i--) {
      const j = Math.floor(this.next() * (i + 1));
      [out[i], out[j]] = [out[j] as T, out[i] as T];
    }
    return out;
  }

  /** 64 random bits as an unsigned bigint. */
  bits64(): bigint {
    return (BigInt(this.int(0, 0xffffffff)) << 32n) | BigInt(this.int(0, 0xffffffff));
  }
}

function caseRand(seed: number, index: number): Rand {
  return new Rand(prng((Math.imul(seed, 0x9e3779b1) ^ Math.imul(index + 1, 0x85ebca6b)) >>> 0));
}

// ---------------------------------------------------------------------------------------------
// JSON text with raw pieces (deep nesting, NaN literals, 10 MB strings) spliced in

const TOKEN = (i: number) => `@@raw${i}@@`;

/** JSON.stringify(value), then each `"@@raw<i>@@"` string replaced by `raws[i]` verbatim. */
function jsonWith(value: unknown, raws: readonly string[] = []): string {
  let text = JSON.stringify(value);
  raws.forEach((raw, i) => {
    text = text.replace(`"${TOKEN(i)}"`, () => raw);
  });
  return text;
}

const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

const deepArray = (depth: number, leaf = '1') => `${'['.repeat(depth)}${leaf}${']'.repeat(depth)}`;
const deepObject = (depth: number) => `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`;

// Built once, before any measurement, so the memory check sees only what the requests cost.
const MIB = 1024 * 1024;
const BIG_10MB = 'a'.repeat(10 * MIB);
const BIG_5MB = 'b'.repeat(5 * MIB);
/** 5 MiB of base64 text: 3.75 MiB of "bbb...". */
const BIG_B64 = 'YmJi'.repeat((5 * MIB) / 4);
const PAD_7MB = ' '.repeat(7 * MIB);
const MULTIBYTE_OVER = 'é'.repeat(Math.ceil(MAX_BODY_BYTES / 2) + 16);

// ---------------------------------------------------------------------------------------------
// Valid values

const F32_SCALES = [1, 10, 1e-3, 1e6, 1e30];

function f32(r: Rand, scale = r.pick(F32_SCALES)): number {
  return Math.fround((r.float() * 2 - 1) * scale);
}

const NON_FINITE = ['NaN', 'Infinity', '-Infinity'] as const;

const STRING_PIECES = [
  'a', 'Z', '0', ' ', 'hello', '"', '\\', '/', '\n', '\t', '\r', 'é', 'ß', '中文', '😀', '👩‍👩‍👧', '\u202e', '\u200b',
  '\ufeff', '\u007f', '\u0001', '{"inputs":[]}', '</script>', "' OR 1=1 --", '%00', '../', '${x}', 'b64',
];

function bytesString(r: Rand, maxPieces = 6): string {
  let s = '';
  const n = r.int(0, maxPieces);
  for (let i = 0; i < n; i++) s += r.pick(STRING_PIECES);
  return s;
}

const INT_BOUNDS: Partial<Record<Datatype, [number, number]>> = {
  UINT8: [0, 255],
  UINT16: [0, 65535],
  UINT32: [0, 4294967295],
  INT8: [-128, 127],
  INT16: [-32768, 32767],
  INT32: [-2147483648, 2147483647],
};

/**
 * A valid element of a datatype: what to send and what the answer must hold. `wide` allows
 * 64-bit integers beyond 2^53 (the OIP check reads those digits from the raw answer).
 */
function validElement(r: Rand, dt: Datatype, options: { wide: boolean; b64: boolean }): { sent: unknown; want: Scalar } {
  switch (dt) {
    case 'BOOL': {
      const b = r.chance(0.5);
      return { sent: b, want: b };
    }
    case 'UINT8':
    case 'UINT16':
    case 'UINT32':
    case 'INT8':
    case 'INT16':
    case 'INT32': {
      const [lo, hi] = INT_BOUNDS[dt] as [number, number];
      const v = r.chance(0.2) ? r.pick([lo, hi, 0]) : r.int(lo, hi);
      return { sent: v, want: v };
    }
    case 'INT64':
    case 'UINT64': {
      const signed = dt === 'INT64';
      let big: bigint;
      if (options.wide && r.chance(0.5)) {
        big = r.chance(0.2)
          ? r.pick(signed ? [-9223372036854775808n, 9223372036854775807n] : [0n, 18446744073709551615n])
          : signed ? BigInt.asIntN(64, r.bits64()) : r.bits64();
      } else {
        big = BigInt(r.int(signed ? -2147483648 : 0, 2147483647)) * BigInt(r.int(1, 4194303));
      }
      const safe = big >= BigInt(Number.MIN_SAFE_INTEGER) && big <= BigInt(Number.MAX_SAFE_INTEGER);
      return { sent: safe && r.chance(0.5) ? Number(big) : big.toString(), want: big.toString() };
    }
    case 'FP16': {
      if (r.chance(0.05)) {
        const s = r.pick(NON_FINITE);
        return { sent: s, want: s };
      }
      // k / 2^j with |k| <= 2048 is exact in binary16.
      const v = r.int(-2048, 2048) / 2 ** r.int(0, 10);
      return { sent: v, want: v };
    }
    case 'FP32': {
      if (r.chance(0.05)) {
        const s = r.pick(NON_FINITE);
        return { sent: s, want: s };
      }
      const v = f32(r);
      return { sent: v, want: v };
    }
    case 'FP64': {
      if (r.chance(0.05)) {
        const s = r.pick(NON_FINITE);
        return { sent: s, want: s };
      }
      const v = (r.float() * 2 - 1) * 10 ** r.int(-300, 300);
      return { sent: v, want: v };
    }
    case 'BYTES': {
      const s = bytesString(r);
      return { sent: options.b64 ? { b64: Buffer.from(s, 'utf8').toString('base64') } : s, want: s };
    }
  }
}

function mlpRows(r: Rand, k: number, nonFinite = 0.02): (number | string)[][] {
  return Array.from({ length: k }, () =>
    Array.from({ length: 4 }, () => (r.chance(nonFinite) ? r.pick(NON_FINITE) : f32(r, r.pick([1, 5, 100])))),
  );
}

/** A valid OIP body for `mlp` / `mlp-dyn`, with its rows. */
function mlpOipBody(r: Rand, model: string, k = model === MODELS.mlp ? 1 : r.int(1, 6)) {
  const rows = mlpRows(r, k);
  const nested = r.chance(0.4);
  const input = { name: 'x', shape: [k, 4], datatype: 'FP32', data: nested ? rows : rows.flat() };
  return { rows, input, body: { inputs: [input] } as Record<string, unknown> };
}

function mlpOipText(r: Rand, model = r.pick([MODELS.mlp, MODELS.dyn])): { text: string; rows: (number | string)[][]; model: string } {
  const { rows, body } = mlpOipBody(r, model);
  return { text: JSON.stringify(body), rows, model };
}

function selectorPath(r: Rand, model: string): string {
  const options = ['', '/versions/1'];
  if (model === MODELS.mlp) options.push('/labels/stable');
  return r.pick(options);
}

const oipPath = (r: Rand, model: string) => `/v2/models/${model}${selectorPath(r, model)}/infer`;
const tfPath = (r: Rand, model: string) => `/v1/models/${model}${selectorPath(r, model)}:predict`;

const ACCEPTED_TYPES = [
  undefined, undefined, undefined, 'application/json; charset=utf-8', 'APPLICATION/JSON', 'application/vnd.kserve+json',
  ' application/json ', '', null,
] as const;

/** A valid OIP mlp request with its answer; `extra` adds fields that must not change it. */
function validMlpOip(r: Rand, extra: (body: Record<string, unknown>, raws: string[]) => void = () => undefined): CaseBody {
  const model = r.pick([MODELS.mlp, MODELS.dyn]);
  const k = model === MODELS.mlp ? 1 : r.int(0, 6);
  const { rows, body } = mlpOipBody(r, model, k);
  let id: string | undefined;
  if (r.chance(0.5)) body.id = id = r.chance(0.2) ? 'x'.repeat(256) : bytesString(r, 8);
  if (r.chance(0.2)) body.parameters = { binary_data_output: false, priority: r.int(0, 5) };
  if (r.chance(0.2)) body.outputs = [{ name: 'probs' }];
  const raws: string[] = [];
  extra(body, raws);
  return {
    what: `valid OIP ${model} batch ${k}`,
    method: r.pick(['POST', 'post']),
    path: oipPath(r, model),
    body: jsonWith(body, raws),
    base64: r.chance(0.2),
    contentType: r.pick(ACCEPTED_TYPES),
    expect: { status: 200, answer: { kind: 'mlp', protocol: 'oip', model, rows, id } },
  };
}

function validTypesOip(r: Rand): CaseBody {
  const n = r.int(0, 5);
  const inputs: unknown[] = [];
  const wants = new Map<Datatype, Scalar[]>();
  for (const dt of r.shuffle(DATATYPES)) {
    const sent: unknown[] = [];
    const want: Scalar[] = [];
    for (let i = 0; i < n; i++) {
      const e = validElement(r, dt, { wide: true, b64: false });
      sent.push(e.sent);
      want.push(e.want);
    }
    inputs.push({ name: inName(dt), shape: [n], datatype: dt, data: sent });
    wants.set(dt, want);
  }
  const body: Record<string, unknown> = { inputs };
  let order = DATATYPES;
  if (r.chance(0.4)) {
    order = r.shuffle(DATATYPES).slice(0, r.int(1, DATATYPES.length));
    body.outputs = order.map((dt) => ({ name: outName(dt) }));
  }
  let id: string | undefined;
  if (r.chance(0.3)) body.id = id = bytesString(r);
  return {
    what: `valid OIP types n=${n}${body.outputs ? ` outputs ${order.length}` : ''}`,
    method: 'POST',
    path: oipPath(r, MODELS.types),
    body: JSON.stringify(body),
    base64: r.chance(0.2),
    expect: {
      status: 200,
      answer: {
        kind: 'echo', protocol: 'oip', model: MODELS.types, n, id,
        columns: order.map((dt) => ({ output: outName(dt), datatype: dt, values: wants.get(dt) ?? [] })),
      },
    },
  };
}

function validMlpTf(r: Rand): CaseBody {
  const model = r.pick([MODELS.mlp, MODELS.dyn]);
  const k = model === MODELS.mlp ? 1 : r.int(1, 6);
  const rows = mlpRows(r, k);
  const row = r.chance(0.5);
  const body: Record<string, unknown> = row
    ? { instances: r.chance(0.5) ? rows : rows.map((x) => ({ x })) }
    : { inputs: r.chance(0.5) ? rows : { x: rows } };
  if (r.chance(0.2)) body.signature_name = 'serving_default';
  if (r.chance(0.2)) body.output_filter = ['probs'];
  return {
    what: `valid TF ${row ? 'row' : 'columnar'} ${model} batch ${k}`,
    method: 'POST',
    path: tfPath(r, model),
    body: JSON.stringify(body),
    base64: r.chance(0.2),
    expect: { status: 200, answer: { kind: 'mlp', protocol: row ? 'tf-row' : 'tf-col', model, rows } },
  };
}

function validTypesTf(r: Rand): CaseBody {
  const row = r.chance(0.5);
  const n = row ? r.int(1, 4) : r.int(0, 4);
  const sent = new Map<Datatype, unknown[]>();
  const wants = new Map<Datatype, Scalar[]>();
  for (const dt of DATATYPES) {
    const s: unknown[] = [];
    const w: Scalar[] = [];
    for (let i = 0; i < n; i++) {
      const e = validElement(r, dt, { wide: false, b64: r.chance(0.5) });
      s.push(e.sent);
      w.push(e.want);
    }
    sent.set(dt, s);
    wants.set(dt, w);
  }
  const body: Record<string, unknown> = {};
  if (row) {
    body.instances = Array.from({ length: n }, (_, i) =>
      Object.fromEntries(r.shuffle(DATATYPES).map((dt) => [inName(dt), sent.get(dt)?.[i]])),
    );
  } else {
    body.inputs = Object.fromEntries(r.shuffle(DATATYPES).map((dt) => [inName(dt), sent.get(dt)]));
  }
  let order = DATATYPES;
  if (r.chance(0.4)) {
    order = r.shuffle(DATATYPES).slice(0, r.int(1, 4));
    body.output_filter = order.map(outName);
  }
  return {
    what: `valid TF ${row ? 'row' : 'columnar'} types n=${n}`,
    method: 'POST',
    path: tfPath(r, MODELS.types),
    body: JSON.stringify(body),
    expect: {
      status: 200,
      answer: {
        kind: 'echo', protocol: row ? 'tf-row' : 'tf-col', model: MODELS.types, n,
        columns: order.map((dt) => ({ output: outName(dt), datatype: dt, values: wants.get(dt) ?? [] })),
      },
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Categories

const SPECS: Record<string, { inputs: unknown[]; outputs: unknown[] }> = {
  [MODELS.mlp]: { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4] }], outputs: [{ name: 'probs', datatype: 'FP32', shape: [1, 3] }] },
  [MODELS.dyn]: { inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 4] }], outputs: [{ name: 'probs', datatype: 'FP32', shape: [-1, 3] }] },
  [MODELS.types]: {
    inputs: DATATYPES.map((dt) => ({ name: inName(dt), datatype: dt, shape: [-1] })),
    outputs: DATATYPES.map((dt) => ({ name: outName(dt), datatype: dt, shape: [-1] })),
  },
};

const allModels = [MODELS.mlp, MODELS.dyn, MODELS.types];

function validRoutes(r: Rand): CaseBody {
  const model = r.pick(allModels);
  const sel = selectorPath(r, model);
  const choice = r.int(0, 5);
  const get = (path: string, subset: Record<string, unknown>, what: string): CaseBody => ({
    what, method: r.pick(['GET', 'get']), path, expect: { status: 200, answer: { kind: 'json', subset } },
  });
  switch (choice) {
    case 0:
      return get(`/v2/models/${model}${sel}`, { name: model, versions: ['1'], platform: 'onnx', ...SPECS[model] }, `metadata ${model}${sel}`);
    case 1:
      return get(`/v2/models/${model}${sel}/ready`, { name: model, ready: true }, `ready ${model}${sel}`);
    case 2:
      return get(
        `/v1/models/${model}${sel}`,
        { model_version_status: [{ version: '1', state: 'AVAILABLE', status: { error_code: 'OK', error_message: '' } }] },
        `TF status ${model}${sel}`,
      );
    case 3:
      return get('/v2', { extensions: ['binary_tensor_data', 'classification', 'staged_tensors'] }, 'server metadata');
    case 4:
      return { ...get('/v2/health/live', { live: true }, 'live, no key'), apiKey: r.chance(0.5) ? null : undefined };
    default:
      return get(`//v2//models//${model}//ready/`, { name: model, ready: true }, `ready ${model} with doubled slashes`);
  }
}

function malformedJson(r: Rand): CaseBody {
  const base = r.chance(0.5) ? mlpOipText(r).text : JSON.stringify({ instances: mlpRows(r, 1) });
  const corruptions: ((t: string) => string)[] = [
    (t) => t.slice(0, r.int(1, t.length - 1)),
    (t) => {
      const i = r.int(0, t.length - 1);
      return t.slice(0, i) + t.slice(i + 1);
    },
    (t) => {
      const i = r.int(0, t.length);
      return t.slice(0, i) + r.pick(['{', '}', '[', ']', ',', ':', '"', '\\', 'x', '\u0000', '\u001f']) + t.slice(i);
    },
    (t) => t.replace(/"/g, "'"),
    (t) => t.replace(/\]\s*\}$/, '],}'),
    (t) => t.replace(/\d+(\.\d+)?(e-?\d+)?/, r.pick(['NaN', 'Infinity', '-Infinity', 'undefined', '0x10', '01', '.5', '+1', '1.', '--1'])),
    (t) => `/* c */${t}`,
    (t) => `${t}// trailing`,
    (t) => `\ufeff${t}`,
    (t) => `${t}${t}`,
    (t) => `${t},`,
    () => r.pick(['', ' ', '\n\t ', '\u00a0', 'null null', '[', '{', '"', 'tru', 'nul', '{"inputs"}']),
  ];
  let text = base;
  for (let attempt = 0; attempt < 20; attempt++) {
    text = r.pick(corruptions)(base);
    try {
      JSON.parse(text);
    } catch {
      break;
    }
    text = base.slice(0, Math.floor(base.length / 2));
  }
  const model = r.pick([...allModels, 'nope']);
  const tf = r.chance(0.4);
  return {
    what: `malformed JSON ${JSON.stringify(text.slice(0, 30))}`,
    method: 'POST',
    path: tf ? `/v1/models/${model}:predict` : `/v2/models/${model}/infer`,
    body: text,
    // TextDecoder drops a leading BOM, so a base64 body with one is read without it.
    base64: !text.startsWith('\ufeff') && r.chance(0.2),
    expect: { status: 400, message: /^request body is (not valid JSON|empty; send a JSON object)/ },
  };
}

const RANDOM_KEYS = [
  'inputs', 'outputs', 'id', 'parameters', 'instances', 'signature_name', 'output_filter', 'name', 'shape', 'datatype',
  'data', 'b64', '__proto__', 'constructor', 'prototype', 'x', 'in_fp32', 'toString', '', 'a b', '😀',
];

function randomValue(r: Rand, depth: number): unknown {
  const k = r.int(0, depth > 0 ? 7 : 4);
  switch (k) {
    case 0:
      return r.pick([0, -0, 1, -1, 1.5, 1e308, -1e-308, 2 ** 53 + 2, 4294967296, r.int(-1e6, 1e6)]);
    case 1:
      return bytesString(r, 3);
    case 2:
      return r.chance(0.5);
    case 3:
      return null;
    case 4:
      return r.pick(['NaN', 'Infinity', 'FP32', 'BYTES', 'x', 'probs', '']);
    case 5:
    case 6:
      return Array.from({ length: r.int(0, 5) }, () => randomValue(r, depth - 1));
    default: {
      const o: Record<string, unknown> = {};
      for (let i = r.int(0, 5); i > 0; i--) o[r.pick(RANDOM_KEYS)] = randomValue(r, depth - 1);
      return o;
    }
  }
}

function randomJson(r: Rand): CaseBody {
  const model = r.pick(allModels);
  const tf = r.chance(0.4);
  let value = randomValue(r, 4);
  // A random object at the top, some of the time, with protocol keys in it.
  if (r.chance(0.5)) {
    const o: Record<string, unknown> = {};
    for (let i = r.int(1, 4); i > 0; i--) o[r.pick(RANDOM_KEYS.slice(0, 7))] = randomValue(r, 3);
    value = o;
  }
  return {
    what: `random JSON ${JSON.stringify(value).slice(0, 60)}`,
    method: 'POST',
    path: tf ? `/v1/models/${model}:predict` : `/v2/models/${model}/infer`,
    body: JSON.stringify(value),
    expect: { status: 400 },
  };
}

/** A one-input request for a model (`x` of an mlp, or one `in_<t>` of types) to mutate. */
function oneInput(r: Rand) {
  const model = r.pick(allModels);
  if (model === MODELS.types) {
    const dt = r.pick(DATATYPES);
    const n = r.int(1, 4);
    const data = Array.from({ length: n }, () => validElement(r, dt, { wide: true, b64: false }).sent);
    return { model, name: inName(dt), dt: dt as string, input: { name: inName(dt), shape: [n], datatype: dt, data } as Record<string, unknown>, n };
  }
  const k = model === MODELS.mlp ? 1 : r.int(1, 4);
  const data = mlpRows(r, k, 0).flat();
  return { model, name: 'x', dt: 'FP32', input: { name: 'x', shape: [k, 4], datatype: 'FP32', data } as Record<string, unknown>, n: 4 * k };
}

const NON_STRINGS = [1, 0, null, true, false, [], {}, ['x'], { name: 'x' }];
const NON_ARRAYS = ['x', 1, null, true, {}, { 0: 1 }];

function inputsList(model: string): string {
  return model === MODELS.types ? DATATYPES.map(inName).join(', ') : 'x';
}

function oipCase(r: Rand, model: string, body: unknown, what: string, status: number, message: RegExp, raws: string[] = []): CaseBody {
  return { what, method: 'POST', path: oipPath(r, model), body: jsonWith(body, raws), expect: { status, message } };
}

function wrongTypes(r: Rand): CaseBody {
  const { model, name, dt, input } = oneInput(r);
  const q = esc(name);
  const choice = r.int(0, 14);
  switch (choice) {
    case 0: {
      const v = r.pick([...NON_ARRAYS, []]);
      return oipCase(r, model, { inputs: v }, `inputs ${JSON.stringify(v)}`, 400,
        new RegExp(`^"inputs" must be a non-empty array; the model's inputs are: ${esc(inputsList(model))}$`));
    }
    case 1: {
      const v = r.pick([1, 'x', null, [], true, [input]]);
      return oipCase(r, model, { inputs: [v] }, `inputs entry ${JSON.stringify(v).slice(0, 30)}`, 400, /^every entry of "inputs" must be an object/);
    }
    case 2: {
      const v = r.pick([...NON_STRINGS, '', undefined]);
      return oipCase(r, model, { inputs: [{ ...input, name: v }] }, `input name ${JSON.stringify(v)}`, 400, /^every input needs a "name" string$/);
    }
    case 3: {
      const v = r.pick(['X', `${name} `, ` ${name}`, 'in_float', 'probs', `${name}\u0000`, 'ｘ', 'in_FP32', `${name}\u200b`]);
      return oipCase(r, model, { inputs: [{ ...input, name: v }] }, `input name ${JSON.stringify(v)}`, 400,
        new RegExp(`^unknown input ".*"; the model's inputs are: ${esc(inputsList(model))}$`));
    }
    case 4: {
      const { datatype: _, ...rest } = input;
      return oipCase(r, model, { inputs: [rest] }, 'no datatype', 400, new RegExp(`^input "${q}": datatype is missing$`));
    }
    case 5: {
      const v = r.pick([...NON_STRINGS, 'FLOAT', 'fp32', 'float32', 'INT128', '', `${dt} `, 'BF16', 'BFLOAT16', 'STRING', 'TYPE_FP32']);
      return oipCase(r, model, { inputs: [{ ...input, datatype: v }] }, `datatype ${JSON.stringify(v)}`, 400,
        new RegExp(`^input "${q}": datatype .+ is not one of BOOL, UINT8`));
    }
    case 6: {
      const v = r.pick(DATATYPES.filter((d) => d !== dt));
      return oipCase(r, model, { inputs: [{ ...input, datatype: v }] }, `datatype ${v} for ${dt}`, 400,
        new RegExp(`^input "${q}": datatype is ${v} but the model expects ${dt}$`));
    }
    case 7: {
      const { shape: _, ...rest } = input;
      return oipCase(r, model, { inputs: [rest] }, 'no shape', 400, new RegExp(`^input "${q}": shape is missing$`));
    }
    case 8: {
      const v = r.pick(['[1,4]', 4, {}, null, true, { 0: 1, 1: 4 }]);
      return oipCase(r, model, { inputs: [{ ...input, shape: v }] }, `shape ${JSON.stringify(v)}`, 400,
        new RegExp(`^input "${q}": shape must be an array of integers$`));
    }
    case 9: {
      const { data: _, ...rest } = input;
      return oipCase(r, model, { inputs: [rest] }, 'no data', 400, new RegExp(`^input "${q}": data is missing$`));
    }
    case 10: {
      const v = r.pick(['1,2,3,4', 4, {}, null, true, { 0: 1 }]);
      return oipCase(r, model, { inputs: [{ ...input, data: v }] }, `data ${JSON.stringify(v)}`, 400, new RegExp(`^input "${q}": data must be an array$`));
    }
    case 11: {
      const data = [...(input.data as unknown[])];
      const bad = wrongElement(r, dt);
      // An array first in rank-2 data reads as nested rows, not as a bad element.
      const j = Array.isArray(bad) && model !== MODELS.types ? r.int(1, data.length - 1) : r.int(0, data.length - 1);
      data[j] = bad;
      return oipCase(r, model, { inputs: [{ ...input, data }] }, `element ${j} ${JSON.stringify(bad)} in ${dt}`, 400,
        new RegExp(`^input "${q}": element ${j} is ${esc(JSON.stringify(bad))}, expected`));
    }
    case 12: {
      const v = r.pick([1, 0, null, true, [], {}, ['id']]);
      return oipCase(r, model, { id: v, inputs: [input] }, `id ${JSON.stringify(v)}`, 400, /^"id" must be a string$/);
    }
    case 13: {
      const v = r.pick([[], 'x', 1, null, true, [{}]]);
      return oipCase(r, model, { parameters: v, inputs: [input] }, `parameters ${JSON.stringify(v)}`, 400, /^"parameters" must be an object$/);
    }
    default: {
      const m = r.pick([MODELS.mlp, MODELS.dyn]);
      const { body } = mlpOipBody(r, m);
      if (r.chance(0.5)) {
        body.outputs = r.pick([{}, 'probs', 1, null, true, { name: 'probs' }]);
        return oipCase(r, m, body, `outputs ${JSON.stringify(body.outputs)}`, 400, /^"outputs" must be an array of \{name\}$/);
      }
      body.outputs = [r.pick([1, 'probs', null, [], {}, { name: 1 }, { name: null }, { Name: 'probs' }])];
      return oipCase(r, m, body, `outputs ${JSON.stringify(body.outputs)}`, 400, /^every requested output needs a "name" string$/);
    }
  }
}

/** An element of the wrong JSON type for a datatype. */
function wrongElement(r: Rand, dt: string): unknown {
  switch (dt) {
    case 'BOOL':
      return r.pick([0, 1, 'true', null, [], {}]);
    case 'BYTES':
      return r.pick([1, true, null, [], {}, { b64: 'eA==' }]);
    case 'FP16':
    case 'FP32':
    case 'FP64':
      return r.pick([true, null, [], {}, '1.5', 'nan', 'inf', '+Infinity', '', [1]]);
    case 'INT64':
    case 'UINT64':
      return r.pick([true, null, [], {}, '1.5', '1e3', '0x10', '', ' 1', '+1']);
    default:
      return r.pick([true, null, [], {}, '1', 1.5, '0']);
  }
}

function shapes(r: Rand): CaseBody {
  const choice = r.int(0, 9);
  const { model, name, input, n } = oneInput(r);
  const q = esc(name);
  const rank = model === MODELS.types ? 1 : 2;
  switch (choice) {
    case 0: {
      // Far too many elements: refused before anything is allocated.
      if (model === MODELS.types) {
        const d = r.pick([1e9, 2 ** 28 + 1, Number.MAX_SAFE_INTEGER, 1e15]);
        return oipCase(r, model, { inputs: [{ ...input, shape: [d] }] }, `shape [${d}]`, 400,
          new RegExp(`^input "${q}": shape \\[${d}\\] holds too many elements$`));
      }
      if (model === MODELS.dyn) {
        const big = r.chance(0.5);
        return big
          ? oipCase(r, model, { inputs: [{ ...input, shape: [1e9, 1e9] }] }, 'shape [1e9, 1e9]', 400,
            /^input "x": dimension 1 is 1000000000 but the model expects 4 \(model shape \[-1, 4\], -1 = any\)$/)
          : oipCase(r, model, { inputs: [{ ...input, shape: [1e9, 4] }] }, 'shape [1e9, 4]', 400,
            /^input "x": shape \[1000000000, 4\] holds too many elements$/);
      }
      return oipCase(r, model, { inputs: [{ ...input, shape: [1e9, 1e9] }] }, 'shape [1e9, 1e9]', 400,
        /^input "x": dimension 0 is 1000000000 but the model expects 1/);
    }
    case 1: {
      // Exactly the element limit: allowed as a shape, refused because the data does not fill it.
      const shape = model === MODELS.types ? [2 ** 28] : model === MODELS.dyn ? [2 ** 26, 4] : [1, 4];
      if (model === MODELS.mlp) return shapes(r);
      return oipCase(r, model, { inputs: [{ ...input, shape }] }, `shape ${JSON.stringify(shape)}`, 400,
        new RegExp(`^input "${q}": shape ${esc(JSON.stringify(shape))} holds ${2 ** 28} elements but data has ${n}$`));
    }
    case 2: {
      const bad = r.pick([-1, -4, -1e9, 0.5, 1.5, 2.5e-7, 2 ** 53, 1e300, '4', '1', null, true, [], {}, [1]]);
      const shape = rank === 1 ? [bad] : r.chance(0.5) ? [bad, 4] : [1, bad];
      return oipCase(r, model, { inputs: [{ ...input, shape }] }, `shape ${JSON.stringify(shape)}`, 400,
        new RegExp(`^input "${q}": shape .+ must hold non-negative integers, found ${esc(JSON.stringify(bad))}$`));
    }
    case 3: {
      const shape = r.pick(rank === 1 ? [[], [n, 1], [1, n], [1, 1, n]] : [[], [4], [n], [1, 4, 1], [1, 1, 4]]);
      return oipCase(r, model, { inputs: [{ ...input, shape }] }, `shape ${JSON.stringify(shape)}`, 400,
        new RegExp(`^input "${q}": shape \\[.*\\] has rank ${shape.length} but the model expects rank ${rank}`));
    }
    case 4: {
      const dims = r.pick([33, 64, 1000, 100000]);
      return oipCase(r, model, { inputs: [{ ...input, shape: new Array<number>(dims).fill(1) }] }, `${dims} dims`, 400,
        new RegExp(`^input "${q}": shape has ${dims} dimensions; at most 32$`));
    }
    case 5: {
      // Shape x data mismatch, flat.
      const data = [...(input.data as unknown[])];
      const m = r.chance(0.5) ? data.length + r.int(1, 3) : r.int(0, data.length - 1);
      while (data.length < m) data.push(data[0]);
      data.length = m;
      const shape = input.shape as number[];
      return oipCase(r, model, { inputs: [{ ...input, data }] }, `shape ${JSON.stringify(shape)} data ${m}`, 400,
        new RegExp(`^input "${q}": shape ${esc(JSON.stringify(shape))} holds ${n} elements but data has ${m}$`));
    }
    case 6: {
      // Ragged nested data.
      const m = r.pick([MODELS.mlp, MODELS.dyn]);
      const k = m === MODELS.mlp ? 1 : r.int(1, 4);
      const rows = mlpRows(r, k, 0) as unknown[][];
      const row = rows[r.int(0, k - 1)] as unknown[];
      if (r.chance(0.5)) row.pop();
      else row.push(1);
      return oipCase(r, m, { inputs: [{ name: 'x', shape: [k, 4], datatype: 'FP32', data: rows }] }, `ragged rows k=${k}`, 400,
        new RegExp(`^input "x": nested data does not match shape \\[${k},4\\] at depth 1$`));
    }
    case 7: {
      // Nested data with one level too many: elements are arrays.
      const m = r.pick([MODELS.mlp, MODELS.dyn]);
      return oipCase(r, m, { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [[[1], [2], [3], [4]]] }] }, 'nested one level too deep', 400,
        /^input "x": element 0 is \[1\], expected a number for FP32$/);
    }
    case 8: {
      // Rows data longer than the batch in the shape.
      return oipCase(r, MODELS.dyn, { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: mlpRows(r, 2, 0) }] }, 'two rows, shape [1,4]', 400,
        /^input "x": nested data does not match shape \[1,4\] at depth 0$/);
    }
    default: {
      // Many elements, none of them the right count.
      const big = new Array<number>(r.pick([10000, 100000, 300000])).fill(0.5);
      return oipCase(r, MODELS.dyn, { inputs: [{ name: 'x', shape: [3, 4], datatype: 'FP32', data: big }] }, `${big.length} elements for [3,4]`, 400,
        new RegExp(`^input "x": shape \\[3,4\\] holds 12 elements but data has ${big.length}$`));
    }
  }
}

const DEPTHS = [1000, 10000, 100000, 100000];

function deepNesting(r: Rand): CaseBody {
  const depth = r.pick(DEPTHS);
  const deep = r.chance(0.7) ? deepArray(depth) : deepObject(depth);
  const kind = deep.startsWith('[') ? 'array' : 'object';
  const what = (where: string) => `${depth}-deep ${kind} in ${where}`;
  const raw = TOKEN(0);
  const choice = r.int(0, 16);
  const mlpIn = () => ({ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] });
  switch (choice) {
    case 0: {
      const dt = r.pick(DATATYPES);
      const name = inName(dt);
      return oipCase(r, MODELS.types, { inputs: [{ name, shape: [1], datatype: dt, data: [raw] }] }, what(`${name} data`), 400,
        new RegExp(`^input "${name}": element 0 is .+, expected`), [deep]);
    }
    case 1:
      return oipCase(r, MODELS.mlp, { inputs: [{ ...mlpIn(), data: raw }] }, what('mlp data'), 400,
        kind === 'array' ? /^input "x": nested data does not match shape \[1,4\] at depth 1$/ : /^input "x": data must be an array$/, [deep]);
    case 2:
      return oipCase(r, MODELS.mlp, { inputs: [{ ...mlpIn(), shape: r.chance(0.5) ? [raw] : [1, raw] }] }, what('shape'), 400,
        /^input "x": shape .+ must hold non-negative integers, found .+$/, [deep]);
    case 3:
      return oipCase(r, MODELS.mlp, { inputs: [{ ...mlpIn(), shape: raw }] }, what('shape itself'), 400,
        kind === 'array' ? /^input "x": shape .+ must hold non-negative integers, found .+$/ : /^input "x": shape must be an array of integers$/, [deep]);
    case 4:
      return oipCase(r, MODELS.mlp, { inputs: [{ ...mlpIn(), datatype: raw }] }, what('datatype'), 400,
        /^input "x": datatype .+ is not one of BOOL/, [deep]);
    case 5:
      return oipCase(r, MODELS.mlp, { inputs: [{ ...mlpIn(), name: raw }] }, what('name'), 400, /^every input needs a "name" string$/, [deep]);
    case 6:
      return oipCase(r, MODELS.mlp, { id: raw, inputs: [mlpIn()] }, what('id'), 400, /^"id" must be a string$/, [deep]);
    case 7: {
      // Ignored parameters may be as deep as they like: the request still succeeds.
      const c = validMlpOip(r, (body, raws) => {
        body.parameters = { deep: TOKEN(raws.length) };
        raws.push(deep);
      });
      return { ...c, what: what('parameters (valid request)') };
    }
    case 8:
      return oipCase(r, MODELS.mlp, { inputs: [mlpIn()], outputs: [raw] }, what('outputs'), 400, /^every requested output needs a "name" string$/, [deep]);
    case 9:
      return {
        what: what('the whole body'), method: 'POST', path: r.chance(0.5) ? '/v2/models/mlp/infer' : '/v1/models/mlp:predict', body: deep,
        expect: kind === 'array'
          ? { status: 400, message: /^request body must be a JSON object/ }
          : { status: 400, message: /^("inputs" must be a non-empty array|request must have exactly one of "instances")/ },
      };
    case 10:
      return oipCase(r, MODELS.mlp, { inputs: [raw] }, what('inputs entry'), 400,
        kind === 'array' ? /^every entry of "inputs" must be an object/ : /^every input needs a "name" string$/, [deep]);
    case 11:
      return tfCase(r, MODELS.mlp, { instances: raw }, what('instances'), 400,
        kind === 'array' ? /^input "x": nested deeper than 32 levels$/ : /^"instances" must be a non-empty array$/, [deep]);
    case 12:
      return tfCase(r, MODELS.dyn, { inputs: r.chance(0.5) ? { x: raw } : raw }, what('columnar inputs'), 400,
        kind === 'array' ? /^input "x": nested deeper than 32 levels$/ : /^(input "x": shape \[\] has rank 0|unknown input "a")/, [deep]);
    case 13:
      return tfCase(r, MODELS.mlp, { instances: [[1, 2, 3, 4]], signature_name: raw }, what('signature_name'), 400,
        /^unknown signature_name .+; ONNX models have only "serving_default"$/, [deep]);
    case 14:
      return tfCase(r, MODELS.mlp, { instances: [[1, 2, 3, 4]], output_filter: [raw] }, what('output_filter'), 400,
        /^every requested output needs a "name" string$/, [deep]);
    case 15:
      return tfCase(r, MODELS.types, { inputs: { in_bytes: [{ b64: raw }] } }, what('b64'), 400,
        /^input "in_bytes": "b64" must hold a base64 string$/, [deep]);
    default: {
      const dt = r.pick(DATATYPES);
      return tfCase(r, MODELS.types, { inputs: { [inName(dt)]: [raw] } }, what(`TF ${inName(dt)} element`), 400,
        kind === 'array' ? new RegExp(`^input "${inName(dt)}": nested deeper than 32 levels$`) : new RegExp(`^input "${inName(dt)}": element 0 is .+, expected`),
        [deep]);
    }
  }
}

function tfCase(r: Rand, model: string, body: unknown, what: string, status: number, message: RegExp, raws: string[] = []): CaseBody {
  return { what, method: 'POST', path: tfPath(r, model), body: jsonWith(body, raws), expect: { status, message } };
}

const TOO_LARGE = new RegExp(`^request body is larger than the ${MAX_BODY_BYTES}-byte limit$`);

function bigStrings(r: Rand): CaseBody {
  const raw = TOKEN(0);
  const mlpIn = { name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] };
  if (r.chance(0.4)) {
    // 10 MiB strings: over the body limit wherever they are.
    const big = `"${BIG_10MB}"`;
    const where = r.int(0, 4);
    const body = [
      { id: raw, inputs: [mlpIn] },
      { inputs: [{ ...mlpIn, name: raw }] },
      { inputs: [{ ...mlpIn, data: [raw, 2, 3, 4] }] },
      { inputs: [{ name: 'in_bytes', shape: [1], datatype: 'BYTES', data: [raw] }] },
      { instances: [{ in_bytes: { b64: raw } }] },
    ][where];
    return {
      what: `10 MiB string (placement ${where})`, method: 'POST', path: where === 4 ? '/v1/models/types:predict' : '/v2/models/types/infer',
      body: jsonWith(body, [big]), expect: { status: 413, message: TOO_LARGE },
    };
  }
  // 5 MiB strings: within the limit, each refused with a short message.
  const big = `"${BIG_5MB}"`;
  switch (r.int(0, 6)) {
    case 0:
      return oipCase(r, MODELS.mlp, { id: raw, inputs: [mlpIn] }, '5 MiB id', 400, /^"id" is longer than 256 characters$/, [big]);
    case 1:
      return oipCase(r, MODELS.mlp, { inputs: [{ ...mlpIn, name: raw }] }, '5 MiB input name', 400, /^unknown input "b{80}\.\.\."; the model's inputs are: x$/, [big]);
    case 2:
      return oipCase(r, MODELS.mlp, { inputs: [{ ...mlpIn, datatype: raw }] }, '5 MiB datatype', 400, /^input "x": datatype "b{39}\.\.\. is not one of BOOL/, [big]);
    case 3:
      return oipCase(r, MODELS.mlp, { inputs: [{ ...mlpIn, data: [1, raw, 3, 4] }] }, '5 MiB string in FP32 data', 400,
        /^input "x": element 1 is "b{39}\.\.\., expected a number for FP32$/, [big]);
    case 4:
      return oipCase(r, MODELS.types, { inputs: [{ name: 'in_bytes', shape: [1], datatype: 'BYTES', data: [raw] }] }, '5 MiB BYTES element', 400,
        /^missing inputs "in_bool", "in_uint8"/, [big]);
    case 5:
      return tfCase(r, MODELS.types, { inputs: { in_bytes: [{ b64: raw }] } }, '5 MiB b64', 400, /^missing inputs "in_bool"/, [`"${BIG_B64}"`]);
    default:
      return {
        what: '5 MiB model name in the path', method: 'POST', path: `/v2/models/${BIG_5MB}/infer`, body: JSON.stringify({ inputs: [mlpIn] }),
        expect: { status: 400, message: /^invalid model name "b{80}\.\.\."/ },
      };
  }
}

const INVALID_UTF8: readonly number[][] = [
  [0xff], [0xfe], [0xc0, 0x80], [0xc3], [0xe2, 0x82], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xf8, 0x88, 0x80, 0x80, 0x80], [0x80],
  [0xef, 0xbf], [0xc1, 0xbf],
];

function invalidUtf8(r: Rand): CaseBody {
  const choice = r.int(0, 5);
  if (choice <= 1) {
    const text = choice === 0 ? mlpOipText(r).text : JSON.stringify({ instances: mlpRows(r, 1) });
    const bytes = Buffer.from(text, 'utf8');
    const at = r.pick([0, bytes.length, r.int(0, bytes.length), text.indexOf('"x"') + 2]);
    const bad = Buffer.from(r.pick(INVALID_UTF8));
    return {
      what: `invalid UTF-8 ${bad.toString('hex')} at ${at}`, method: 'POST', path: choice === 0 ? '/v2/models/mlp-dyn/infer' : '/v1/models/mlp:predict',
      rawBase64: Buffer.concat([bytes.subarray(0, at), bad, bytes.subarray(at)]).toString('base64'),
      expect: { status: 400, message: /^request body is not valid UTF-8$/ },
    };
  }
  if (choice === 2) {
    // Random bytes, with at least one byte that never appears in UTF-8.
    const bytes = Buffer.from(Array.from({ length: r.int(1, 300) }, () => r.int(0, 255)));
    bytes[r.int(0, bytes.length - 1)] = r.pick([0xc0, 0xc1, 0xf5, 0xff]);
    return {
      what: `random bytes (${bytes.length})`, method: 'POST', path: '/v2/models/types/infer', rawBase64: bytes.toString('base64'),
      expect: { status: 400, message: /^request body is not valid UTF-8$/ },
    };
  }
  if (choice === 3) {
    // Not base64 at all: decodes to nothing.
    const garbage = r.pick(['!!!!', '****', '\u00e9\u00e9', '-_-_'.replace(/[-_]/g, '!'), '....']);
    return {
      what: `isBase64Encoded body ${JSON.stringify(garbage)}`, method: 'POST', path: '/v2/models/mlp/infer', rawBase64: garbage,
      expect: { status: 400, message: /^request body is empty; send a JSON object$/ },
    };
  }
  if (choice === 4) {
    // Lone surrogates in an id are not UTF-8 either, but JSON can carry them: echoed as escapes.
    const c = validMlpOip(r);
    const id = `${bytesString(r, 2)}${r.pick(['\ud800', '\udfff', '\udc00x', 'x\ud83d'])}`;
    const body = JSON.parse(c.body as string) as Record<string, unknown>;
    body.id = id;
    const answer = c.expect.answer as Extract<Answer, { kind: 'mlp' }>;
    return { ...c, base64: false, what: 'lone surrogate in id', body: JSON.stringify(body), expect: { status: 200, answer: { ...answer, id } } };
  }
  // Strings onnxruntime-node cannot carry in a BYTES tensor: it truncates at NUL and replaces
  // lone surrogates, so they must be refused rather than silently changed.
  const n = r.int(1, 3);
  const j = r.int(0, n - 1);
  const nul = r.chance(0.5);
  const bad = nul ? r.pick(['\u0000', 'a\u0000b', 'abc\u0000']) : r.pick(['\ud800', 'a\udc00', '\ud83d']);
  const tf = r.chance(0.5);
  const b64 = tf && nul && r.chance(0.5);
  const inputs: Record<string, unknown[]> = {};
  for (const dt of DATATYPES) {
    inputs[inName(dt)] = Array.from({ length: n }, (_, i) =>
      dt === 'BYTES' && i === j ? (b64 ? { b64: Buffer.from(bad, 'utf8').toString('base64') } : bad) : validElement(r, dt, { wide: false, b64: false }).sent,
    );
  }
  const message = nul
    ? new RegExp(`^input "in_bytes": element ${j} contains a NUL character`)
    : new RegExp(`^input "in_bytes": element ${j} is not valid Unicode`);
  if (tf) {
    return tfCase(r, MODELS.types, { inputs }, `${nul ? 'NUL' : 'lone surrogate'} in BYTES${b64 ? ' (b64)' : ''} (TF)`, 400, message);
  }
  const body = { inputs: DATATYPES.map((dt) => ({ name: inName(dt), shape: [n], datatype: dt, data: inputs[inName(dt)] })) };
  return oipCase(r, MODELS.types, body, `${nul ? 'NUL' : 'lone surrogate'} in BYTES (OIP)`, 400, message);
}

const INT_TYPES: Datatype[] = ['BOOL', 'UINT8', 'UINT16', 'UINT32', 'UINT64', 'INT8', 'INT16', 'INT32', 'INT64'];
const FLOAT_TYPES: Datatype[] = ['FP16', 'FP32', 'FP64'];

function expectedPhrase(dt: Datatype): string {
  if (dt === 'BOOL') return 'expected true or false for BOOL';
  if (dt === 'INT64') return 'expected an integer in [-9223372036854775808, 9223372036854775807] for INT64';
  if (dt === 'UINT64') return 'expected an integer in [0, 18446744073709551615] for UINT64';
  return `expected an integer for ${dt}`;
}

/** One bad element among valid ones in a one-input `types` request (OIP or TF columnar). */
function badElementCase(r: Rand, dt: Datatype, badText: string, shown: string, phrase: string, what: string): CaseBody {
  const n = r.int(1, 4);
  const j = r.int(0, n - 1);
  const name = inName(dt);
  const data: unknown[] = Array.from({ length: n }, (_, i) => (i === j ? TOKEN(0) : validElement(r, dt, { wide: false, b64: false }).sent));
  const message = new RegExp(`^input "${name}": element ${j} is ${esc(shown)}, ${esc(phrase)}$`);
  return r.chance(0.7)
    ? oipCase(r, MODELS.types, { inputs: [{ name, shape: [n], datatype: dt, data }] }, what, 400, message, [badText])
    : tfCase(r, MODELS.types, { inputs: { [name]: data } }, `${what} (TF)`, 400, message, [badText]);
}

function nonFinite(r: Rand): CaseBody {
  const choice = r.int(0, 3);
  if (choice <= 1) {
    // NaN and infinities where integers or booleans are expected.
    const dt = r.pick(INT_TYPES);
    const [text, shown] = r.pick([
      ['"NaN"', '"NaN"'], ['"Infinity"', '"Infinity"'], ['"-Infinity"', '"-Infinity"'], ['1e400', 'Infinity'], ['-1e400', '-Infinity'],
      ['"nan"', '"nan"'], ['"inf"', '"inf"'],
    ] as const);
    return badElementCase(r, dt, text, shown, expectedPhrase(dt), `${text} in ${dt}`);
  }
  if (choice === 2) {
    // Float strings other than the three spellings the protobuf JSON mapping allows.
    const dt = r.pick(FLOAT_TYPES);
    const s = r.pick(['nan', 'NAN', 'inf', '+Infinity', 'infinity', '1.5', '', 'NaN ', '0x1p3', '1e400']);
    return badElementCase(r, dt, JSON.stringify(s), JSON.stringify(s), `expected a number for ${dt}`, `"${s}" in ${dt}`);
  }
  // Bare NaN / Infinity literals are not JSON.
  const lit = r.pick(['NaN', 'Infinity', '-Infinity', 'nan', 'inf']);
  return {
    what: `bare ${lit} literal`, method: 'POST', path: r.chance(0.5) ? '/v2/models/types/infer' : '/v1/models/types:predict',
    body: jsonWith({ inputs: [{ name: 'in_int32', shape: [1], datatype: 'INT32', data: [TOKEN(0)] }] }, [lit]),
    expect: { status: 400, message: /^request body is not valid JSON/ },
  };
}

function bytesForFp32(r: Rand): CaseBody {
  const choice = r.int(0, 6);
  const k = 1;
  const strings = Array.from({ length: 4 }, () => bytesString(r, 2) || 'x');
  switch (choice) {
    case 0:
      return oipCase(r, MODELS.mlp, { inputs: [{ name: 'x', shape: [k, 4], datatype: 'BYTES', data: strings }] }, 'BYTES for x', 400,
        /^input "x": datatype is BYTES but the model expects FP32$/);
    case 1:
      return oipCase(r, MODELS.mlp, { inputs: [{ name: 'x', shape: [k, 4], datatype: 'FP32', data: strings }] }, 'strings in FP32 data', 400,
        new RegExp(`^input "x": element 0 is ${esc(JSON.stringify(strings[0]).slice(0, 40))}.*, expected a number for FP32$`));
    case 2:
      return oipCase(r, MODELS.types, { inputs: [{ name: 'in_fp32', shape: [1], datatype: 'BYTES', data: ['1'] }] }, 'BYTES for in_fp32', 400,
        /^input "in_fp32": datatype is BYTES but the model expects FP32$/);
    case 3: {
      const v = r.pick([3, 1.5, true, null]);
      return oipCase(r, MODELS.types, { inputs: [{ name: 'in_bytes', shape: [1], datatype: 'BYTES', data: [v] }] }, `${JSON.stringify(v)} in BYTES`, 400,
        new RegExp(`^input "in_bytes": element 0 is ${esc(JSON.stringify(v))}, expected a string for BYTES$`));
    }
    case 4: {
      // b64 in a float input: decoded to text, which is not a number.
      const b64 = r.pick(['AAAA', 'MS41', 'eA==', 'MTIz']);
      return tfCase(r, MODELS.mlp, { instances: [[{ b64 }, 1, 2, 3]] }, `b64 ${b64} in FP32`, 400, /^input "x": element 0 is ".*", expected a number for FP32$/);
    }
    case 5: {
      const b64 = r.pick(['/w==', '//79', 'wIA=', '7aCA']);
      return tfCase(r, MODELS.types, { inputs: { in_bytes: [{ b64 }] } }, `b64 ${b64} not UTF-8`, 400,
        /^input "in_bytes": "b64" bytes are not valid UTF-8; onnxruntime-node carries BYTES tensors as UTF-8 strings$/);
    }
    default: {
      const b64 = r.pick(['@@@@', 'a', 'abcde', 'ab=c', '====', 'a b=', 'YQ===', 12, null]);
      return tfCase(r, MODELS.types, { inputs: { in_bytes: [{ b64 }] } }, `b64 ${JSON.stringify(b64)}`, 400, /^input "in_bytes": "b64" must hold a base64 string$/);
    }
  }
}

const PROTO_NAMES = ['__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty', 'valueOf', '__defineGetter__', 'isPrototypeOf'];
const POLLUTE = '{"__proto__":{"polluted":"yes"},"constructor":{"prototype":{"polluted":"yes"}}}';

function protoKeys(r: Rand): CaseBody {
  const name = r.pick(PROTO_NAMES);
  const q = esc(name);
  const choice = r.int(0, 9);
  const mlpIn = { name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] };
  switch (choice) {
    case 0:
      return oipCase(r, r.pick(allModels), { inputs: [{ ...mlpIn, name }] }, `input named ${name}`, 400, new RegExp(`^unknown input "${q}"; the model's inputs are: `));
    case 1: {
      // Junk keys everywhere a valid request tolerates them: still served, nothing polluted.
      const c = validMlpOip(r, (body, raws) => {
        body.__junk = TOKEN(raws.length);
        raws.push(POLLUTE);
        body.parameters = TOKEN(raws.length);
        raws.push(POLLUTE);
      });
      return { ...c, what: `valid OIP with __proto__/constructor keys (${c.what})` };
    }
    case 2:
      // The input's fields hidden behind "__proto__": not its own, so not there.
      return oipCase(r, MODELS.mlp, { inputs: [TOKEN(0)] }, 'input fields under __proto__', 400, /^every input needs a "name" string$/,
        [`{"__proto__":${JSON.stringify(mlpIn)}}`]);
    case 3:
      return oipCase(r, MODELS.mlp, TOKEN(0), 'inputs under __proto__', 400, /^"inputs" must be a non-empty array/,
        [`{"__proto__":{"inputs":[${JSON.stringify(mlpIn)}]}}`]);
    case 4:
      return tfCase(r, r.pick([MODELS.mlp, MODELS.dyn]), TOKEN(0), `columnar input ${name}`, 400, new RegExp(`^unknown input "${q}"; the model's inputs are: x$`),
        [`{"inputs":{${r.chance(0.5) ? '"x":[[1,2,3,4]],' : ''}${JSON.stringify(name)}:[[1,2,3,4]]}}`]);
    case 5:
      return tfCase(r, MODELS.mlp, TOKEN(0), `instance key ${name}`, 400, new RegExp(`^unknown input "${q}"; the model's inputs are: x$`),
        [`{"instances":[{"x":[1,2,3,4],${JSON.stringify(name)}:{"x":[1,2,3,4]}}]}`]);
    case 6:
      return tfCase(r, MODELS.mlp, TOKEN(0), 'instance fields under __proto__', 400, /^instance 0 is missing input "x"$/,
        ['{"instances":[{"__proto__":{"x":[1,2,3,4]}}]}']);
    case 7:
      return tfCase(r, MODELS.mlp, TOKEN(0), 'instances under __proto__', 400, /^request must have exactly one of "instances"/,
        ['{"__proto__":{"instances":[[1,2,3,4]]}}']);
    case 8:
      return oipCase(r, MODELS.mlp, { inputs: [mlpIn], outputs: [{ name }] }, `output named ${name}`, 400, new RegExp(`^unknown output "${q}"; the model's outputs are: probs$`));
    default:
      return tfCase(r, MODELS.mlp, { instances: [[1, 2, 3, 4]], output_filter: [name] }, `output_filter ${name}`, 400,
        new RegExp(`^unknown output "${q}"; the model's outputs are: probs$`));
  }
}

/** Names no model may have: paths, NUL, look-alikes, case, length; raw or percent-encoded. */
const BAD_NAMES = [
  '..', '.', '...', '.mlp', '-mlp', '_mlp', 'MLP', 'Mlp', 'mlp..', 'a..b', 'mlp%00', '%00', '%00mlp', '\u0000', '%2e%2e', '%2E%2E', '%2e',
  '..%2F..%2Fetc', '..%2fmlp', 'mlp%2F..', '%2e%2e%2f%2e%2e', 'ml%D1%80', 'mlр', 'ｍｌｐ', '%EF%BD%8D%EF%BD%8C%EF%BD%90', 'ml%E2%80%8Bp', 'ml\u200bp',
  'mlp%20', '%20mlp', 'ml p', 'mlp%5C..', 'mlp%0A', 'mlp%09', 'mlp%3B', 'mlp%3Finfer', 'mlp%23', 'mlp*', 'ı', 'ml%C4%B1p', 'mlp\u0301', 'a'.repeat(64),
  '%E2%80%AEplm', 'mlp%EF%BB%BF', 'mlp%2F',
];
const MALFORMED_PERCENT = ['%', '%zz', '%E0%A4%A', '%C0%AE%C0%AE', 'mlp%', '%2', '%ED%A0%80', '%FF'];
const UNKNOWN_NAMES = ['nope', 'mlp2', 'mlp.', 'mlp-', 'a', '0', 'x'.repeat(63), 'mlp_dyn', 'types.v2', 'mlp-dyn-', 'con', 'nul', 'aux.onnx'];

function modelNames(r: Rand): CaseBody {
  const body = JSON.stringify({ inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] });
  const route = r.int(0, 4);
  const at = (name: string) =>
    [
      { method: 'POST', path: `/v2/models/${name}/infer`, body },
      { method: 'GET', path: `/v2/models/${name}` },
      { method: 'GET', path: `/v2/models/${name}/ready` },
      { method: 'POST', path: `/v1/models/${name}:predict`, body: JSON.stringify({ instances: [[1, 2, 3, 4]] }) },
      { method: 'GET', path: `/v1/models/${name}` },
    ][route] as { method: string; path: string; body?: string };
  const choice = r.int(0, 9);
  if (choice <= 3) {
    const name = r.pick(BAD_NAMES);
    return { what: `model name ${JSON.stringify(name)}`, ...at(name), expect: { status: 400, message: /^invalid model name ".*": use 1-63 characters/ } };
  }
  if (choice === 4) {
    const name = r.pick(MALFORMED_PERCENT);
    return { what: `model name ${JSON.stringify(name)}`, ...at(name), expect: { status: 400, message: /^malformed percent-encoding in path segment ".*"$/ } };
  }
  if (choice === 5) {
    // A path that climbs out: the first name is checked, never joined into an S3 key.
    const name = r.pick(['..', '%2e%2e', '.']);
    const c = r.chance(0.5)
      ? { method: 'POST', path: `/v2/models/${name}/mlp/infer`, body }
      : { method: 'POST', path: `/v1/models/${name}/mlp:predict`, body: JSON.stringify({ instances: [[1, 2, 3, 4]] }) };
    return { what: `climbing path ${c.path}`, ...c, expect: { status: 400, message: /^invalid model name/ } };
  }
  if (choice === 6) {
    const name = r.pick(UNKNOWN_NAMES);
    return { what: `unknown model ${name}`, ...at(name), expect: { status: 404, message: new RegExp(`^model "${esc(name)}" not found$`) } };
  }
  // Versions and labels.
  const model = r.pick(allModels);
  const tf = r.chance(0.4);
  const place = (sel: string) =>
    tf ? { method: 'POST', path: `/v1/models/${model}${sel}:predict`, body: JSON.stringify({ instances: [[1, 2, 3, 4]] }) }
      : r.chance(0.5) ? { method: 'GET', path: `/v2/models/${model}${sel}` } : { method: 'POST', path: `/v2/models/${model}${sel}/infer`, body };
  if (choice === 7) {
    const v = r.pick(['0', '-1', '01', '1.0', '1e3', 'abc', '99999999999', '0x1', '%2e', '1%00', 'latest', ' 1', '１']);
    return { what: `version ${JSON.stringify(v)}`, ...place(`/versions/${v}`), expect: { status: 400, message: /^invalid model version ".*": versions are positive integers$/ } };
  }
  if (choice === 8) {
    const v = r.pick([2, 9, 42, 9999999999]);
    return { what: `missing version ${v}`, ...place(`/versions/${v}`), expect: { status: 404, message: new RegExp(`^model "${esc(model)}" has no version ${v}$`) } };
  }
  if (r.chance(0.5)) {
    const l = r.pick(['Stable', '-x', 'a'.repeat(64), '..', '%2e%2e', 'st%00able', 'stаble', '_x']);
    return { what: `label ${JSON.stringify(l)}`, ...place(`/labels/${l}`), expect: { status: 400, message: /^invalid label ".*": use 1-63 characters/ } };
  }
  const l = r.pick(['beta', 'canary', 'prod', 'stable2', 'latest']);
  return { what: `missing label ${l}`, ...place(`/labels/${l}`), expect: { status: 404, message: new RegExp(`^model "${esc(model)}" has no label "${l}"$`) } };
}

function hugeIds(r: Rand): CaseBody {
  if (r.chance(0.3)) {
    // Ids up to the limit, with any characters, come back unchanged.
    const id = r.chance(0.5) ? bytesString(r, 30).slice(0, 256) : r.pick(['', 'x'.repeat(256), '😀'.repeat(128), '\u0000'.repeat(256)]);
    const c = validMlpOip(r);
    const body = JSON.parse(c.body as string) as Record<string, unknown>;
    body.id = id;
    const answer = c.expect.answer as Extract<Answer, { kind: 'mlp' }>;
    return { ...c, what: `id of ${id.length} chars`, body: JSON.stringify(body), expect: { status: 200, answer: { ...answer, id } } };
  }
  const length = r.pick([257, 1000, 65536, 1000000]);
  const c = mlpOipText(r);
  const body = JSON.parse(c.text) as Record<string, unknown>;
  body.id = r.chance(0.5) ? 'i'.repeat(length) : '😀'.repeat(Math.ceil(length / 2));
  return {
    what: `id of ${length} chars`, method: 'POST', path: oipPath(r, c.model), body: JSON.stringify(body),
    expect: { status: 400, message: /^"id" is longer than 256 characters$/ },
  };
}

const BAD_TYPES = [
  'text/plain', 'text/json', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=xyz', 'application/xml', 'application/jsonp',
  'application/json-seq', 'application/octet-stream', 'json', '*/*', 'application/*', 'application/', 'text/html; charset=utf-8',
  'application/x-json', 'application /json', 'application/json\u0000', 'c'.repeat(10000), 'application/javascript',
];

function contentTypes(r: Rand): CaseBody {
  if (r.chance(0.35)) {
    const c = r.chance(0.5) ? validMlpOip(r) : validMlpTf(r);
    return { ...c, what: `content-type ${JSON.stringify(c.contentType)} (${c.what})` };
  }
  const type = r.pick(BAD_TYPES);
  // The content type is checked before the body is read: even a bad body is a 415.
  const body = r.pick([mlpOipText(r).text, '{"inputs": [', 'a=1&b=2', '']);
  const tf = r.chance(0.4);
  const what = `content-type ${JSON.stringify(type.slice(0, 40))}`;
  const path = tf ? '/v1/models/mlp:predict' : '/v2/models/mlp/infer';
  // The OIP route also takes binary tensors (octet-stream), which need their framing header.
  if (!tf && type === 'application/octet-stream') {
    return { what, method: 'POST', path, body, contentType: type, expect: { status: 400, message: /^a binary body \(content-type application\/octet-stream\) needs an Inference-Header-Content-Length header/ } };
  }
  // The OIP route takes one text as text/plain, for a model that declared a text input; mlp declares none.
  if (!tf && type === 'text/plain') {
    return { what, method: 'POST', path, body, contentType: type, expect: { status: 400, message: /^(this model declares no text input; send application\/json with its inputs \(x\)|request body is empty; send the text)$/ } };
  }
  const offer = tf ? '' : ', or application/octet-stream with Inference-Header-Content-Length \\(binary tensors\\)';
  return { what, method: 'POST', path, body, contentType: type, expect: { status: 415, message: new RegExp(`^content-type ".*" is not supported; send application/json${offer}$`, 's') } };
}

function oversized(r: Rand): CaseBody {
  const c = mlpOipText(r, MODELS.dyn);
  const path = '/v2/models/mlp-dyn/infer';
  switch (r.int(0, 5)) {
    case 0:
      return { what: 'valid JSON padded to 7 MiB', method: 'POST', path, body: c.text + PAD_7MB, expect: { status: 413, message: TOO_LARGE } };
    case 1:
      return { what: '3 MiB of two-byte characters', method: 'POST', path, body: `{"id":"${MULTIBYTE_OVER}"}`, expect: { status: 413, message: TOO_LARGE } };
    case 2: {
      // Decodes to exactly one byte over the limit.
      const over = c.text + ' '.repeat(MAX_BODY_BYTES + 1 - c.text.length);
      return { what: 'base64 body one byte over', method: 'POST', path, body: over, base64: true, expect: { status: 413, message: TOO_LARGE } };
    }
    case 3: {
      const exact = c.text + ' '.repeat(MAX_BODY_BYTES - c.text.length);
      return {
        what: 'valid body of exactly the limit', method: 'POST', path, body: exact, base64: r.chance(0.5),
        expect: { status: 200, answer: { kind: 'mlp', protocol: 'oip', model: MODELS.dyn, rows: c.rows } },
      };
    }
    case 4:
      return { what: 'plain body one byte over', method: 'POST', path, body: c.text + ' '.repeat(MAX_BODY_BYTES + 1 - c.text.length), expect: { status: 413, message: TOO_LARGE } };
    default:
      return { what: 'huge base64 body', method: 'POST', path, rawBase64: BIG_B64 + BIG_B64, expect: { status: 413, message: TOO_LARGE } };
  }
}

function tfMalformed(r: Rand): CaseBody {
  const rows = mlpRows(r, 2, 0);
  switch (r.int(0, 13)) {
    case 0:
      return tfCase(r, MODELS.mlp, { instances: [rows[0]], inputs: [rows[0]] }, 'instances and inputs', 400,
        /^request must have exactly one of "instances" \(row format\) or "inputs" \(columnar format\)$/);
    case 1:
      return tfCase(r, r.pick(allModels), r.pick([{}, { instance: [] }, { Instances: [[1]] }, { input: {} }]), 'neither instances nor inputs', 400,
        /^request must have exactly one of "instances"/);
    case 2: {
      const v = r.pick([[], {}, 'x', 1, null, true]);
      return tfCase(r, MODELS.mlp, { instances: v }, `instances ${JSON.stringify(v)}`, 400, /^"instances" must be a non-empty array$/);
    }
    case 3:
      return tfCase(r, MODELS.dyn, { instances: [rows[0], (rows[1] as unknown[]).slice(0, r.int(0, 3))] }, 'ragged instances', 400,
        /^input "x": ragged nested arrays \(not a tensor\) at depth 1$/);
    case 4:
      return tfCase(r, MODELS.dyn, { instances: [{ x: rows[0] }, { y: rows[1] }] }, 'named instance missing x', 400, /^instance 1 is missing input "x"$/);
    case 5:
      return tfCase(r, MODELS.dyn, { instances: [{ x: rows[0] }, r.pick([rows[1], 1, 'x', null])] }, 'instance 1 not an object', 400,
        /^instance 1 is not an object of named inputs like instance 0$/);
    case 6:
      return tfCase(r, MODELS.dyn, { instances: [{ x: rows[0], y: 1 }] }, 'unknown key in instance', 400, /^unknown input "y"; the model's inputs are: x$/);
    case 7:
      return tfCase(r, MODELS.types, { instances: r.pick([[1, 2], [[1]], [true]]) }, 'unnamed instances for 13 inputs', 400,
        /^the model has 13 inputs \(in_bool, .*\); send an object of named inputs$/);
    case 8: {
      const v = r.pick(['serving', 'predict', '', 1, null, ['serving_default'], 'SERVING_DEFAULT']);
      return tfCase(r, MODELS.mlp, { instances: [rows[0]], signature_name: v }, `signature_name ${JSON.stringify(v)}`, 400,
        new RegExp(`^unknown signature_name ${esc(JSON.stringify(v))}; ONNX models have only "serving_default"$`));
    }
    case 9: {
      const v = r.pick(['probs', {}, 1, true, null]);
      return tfCase(r, MODELS.mlp, { instances: [rows[0]], output_filter: v }, `output_filter ${JSON.stringify(v)}`, 400, /^"output_filter" must be an array of output names$/);
    }
    case 10:
      return tfCase(r, MODELS.mlp, { instances: [rows[0]], output_filter: ['probs', 'probs'] }, 'output_filter repeated', 400, /^output "probs" is requested twice$/);
    case 11:
      return tfCase(r, MODELS.mlp, { instances: rows }, 'two instances for batch 1', 400, /^input "x": dimension 0 is 2 but the model expects 1/);
    case 12: {
      const v = r.pick([rows[0], 1, 'x', { b64: 'eA==' }, [[[1, 2, 3, 4]]]]);
      return tfCase(r, MODELS.dyn, { inputs: v }, `columnar ${JSON.stringify(v).slice(0, 30)}`, 400, /^input "x": shape \[.*\] has rank \d but the model expects rank 2/);
    }
    default:
      return tfCase(r, MODELS.types, { instances: [{ in_bool: true }] }, 'row instance missing inputs', 400, /^instance 0 is missing input "in_uint8"$/);
  }
}

function intRange(r: Rand): CaseBody {
  const dt = r.pick(INT_TYPES);
  const bounds = INT_BOUNDS[dt];
  if (bounds && r.chance(0.6)) {
    const [lo, hi] = bounds;
    const v = r.pick([hi + 1, lo - 1, hi * 2 + 7, lo - 1000]);
    return badElementCase(r, dt, String(v), String(v), `out of range for ${dt} [${lo}, ${hi}]`, `${v} in ${dt}`);
  }
  const candidates: Record<string, unknown[]> = {
    BOOL: [0, 1, 'true', 'false', null, 'yes'],
    INT64: ['9223372036854775808', '-9223372036854775809', '123456789012345678901', 9.3e18, -9.3e18, 1e20, 1.5, '1.5', '1e3'],
    UINT64: ['-1', -1, '18446744073709551616', 2e19, 0.5, '-0.5'],
  };
  const v = r.pick(candidates[dt] ?? [1.5, 0.1, -0.5, 1e-300, 2.5]);
  return badElementCase(r, dt, JSON.stringify(v), JSON.stringify(v), expectedPhrase(dt), `${JSON.stringify(v)} in ${dt}`);
}

function outputs(r: Rand): CaseBody {
  const choice = r.int(0, 4);
  if (choice <= 1) {
    const name = r.pick(['logits', 'probs ', 'PROBS', 'x', '', 'out', 'probs\u0000', 'h']);
    const { body } = mlpOipBody(r, r.pick([MODELS.mlp, MODELS.dyn]));
    body.outputs = [{ name: 'probs' }, { name }].slice(r.int(0, 1));
    return oipCase(r, MODELS.dyn, body, `output ${JSON.stringify(name)}`, 400, new RegExp(`^unknown output "${esc(JSON.stringify(name).slice(1, -1))}"; the model's outputs are: probs$`));
  }
  if (choice === 2) {
    const { body } = mlpOipBody(r, MODELS.dyn);
    body.outputs = [{ name: 'probs' }, { name: 'probs' }];
    return oipCase(r, MODELS.dyn, body, 'output requested twice', 400, /^output "probs" is requested twice$/);
  }
  // An empty list of outputs means all of them (as Triton and TF Serving read it).
  if (choice === 3) {
    const c = validMlpOip(r, (body) => {
      body.outputs = [];
    });
    return { ...c, what: `empty outputs (${c.what})` };
  }
  const c = validMlpTf(r);
  const body = JSON.parse(c.body as string) as Record<string, unknown>;
  body.output_filter = [];
  return { ...c, what: `empty output_filter (${c.what})`, body: JSON.stringify(body) };
}

function routes(r: Rand): CaseBody {
  const choice = r.int(0, 2);
  if (choice === 0) {
    const path = r.pick([
      '/', '/v3', '/v2/models', '/v2/modelz', '/v2/models/mlp/infer/extra', '/v2/models/mlp/versions/1/ready/x', '/v1', '/v1/models',
      '/v2/health', '/v2/health/dead', '/v2/repository/index', '/v1/models/mlp/metadata', '/v1/models/mlp/versions/1/extra:predict',
      '/v2/models/mlp/versions', '/V2/models/mlp', '/v2/models/mlp/INFER', '/.env', '/v2/models/mlp/infer%2F..%2F..',
    ]);
    return { what: `unknown route ${path}`, method: r.pick(['GET', 'POST']), path, body: '{}', expect: { status: 404, message: /^no route for (GET|POST) / } };
  }
  if (choice === 1) {
    const [method, path, allowed] = r.pick([
      ['GET', '/v2/models/mlp/infer', 'POST'], ['PUT', '/v2/models/mlp/infer', 'POST'], ['DELETE', '/v2/models/mlp', 'GET'],
      ['POST', '/v2/models/mlp', 'GET'], ['POST', '/v2/models/mlp/ready', 'GET'], ['GET', '/v1/models/mlp:predict', 'POST'],
      ['POST', '/v1/models/mlp', 'GET'], ['PATCH', '/v2', 'GET'], ['POST', '/v2/health/live', 'GET'], ['HEAD', '/v2/models/mlp', 'GET'],
      ['OPTIONS', '/v2/models/mlp/infer', 'POST'], ['', '/v2/models/mlp', 'GET'], ['TRACE', '/v1/models/mlp:predict', 'POST'],
    ] as const);
    return {
      what: `${method || '(empty)'} ${path}`, method, path, body: '{}', expect: { status: 405, message: new RegExp(`^${method} is not allowed on ${esc(path)}; use ${allowed}$`) },
    };
  }
  const verb = r.pick([':classify', ':regress', ':', ':predict ', ':PREDICT', ':predict:predict', ':metadata']);
  return {
    what: `TF verb ${verb}`, method: 'POST', path: `/v1/models/mlp${verb.replace(/ /g, '%20')}`, body: '{"instances":[[1,2,3,4]]}',
    expect: { status: 404, message: new RegExp(`^unsupported TensorFlow Serving verb "${esc(verb)}"; this server offers :predict$`) },
  };
}

function auth(r: Rand): CaseBody {
  const c = validMlpOip(r);
  switch (r.int(0, 4)) {
    case 0:
      return { ...c, what: 'no key', apiKey: null, expect: { status: 401, message: /^missing API key/ } };
    case 1:
      return { ...c, what: 'wrong key', apiKey: r.pick(['wrong', 'test-key-012345678', 'k'.repeat(100000), 'ключ']), expect: { status: 403, message: /^API key not accepted$/ } };
    case 2:
      return { ...c, what: 'key in the query string', path: `${c.path}?x-api-key=test-key-0123456789`, apiKey: null, expect: { status: 401, message: /^missing API key/ } };
    case 3:
      return { ...c, what: 'empty bearer', apiKey: null, headers: { authorization: r.pick(['Bearer ', 'Bearer', 'Basic dGVzdA==']) }, expect: { status: 401, message: /^missing API key: send it in the x-api-key header/ } };
    default:
      return { ...c, what: 'bearer with the valid key', apiKey: null, headers: { authorization: 'Bearer test-key-0123456789' } };
  }
}

// ---------------------------------------------------------------------------------------------
// Binary tensor framing and compressed bodies

/** An MLP request with x as a binary tensor: the JSON header, then 16 bytes a row. */
function binaryMlp(r: Rand): { header: Buffer; tensor: Buffer; rows: (number | string)[][]; model: string } {
  const model = r.pick([MODELS.mlp, MODELS.dyn]);
  const k = model === MODELS.mlp ? 1 : r.int(1, 6);
  const rows = mlpRows(r, k);
  const tensor = Buffer.alloc(k * 16);
  rows.flat().forEach((v, i) => tensor.writeFloatLE(Number(v), i * 4));
  const json: Record<string, unknown> = { inputs: [{ name: 'x', shape: [k, 4], datatype: 'FP32', parameters: { binary_data_size: tensor.byteLength } }] };
  if (r.chance(0.3)) json.outputs = [{ name: 'probs', parameters: { binary_data: false } }];
  return { header: Buffer.from(JSON.stringify(json)), tensor, rows, model };
}

function binaryFrames(r: Rand): CaseBody {
  const { header, tensor, rows, model } = binaryMlp(r);
  const path = oipPath(r, model);
  const framed = (body: Buffer, headerLength: number | string, what: string, expect: Expectation): CaseBody => ({
    what: `binary ${what}`, method: 'POST', path, rawBase64: body.toString('base64'),
    contentType: r.pick([null, 'application/octet-stream']), headers: { 'inference-header-content-length': String(headerLength) }, expect,
  });
  const whole = Buffer.concat([header, tensor]);
  switch (r.int(0, 6)) {
    case 0:
    case 1:
      return framed(whole, header.byteLength, `valid ${model} batch ${rows.length}`, { status: 200, answer: { kind: 'mlp', protocol: 'oip', model, rows } });
    case 2: {
      const past = whole.byteLength + r.int(1, 1 << 20);
      return framed(whole, past, 'header length past the body', { status: 400, message: new RegExp(`^Inference-Header-Content-Length ${past} is past the end of the ${whole.byteLength}-byte body$`) });
    }
    case 3: {
      const cut = r.int(0, tensor.byteLength - 1);
      return framed(Buffer.concat([header, tensor.subarray(0, cut)]), header.byteLength, `tensor cut to ${cut} bytes`, { status: 400, message: /^input "x": binary_data_size \d+ runs past the end of the body/ });
    }
    case 4: {
      const extra = r.int(1, 64);
      return framed(Buffer.concat([whole, Buffer.alloc(extra, 7)]), header.byteLength, `${extra} trailing bytes`, { status: 400, message: new RegExp(`^the body has ${extra} bytes of binary data after the last input's`) });
    }
    case 5: {
      // The header length lands inside the JSON or inside the tensor: never a valid frame.
      const at = r.int(1, header.byteLength - 1);
      return framed(whole, at, `header length ${at} of ${header.byteLength}`, { status: 400, message: /^request body is not valid JSON/ });
    }
    default: {
      const bytes = Buffer.from(whole);
      for (let i = r.int(1, 8); i > 0; i--) bytes[r.int(0, bytes.byteLength - 1)] = r.int(0, 255);
      // Random damage: any answer but a fault of ours; a 200 must still be a well-formed answer.
      return framed(bytes, header.byteLength, 'random bytes damaged', { status: ANY_ANSWER });
    }
  }
}

/** 8 MiB of zeros: a few KiB gzipped, over MAX_BODY_BYTES once inflated. */
const ZERO_BOMB = gzipSync(Buffer.alloc(8 * 1024 * 1024), { level: 9 });

function compressed(r: Rand): CaseBody {
  const c = mlpOipText(r);
  const path = oipPath(r, c.model);
  const text = Buffer.from(c.text);
  const send = (body: Buffer, encoding: string, what: string, expect: Expectation, contentType: string | null = 'application/json'): CaseBody => ({
    what: `${encoding} ${what}`, method: 'POST', path, rawBase64: body.toString('base64'), contentType, headers: { 'content-encoding': encoding }, expect,
  });
  const ok: Expectation = { status: 200, answer: { kind: 'mlp', protocol: 'oip', model: c.model, rows: c.rows } };
  switch (r.int(0, 6)) {
    case 0:
      return send(gzipSync(text), r.pick(['gzip', 'x-gzip', 'GZIP']), 'valid', ok, r.pick(['application/json', null, 'application/octet-stream']));
    case 1:
      return send(r.chance(0.5) ? deflateSync(text) : deflateRawSync(text), 'deflate', 'valid', ok);
    case 2:
      return send(ZERO_BOMB, 'gzip', `bomb of ${ZERO_BOMB.byteLength} bytes`, { status: 413, message: /^request body is larger than the \d+-byte limit once decompressed$/ });
    case 3: {
      const z = gzipSync(text);
      const cut = r.int(0, z.byteLength - 1);
      return send(z.subarray(0, cut), 'gzip', `cut to ${cut} bytes`, { status: 400, message: /^request body is not valid gzip data/ });
    }
    case 4:
      return send(text, r.pick(['br', 'compress', 'zstd', 'gzip;q=1', '*']), 'unknown encoding', { status: 415, message: /^content-encoding ".*" is not supported; send gzip, deflate or an uncompressed body$/ });
    case 5:
      return send(gzipSync(Buffer.from(`${c.text.slice(0, -1)}!!`)), 'gzip', 'of invalid JSON', { status: 400, message: /^request body is not valid JSON/ });
    default: {
      const z = Buffer.from(gzipSync(text));
      for (let i = r.int(1, 6); i > 0; i--) z[r.int(0, z.byteLength - 1)] = r.int(0, 255);
      return send(z, 'gzip', 'damaged', { status: ANY_ANSWER });
    }
  }
}

// Declared inputs: texts through a tokenizer, encoded images

/** Strings a text input must survive: control characters, NUL, lone surrogates, huge, many scripts. */
function hostileText(r: Rand): string {
  switch (r.int(0, 7)) {
    case 0:
      return '';
    case 1:
      return 'a\u0000b';
    case 2:
      return r.pick(['\ud800', '\udfff x', 'x \ud83d']);
    case 3:
      return 'good '.repeat(r.int(100, 20_000));
    case 4:
      return Array.from({ length: r.int(1, 400) }, () => String.fromCodePoint(r.pick([r.int(0x20, 0x7e), r.int(0x4e00, 0x9fff), r.int(0x1f300, 0x1f6ff), r.int(0x590, 0x5ff), r.int(0x300, 0x36f)]))).join('');
    case 5:
      return 'x'.repeat(r.int(90, 5000));
    case 6:
      return '[CLS] [SEP] [PAD] [MASK] [UNK] ##ing';
    default:
      return Array.from({ length: r.int(1, 64) }, () => String.fromCharCode(r.int(0, 0xffff))).join('');
  }
}

/** Elements of a binary BYTES tensor: a 4-byte length, then the bytes. */
function bytesElements(items: readonly Buffer[]): Buffer {
  return Buffer.concat(items.flatMap((b) => [Buffer.from(new Uint32Array([b.byteLength]).buffer), b]));
}

function declared(r: Rand): CaseBody {
  const textPath = oipPath(r, MODELS.text);
  const imagePath = oipPath(r, MODELS.image);
  const post = (path: string, body: unknown, what: string, expect: Expectation): CaseBody => ({ what, method: 'POST', path, body: JSON.stringify(body), expect });
  const texts = (data: unknown, shape: unknown = [Array.isArray(data) ? data.length : 1]) => ({ inputs: [{ name: 'text', datatype: 'BYTES', shape, data }] });
  switch (r.int(0, 9)) {
    case 0: {
      const n = r.int(1, 4);
      const data = Array.from({ length: n }, () => r.pick(['a good film', 'bad', 'good good', 'nothing at all']));
      return post(textPath, texts(data), `text: ${n} plain texts`, { status: 200, answer: { kind: 'json', subset: { model_name: MODELS.text, model_version: '1' } } });
    }
    case 1: {
      const data = Array.from({ length: r.int(1, 3) }, () => hostileText(r));
      return post(textPath, texts(data), 'text: hostile strings', { status: ANY_ANSWER });
    }
    case 2: {
      const bad = r.pick<unknown>([[1], [null], [{}], [true], [['a', 2]], {}, null, [[]]]);
      return post(textPath, texts(bad, [1]), `text: data ${JSON.stringify(bad)}`, { status: 400 });
    }
    case 3: {
      const shape = r.pick<unknown>([[], [0], [5], [1, 1], [-1], ['1'], null, [2 ** 40]]);
      return post(textPath, texts(['good'], shape), `text: shape ${JSON.stringify(shape)}`, { status: 400 });
    }
    case 4: {
      const items = Array.from({ length: r.int(1, 3) }, () => Buffer.from(hostileText(r), 'utf8'));
      const frames = bytesElements(items);
      for (let i = r.chance(0.5) ? r.int(1, 4) : 0; i > 0; i--) frames[r.int(0, frames.byteLength - 1)] = r.int(0, 255);
      const header = Buffer.from(JSON.stringify({ inputs: [{ name: 'text', datatype: 'BYTES', shape: [items.length], parameters: { binary_data_size: frames.byteLength } }] }));
      return {
        what: 'text: binary BYTES elements, some damaged', method: 'POST', path: textPath, rawBase64: Buffer.concat([header, frames]).toString('base64'),
        contentType: 'application/octet-stream', headers: { 'inference-header-content-length': String(header.byteLength) }, expect: { status: ANY_ANSWER },
      };
    }
    case 5: {
      const raw = r.pick([[1, 2], ['good', 3], [{ text: 5 }], [{ other: 'x' }], { text: ['a'] }, ['good']]);
      return { what: `text TF Serving instances ${JSON.stringify(raw)}`, method: 'POST', path: tfPath(r, MODELS.text), body: JSON.stringify({ instances: raw }), expect: { status: ANY_ANSWER } };
    }
    case 6: {
      // Sending the token inputs beside the text, or instead of it with the wrong type.
      const extra = { name: r.pick(['input_ids', 'attention_mask', 'token_type_ids']), datatype: 'INT64', shape: [1, 16], data: new Array(16).fill(1) };
      return post(textPath, { inputs: [...texts(['good']).inputs, extra] }, `text with ${extra.name} as well`, { status: 400, message: /is filled by a declared text input; do not send it as well$/ });
    }
    case 7: {
      const garbage = r.pick(['', 'AAAA', Buffer.from('GIF89a not really').toString('base64'), Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13]).toString('base64'), 'not base64!', '====']);
      return post(imagePath, { inputs: [{ name: 'image', datatype: 'BYTES', shape: [1], data: [garbage] }] }, `image: ${JSON.stringify(garbage.slice(0, 20))}`, { status: 400 });
    }
    case 8: {
      const bytes = Buffer.alloc(r.int(0, 2048));
      for (let i = 0; i < bytes.byteLength; i++) bytes[i] = r.int(0, 255);
      if (r.chance(0.5) && bytes.byteLength > 8) Buffer.from([0xff, 0xd8, 0xff, 0xe0]).copy(bytes);
      return { what: `image/jpeg POST of ${bytes.byteLength} random bytes`, method: 'POST', path: imagePath, rawBase64: bytes.toString('base64'), contentType: 'image/jpeg', expect: { status: 400 } };
    }
    default: {
      const frames = bytesElements([Buffer.from(hostileText(r))]);
      const lie = r.int(0, 3);
      frames.writeUInt32LE(lie === 0 ? 0xffffffff : lie === 1 ? frames.byteLength : 0, 0);
      const header = Buffer.from(JSON.stringify({ inputs: [{ name: 'image', datatype: 'BYTES', shape: [1], parameters: { binary_data_size: frames.byteLength } }] }));
      return {
        what: `image: binary BYTES element with a lying length (${lie})`, method: 'POST', path: imagePath, rawBase64: Buffer.concat([header, frames]).toString('base64'),
        contentType: 'application/octet-stream', headers: { 'inference-header-content-length': String(header.byteLength) }, expect: { status: 400 },
      };
    }
  }
}

// ---------------------------------------------------------------------------------------------

const CATEGORIES = {
  'valid-oip': { weight: 8, make: (r: Rand) => (r.chance(0.55) ? validMlpOip(r) : validTypesOip(r)) },
  'valid-tf': { weight: 6, make: (r: Rand) => (r.chance(0.5) ? validMlpTf(r) : validTypesTf(r)) },
  'valid-routes': { weight: 3, make: validRoutes },
  'malformed-json': { weight: 5, make: malformedJson },
  'random-json': { weight: 6, make: randomJson },
  'wrong-types': { weight: 9, make: wrongTypes },
  shapes: { weight: 10, make: shapes },
  'deep-nesting': { weight: 4, make: deepNesting },
  'big-strings': { weight: 1, make: bigStrings },
  'invalid-utf8': { weight: 4, make: invalidUtf8 },
  'non-finite': { weight: 5, make: nonFinite },
  'bytes-for-fp32': { weight: 4, make: bytesForFp32 },
  'proto-keys': { weight: 5, make: protoKeys },
  'model-names': { weight: 7, make: modelNames },
  'huge-id': { weight: 2, make: hugeIds },
  'content-type': { weight: 3, make: contentTypes },
  oversized: { weight: 1, make: oversized },
  'tf-malformed': { weight: 7, make: tfMalformed },
  'int-range': { weight: 5, make: intRange },
  outputs: { weight: 3, make: outputs },
  routes: { weight: 2, make: routes },
  auth: { weight: 1, make: auth },
  'binary-frames': { weight: 5, make: binaryFrames },
  compressed: { weight: 4, make: compressed },
  declared: { weight: 5, make: declared },
} satisfies Record<string, { weight: number; make: (r: Rand) => CaseBody }>;

export type Category = keyof typeof CATEGORIES;
export const CATEGORY_NAMES = Object.keys(CATEGORIES) as Category[];
const TOTAL_WEIGHT = CATEGORY_NAMES.reduce((sum, c) => sum + CATEGORIES[c].weight, 0);

/** Case `index` of a seeded run. */
export function requestCase(seed: number, index: number): RequestCase {
  const r = caseRand(seed, index);
  let x = r.float() * TOTAL_WEIGHT;
  let category: Category = CATEGORY_NAMES[0] as Category;
  for (const c of CATEGORY_NAMES) {
    x -= CATEGORIES[c].weight;
    if (x < 0) {
      category = c;
      break;
    }
  }
  return { index, category, ...CATEGORIES[category].make(r) };
}

/** The first `count` cases of a seeded run, made one at a time (big bodies are not kept). */
export function* requestCases(seed: number, count: number): Generator<RequestCase> {
  for (let i = 0; i < count; i++) yield requestCase(seed, i);
}
