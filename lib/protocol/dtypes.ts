import type { Tensor } from 'onnxruntime-node';
import type { TensorDatatype } from '../registry/manifest';

/** How values of a datatype travel in JSON. */
export type JsonKind = 'bool' | 'float' | 'int' | 'bigint' | 'half' | 'string';

export interface DatatypeInfo {
  /** Open Inference Protocol name. */
  oip: TensorDatatype;
  /** onnxruntime-node's tensor type. */
  ort: Tensor.Type;
  /** ONNX `TensorProto.DataType` enum value. */
  onnx: number;
  /** TensorFlow Serving's dtype name, for its error messages and metadata. */
  tf: string;
  json: JsonKind;
  /** Bytes per element in the binary tensor format; BYTES elements carry their own length. */
  size?: number;
  /** Inclusive bounds for integer kinds. */
  min?: number | bigint;
  max?: number | bigint;
}

/**
 * The one datatype table: every datatype onnxruntime-node can carry in and out, with its name
 * in each protocol. Codecs and model checks read it; nothing else re-derives these facts.
 */
export const DATATYPES: readonly DatatypeInfo[] = [
  { oip: 'BOOL', ort: 'bool', onnx: 9, tf: 'DT_BOOL', json: 'bool', size: 1 },
  { oip: 'UINT8', ort: 'uint8', onnx: 2, tf: 'DT_UINT8', json: 'int', size: 1, min: 0, max: 255 },
  { oip: 'UINT16', ort: 'uint16', onnx: 4, tf: 'DT_UINT16', json: 'int', size: 2, min: 0, max: 65535 },
  { oip: 'UINT32', ort: 'uint32', onnx: 12, tf: 'DT_UINT32', json: 'int', size: 4, min: 0, max: 4294967295 },
  { oip: 'UINT64', ort: 'uint64', onnx: 13, tf: 'DT_UINT64', json: 'bigint', size: 8, min: 0n, max: 18446744073709551615n },
  { oip: 'INT8', ort: 'int8', onnx: 3, tf: 'DT_INT8', json: 'int', size: 1, min: -128, max: 127 },
  { oip: 'INT16', ort: 'int16', onnx: 5, tf: 'DT_INT16', json: 'int', size: 2, min: -32768, max: 32767 },
  { oip: 'INT32', ort: 'int32', onnx: 6, tf: 'DT_INT32', json: 'int', size: 4, min: -2147483648, max: 2147483647 },
  {
    oip: 'INT64', ort: 'int64', onnx: 7, tf: 'DT_INT64', json: 'bigint', size: 8,
    min: -9223372036854775808n, max: 9223372036854775807n,
  },
  { oip: 'FP16', ort: 'float16', onnx: 10, tf: 'DT_HALF', json: 'half', size: 2 },
  { oip: 'FP32', ort: 'float32', onnx: 1, tf: 'DT_FLOAT', json: 'float', size: 4 },
  { oip: 'FP64', ort: 'float64', onnx: 11, tf: 'DT_DOUBLE', json: 'float', size: 8 },
  { oip: 'BYTES', ort: 'string', onnx: 8, tf: 'DT_STRING', json: 'string' },
];

const BY_OIP = new Map<string, DatatypeInfo>(DATATYPES.map((d) => [d.oip, d]));
const BY_ORT = new Map<string, DatatypeInfo>(DATATYPES.map((d) => [d.ort, d]));
const BY_ONNX = new Map<number, DatatypeInfo>(DATATYPES.map((d) => [d.onnx, d]));

/** ONNX element types onnxruntime-node cannot carry across its JS boundary, by enum value. */
export const UNCARRIABLE_ONNX_TYPES: ReadonlyMap<number, string> = new Map([
  [0, 'UNDEFINED'],
  [14, 'COMPLEX64'],
  [15, 'COMPLEX128'],
  [16, 'BFLOAT16'],
  [17, 'FLOAT8E4M3FN'],
  [18, 'FLOAT8E4M3FNUZ'],
  [19, 'FLOAT8E5M2'],
  [20, 'FLOAT8E5M2FNUZ'],
  [21, 'UINT4'],
  [22, 'INT4'],
  [23, 'FLOAT4E2M1'],
  [24, 'FLOAT8E8M0'],
  [25, 'UINT2'],
  [26, 'INT2'],
]);

export function byOip(name: string): DatatypeInfo | undefined {
  return BY_OIP.get(name);
}

export function byOrt(type: string): DatatypeInfo | undefined {
  return BY_ORT.get(type);
}

export function byOnnx(elemType: number): DatatypeInfo | undefined {
  return BY_ONNX.get(elemType);
}

/** The accepted datatype names, for error messages. */
export const OIP_NAMES = DATATYPES.map((d) => d.oip).join(', ');
