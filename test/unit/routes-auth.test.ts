import { checkApiKey, hashApiKey, presentedKey } from '../../lib/auth/api-key';
import { ForbiddenError, UnauthorizedError } from '../../lib/errors';
import { isPublic, matchRoute } from '../../lib/http/routes';

describe('routes', () => {
  test.each([
    ['GET', '/v2/health/live', { kind: 'live' }],
    ['GET', '/v2/health/ready', { kind: 'ready' }],
    ['GET', '/v2', { kind: 'serverMetadata' }],
    ['GET', '/v2/', { kind: 'serverMetadata' }],
    ['GET', '/v2/models/m', { kind: 'modelMetadata', selector: { model: 'm' } }],
    ['GET', '/v2/models/m/versions/3', { kind: 'modelMetadata', selector: { model: 'm', version: 3 } }],
    ['GET', '/v2/models/m/labels/canary/ready', { kind: 'modelReady', selector: { model: 'm', label: 'canary' } }],
    ['POST', '/v2/models/m.v2_x-y/versions/12/infer', { kind: 'infer', selector: { model: 'm.v2_x-y', version: 12 } }],
    ['POST', '/v1/models/m:predict', { kind: 'tfPredict', selector: { model: 'm' } }],
    ['POST', '/v1/models/m%3Apredict', { kind: 'tfPredict', selector: { model: 'm' } }],
    ['POST', '/v1/models/m/versions/2:predict', { kind: 'tfPredict', selector: { model: 'm', version: 2 } }],
    ['POST', '/v1/models/m/labels/stable:predict', { kind: 'tfPredict', selector: { model: 'm', label: 'stable' } }],
    ['GET', '/v1/models/m', { kind: 'tfStatus', selector: { model: 'm' } }],
    ['GET', '/v1/models/m/versions/4', { kind: 'tfStatus', selector: { model: 'm', version: 4 } }],
  ])('%s %s', (method, path, route) => {
    expect(matchRoute(method, path)).toEqual(route);
  });

  test.each([
    ['GET', '/', 'no route for GET /'],
    ['GET', '/v3/models/m', 'no route for GET /v3/models/m'],
    ['GET', '/v2/models/m/versions/1/explain', 'no route for GET /v2/models/m/versions/1/explain'],
    ['GET', '/v2/models/M', 'invalid model name "M"'],
    ['GET', '/v2/models/a..b', 'invalid model name "a..b"'],
    ['GET', '/v2/models/m/versions/01', 'invalid model version "01"'],
    ['GET', '/v2/models/m/versions/99999999999', 'invalid model version "99999999999"'],
    ['GET', '/v2/models/m/labels/Bad', 'invalid label "Bad"'],
    ['POST', '/v2/models/m', 'POST is not allowed on /v2/models/m; use GET'],
  ])('%s %s is refused', (method, path, message) => {
    expect(() => matchRoute(method, path)).toThrow(message);
  });

  test('only health is public', () => {
    expect(isPublic(matchRoute('GET', '/v2/health/live'))).toBe(true);
    expect(isPublic(matchRoute('GET', '/v2'))).toBe(false);
    expect(isPublic(matchRoute('POST', '/v2/models/m/infer'))).toBe(false);
  });
});

describe('API keys', () => {
  const hashes = [Buffer.from(hashApiKey('first-key'), 'hex'), Buffer.from(hashApiKey('second-key'), 'hex')];

  test('x-api-key wins over Authorization; Bearer is case-insensitive', () => {
    expect(presentedKey({ 'x-api-key': ' k1 ', authorization: 'Bearer k2' })).toBe('k1');
    expect(presentedKey({ authorization: 'bearer k2' })).toBe('k2');
    expect(presentedKey({ authorization: 'Basic abc' })).toBeUndefined();
    expect(presentedKey({ authorization: 'Bearer    ' })).toBeUndefined();
  });

  test('any configured key is accepted; others are 403; none is 401', () => {
    expect(() => checkApiKey({ 'x-api-key': 'first-key' }, hashes)).not.toThrow();
    expect(() => checkApiKey({ authorization: 'Bearer second-key' }, hashes)).not.toThrow();
    expect(() => checkApiKey({ 'x-api-key': 'first-key ' + 'x' }, hashes)).toThrow(ForbiddenError);
    expect(() => checkApiKey({}, hashes)).toThrow(UnauthorizedError);
  });

  test('the digest of a known key', () => {
    expect(hashApiKey('local-dev-key')).toBe('ed5a18fb8f807f996d649e379d3f35f39c543a91bdbf88c492f2ebd10d4df86c');
  });
});
