/**
 * The CLI's requests on the wire: inputs with many elements go as binary tensors (Triton's
 * binary data extension: about a third of the bytes of JSON text, and no number parsing), and
 * binary answers are read back into values, so `infer` prints the same whichever way they came.
 */
import { binarySize, chunksSize, decodeBinaryTensor, encodeBinaryTensor } from '../../lib/protocol/binary-tensor';
import { byOip } from '../../lib/protocol/dtypes';
import { checkShapeValues, flattenToShape, toOrtTensor } from '../../lib/protocol/tensor-codec';

/** Inputs with at least this many elements travel binary. */
export const BINARY_ELEMENTS = 1024;

export interface WireRequest {
  body: Buffer;
  headers: Record<string, string>;
  /** How many inputs went binary. */
  binaryInputs: number;
}

export interface AnswerOutput {
  name: string;
  datatype: string;
  shape: number[];
  data?: unknown[];
  parameters?: Record<string, unknown>;
}

type Input = { name?: unknown; shape?: unknown; datatype?: unknown; data?: unknown; parameters?: Record<string, unknown> };

/** An OIP request as JSON, or, when it has large numeric inputs, as a binary request. */
export function toWire(request: unknown): WireRequest {
  const json = (text: string): WireRequest => ({ body: Buffer.from(text), headers: { 'content-type': 'application/json' }, binaryInputs: 0 });
  const r = request as { inputs?: Input[]; parameters?: Record<string, unknown> };
  if (!r || typeof r !== 'object' || !Array.isArray(r.inputs)) return json(JSON.stringify(request));
  const tensors: Uint8Array[] = [];
  const inputs = r.inputs.map((input) => {
    const info = typeof input?.datatype === 'string' ? byOip(input.datatype) : undefined;
    if (!info || binarySize(info, [1]) === undefined || input.data === undefined || typeof input.name !== 'string') return input;
    const shape = checkShapeValues(input.name, input.shape);
    const flat = flattenToShape(input.name, input.data, shape);
    if (flat.length < BINARY_ELEMENTS) return input;
    const chunks = encodeBinaryTensor(toOrtTensor(input.name, info, shape, flat));
    tensors.push(...chunks);
    const { data: _data, ...rest } = input;
    return { ...rest, parameters: { ...input.parameters, binary_data_size: chunksSize(chunks) } };
  });
  if (tensors.length === 0) return json(JSON.stringify(request));
  const header = Buffer.from(JSON.stringify({ ...r, inputs, parameters: { binary_data_output: true, ...r.parameters } }));
  return {
    body: Buffer.concat([header, ...tensors]),
    headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(header.byteLength) },
    binaryInputs: inputs.filter((i) => i?.parameters?.binary_data_size !== undefined).length,
  };
}

/** The answer's outputs with their values, whether they came as JSON or as binary tensors. */
export function readAnswer(body: Buffer, headerLength: number | undefined): { answer: Record<string, unknown>; outputs: AnswerOutput[] } {
  const end = headerLength ?? body.byteLength;
  const answer = JSON.parse(body.subarray(0, end).toString('utf8')) as { outputs?: AnswerOutput[] };
  let at = end;
  for (const o of answer.outputs ?? []) {
    const size = o.parameters?.binary_data_size;
    const info = byOip(o.datatype);
    if (typeof size !== 'number' || !info) continue;
    const tensor = decodeBinaryTensor(o.name, info, o.shape, body.subarray(at, at + size));
    at += size;
    o.data = Array.from(tensor.data as ArrayLike<unknown>, (v) => (typeof v === 'bigint' ? v.toString() : v));
  }
  return { answer: answer, outputs: answer.outputs ?? [] };
}
