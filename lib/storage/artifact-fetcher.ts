import { ServiceUnavailableError } from '../errors';
import type { DiskCache } from './disk-cache';
import { sha256Hex } from './hash';
import { isNotFound, type ObjectStore } from './object-store';

/** What a manifest says about the artifact to fetch. */
export interface ArtifactRef {
  key: string;
  sha256: string;
  bytes: number;
}

/** A verified artifact: a file in the disk cache, or bytes in memory when the disk cannot hold it. */
export type ArtifactLocation = { path: string } | { bytes: Uint8Array };

export interface FetchedArtifact {
  location: ArtifactLocation;
  /** Where the bytes came from this time. */
  source: 'disk' | 's3';
  /** Bytes transferred from S3 (0 on a disk hit), including a discarded corrupt transfer. */
  downloadedBytes: number;
  /** Ends the hold on the cached file (it may be evicted again); call once the session exists. */
  release: () => void;
}

export interface ArtifactFetcherOptions {
  rangedThresholdBytes: number;
  partBytes: number;
  concurrency: number;
}

const ATTEMPTS = 2;

function integrityError(ref: ArtifactRef): ServiceUnavailableError {
  return new ServiceUnavailableError(
    `artifact ${ref.key} failed its integrity check twice (sha256 does not match the manifest); nothing was cached`,
    { retryAfterSeconds: 5 },
  );
}

/**
 * Gets a verified artifact: from the disk cache when it holds a copy whose hash is right,
 * otherwise from S3, streamed to a temporary file and hashed on the way, then renamed into the
 * cache. A copy that does not match the manifest's SHA-256 is discarded and fetched once more;
 * a second mismatch is a 503 and nothing is kept. When the disk cannot take the file (too big
 * for the cache, a full or failing /tmp) the artifact is fetched into memory instead.
 */
export class ArtifactFetcher {
  constructor(
    private readonly store: ObjectStore,
    private readonly disk: DiskCache,
    private readonly options: ArtifactFetcherOptions,
  ) {}

  async fetch(ref: ArtifactRef): Promise<FetchedArtifact> {
    const cached = await this.disk.verify(ref.sha256);
    if (cached) {
      return { location: { path: cached }, source: 'disk', downloadedBytes: 0, release: this.disk.pin(ref.sha256) };
    }
    const viaDisk = await this.fetchToDisk(ref);
    if (viaDisk) return viaDisk;
    return this.fetchToMemory(ref);
  }

  /** Undefined when the disk tier cannot be used; S3 and integrity failures are thrown. */
  private async fetchToDisk(ref: ArtifactRef): Promise<FetchedArtifact | undefined> {
    let downloadedBytes = 0;
    for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
      const reservation = await this.disk.reserve(ref.bytes);
      if (!reservation) return undefined;
      let sha256: string;
      try {
        sha256 = await this.store.downloadToFile(ref.key, reservation.tempPath, { ...this.request(ref) });
      } catch (err) {
        await this.disk.abandon(reservation);
        if (isNotFound(err)) throw missing(ref, err);
        if (!(err instanceof ServiceUnavailableError)) return undefined; // the filesystem failed, not S3
        if (attempt === ATTEMPTS) throw err;
        continue;
      }
      downloadedBytes += ref.bytes;
      if (sha256 !== ref.sha256) {
        await this.disk.abandon(reservation);
        continue;
      }
      // Pin before the rename publishes the file, so no concurrent reservation can evict it.
      const release = this.disk.pin(ref.sha256);
      try {
        const path = await this.disk.commit(reservation, sha256);
        return { location: { path }, source: 's3', downloadedBytes, release };
      } catch {
        release();
        await this.disk.abandon(reservation);
        return undefined;
      }
    }
    throw integrityError(ref);
  }

  private async fetchToMemory(ref: ArtifactRef): Promise<FetchedArtifact> {
    let downloadedBytes = 0;
    for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
      let bytes: Buffer;
      try {
        bytes = await this.store.getBytes(ref.key, this.request(ref));
      } catch (err) {
        if (isNotFound(err)) throw missing(ref, err);
        if (attempt === ATTEMPTS || !(err instanceof ServiceUnavailableError)) throw err;
        continue;
      }
      downloadedBytes += bytes.byteLength;
      if (sha256Hex(bytes) === ref.sha256) {
        return { location: { bytes }, source: 's3', downloadedBytes, release: () => undefined };
      }
    }
    throw integrityError(ref);
  }

  private request(ref: ArtifactRef) {
    return {
      expectedBytes: ref.bytes,
      rangedThresholdBytes: this.options.rangedThresholdBytes,
      partBytes: this.options.partBytes,
      concurrency: this.options.concurrency,
    };
  }
}

function missing(ref: ArtifactRef, cause: unknown): ServiceUnavailableError {
  return new ServiceUnavailableError(`artifact ${ref.key} is named by its manifest but missing from storage`, { cause });
}
