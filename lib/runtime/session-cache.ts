import { ServiceUnavailableError } from '../errors';
import type { Manifest } from '../registry/manifest';
import type { ModelSession } from './model-session';

export interface SessionCacheLimits {
  /** Sum of the artifact bytes of cached sessions. */
  maxBytes: number;
  maxCount: number;
}

/** Loads the session for a manifest (fetch, verify, check, create). */
export type SessionLoader = (manifest: Manifest) => Promise<ModelSession>;

interface Entry {
  key: string;
  bytes: number;
  session: ModelSession;
}

/** `model@version`, the cache key. */
export function sessionKey(manifest: Pick<Manifest, 'model' | 'version'>): string {
  return `${manifest.model}@${manifest.version}`;
}

/**
 * The per-container session cache: least recently used first out, bounded by artifact bytes
 * and by count. Loads are single-flight (concurrent requests for a cold model share one load)
 * and a failed load is forgotten at once, so the next request tries again. Evicted sessions
 * are released once their last request ends.
 */
export class SessionCache {
  /** Map order is recency order (oldest first). */
  private readonly entries = new Map<string, Entry>();
  private readonly loading = new Map<string, Promise<ModelSession>>();
  private totalBytes = 0;

  constructor(
    private readonly load: SessionLoader,
    private readonly limits: SessionCacheLimits,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  get bytes(): number {
    return this.totalBytes;
  }

  /** True when the session of `model@version` is loaded in this container. */
  has(manifest: Pick<Manifest, 'model' | 'version'>): boolean {
    return this.entries.has(sessionKey(manifest));
  }

  /** The session for a manifest, loading it if needed. */
  get(manifest: Manifest): Promise<ModelSession> {
    const key = sessionKey(manifest);
    const entry = this.entries.get(key);
    if (entry) {
      this.entries.delete(key);
      this.entries.set(key, entry);
      return Promise.resolve(entry.session);
    }
    let pending = this.loading.get(key);
    if (!pending) {
      pending = this.load(manifest).then(
        (session) => {
          this.loading.delete(key);
          this.insert({ key, bytes: manifest.artifact.bytes, session });
          return session;
        },
        (err: unknown) => {
          this.loading.delete(key);
          throw err;
        },
      );
      this.loading.set(key, pending);
    }
    return pending;
  }

  /** Runs `work` with the model's session held, so eviction cannot free it mid-request. */
  async use<T>(manifest: Manifest, work: (session: ModelSession) => Promise<T>): Promise<T> {
    for (let attempt = 1; attempt <= 3; attempt++) {
      const session = await this.get(manifest);
      if (!session.retain()) continue;
      try {
        return await work(session);
      } finally {
        await session.unretain();
      }
    }
    throw new ServiceUnavailableError(`model ${sessionKey(manifest)} was evicted while loading; the cache is too small for the load`);
  }

  /** Releases every session (tests, shutdown). */
  async clear(): Promise<void> {
    const all = [...this.entries.values()];
    this.entries.clear();
    this.totalBytes = 0;
    await Promise.all(all.map((e) => e.session.release()));
  }

  private insert(entry: Entry): void {
    this.entries.set(entry.key, entry);
    this.totalBytes += entry.bytes;
    for (const [key, old] of this.entries) {
      if (this.entries.size <= this.limits.maxCount && this.totalBytes <= this.limits.maxBytes) break;
      if (key === entry.key) continue;
      this.entries.delete(key);
      this.totalBytes -= old.bytes;
      old.session.release().catch(() => undefined);
    }
  }
}
