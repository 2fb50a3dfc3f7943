/**
 * The answer checks of the request fuzz, shared by requests.test.ts (the handler's answer) and
 * requests-http.test.ts (the same answer as it came over HTTP): a valid request's outputs must be
 * exactly what the case expects, probabilities within tolerance of the reference run.
 */
import { isDeepStrictEqual } from 'node:util';
import { Tensor, type InferenceSession } from 'onnxruntime-node';
import type { Answer, EchoColumn, Scalar } from './request-cases';

function toNumber(v: unknown): number {
  if (typeof v === 'number') return v;
  if (v === 'NaN') return NaN;
  if (v === 'Infinity') return Infinity;
  if (v === '-Infinity') return -Infinity;
  throw new Error(`not a number: ${JSON.stringify(v)}`);
}

function closeEnough(got: number, want: number): boolean {
  if (Number.isNaN(want)) return Number.isNaN(got);
  if (!Number.isFinite(want)) return got === want;
  return Math.abs(got - want) <= 1e-6 + 1e-5 * Math.abs(want);
}

/** The probabilities `reference` (the mlp weights, any batch) gives for `rows`. */
async function expectedProbs(reference: InferenceSession, rows: (number | string)[][]): Promise<number[]> {
  const x = Float32Array.from(rows.flat().map(toNumber));
  const out = await reference.run({ x: new Tensor('float32', x, [rows.length, 4]) });
  return Array.from((out.probs as Tensor).data as Float32Array);
}

function fail(message: string): never {
  throw new Error(message);
}

function checkProbRows(got: unknown, want: number[], k: number): void {
  if (!Array.isArray(got) || got.length !== k) fail(`expected ${k} rows, got ${JSON.stringify(got)?.slice(0, 200)}`);
  got.forEach((row: unknown, i) => {
    if (!Array.isArray(row) || row.length !== 3) fail(`row ${i} is not 3 probabilities: ${JSON.stringify(row)}`);
    row.forEach((v: unknown, j) => {
      const w = want[i * 3 + j] as number;
      if (!closeEnough(toNumber(v), w)) fail(`row ${i} column ${j}: got ${JSON.stringify(v)}, expected ${w}`);
    });
  });
}

function sameScalar(column: EchoColumn, got: unknown, want: Scalar): boolean {
  switch (column.datatype) {
    case 'BOOL':
    case 'BYTES':
      return got === want;
    case 'FP16':
    case 'FP32':
    case 'FP64':
      return typeof want === 'string' ? got === want : typeof got === 'number' && got === want;
    default:
      return (typeof got === 'number' || typeof got === 'string') && String(got) === String(want);
  }
}

function checkColumn(column: EchoColumn, got: readonly unknown[]): void {
  if (got.length !== column.values.length) fail(`${column.output}: ${got.length} values, expected ${column.values.length}`);
  column.values.forEach((want, i) => {
    if (!sameScalar(column, got[i], want)) fail(`${column.output}[${i}]: got ${JSON.stringify(got[i])}, expected ${JSON.stringify(want)}`);
  });
}

/** 64-bit integers are read from the raw answer: JSON.parse would round them past 2^53. */
function rawIntegers(body: string, output: string): string[] {
  const match = new RegExp(`"name":"${output}","datatype":"[A-Z0-9]+","shape":\\[[^\\]]*\\],"data":\\[([^\\]]*)\\]`).exec(body);
  if (!match) fail(`${output}: not found in the raw answer`);
  return match[1] === '' ? [] : (match[1] as string).split(',');
}

/**
 * Throws, saying what differs, unless `body` (the answer's text, as it came back) is the answer a
 * valid request must get; `reference` runs the mlp weights for the expected probabilities.
 */
export async function checkAnswer(answer: Answer, body: string, reference: InferenceSession): Promise<void> {
  const json = JSON.parse(body) as Record<string, unknown>;
  if (answer.kind === 'json') {
    for (const [key, want] of Object.entries(answer.subset)) {
      if (!isDeepStrictEqual(json[key], want)) fail(`${key}: got ${JSON.stringify(json[key])}, expected ${JSON.stringify(want)}`);
    }
    return;
  }
  if (answer.protocol === 'oip') {
    if (json.model_name !== answer.model || json.model_version !== '1') fail(`model ${String(json.model_name)}@${String(json.model_version)}`);
    if (answer.id === undefined ? 'id' in json : json.id !== answer.id) fail(`id ${JSON.stringify(json.id)?.slice(0, 80)}, expected ${JSON.stringify(answer.id)?.slice(0, 80)}`);
  }
  const outputs = json.outputs as Record<string, unknown> | Record<string, unknown>[] | unknown[];

  if (answer.kind === 'mlp') {
    const want = await expectedProbs(reference, answer.rows);
    const k = answer.rows.length;
    if (answer.protocol === 'oip') {
      const list = outputs as Record<string, unknown>[];
      if (!Array.isArray(list) || list.length !== 1) fail(`outputs: ${JSON.stringify(outputs)?.slice(0, 200)}`);
      const [probs] = list as [Record<string, unknown>];
      if (probs.name !== 'probs' || probs.datatype !== 'FP32' || !isDeepStrictEqual(probs.shape, [k, 3])) {
        fail(`output header ${JSON.stringify({ ...probs, data: undefined })}`);
      }
      const data = probs.data as unknown[];
      if (data.length !== 3 * k) fail(`${data.length} values for ${k} rows`);
      checkProbRows(Array.from({ length: k }, (_, i) => data.slice(i * 3, i * 3 + 3)), want, k);
    } else {
      checkProbRows(answer.protocol === 'tf-row' ? json.predictions : outputs, want, k);
    }
    return;
  }

  // Echo of every datatype.
  const { columns, n } = answer;
  if (answer.protocol === 'oip') {
    const list = outputs as Record<string, unknown>[];
    if (!Array.isArray(list) || list.length !== columns.length) fail(`${Array.isArray(list) ? list.length : 'no'} outputs, expected ${columns.length}`);
    columns.forEach((column, i) => {
      const out = list[i] as Record<string, unknown>;
      if (out.name !== column.output || out.datatype !== column.datatype || !isDeepStrictEqual(out.shape, [n])) {
        fail(`output ${i}: ${JSON.stringify({ ...out, data: undefined })}, expected ${column.output} ${column.datatype} [${n}]`);
      }
      const wide = column.datatype === 'INT64' || column.datatype === 'UINT64';
      checkColumn(column, wide ? rawIntegers(body, column.output) : (out.data as unknown[]));
    });
    return;
  }
  const single = columns.length === 1 ? columns[0] : undefined;
  if (answer.protocol === 'tf-col') {
    if (single) return checkColumn(single, outputs as unknown[]);
    const named = outputs as Record<string, unknown[]>;
    if (!isDeepStrictEqual(Object.keys(named), columns.map((c) => c.output))) fail(`outputs ${Object.keys(named).join(',')}`);
    for (const column of columns) checkColumn(column, named[column.output] ?? []);
    return;
  }
  const predictions = json.predictions as unknown[];
  if (!Array.isArray(predictions) || predictions.length !== n) fail(`predictions: ${JSON.stringify(predictions)?.slice(0, 200)}`);
  if (single) return checkColumn(single, predictions);
  for (const column of columns) checkColumn(column, predictions.map((p) => (p as Record<string, unknown>)[column.output]));
}
