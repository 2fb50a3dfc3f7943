import { NotFoundError } from '../errors';
import type { ObjectStore } from '../storage/object-store';
import { sha256Hex } from '../storage/hash';
import { keys, versionOfManifestKey } from './keys';
import { checkLabel, checkModelName, parseAlias, parseManifest, type Alias, type Manifest } from './manifest';

/** Which version of a model a request means: an explicit version, a label, or neither (the default). */
export interface ModelSelector {
  model: string;
  version?: number;
  label?: string;
}

/** The label the default resolution looks for first. */
export const DEFAULT_LABEL = 'stable';
const MAX_CACHED_LOOKUPS = 1024;

interface CacheSlot<T> {
  expires: number;
  value: Promise<T>;
}

/**
 * Reads the registry in S3: manifests, aliases, the version list. Every lookup is cached for
 * `ttlMs` (the promise is cached, so concurrent requests share one S3 call and a failure is
 * dropped at once), which makes a warm request free of S3 calls while a moved label is seen
 * within the TTL. Misses are cached too, so unknown names cannot turn into an S3 call each.
 */
export class Registry {
  private readonly cache = new Map<string, CacheSlot<unknown>>();

  constructor(
    private readonly store: ObjectStore,
    private readonly ttlMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** The manifest a selector names. Throws {@link NotFoundError} naming what is missing. */
  async resolve(selector: ModelSelector): Promise<Manifest> {
    const model = checkModelName(selector.model);
    if (selector.version !== undefined) {
      const manifest = await this.manifest(model, selector.version);
      if (!manifest) throw new NotFoundError(`model "${model}" has no version ${selector.version}`);
      return manifest;
    }
    if (selector.label !== undefined) {
      const label = checkLabel(selector.label);
      const alias = await this.alias(model, label);
      if (!alias) {
        throw new NotFoundError(
          (await this.versions(model)).length === 0 ? `model "${model}" not found` : `model "${model}" has no label "${label}"`,
        );
      }
      const manifest = await this.manifest(model, alias.version);
      if (!manifest) throw new NotFoundError(`label "${label}" of model "${model}" points at missing version ${alias.version}`);
      return manifest;
    }
    return this.resolveDefault(model);
  }

  /** Published versions (those with a manifest), ascending. */
  versions(model: string): Promise<number[]> {
    checkModelName(model);
    return this.cached(`versions:${model}`, async () => {
      const found = (await this.store.listKeys(keys.modelPrefix(model)))
        .map((key) => versionOfManifestKey(model, key))
        .filter((v): v is number => v !== undefined);
      return found.sort((a, b) => a - b);
    });
  }

  /** Forgets every cached lookup (tests, and an operator's explicit refresh). */
  clear(): void {
    this.cache.clear();
  }

  private async resolveDefault(model: string): Promise<Manifest> {
    const alias = await this.alias(model, DEFAULT_LABEL);
    if (alias) {
      const manifest = await this.manifest(model, alias.version);
      if (manifest) return manifest;
    }
    const versions = await this.versions(model);
    if (versions.length === 0) throw new NotFoundError(`model "${model}" not found`);
    for (let i = versions.length - 1; i >= 0; i--) {
      const manifest = await this.manifest(model, versions[i] as number);
      if (manifest?.evaluation?.passed === true) return manifest;
    }
    throw new NotFoundError(
      `model "${model}" has no "${DEFAULT_LABEL}" label and no version that passed evaluation; ask for a version explicitly`,
    );
  }

  private manifest(model: string, version: number): Promise<Manifest | undefined> {
    const key = keys.manifest(model, version);
    return this.cached(`manifest:${key}`, async () => {
      const raw = await this.store.getJson(key);
      return raw === undefined ? undefined : parseManifest(raw, key);
    });
  }

  private alias(model: string, label: string): Promise<Alias | undefined> {
    const key = keys.alias(model, label);
    return this.cached(`alias:${key}`, async () => {
      const raw = await this.store.getJson(key);
      return raw === undefined ? undefined : parseAlias(raw, key);
    });
  }

  private cached<T>(key: string, load: () => Promise<T>): Promise<T> {
    const now = this.now();
    const slot = this.cache.get(key);
    if (slot && slot.expires > now) return slot.value as Promise<T>;
    if (slot) this.cache.delete(key);
    if (this.cache.size >= MAX_CACHED_LOOKUPS) {
      const oldest = this.cache.keys().next().value;
      if (oldest !== undefined) this.cache.delete(oldest);
    }
    const value = load();
    this.cache.set(key, { expires: now + this.ttlMs, value });
    value.catch(() => {
      if (this.cache.get(key)?.value === value) this.cache.delete(key);
    });
    return value;
  }
}

/**
 * Publishes a version the way a conversion does: artifact first, manifest last (a version
 * without a manifest does not exist for readers), then optionally a label. The artifact is
 * written only if its key is free (S3's conditional write); when another publisher took the
 * version first, nothing is written and `undefined` comes back, so the caller can take the next.
 */
export async function publishVersion(
  store: ObjectStore,
  manifest: Omit<Manifest, 'artifact' | 'schemaVersion' | 'createdAt'> & { createdAt?: string },
  artifact: Uint8Array,
  label?: string,
  files: Readonly<Record<string, Uint8Array>> = {},
): Promise<Manifest | undefined> {
  const key = keys.artifact(manifest.model, manifest.version);
  const full: Manifest = {
    ...manifest,
    schemaVersion: 1,
    createdAt: manifest.createdAt ?? new Date().toISOString(),
    artifact: { key, sha256: sha256Hex(artifact), bytes: artifact.byteLength },
  };
  if (!(await store.put(key, artifact, 'application/octet-stream', { ifAbsent: true }))) return undefined;
  // The version's own files (a tokenizer) land before its manifest, which makes it visible.
  for (const [file, bytes] of Object.entries(files)) await store.put(keys.versionFile(manifest.model, manifest.version, file), bytes, 'application/json');
  await store.put(keys.manifest(manifest.model, manifest.version), JSON.stringify(full, null, 2), 'application/json');
  if (label !== undefined) await setAlias(store, manifest.model, label, manifest.version);
  return full;
}

/** The next free version number: one above any version prefix in use, manifest or not. */
export async function nextVersion(store: ObjectStore, model: string): Promise<number> {
  let max = 0;
  const prefix = keys.modelPrefix(model);
  for (const key of await store.listKeys(prefix)) {
    const match = /^([1-9][0-9]{0,9})\//.exec(key.slice(prefix.length));
    if (match?.[1]) max = Math.max(max, Number(match[1]));
  }
  return max + 1;
}

/** Points a label at a version. */
export async function setAlias(store: ObjectStore, model: string, label: string, version: number): Promise<void> {
  const alias: Alias = { label, version, updatedAt: new Date().toISOString() };
  await store.put(keys.alias(model, label), JSON.stringify(alias), 'application/json');
}
