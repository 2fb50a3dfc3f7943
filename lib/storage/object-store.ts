import {
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { ServiceUnavailableError } from '../errors';

/** Options for {@link ObjectStore.getBytes}. */
export interface GetBytesOptions {
  /** The size the caller expects; needed for ranged GETs and checked against S3's answer. */
  expectedBytes?: number;
  /** Objects at least this large are fetched in parallel ranges. */
  rangedThresholdBytes?: number;
  partBytes?: number;
  concurrency?: number;
}

interface S3ErrorShape {
  name?: string;
  Code?: string;
  $metadata?: { httpStatusCode?: number };
}

/** True when S3 says the key (or bucket) does not exist. */
export function isNotFound(err: unknown): boolean {
  const e = err as S3ErrorShape | undefined;
  return e?.name === 'NoSuchKey' || e?.name === 'NotFound' || e?.Code === 'NoSuchKey' || e?.$metadata?.httpStatusCode === 404;
}

/** A failure of S3 itself, as the client should see it: 503 with Retry-After. */
function unavailable(action: string, key: string, err: unknown): ServiceUnavailableError {
  const name = (err as S3ErrorShape | undefined)?.name ?? 'error';
  return new ServiceUnavailableError(`storage unavailable: ${action} ${key} failed (${name})`, { cause: err });
}

/**
 * The bucket, seen through a client handed in by the composition root. Missing keys come back
 * as `undefined`; every other S3 failure becomes a {@link ServiceUnavailableError}.
 */
export class ObjectStore {
  constructor(
    private readonly s3: S3Client,
    readonly bucket: string,
  ) {}

  /** Reads a JSON object, or `undefined` if the key does not exist. */
  async getJson(key: string): Promise<unknown> {
    const bytes = await this.getBytes(key).catch((err: unknown) => {
      if (isNotFound(err)) return undefined;
      throw err;
    });
    if (bytes === undefined) return undefined;
    try {
      return JSON.parse(bytes.toString('utf8')) as unknown;
    } catch (err) {
      throw new ServiceUnavailableError(`storage holds invalid JSON at ${key}`, { cause: err });
    }
  }

  /**
   * Reads a whole object into one buffer. A missing key rejects with S3's own error (test it with
   * {@link isNotFound}); large objects with a known size are fetched as parallel ranges.
   */
  async getBytes(key: string, options: GetBytesOptions = {}): Promise<Buffer> {
    const { expectedBytes, rangedThresholdBytes = Infinity } = options;
    if (expectedBytes !== undefined && expectedBytes >= rangedThresholdBytes) {
      return this.getRanged(key, expectedBytes, options.partBytes ?? 8 * 1024 * 1024, options.concurrency ?? 8);
    }
    try {
      const out = await this.s3.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
      const length = out.ContentLength ?? expectedBytes;
      return await readBody(out.Body as AsyncIterable<Uint8Array> | undefined, length, key);
    } catch (err) {
      if (isNotFound(err) || err instanceof ServiceUnavailableError) throw err;
      throw unavailable('GET', key, err);
    }
  }

  private async getRanged(key: string, size: number, partBytes: number, concurrency: number): Promise<Buffer> {
    const target = Buffer.allocUnsafe(size);
    let next = 0;
    let failed = false;
    const worker = async (): Promise<void> => {
      while (next < size && !failed) {
        const start = next;
        const end = Math.min(size, start + partBytes) - 1;
        next = end + 1;
        let out;
        try {
          out = await this.s3.send(
            new GetObjectCommand({ Bucket: this.bucket, Key: key, Range: `bytes=${start}-${end}` }),
          );
        } catch (err) {
          if (isNotFound(err)) throw err;
          throw unavailable('GET (range)', key, err);
        }
        const part = target.subarray(start, end + 1);
        await readBody(out.Body as AsyncIterable<Uint8Array> | undefined, part.length, key, part);
      }
    };
    const workers = Array.from({ length: Math.min(concurrency, Math.ceil(size / partBytes)) }, () =>
      worker().catch((err: unknown) => {
        failed = true; // the other workers stop taking new ranges
        throw err;
      }),
    );
    await Promise.all(workers);
    return target;
  }

  /** Every key under `prefix`, across pages. */
  async listKeys(prefix: string): Promise<string[]> {
    const found: string[] = [];
    let token: string | undefined;
    try {
      do {
        const out = await this.s3.send(
          new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, ContinuationToken: token }),
        );
        for (const item of out.Contents ?? []) if (item.Key) found.push(item.Key);
        token = out.IsTruncated ? out.NextContinuationToken : undefined;
      } while (token);
    } catch (err) {
      if (isNotFound(err)) return [];
      throw unavailable('LIST', prefix, err);
    }
    return found;
  }

  /** Writes an object. Used by publishing; the inference path never writes. */
  async put(key: string, body: Uint8Array | string, contentType: string): Promise<void> {
    try {
      await this.s3.send(new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: body, ContentType: contentType }));
    } catch (err) {
      throw unavailable('PUT', key, err);
    }
  }
}

/**
 * Drains an S3 body into one buffer. With a known length the buffer is allocated once and a
 * body that is shorter or longer than promised is an error (a truncated transfer never
 * passes for a whole object).
 */
async function readBody(
  body: AsyncIterable<Uint8Array> | undefined,
  length: number | undefined,
  key: string,
  into?: Buffer,
): Promise<Buffer> {
  if (!body) throw new ServiceUnavailableError(`storage returned no body for ${key}`);
  if (length === undefined) {
    const chunks: Buffer[] = [];
    for await (const chunk of body) chunks.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    return Buffer.concat(chunks);
  }
  const target = into ?? Buffer.allocUnsafe(length);
  let offset = 0;
  for await (const chunk of body) {
    if (offset + chunk.byteLength > length) {
      throw new ServiceUnavailableError(`storage sent more than the ${length} bytes expected for ${key}`);
    }
    target.set(chunk, offset);
    offset += chunk.byteLength;
  }
  if (offset !== length) {
    throw new ServiceUnavailableError(`storage sent ${offset} of ${length} bytes for ${key}`);
  }
  return target;
}
