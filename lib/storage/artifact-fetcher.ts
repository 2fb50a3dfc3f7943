import { ServiceUnavailableError } from '../errors';
import { DiskCache, sha256Hex } from './disk-cache';
import { isNotFound, type ObjectStore } from './object-store';

/** What a manifest says about the artifact to fetch. */
export interface ArtifactRef {
  key: string;
  sha256: string;
  bytes: number;
}

export interface FetchedArtifact {
  bytes: Buffer;
  /** Where the bytes came from this time. */
  source: 'disk' | 's3';
  /** Bytes transferred from S3 (0 on a disk hit), including a discarded corrupt transfer. */
  downloadedBytes: number;
  /** False when the disk tier could not keep a copy (full /tmp); serving goes on from memory. */
  cachedOnDisk: boolean;
}

export interface ArtifactFetcherOptions {
  rangedThresholdBytes: number;
  partBytes: number;
  concurrency: number;
}

/**
 * Gets verified artifact bytes: from the disk cache when it holds a copy whose hash is right,
 * otherwise from S3. An S3 copy that does not match the manifest's SHA-256 is discarded and
 * fetched once more; a second mismatch is a 503 and nothing is kept.
 */
export class ArtifactFetcher {
  constructor(
    private readonly store: ObjectStore,
    private readonly disk: DiskCache,
    private readonly options: ArtifactFetcherOptions,
  ) {}

  async fetch(ref: ArtifactRef): Promise<FetchedArtifact> {
    const cached = await this.disk.read(ref.sha256);
    if (cached) return { bytes: cached, source: 'disk', downloadedBytes: 0, cachedOnDisk: true };

    let downloadedBytes = 0;
    for (let attempt = 1; attempt <= 2; attempt++) {
      let bytes: Buffer;
      try {
        bytes = await this.store.getBytes(ref.key, {
          expectedBytes: ref.bytes,
          rangedThresholdBytes: this.options.rangedThresholdBytes,
          partBytes: this.options.partBytes,
          concurrency: this.options.concurrency,
        });
      } catch (err) {
        if (isNotFound(err)) {
          throw new ServiceUnavailableError(`artifact ${ref.key} is named by its manifest but missing from storage`, {
            cause: err,
          });
        }
        if (attempt === 2 || !(err instanceof ServiceUnavailableError)) throw err;
        continue;
      }
      downloadedBytes += bytes.byteLength;
      if (sha256Hex(bytes) === ref.sha256) {
        const cachedOnDisk = await this.disk.write(ref.sha256, bytes);
        return { bytes, source: 's3', downloadedBytes, cachedOnDisk };
      }
    }
    throw new ServiceUnavailableError(
      `artifact ${ref.key} failed its integrity check twice (sha256 does not match the manifest); nothing was cached`,
      { retryAfterSeconds: 5 },
    );
  }
}
