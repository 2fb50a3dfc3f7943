import {
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { ServiceUnavailableError } from '../errors';
import { collectYoungGarbage } from '../runtime/gc';
import { sha256File } from './hash';

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

/** The local side of a download failed (a full or failing disk), not S3. */
export class LocalWriteError extends Error {
  override readonly name = 'LocalWriteError';
}

/**
 * An answer whose body broke off, stalled, or came shorter or longer than promised. The SDK
 * retries a request that fails before its answer, never a body, so a caller may try once more.
 */
export class TransferError extends ServiceUnavailableError {}

/** Reads of a JSON object: one more when the body broke off or did not parse. */
const JSON_ATTEMPTS = 2;
/** Bytes written to disk between minor collections during a download (see downloadToFile). */
const YOUNG_COLLECTION_BYTES = 2 * 1024 * 1024;

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

  /**
   * Reads a JSON object, or `undefined` if the key does not exist. A body that broke off or does
   * not parse is read once more before it is a {@link ServiceUnavailableError}.
   */
  async getJson(key: string): Promise<unknown> {
    for (let attempt = 1; ; attempt++) {
      let bytes: Buffer;
      try {
        bytes = await this.getBytes(key);
      } catch (err) {
        if (isNotFound(err)) return undefined;
        if (err instanceof TransferError && attempt < JSON_ATTEMPTS) continue;
        throw err;
      }
      try {
        return JSON.parse(bytes.toString('utf8')) as unknown;
      } catch (err) {
        if (attempt < JSON_ATTEMPTS) continue;
        throw new ServiceUnavailableError(`storage holds invalid JSON at ${key}`, { cause: err });
      }
    }
  }

  /**
   * Reads a whole object into one buffer. A missing key rejects with S3's own error (test it with
   * {@link isNotFound}); large objects with a known size are fetched as parallel ranges.
   */
  async getBytes(key: string, options: GetBytesOptions = {}): Promise<Buffer> {
    const { expectedBytes } = options;
    if (expectedBytes === undefined) {
      const chunks: Buffer[] = [];
      await this.fetchInto(key, options, (chunk) => void chunks.push(Buffer.from(chunk)));
      return Buffer.concat(chunks);
    }
    const target = Buffer.allocUnsafe(expectedBytes);
    await this.fetchInto(key, options, (chunk, position) => void target.set(chunk, position));
    return target;
  }

  /**
   * Streams an object of known size into a file, hashing it on the way (parallel ranges are
   * written at their offsets and hashed afterwards). The object is never whole in memory.
   */
  async downloadToFile(key: string, path: string, options: GetBytesOptions & { expectedBytes: number }): Promise<string> {
    const handle = await open(path, 'w');
    const hash = createHash('sha256');
    let ranged = false;
    try {
      let sinceCollect = 0;
      ranged = await this.fetchInto(key, options, async (chunk, position, sequential) => {
        if (sequential) hash.update(chunk);
        await handle.write(chunk, 0, chunk.byteLength, position);
        // Written chunks are garbage at once; collected as they go, they never pile up into
        // heap the allocator keeps after the download (and the session then sits on top of).
        sinceCollect += chunk.byteLength;
        if (sinceCollect >= YOUNG_COLLECTION_BYTES) {
          sinceCollect = 0;
          collectYoungGarbage();
        }
      });
    } finally {
      await handle.close();
    }
    return ranged ? (await sha256File(path)).sha256 : hash.digest('hex');
  }

  /**
   * Fetches an object and hands its bytes to `sink` with their position; `sequential` is true
   * when the chunks arrive in order (one GET). Returns whether ranged GETs were used. A body
   * shorter or longer than the expected size is an error, never a whole object.
   */
  private async fetchInto(key: string, options: GetBytesOptions, sink: Sink): Promise<boolean> {
    const { expectedBytes, rangedThresholdBytes = Infinity } = options;
    if (expectedBytes !== undefined && expectedBytes >= rangedThresholdBytes) {
      await this.fetchRanges(key, expectedBytes, options.partBytes ?? 8 * 1024 * 1024, options.concurrency ?? 8, sink);
      return true;
    }
    try {
      const out = await this.s3.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
      if (expectedBytes !== undefined && out.ContentLength !== undefined && out.ContentLength !== expectedBytes) {
        (out.Body as { destroy?: () => void } | undefined)?.destroy?.(); // free the connection
        throw new ServiceUnavailableError(`storage holds ${out.ContentLength} bytes at ${key}, not the ${expectedBytes} expected`);
      }
      await drain(out.Body as AsyncIterable<Uint8Array> | undefined, key, 0, expectedBytes ?? out.ContentLength, sink, true);
      return false;
    } catch (err) {
      if (isNotFound(err) || err instanceof ServiceUnavailableError || err instanceof LocalWriteError) throw err;
      throw unavailable('GET', key, err);
    }
  }

  private async fetchRanges(key: string, size: number, partBytes: number, concurrency: number, sink: Sink): Promise<void> {
    let next = 0;
    let failure: { error: unknown } | undefined;
    const worker = async (): Promise<void> => {
      while (next < size && !failure) {
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
        await drain(out.Body as AsyncIterable<Uint8Array> | undefined, key, start, end + 1 - start, sink, false);
      }
    };
    // The first failure stops the other workers taking new ranges; every worker has ended before
    // it is thrown, so nothing is requested or written once the caller has discarded the target.
    const workers = Array.from({ length: Math.min(concurrency, Math.ceil(size / partBytes)) }, () =>
      worker().catch((err: unknown) => {
        failure ??= { error: err };
      }),
    );
    await Promise.all(workers);
    if (failure) throw failure.error;
  }

  /** Every key under `prefix`, across pages. */
  async listKeys(prefix: string): Promise<string[]> {
    return (await this.list(prefix)).map((o) => o.key);
  }

  /** Every object under `prefix`, across pages, with when S3 stored it. */
  async list(prefix: string): Promise<{ key: string; lastModified?: Date }[]> {
    const found: { key: string; lastModified?: Date }[] = [];
    let token: string | undefined;
    try {
      do {
        const out = await this.s3.send(
          new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, ContinuationToken: token }),
        );
        for (const item of out.Contents ?? []) if (item.Key) found.push({ key: item.Key, lastModified: item.LastModified });
        token = out.IsTruncated ? out.NextContinuationToken : undefined;
      } while (token);
    } catch (err) {
      if (isNotFound(err)) return [];
      throw unavailable('LIST', prefix, err);
    }
    return found;
  }

  /** An object's ETag, size and time stored, or `undefined` if the key does not exist. */
  async head(key: string): Promise<{ etag: string; bytes: number; lastModified?: Date } | undefined> {
    try {
      const out = await this.s3.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      return { etag: (out.ETag ?? '').replace(/"/g, ''), bytes: out.ContentLength ?? 0, lastModified: out.LastModified };
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw unavailable('HEAD', key, err);
    }
  }

  /**
   * A presigned URL for one GET or PUT of `key`, valid for `expiresInSeconds` (and no longer
   * than the credentials that signed it).
   */
  async presignedUrl(method: 'GET' | 'PUT', key: string, expiresInSeconds: number): Promise<string> {
    const command = method === 'GET' ? new GetObjectCommand({ Bucket: this.bucket, Key: key }) : new PutObjectCommand({ Bucket: this.bucket, Key: key });
    return getSignedUrl(this.s3, command, { expiresIn: expiresInSeconds });
  }

  /**
   * Writes an object. Used by publishing, and by the inference path for staged tensors only. With `ifAbsent`
   * the write is conditional (S3's If-None-Match: *) and resolves `false` when the key exists.
   */
  async put(key: string, body: Uint8Array | string, contentType: string, options: { ifAbsent?: boolean } = {}): Promise<boolean> {
    try {
      await this.s3.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: key,
          Body: body,
          ContentType: contentType,
          ...(options.ifAbsent ? { IfNoneMatch: '*' } : {}),
        }),
      );
      return true;
    } catch (err) {
      const status = (err as S3ErrorShape | undefined)?.$metadata?.httpStatusCode;
      if (options.ifAbsent && (status === 412 || status === 409)) return false;
      throw unavailable('PUT', key, err);
    }
  }
}

/** Receives an object's bytes: `position` is the offset of `chunk` within the object. */
type Sink = (chunk: Uint8Array, position: number, sequential: boolean) => void | Promise<void>;

/**
 * Feeds an S3 body to a sink, starting at `offset`. With a known length, a body that is shorter
 * or longer than promised is an error (a truncated transfer never passes for a whole object).
 */
async function drain(
  body: AsyncIterable<Uint8Array> | undefined,
  key: string,
  offset: number,
  length: number | undefined,
  sink: Sink,
  sequential: boolean,
): Promise<void> {
  if (!body) throw new TransferError(`storage returned no body for ${key}`);
  let received = 0;
  try {
    for await (const chunk of body) {
      if (length !== undefined && received + chunk.byteLength > length) {
        throw new TransferError(`storage sent more than the ${length} bytes expected for ${key}`);
      }
      try {
        await sink(chunk, offset + received, sequential);
      } catch (err) {
        throw new LocalWriteError(`could not store bytes of ${key} locally: ${(err as Error).message}`, { cause: err });
      }
      received += chunk.byteLength;
    }
  } catch (err) {
    if (err instanceof ServiceUnavailableError || err instanceof LocalWriteError) throw err;
    // The connection was reset, closed early or timed out mid-body: S3's fault, never the disk's.
    const name = (err as Error | undefined)?.name ?? 'error';
    throw new TransferError(`storage broke off ${key} after ${offset + received} bytes (${name})`, { cause: err });
  }
  if (length !== undefined && received !== length) {
    throw new TransferError(`storage sent ${received} of ${length} bytes for ${key}`);
  }
}
