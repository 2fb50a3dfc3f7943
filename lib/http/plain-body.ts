import { InvalidRequestError, PayloadTooLargeError } from '../errors';
import type { HttpRequest } from './handle';

// Bodies that are one file or one text as they are, for models that declared how to read them.
const IMAGE_TYPE = /^image\/[\w.+-]+\s*(?:;|$)/i;
const TEXT_TYPE = /^text\/plain\s*(?:;|$)/i;
const utf8 = new TextDecoder('utf-8', { fatal: true });

/** True when the request declares an image body (`content-type: image/*`) rather than JSON. */
export function isImageBody(req: HttpRequest): boolean {
  const type = req.headers['content-type'];
  return type !== undefined && IMAGE_TYPE.test(type.trim());
}

/**
 * The raw bytes of an image body, within the same size limit as JSON (413). API Gateway hands
 * binary bodies over base64-encoded; a body that is not (a local test, a text-mode proxy) is
 * taken as the bytes of its characters, which only a truly binary-safe caller gets right.
 */
export function readImageBody(req: HttpRequest, maxBytes: number): Buffer {
  const bytes = plainBytes(req, maxBytes);
  if (bytes.byteLength === 0) throw new InvalidRequestError('request body is empty; send the image file');
  return bytes;
}

/** True when the request sends one text as it is (`content-type: text/plain`). */
export function isTextBody(req: HttpRequest): boolean {
  const type = req.headers['content-type'];
  return type !== undefined && TEXT_TYPE.test(type.trim());
}

/** The text of a `text/plain` body: UTF-8, within the body limit, not empty. */
export function readTextBody(req: HttpRequest, maxBytes: number): string {
  const bytes = plainBytes(req, maxBytes);
  if (bytes.byteLength === 0) throw new InvalidRequestError('request body is empty; send the text');
  try {
    return utf8.decode(bytes);
  } catch {
    throw new InvalidRequestError('a text/plain body must be UTF-8');
  }
}

function plainBytes(req: HttpRequest, maxBytes: number): Buffer {
  const raw = req.body ?? '';
  const tooLarge = new PayloadTooLargeError(`request body is larger than the ${maxBytes}-byte limit`);
  if (req.isBase64Encoded && raw.length > Math.ceil((maxBytes * 4) / 3) + 4) throw tooLarge;
  const bytes = req.isBase64Encoded ? Buffer.from(raw, 'base64') : Buffer.from(raw, 'latin1');
  if (bytes.byteLength > maxBytes) throw tooLarge;
  return bytes;
}

/** True when the client asks for the answer as a PNG (`accept: image/png`), a mask model's whole answer. */
export function wantsPng(req: HttpRequest): boolean {
  const accept = req.headers.accept;
  return accept !== undefined && /(^|,)\s*image\/png\s*(;|,|$)/i.test(accept);
}
