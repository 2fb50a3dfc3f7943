/**
 * Triton's binary tensor data extension, written in the test straight from its specification
 * (../shared/specs/triton_extension_binary_data.md) and independently of lib/protocol: a JSON
 * header of `Inference-Header-Content-Length` bytes, then each binary tensor in order;
 * little-endian, row-major; BOOL one byte; FP16 its binary16 bits; BYTES a 4-byte
 * little-endian length and then the bytes, per element.
 */

/** A value of a tensor element as the test writes it: numbers, bigints, booleans, strings. */
export type WireValue = number | bigint | boolean | string;

const WIDTH: Record<string, number> = {
  BOOL: 1, UINT8: 1, INT8: 1, UINT16: 2, INT16: 2, FP16: 2, UINT32: 4, INT32: 4, FP32: 4, UINT64: 8, INT64: 8, FP64: 8,
};

/** The binary form of `values` (FP16 values are given as their 16-bit patterns). */
export function encodeElements(datatype: string, values: readonly WireValue[]): Buffer {
  if (datatype === 'BYTES') {
    return Buffer.concat(
      values.map((v) => {
        const text = Buffer.from(String(v), 'utf8');
        const length = Buffer.alloc(4);
        length.writeUInt32LE(text.byteLength);
        return Buffer.concat([length, text]);
      }),
    );
  }
  const width = WIDTH[datatype];
  if (!width) throw new Error(`no width for ${datatype}`);
  const out = Buffer.alloc(values.length * width);
  values.forEach((v, i) => {
    const at = i * width;
    switch (datatype) {
      case 'BOOL': out.writeUInt8(v ? 1 : 0, at); break;
      case 'UINT8': out.writeUInt8(v as number, at); break;
      case 'INT8': out.writeInt8(v as number, at); break;
      case 'UINT16': case 'FP16': out.writeUInt16LE(v as number, at); break;
      case 'INT16': out.writeInt16LE(v as number, at); break;
      case 'UINT32': out.writeUInt32LE(v as number, at); break;
      case 'INT32': out.writeInt32LE(v as number, at); break;
      case 'UINT64': out.writeBigUInt64LE(BigInt(v), at); break;
      case 'INT64': out.writeBigInt64LE(BigInt(v), at); break;
      case 'FP32': out.writeFloatLE(v as number, at); break;
      case 'FP64': out.writeDoubleLE(v as number, at); break;
    }
  });
  return out;
}

/** Element values of a binary tensor (FP16 as bit patterns, 64-bit integers as bigints). */
export function decodeElements(datatype: string, bytes: Buffer): WireValue[] {
  if (datatype === 'BYTES') {
    const out: string[] = [];
    for (let at = 0; at < bytes.byteLength; ) {
      const n = bytes.readUInt32LE(at);
      out.push(bytes.subarray(at + 4, at + 4 + n).toString('utf8'));
      at += 4 + n;
    }
    return out;
  }
  const width = WIDTH[datatype] as number;
  const out: WireValue[] = [];
  for (let at = 0; at < bytes.byteLength; at += width) {
    switch (datatype) {
      case 'BOOL': out.push(bytes.readUInt8(at) === 1); break;
      case 'UINT8': out.push(bytes.readUInt8(at)); break;
      case 'INT8': out.push(bytes.readInt8(at)); break;
      case 'UINT16': case 'FP16': out.push(bytes.readUInt16LE(at)); break;
      case 'INT16': out.push(bytes.readInt16LE(at)); break;
      case 'UINT32': out.push(bytes.readUInt32LE(at)); break;
      case 'INT32': out.push(bytes.readInt32LE(at)); break;
      case 'UINT64': out.push(bytes.readBigUInt64LE(at)); break;
      case 'INT64': out.push(bytes.readBigInt64LE(at)); break;
      case 'FP32': out.push(bytes.readFloatLE(at)); break;
      case 'FP64': out.push(bytes.readDoubleLE(at)); break;
    }
  }
  return out;
}

/** A binary request body: the JSON header, then the tensors; and the header's length in bytes. */
export function binaryBody(header: unknown, tensors: readonly Buffer[]): { body: Buffer; headerLength: number } {
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  return { body: Buffer.concat([json, ...tensors]), headerLength: json.byteLength };
}

export interface BinaryOutput {
  name: string;
  datatype: string;
  shape: number[];
  data?: unknown[];
  parameters?: Record<string, unknown>;
  /** The output's binary data, when it came binary. */
  bytes?: Buffer;
}

/** Splits a binary response: the JSON header, then each binary output's bytes in order. */
export function parseBinaryResponse(body: Buffer, headerLength: number): { json: Record<string, unknown>; outputs: BinaryOutput[] } {
  const json = JSON.parse(body.subarray(0, headerLength).toString('utf8')) as Record<string, unknown>;
  const outputs = json.outputs as BinaryOutput[];
  let at = headerLength;
  for (const o of outputs) {
    const size = o.parameters?.binary_data_size;
    if (typeof size === 'number') {
      o.bytes = body.subarray(at, at + size);
      at += size;
    }
  }
  if (at !== body.byteLength) throw new Error(`${body.byteLength - at} bytes left after the binary outputs`);
  return { json, outputs };
}
