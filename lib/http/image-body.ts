import { InvalidRequestError, PayloadTooLargeError } from '../errors';
import type { HttpRequest } from './handle';

const IMAGE_TYPE = /^image\/[\w.+-]+\s*(?:;|$)/i;

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
  const raw = req.body ?? '';
  const tooLarge = new PayloadTooLargeError(`request body is larger than the ${maxBytes}-byte limit`);
  if (req.isBase64Encoded && raw.length > Math.ceil((maxBytes * 4) / 3) + 4) throw tooLarge;
  const bytes = req.isBase64Encoded ? Buffer.from(raw, 'base64') : Buffer.from(raw, 'latin1');
  if (bytes.byteLength > maxBytes) throw tooLarge;
  if (bytes.byteLength === 0) throw new InvalidRequestError('request body is empty; send the image file');
  return bytes;
}

/** True when the client asks for the answer as a PNG (`accept: image/png`), a mask model's whole answer. */
export function wantsPng(req: HttpRequest): boolean {
  const accept = req.headers.accept;
  return accept !== undefined && /(^|,)\s*image\/png\s*(;|,|$)/i.test(accept);
}
