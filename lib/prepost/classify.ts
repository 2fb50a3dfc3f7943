import type { Tensor } from 'onnxruntime-node';
import { fromHalfBits } from '../protocol/half';
import type { Activation } from './declarations';

/** One class of one row: its score after the activation, its index, and its name when known. */
export interface ClassScore {
  index: number;
  score: number;
  label?: string;
}

/** The rows of a `[C]` or `[N, C]` float output as plain numbers, one array per row. */
function rowsOf(tensor: Tensor): number[][] {
  const dims = tensor.dims;
  const classes = dims.length === 0 ? 1 : (dims[dims.length - 1] as number);
  const data = tensor.data as Float32Array | Float64Array | Uint16Array;
  const value = tensor.type === 'float16' ? (i: number) => fromHalfBits(data[i] as number) : (i: number) => data[i] as number;
  const rows: number[][] = [];
  for (let start = 0; start < data.length; start += classes) {
    const row = new Array<number>(classes);
    for (let c = 0; c < classes; c++) row[c] = value(start + c);
    rows.push(row);
  }
  return rows;
}

/** Applies the activation to one row; softmax subtracts the maximum first so large logits do not overflow. */
export function activate(row: number[], activation: Activation): number[] {
  if (activation === 'sigmoid') return row.map((x) => 1 / (1 + Math.exp(-x)));
  if (activation === 'none') return row;
  const max = Math.max(...row);
  const exp = row.map((x) => Math.exp(x - max));
  const sum = exp.reduce((a, b) => a + b, 0);
  return exp.map((e) => e / sum);
}

/**
 * The `k` highest-scoring classes of each row, best first; ties keep the lower index first,
 * so the answer is the same on every run. NaN scores sort last.
 */
export function topK(tensor: Tensor, k: number, activation: Activation, labels?: readonly string[]): ClassScore[][] {
  return rowsOf(tensor).map((row) => {
    const scores = activate(row, activation);
    const order = scores.map((_, i) => i);
    order.sort((a, b) => {
      const sa = scores[a] as number;
      const sb = scores[b] as number;
      if (Number.isNaN(sa) !== Number.isNaN(sb)) return Number.isNaN(sa) ? 1 : -1;
      return sb - sa || a - b;
    });
    return order.slice(0, k).map((index) => {
      const label = labels?.[index];
      return { index, score: scores[index] as number, ...(label === undefined ? {} : { label }) };
    });
  });
}

/** A score as Triton's classification strings print it: enough digits for a float32, no more. */
export function scoreText(score: number): string {
  return Number.isFinite(score) ? String(Number(score.toPrecision(7))) : String(score);
}

/** Triton's classification extension string: `"<score>:<index>"` or `"<score>:<index>:<label>"`. */
export function classificationString(c: ClassScore): string {
  return c.label === undefined ? `${scoreText(c.score)}:${c.index}` : `${scoreText(c.score)}:${c.index}:${c.label}`;
}
