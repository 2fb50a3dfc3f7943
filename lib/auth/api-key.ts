import { createHash, timingSafeEqual } from 'node:crypto';
import { ForbiddenError, UnauthorizedError } from '../errors';

/** SHA-256 of an API key as hex: what `API_KEY_HASHES` holds. */
export function hashApiKey(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex');
}

/** The key a request presents: `x-api-key`, else `Authorization: Bearer <key>`. Headers are lower-case. */
export function presentedKey(headers: Readonly<Record<string, string | undefined>>): string | undefined {
  const direct = headers['x-api-key']?.trim();
  if (direct) return direct;
  const auth = headers.authorization?.trim();
  if (!auth) return undefined;
  const match = /^Bearer\s+(.+)$/i.exec(auth);
  return match?.[1]?.trim() || undefined;
}

/**
 * Checks a request's API key against the configured SHA-256 digests. The presented key is
 * hashed first, so every comparison is between equal-length digests, and all digests are
 * compared (no early exit), so the time taken says nothing about which digest came close.
 * A key in the query string is never looked at.
 */
export function checkApiKey(headers: Readonly<Record<string, string | undefined>>, hashes: readonly Buffer[]): void {
  const key = presentedKey(headers);
  if (key === undefined) {
    throw new UnauthorizedError('missing API key: send it in the x-api-key header or as Authorization: Bearer <key>');
  }
  const digest = createHash('sha256').update(key, 'utf8').digest();
  let match = false;
  for (const expected of hashes) match = timingSafeEqual(digest, expected) || match;
  if (!match) throw new ForbiddenError('API key not accepted');
}
