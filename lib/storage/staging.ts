import { randomBytes } from 'node:crypto';
import { InvalidRequestError, PayloadTooLargeError } from '../errors';
import type { StagedOutput } from '../protocol/oip';
import { keys } from '../registry/keys';
import { isNotFound, type ObjectStore } from './object-store';

/**
 * Staged tensors: data too large for one Lambda payload travels through S3 under
 * `staging/<id>` instead. A client asks for an upload URL, PUTs the tensor's bytes (the binary
 * tensor format) and names the id in its request; an output too large for the response (or one
 * the request asks to stage) is written under a fresh id and answered with a download URL.
 * Ids are 128 random bits, so they cannot be guessed, and a request names only an id, never a
 * key: nothing outside the prefix can be reached. A lifecycle rule expires the prefix.
 */
export interface StagingSettings {
  urlTtlSeconds: number;
  maxBytes: number;
}

/** What a client needs to stage an input. */
export interface StagingTicket {
  id: string;
  uploadUrl: string;
  expiresIn: number;
  maxBytes: number;
}

export class TensorStaging {
  constructor(
    private readonly store: ObjectStore,
    private readonly settings: StagingSettings,
  ) {}

  /** A fresh id and a presigned PUT URL for it. */
  async ticket(): Promise<StagingTicket> {
    const id = newId();
    const uploadUrl = await this.store.presignedUrl('PUT', keys.staged(id), this.settings.urlTtlSeconds);
    return { id, uploadUrl, expiresIn: this.settings.urlTtlSeconds, maxBytes: this.settings.maxBytes };
  }

  /**
   * A staged input's bytes. Its size is read first: one over the limit, or other than the
   * tensor's (when known), is refused before anything is downloaded.
   */
  async read(input: string, id: string, expectedBytes: number | undefined): Promise<Buffer> {
    const key = keys.staged(id);
    const head = await this.store.head(key);
    if (!head) throw new InvalidRequestError(`input "${input}": no staged tensor "${id}" (never uploaded, or expired)`);
    if (head.bytes > this.settings.maxBytes) {
      throw new PayloadTooLargeError(`input "${input}": staged tensor "${id}" is ${head.bytes} bytes, over the ${this.settings.maxBytes}-byte limit (MAX_STAGED_MB)`);
    }
    if (expectedBytes !== undefined && head.bytes !== expectedBytes) {
      throw new InvalidRequestError(`input "${input}": staged tensor "${id}" is ${head.bytes} bytes but its shape and datatype need ${expectedBytes}`);
    }
    try {
      return await this.store.getBytes(key, { expectedBytes: head.bytes });
    } catch (err) {
      if (isNotFound(err)) throw new InvalidRequestError(`input "${input}": staged tensor "${id}" expired while it was read`);
      throw err;
    }
  }

  /** Writes an output's bytes under a fresh id and returns a presigned GET URL for them. */
  async write(chunks: readonly Uint8Array[]): Promise<StagedOutput> {
    const id = newId();
    const body = Buffer.concat(chunks);
    await this.store.put(keys.staged(id), body, 'application/octet-stream');
    const url = await this.store.presignedUrl('GET', keys.staged(id), this.settings.urlTtlSeconds);
    return { id, url, bytes: body.byteLength, expiresIn: this.settings.urlTtlSeconds };
  }
}

function newId(): string {
  return randomBytes(16).toString('hex');
}
