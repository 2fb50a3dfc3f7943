import { WIRE_I32, WIRE_I64, WIRE_LEN, WIRE_VARINT, WireFormatError, WireReader } from './wire';

/**
 * A protobuf message as a list of fields in wire order, each kept with its original bytes.
 * Nested messages are decoded on demand; a message nobody touched re-encodes to exactly the
 * bytes it was read from, so a model round-trips byte for byte, fields unknown to this code
 * (newer IR versions) included. Edits replace, insert or remove whole fields.
 */
export class ProtoMessage {
  constructor(readonly fields: ProtoField[] = []) {}

  /** Decodes one level; nested messages stay raw until {@link ProtoField.message} is called. */
  static decode(bytes: Uint8Array): ProtoMessage {
    const r = new WireReader(bytes);
    const fields: ProtoField[] = [];
    while (!r.done) {
      const keyStart = r.pos;
      const { number, wireType } = r.tag();
      const valueStart = r.pos;
      r.skip(wireType);
      fields.push(new ProtoField(number, wireType, bytes.subarray(keyStart, valueStart), bytes.subarray(valueStart, r.pos)));
    }
    return new ProtoMessage(fields);
  }

  all(number: number): ProtoField[] {
    return this.fields.filter((f) => f.number === number);
  }

  first(number: number): ProtoField | undefined {
    return this.fields.find((f) => f.number === number);
  }

  string(number: number): string | undefined {
    return this.first(number)?.asString();
  }

  strings(number: number): string[] {
    return this.all(number).map((f) => f.asString());
  }

  int(number: number): number | undefined {
    return this.first(number)?.asInt();
  }

  messages(number: number): ProtoMessage[] {
    return this.all(number).map((f) => f.message());
  }

  /** Replaces every occurrence of `number` by `replacement` (at the first one's place, or at the end). */
  set(number: number, replacement: ProtoField[]): void {
    const at = this.fields.findIndex((f) => f.number === number);
    const rest = this.fields.filter((f) => f.number !== number);
    rest.splice(at < 0 ? rest.length : at, 0, ...replacement);
    this.fields.splice(0, this.fields.length, ...rest);
  }

  remove(field: ProtoField): void {
    const i = this.fields.indexOf(field);
    if (i >= 0) this.fields.splice(i, 1);
  }

  /**
   * The message's bytes, written once into one buffer of the exact size: no per-level copies,
   * so re-encoding a large model holds the tree and its encoding, nothing more.
   */
  encode(): Uint8Array {
    const out = Buffer.allocUnsafe(this.encodedLength());
    const end = this.writeTo(out, 0);
    if (end !== out.byteLength) throw new Error(`encoded ${end} bytes, expected ${out.byteLength}`);
    return out;
  }

  /** Bytes {@link encode} writes. */
  encodedLength(): number {
    let n = 0;
    for (const f of this.fields) n += f.encodedLength();
    return n;
  }

  /** Writes the encoding at `offset`; returns the offset after it. */
  writeTo(out: Uint8Array, offset: number): number {
    let at = offset;
    for (const f of this.fields) at = f.writeTo(out, at);
    return at;
  }
}

/** One field: its key bytes and value bytes as read, or a decoded message that may have changed. */
export class ProtoField {
  private decoded?: ProtoMessage;

  /**
   * `valueBytes` is the value as on the wire; a length-delimited field built here may instead
   * keep its length prefix there and its payload apart (`payloadBytes`), so building a field
   * from a large array does not copy it.
   */
  constructor(
    readonly number: number,
    readonly wireType: number,
    private readonly keyBytes: Uint8Array,
    private valueBytes: Uint8Array,
    private readonly payloadBytes?: Uint8Array,
  ) {}

  /** The nested message of a length-delimited field (decoded once, then shared). */
  message(): ProtoMessage {
    if (this.wireType !== WIRE_LEN) throw new WireFormatError(`field ${this.number} is not a message`);
    this.decoded ??= ProtoMessage.decode(this.payload());
    return this.decoded;
  }

  /** The payload of a length-delimited field (without its length prefix). */
  payload(): Uint8Array {
    if (this.payloadBytes) return this.payloadBytes;
    const r = new WireReader(this.valueBytes);
    const { start, end } = r.lengthDelimited();
    return this.valueBytes.subarray(start, end);
  }

  asString(): string {
    return Buffer.from(this.payload()).toString('utf8');
  }

  asInt(): number {
    if (this.wireType !== WIRE_VARINT) throw new WireFormatError(`field ${this.number} is not a varint`);
    return Number(new WireReader(this.valueBytes).int64());
  }

  asBigInt(): bigint {
    return new WireReader(this.valueBytes).int64();
  }

  asFloat(): number {
    if (this.wireType !== WIRE_I32) throw new WireFormatError(`field ${this.number} is not a fixed32`);
    return Buffer.from(this.valueBytes).readFloatLE(0);
  }

  encodedLength(): number {
    if (this.decoded) {
      const body = this.decoded.encodedLength();
      return this.keyBytes.byteLength + varintLength(body) + body;
    }
    return this.keyBytes.byteLength + this.valueBytes.byteLength + (this.payloadBytes?.byteLength ?? 0);
  }

  writeTo(out: Uint8Array, offset: number): number {
    out.set(this.keyBytes, offset);
    let at = offset + this.keyBytes.byteLength;
    if (this.decoded) {
      const length = varintBytes(BigInt(this.decoded.encodedLength()));
      out.set(length, at);
      return this.decoded.writeTo(out, at + length.byteLength);
    }
    out.set(this.valueBytes, at);
    at += this.valueBytes.byteLength;
    if (this.payloadBytes) {
      out.set(this.payloadBytes, at);
      at += this.payloadBytes.byteLength;
    }
    return at;
  }

  static varint(number: number, value: number | bigint): ProtoField {
    return new ProtoField(number, WIRE_VARINT, keyOf(number, WIRE_VARINT), varintBytes(BigInt(value)));
  }

  /** A length-delimited field holding `value` itself (not a copy): do not change it afterwards. */
  static bytes(number: number, value: Uint8Array): ProtoField {
    return new ProtoField(number, WIRE_LEN, keyOf(number, WIRE_LEN), varintBytes(BigInt(value.byteLength)), value);
  }

  static string(number: number, value: string): ProtoField {
    return ProtoField.bytes(number, Buffer.from(value, 'utf8'));
  }

  static message(number: number, message: ProtoMessage): ProtoField {
    const field = new ProtoField(number, WIRE_LEN, keyOf(number, WIRE_LEN), new Uint8Array(0));
    field.decoded = message;
    return field;
  }

  static float(number: number, value: number): ProtoField {
    const b = Buffer.alloc(4);
    b.writeFloatLE(value, 0);
    return new ProtoField(number, WIRE_I32, keyOf(number, WIRE_I32), b);
  }

  static fixed64(number: number, value: Uint8Array): ProtoField {
    return new ProtoField(number, WIRE_I64, keyOf(number, WIRE_I64), value);
  }
}

function keyOf(number: number, wireType: number): Uint8Array {
  return varintBytes(BigInt(number * 8 + wireType));
}

/** Bytes of the varint encoding of a non-negative length. */
function varintLength(value: number): number {
  let n = 1;
  for (let v = value; v >= 0x80; v = Math.floor(v / 128)) n++;
  return n;
}

/** A value's varint encoding (two's complement for negatives, as protobuf int64 does). */
export function varintBytes(value: bigint): Uint8Array {
  let v = BigInt.asUintN(64, value);
  const out: number[] = [];
  while (v >= 0x80n) {
    out.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  }
  out.push(Number(v));
  return Uint8Array.from(out);
}
