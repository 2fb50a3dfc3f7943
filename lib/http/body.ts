import { deflateSync, gunzipSync, gzipSync, inflateRawSync, inflateSync } from 'node:zlib';
import { InvalidRequestError, PayloadTooLargeError, UnsupportedMediaTypeError } from '../errors';
import type { HttpRequest } from './handle';

/**
 * Request bodies as bytes (API Gateway hands non-text bodies over base64) with their
 * `Content-Encoding` undone, and response bodies compressed when the client accepts it.
 * The size limit applies to the decompressed body: inflation stops at the limit, so a small
 * compressed bomb never expands in memory.
 */

function tooLarge(maxBytes: number, compressed: boolean): PayloadTooLargeError {
  return new PayloadTooLargeError(`request body is larger than the ${maxBytes}-byte limit${compressed ? ' once decompressed' : ''}`);
}

/** The encodings a request may name, in the order they were applied (HTTP lists them so). */
function requestEncodings(header: string | undefined): string[] {
  if (header === undefined) return [];
  const codings = header
    .split(',')
    .map((c) => c.trim().toLowerCase())
    .filter((c) => c !== '' && c !== 'identity');
  for (const c of codings) {
    if (c !== 'gzip' && c !== 'x-gzip' && c !== 'deflate') {
      throw new UnsupportedMediaTypeError(`content-encoding "${c.slice(0, 40)}" is not supported; send gzip, deflate or an uncompressed body`);
    }
  }
  return codings;
}

function inflateBounded(coding: string, data: Buffer, maxBytes: number): Buffer {
  const options = { maxOutputLength: maxBytes + 1 };
  const attempt = (f: () => Buffer): Buffer => {
    const out = f();
    if (out.byteLength > maxBytes) throw tooLarge(maxBytes, true);
    return out;
  };
  try {
    if (coding === 'deflate') {
      // HTTP's "deflate" is the zlib format; some clients send raw deflate instead.
      try {
        return attempt(() => inflateSync(data, options));
      } catch (err) {
        if (err instanceof PayloadTooLargeError || (err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') throw err;
        return attempt(() => inflateRawSync(data, options));
      }
    }
    return attempt(() => gunzipSync(data, options));
  } catch (err) {
    if (err instanceof PayloadTooLargeError) throw err;
    if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') throw tooLarge(maxBytes, true);
    throw new InvalidRequestError(`request body is not valid ${coding === 'deflate' ? 'deflate' : 'gzip'} data (content-encoding: ${coding}): ${(err as Error).message}`);
  }
}

/**
 * The request body as bytes: base64 undone if the transport used it, then every
 * `Content-Encoding` undone, each step bounded by `maxBytes` (413 past it; 415 for an encoding
 * this server does not speak; 400 for data that is not what its encoding says).
 */
export function readBody(req: HttpRequest, maxBytes: number): Buffer {
  const codings = requestEncodings(req.headers['content-encoding']);
  const raw = req.body ?? '';
  const compressed = codings.length > 0;
  // A compressed body may be far smaller than the limit it expands to; the wire size is bounded
  // by the transport (API Gateway: 10 MB), and inflation below by maxBytes.
  let bytes: Buffer;
  if (req.isBase64Encoded) {
    if (!compressed && raw.length > Math.ceil((maxBytes * 4) / 3) + 4) throw tooLarge(maxBytes, false);
    bytes = Buffer.from(raw, 'base64');
  } else {
    if (!compressed && (raw.length > maxBytes || (raw.length * 3 > maxBytes && Buffer.byteLength(raw, 'utf8') > maxBytes))) {
      throw tooLarge(maxBytes, false);
    }
    bytes = Buffer.from(raw, 'utf8');
  }
  if (!compressed && bytes.byteLength > maxBytes) throw tooLarge(maxBytes, false);
  for (const coding of [...codings].reverse()) bytes = inflateBounded(coding, bytes, maxBytes);
  return bytes;
}

/** Bodies smaller than this are sent as they are: compression would not pay for its header. */
const MIN_COMPRESSED_BYTES = 1024;

/** The response coding the client accepts that this server prefers (gzip, then deflate), if any. */
export function chooseResponseEncoding(acceptEncoding: string | undefined): 'gzip' | 'deflate' | undefined {
  if (!acceptEncoding) return undefined;
  const q = new Map<string, number>();
  for (const part of acceptEncoding.split(',')) {
    const [name = '', ...params] = part.trim().toLowerCase().split(';');
    const qParam = params.map((p) => p.trim()).find((p) => p.startsWith('q='));
    const value = qParam === undefined ? 1 : Number(qParam.slice(2));
    q.set(name.trim(), Number.isFinite(value) ? value : 0);
  }
  const accepts = (name: string): boolean => (q.get(name) ?? (q.get('*') ?? 0)) > 0;
  if (accepts('gzip')) return 'gzip';
  if (accepts('deflate')) return 'deflate';
  return undefined;
}

/**
 * The body compressed with `encoding` if that makes it smaller by at least a tenth; undefined
 * when it is too small to gain or does not compress (dense float data barely does).
 */
export function compressBody(body: Buffer, encoding: 'gzip' | 'deflate'): Buffer | undefined {
  if (body.byteLength < MIN_COMPRESSED_BYTES) return undefined;
  // Level 1: most of the gain on JSON numbers for a fraction of the default level's time.
  const out = encoding === 'gzip' ? gzipSync(body, { level: 1 }) : deflateSync(body, { level: 1 });
  return out.byteLength <= body.byteLength * 0.9 ? out : undefined;
}
