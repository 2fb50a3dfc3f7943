import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, statSync } from 'node:fs';
import { readFile, rename, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/** SHA-256 of some bytes, as lowercase hex. */
export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

const SHA256_HEX = /^[0-9a-f]{64}$/;

/**
 * Content-addressed artifact cache on local disk (Lambda's /tmp): files are named by their
 * SHA-256, written under a temporary name and renamed into place, bounded by bytes with
 * least-recently-used eviction, and checked against their name on every read. The index is
 * rebuilt from the directory at start-up, so a restarted runtime in the same container
 * reuses what is there.
 */
export class DiskCache {
  /** sha256 -> size; Map order is recency order (oldest first). */
  private readonly entries = new Map<string, number>();
  private totalBytes = 0;

  constructor(
    private readonly dir: string,
    private readonly maxBytes: number,
  ) {
    mkdirSync(dir, { recursive: true });
    const found = readdirSync(dir)
      .filter((name) => SHA256_HEX.test(name))
      .map((name) => ({ name, stat: statSync(join(dir, name)) }))
      .sort((a, b) => a.stat.atimeMs - b.stat.atimeMs);
    for (const { name, stat } of found) {
      this.entries.set(name, stat.size);
      this.totalBytes += stat.size;
    }
  }

  get bytes(): number {
    return this.totalBytes;
  }

  has(sha256: string): boolean {
    return this.entries.has(sha256);
  }

  /**
   * The cached bytes for `sha256`, or `undefined` if absent. A file whose content no longer
   * hashes to its name (disk corruption, a partial write from another process) is deleted.
   */
  async read(sha256: string): Promise<Buffer | undefined> {
    if (!this.entries.has(sha256)) return undefined;
    let bytes: Buffer;
    try {
      bytes = await readFile(join(this.dir, sha256));
    } catch {
      this.forget(sha256);
      return undefined;
    }
    if (sha256Hex(bytes) !== sha256) {
      await this.remove(sha256);
      return undefined;
    }
    this.touch(sha256);
    return bytes;
  }

  /**
   * Stores verified bytes. Returns false when they could not be written (a full or read-only
   * disk): the caller still has the bytes in memory and goes on without the disk tier.
   */
  async write(sha256: string, bytes: Uint8Array): Promise<boolean> {
    if (!SHA256_HEX.test(sha256) || bytes.byteLength > this.maxBytes) return false;
    if (this.entries.has(sha256)) {
      this.touch(sha256);
      return true;
    }
    await this.evictFor(bytes.byteLength);
    const temp = join(this.dir, `.${sha256}.${randomBytes(6).toString('hex')}.tmp`);
    try {
      await writeFile(temp, bytes);
      await rename(temp, join(this.dir, sha256));
    } catch {
      await unlink(temp).catch(() => undefined);
      return false;
    }
    this.entries.set(sha256, bytes.byteLength);
    this.totalBytes += bytes.byteLength;
    return true;
  }

  /** Deletes one entry (file and index). */
  async remove(sha256: string): Promise<void> {
    this.forget(sha256);
    await unlink(join(this.dir, sha256)).catch(() => undefined);
  }

  private touch(sha256: string): void {
    const size = this.entries.get(sha256);
    if (size === undefined) return;
    this.entries.delete(sha256);
    this.entries.set(sha256, size);
  }

  private forget(sha256: string): void {
    const size = this.entries.get(sha256);
    if (size === undefined) return;
    this.entries.delete(sha256);
    this.totalBytes -= size;
  }

  private async evictFor(incoming: number): Promise<void> {
    for (const oldest of this.entries.keys()) {
      if (this.totalBytes + incoming <= this.maxBytes) return;
      await this.remove(oldest);
    }
  }
}
