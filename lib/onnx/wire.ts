/**
 * Protocol-buffer wire format, the small part ONNX needs: a forward-only reader that can skip
 * what it does not care about, and an append-only writer.
 */

export const WIRE_VARINT = 0;
export const WIRE_I64 = 1;
export const WIRE_LEN = 2;
export const WIRE_I32 = 5;

/** Thrown for bytes that are not a well-formed protobuf message. */
export class WireFormatError extends Error {
  override readonly name = 'WireFormatError';
}

export interface Field {
  number: number;
  wireType: number;
}

/**
 * Where a reader's bytes come from: memory, or a file read through a small window, so that a
 * large model can be outlined without holding it (the reader skips tensor payloads).
 */
export interface ByteSource {
  readonly length: number;
  byteAt(pos: number): number;
  /** Bytes [start, end), copied or shared. */
  slice(start: number, end: number): Uint8Array;
}

/** A {@link ByteSource} over bytes in memory. */
export function memorySource(bytes: Uint8Array): ByteSource {
  return {
    length: bytes.byteLength,
    byteAt: (pos) => bytes[pos] as number,
    slice: (start, end) => bytes.subarray(start, end),
  };
}

export class WireReader {
  pos: number;
  readonly src: ByteSource;
  readonly end: number;

  constructor(source: ByteSource | Uint8Array, start = 0, end?: number) {
    this.src = source instanceof Uint8Array ? memorySource(source) : source;
    this.pos = start;
    this.end = end ?? this.src.length;
  }

  get done(): boolean {
    return this.pos >= this.end;
  }

  /** A varint as a JS number; exact up to 2^53, which covers every length and enum. */
  varint(): number {
    let result = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw new WireFormatError('truncated varint');
      const byte = this.src.byteAt(this.pos++);
      result += (byte & 0x7f) * scale;
      if (byte < 0x80) return result;
      scale *= 128;
    }
    throw new WireFormatError('varint longer than 10 bytes');
  }

  /** A varint as a signed 64-bit integer (ONNX int64 fields). */
  int64(): bigint {
    let result = 0n;
    let shift = 0n;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw new WireFormatError('truncated varint');
      const byte = this.src.byteAt(this.pos++);
      result |= BigInt(byte & 0x7f) << shift;
      if (byte < 0x80) return BigInt.asIntN(64, result);
      shift += 7n;
    }
    throw new WireFormatError('varint longer than 10 bytes');
  }

  tag(): Field {
    const key = this.varint();
    const field = { number: Math.floor(key / 8), wireType: key % 8 };
    if (field.number === 0) throw new WireFormatError('field number 0');
    return field;
  }

  /** The bounds of a length-delimited field's payload; the reader moves past it. */
  lengthDelimited(): { start: number; end: number } {
    const length = this.varint();
    const start = this.pos;
    const end = start + length;
    if (end > this.end) throw new WireFormatError(`length ${length} runs past the end of its message`);
    this.pos = end;
    return { start, end };
  }

  /** A sub-reader over a length-delimited field's payload. */
  message(): WireReader {
    const { start, end } = this.lengthDelimited();
    return new WireReader(this.src, start, end);
  }

  string(): string {
    const { start, end } = this.lengthDelimited();
    const bytes = this.src.slice(start, end);
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8');
  }

  skip(wireType: number): void {
    switch (wireType) {
      case WIRE_VARINT:
        this.varint();
        return;
      case WIRE_I64:
        this.advance(8);
        return;
      case WIRE_LEN:
        this.lengthDelimited();
        return;
      case WIRE_I32:
        this.advance(4);
        return;
      default:
        throw new WireFormatError(`unsupported wire type ${wireType}`);
    }
  }

  private advance(n: number): void {
    if (this.pos + n > this.end) throw new WireFormatError('truncated fixed-width field');
    this.pos += n;
  }
}

/**
 * Appends fields to a list of parts and concatenates them once, in finish(). A nested message's
 * parts join its parent's list behind the length prefix, so a tensor's bytes are copied only
 * once however deep the message that holds them.
 */
export class WireWriter {
  private chunks: number[] = [];
  private parts: Uint8Array[] = [];
  /** Bytes in `parts` (flushed chunks included). */
  private size = 0;

  private flushBytes(): void {
    if (this.chunks.length) {
      this.parts.push(Uint8Array.from(this.chunks));
      this.size += this.chunks.length;
      this.chunks = [];
    }
  }

  private rawVarint(value: bigint): void {
    let v = BigInt.asUintN(64, value);
    while (v >= 0x80n) {
      this.chunks.push(Number(v & 0x7fn) | 0x80);
      v >>= 7n;
    }
    this.chunks.push(Number(v));
  }

  private key(field: number, wireType: number): void {
    this.rawVarint(BigInt(field * 8 + wireType));
  }

  /** The length prefix, then the parts as they are (not copied). */
  private lengthDelimited(field: number, parts: readonly Uint8Array[], length: number): this {
    this.key(field, WIRE_LEN);
    this.rawVarint(BigInt(length));
    this.flushBytes();
    for (const part of parts) this.parts.push(part);
    this.size += length;
    return this;
  }

  varint(field: number, value: number | bigint): this {
    this.key(field, WIRE_VARINT);
    this.rawVarint(BigInt(value));
    return this;
  }

  float(field: number, value: number): this {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, value, true);
    this.key(field, WIRE_I32);
    this.chunks.push(...b);
    return this;
  }

  bytes(field: number, value: Uint8Array): this {
    return this.lengthDelimited(field, [value], value.byteLength);
  }

  string(field: number, value: string): this {
    return this.bytes(field, Buffer.from(value, 'utf8'));
  }

  message(field: number, build: (w: WireWriter) => void): this {
    const inner = new WireWriter();
    build(inner);
    inner.flushBytes();
    return this.lengthDelimited(field, inner.parts, inner.size);
  }

  packedVarints(field: number, values: readonly (number | bigint)[]): this {
    const inner = new WireWriter();
    for (const v of values) inner.rawVarint(BigInt(v));
    inner.flushBytes();
    return this.lengthDelimited(field, inner.parts, inner.size);
  }

  packedFloats(field: number, values: readonly number[]): this {
    const b = new Uint8Array(values.length * 4);
    const view = new DataView(b.buffer);
    values.forEach((v, i) => view.setFloat32(i * 4, v, true));
    return this.bytes(field, b);
  }

  finish(): Uint8Array {
    this.flushBytes();
    return Buffer.concat(this.parts, this.size);
  }
}
