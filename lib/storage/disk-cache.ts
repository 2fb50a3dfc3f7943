import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, statSync, utimesSync, type Stats } from 'node:fs';
import { lstat, rename, unlink } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import { join } from 'node:path';
import { sha256File } from './hash';


const SHA256_HEX = /^[0-9a-f]{64}$/;

/** How long a hash taken by {@link DiskCache.hashNewest} stands for the file. */
export const EARLY_HASH_MAX_AGE_MS = 10_000;

interface EarlyHash {
  name: string;
  sha256: string;
  size: number;
  mtimeMs: number;
  /** performance.now() when the hash was done. */
  at: number;
}

/** Room set aside for a download in progress; {@link DiskCache.commit} or {@link DiskCache.abandon} ends it. */
export interface Reservation {
  readonly tempPath: string;
  readonly bytes: number;
}

/**
 * Content-addressed artifact cache on local disk (Lambda's /tmp). Files are named by their
 * SHA-256 and arrive under a temporary name, renamed into place once verified. The cache is
 * bounded by bytes, downloads in progress included (they reserve their size first), with
 * least-recently-used eviction that never removes a file a session is being created from
 * (pinned). Every read re-hashes the file. The index is rebuilt from the directory at
 * start-up, so a restarted runtime in the same container reuses what is there.
 */
export class DiskCache {
  /** sha256 -> size; Map order is recency order (oldest first). */
  private readonly entries = new Map<string, number>();
  private readonly pins = new Map<string, number>();
  private totalBytes = 0;
  private reservedBytes = 0;
  /**
   * The hash {@link hashNewest} took of the most recently used file. {@link verify} uses it only
   * when it is at most {@link EARLY_HASH_MAX_AGE_MS} old and the file's size and mtime have not
   * changed since; otherwise it hashes again.
   */
  private early?: Promise<EarlyHash | undefined>;
  /** False when the directory could not be made or read at start-up: every artifact stays in memory. */
  readonly usable: boolean;

  constructor(
    readonly dir: string,
    private readonly maxBytes: number,
  ) {
    let found: { name: string; stat: Stats }[];
    try {
      mkdirSync(dir, { recursive: true });
      found = readdirSync(dir)
        .filter((name) => SHA256_HEX.test(name))
        .map((name) => ({ name, stat: statSync(join(dir, name)) }))
        .sort((a, b) => a.stat.atimeMs - b.stat.atimeMs);
    } catch {
      // A cache that cannot exist must not stop the function from serving (from memory).
      this.usable = false;
      return;
    }
    this.usable = true;
    for (const { name, stat } of found) {
      this.entries.set(name, stat.size);
      this.totalBytes += stat.size;
    }
  }

  /**
   * Starts hashing the most recently used file. A runtime restarted in the same container most
   * likely asks first for the file it used last: the service calls this at start-up, so the
   * hash runs while start-up and the first request's registry reads are under way, and
   * {@link verify} finds it done. Resolves when the hash is done (or failed: verify then
   * hashes again).
   */
  async hashNewest(): Promise<void> {
    const newest = [...this.entries.keys()].at(-1);
    if (!newest) return;
    this.early = this.hashWithStat(newest);
    await this.early;
  }

  /** Bytes held by cached files. */
  get bytes(): number {
    return this.totalBytes;
  }

  has(sha256: string): boolean {
    return this.entries.has(sha256);
  }

  pathOf(sha256: string): string {
    return join(this.dir, sha256);
  }

  /**
   * The path of the cached file for `sha256` after re-hashing it, or `undefined` if there is
   * none. A file whose content no longer hashes to its name is deleted. A hash taken by
   * {@link hashNewest} stands in for a new one while it is fresh and the file unchanged.
   */
  async verify(sha256: string): Promise<string | undefined> {
    if (!this.entries.has(sha256)) return undefined;
    const path = this.pathOf(sha256);
    let actual: string;
    try {
      actual = (await this.takeEarly(sha256)) ?? (await sha256File(path)).sha256;
    } catch {
      this.forget(sha256);
      return undefined;
    }
    if (actual !== sha256) {
      await this.remove(sha256);
      return undefined;
    }
    this.touch(sha256);
    return path;
  }

  /**
   * Sets aside room for a download of `bytes`, evicting unpinned files as needed. Undefined
   * when the file cannot fit even after eviction; the caller then keeps the artifact in memory.
   */
  async reserve(bytes: number): Promise<Reservation | undefined> {
    // Bigger than the whole cache (or no cache): evicting everything else would not make it fit.
    if (!this.usable || bytes > this.maxBytes) return undefined;
    for (const oldest of [...this.entries.keys()]) {
      if (this.totalBytes + this.reservedBytes + bytes <= this.maxBytes) break;
      if (!this.pins.has(oldest)) await this.remove(oldest);
    }
    if (this.totalBytes + this.reservedBytes + bytes > this.maxBytes) return undefined;
    this.reservedBytes += bytes;
    return { tempPath: join(this.dir, `.${randomBytes(8).toString('hex')}.tmp`), bytes };
  }

  /** Moves a verified download into place under its hash and ends the reservation. */
  async commit(reservation: Reservation, sha256: string): Promise<string> {
    this.reservedBytes -= reservation.bytes;
    const path = this.pathOf(sha256);
    await rename(reservation.tempPath, path);
    if (!this.entries.has(sha256)) {
      this.entries.set(sha256, reservation.bytes);
      this.totalBytes += reservation.bytes;
    }
    this.touch(sha256);
    return path;
  }

  /** Deletes a failed or rejected download and ends the reservation. */
  async abandon(reservation: Reservation): Promise<void> {
    this.reservedBytes -= reservation.bytes;
    await unlink(reservation.tempPath).catch(() => undefined);
  }

  /** Keeps a file from eviction while a session is created from it; returns the unpin. */
  pin(sha256: string): () => void {
    this.pins.set(sha256, (this.pins.get(sha256) ?? 0) + 1);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const left = (this.pins.get(sha256) ?? 1) - 1;
      if (left > 0) this.pins.set(sha256, left);
      else this.pins.delete(sha256);
    };
  }

  /** Deletes one entry (file and index). */
  async remove(sha256: string): Promise<void> {
    this.forget(sha256);
    await unlink(this.pathOf(sha256)).catch(() => undefined);
  }

  private touch(sha256: string): void {
    const size = this.entries.get(sha256);
    if (size === undefined) return;
    this.entries.delete(sha256);
    this.entries.set(sha256, size);
    // The access time orders the index a restarted runtime rebuilds (best effort; sub-millisecond
    // so two loads in the same millisecond keep their order). Once per model load, not per request.
    const now = (performance.timeOrigin + performance.now()) / 1000;
    try {
      utimesSync(this.pathOf(sha256), now, now);
    } catch {
      // a file that cannot be touched is still served; its place in the order is all that is lost
    }
  }

  private async hashWithStat(name: string): Promise<EarlyHash | undefined> {
    try {
      const path = join(this.dir, name);
      const { sha256 } = await sha256File(path);
      const stat = await lstat(path);
      return { name, sha256, size: stat.size, mtimeMs: stat.mtimeMs, at: performance.now() };
    } catch {
      return undefined; // verify hashes again and decides
    }
  }

  /** The start-up hash of `name` if it is still good to use (once); undefined otherwise. */
  private async takeEarly(name: string): Promise<string | undefined> {
    const early = await this.early;
    if (!early || early.name !== name) return undefined;
    this.early = undefined;
    if (performance.now() - early.at > EARLY_HASH_MAX_AGE_MS) return undefined;
    const stat = await lstat(this.pathOf(name));
    return stat.size === early.size && stat.mtimeMs === early.mtimeMs ? early.sha256 : undefined;
  }

  private forget(sha256: string): void {
    const size = this.entries.get(sha256);
    if (size === undefined) return;
    this.entries.delete(sha256);
    this.totalBytes -= size;
  }
}
