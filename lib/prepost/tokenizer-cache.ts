import { ServiceUnavailableError } from '../errors';
import { keys } from '../registry/keys';
import type { Manifest } from '../registry/manifest';
import { sha256Hex } from '../storage/hash';
import { isNotFound, type ObjectStore } from '../storage/object-store';
import { DeclarationError, type TextPreprocess } from './declarations';
import { TextTokenizer } from './text';

/** Tokenizers kept per container; each is a few MB of vocabulary at most. */
const MAX_KEPT = 8;

/**
 * The tokenizers of published versions, fetched from S3 once per container and kept, keyed by
 * their SHA-256 (a version's files never change, and versions sharing a tokenizer share it).
 * Concurrent first requests share one fetch; a failed fetch is not kept, so the next request
 * tries again.
 */
export class TokenizerCache {
  private readonly kept = new Map<string, Promise<TextTokenizer>>();

  constructor(private readonly store: ObjectStore) {}

  get(manifest: Manifest, decl: TextPreprocess): Promise<TextTokenizer> {
    const sha = decl.tokenizerSha256;
    if (!sha) {
      return Promise.reject(new ServiceUnavailableError(`model ${manifest.model} version ${manifest.version}: its text input has no published tokenizer (tokenizerSha256 missing from the manifest)`));
    }
    let found = this.kept.get(sha);
    if (found) {
      // Most recently used last, so the oldest is evicted first.
      this.kept.delete(sha);
      this.kept.set(sha, found);
      return found;
    }
    found = this.load(manifest, decl, sha);
    this.kept.set(sha, found);
    found.catch(() => this.kept.delete(sha));
    while (this.kept.size > MAX_KEPT) this.kept.delete(this.kept.keys().next().value as string);
    return found;
  }

  private async load(manifest: Manifest, decl: TextPreprocess, sha: string): Promise<TextTokenizer> {
    const key = keys.versionFile(manifest.model, manifest.version, decl.tokenizer);
    let bytes: Buffer;
    try {
      bytes = await this.store.getBytes(key);
    } catch (err) {
      if (isNotFound(err)) throw new ServiceUnavailableError(`model ${manifest.model} version ${manifest.version}: its tokenizer ${key} is missing`, { cause: err });
      throw err;
    }
    if (sha256Hex(bytes) !== sha) throw new ServiceUnavailableError(`model ${manifest.model} version ${manifest.version}: tokenizer ${key} does not match the SHA-256 its manifest records`);
    try {
      return TextTokenizer.parse(bytes, key);
    } catch (err) {
      if (err instanceof DeclarationError) throw new ServiceUnavailableError(`model ${manifest.model} version ${manifest.version}: ${err.message}`, { cause: err });
      throw err;
    }
  }
}
