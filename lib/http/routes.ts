import { InvalidRequestError, MethodNotAllowedError, NotFoundError } from '../errors';
import { checkLabel, checkModelName, parseVersion, printable } from '../registry/manifest';
import type { ModelSelector } from '../registry/registry';

/** What a request asks for, independent of how it arrived. */
export type Route =
  | { kind: 'live' }
  | { kind: 'ready' }
  | { kind: 'serverMetadata' }
  | { kind: 'staging' }
  | { kind: 'modelMetadata'; selector: ModelSelector }
  | { kind: 'modelReady'; selector: ModelSelector }
  | { kind: 'infer'; selector: ModelSelector }
  | { kind: 'tfPredict'; selector: ModelSelector }
  | { kind: 'tfStatus'; selector: ModelSelector };

/** Routes that answer without an API key. */
export function isPublic(route: Route): boolean {
  return route.kind === 'live' || route.kind === 'ready';
}

function decodeSegments(path: string): string[] {
  return path
    .split('/')
    .filter((s) => s !== '')
    .map((segment) => {
      try {
        return decodeURIComponent(segment);
      } catch {
        throw new InvalidRequestError(`malformed percent-encoding in path segment "${printable(segment)}"`);
      }
    });
}

function method(actual: string, allowed: 'GET' | 'POST', path: string): void {
  if (actual !== allowed) throw new MethodNotAllowedError(`${actual} is not allowed on ${printable(path)}; use ${allowed}`);
}

/**
 * Maps a method and path to a route. Model names, versions and labels are checked here, so
 * nothing past this point sees `..`, `%00` or look-alike characters.
 */
export function matchRoute(httpMethod: string, path: string): Route {
  const m = httpMethod.toUpperCase();
  const s = decodeSegments(path);
  const notFound = (): never => {
    throw new NotFoundError(`no route for ${m} ${printable(path)}`);
  };

  if (s[0] === 'v2') {
    if (s.length === 1) return method(m, 'GET', path), { kind: 'serverMetadata' };
    if (s[1] === 'staging' && s.length === 2) return method(m, 'POST', path), { kind: 'staging' };
    // Name first: a health check that does not exist is a 404 whatever the method.
    if (s[1] === 'health' && s.length === 3 && (s[2] === 'live' || s[2] === 'ready')) {
      method(m, 'GET', path);
      return { kind: s[2] };
    }
    if (s[1] !== 'models' || s.length < 3) return notFound();
    const selector: ModelSelector = { model: checkModelName(s[2] as string) };
    let rest = s.slice(3);
    if ((rest[0] === 'versions' || rest[0] === 'labels') && rest.length >= 2) {
      if (rest[0] === 'versions') selector.version = parseVersion(rest[1] as string);
      else selector.label = checkLabel(rest[1] as string);
      rest = rest.slice(2);
    }
    if (rest.length === 0) return method(m, 'GET', path), { kind: 'modelMetadata', selector };
    if (rest.length === 1 && rest[0] === 'ready') return method(m, 'GET', path), { kind: 'modelReady', selector };
    if (rest.length === 1 && rest[0] === 'infer') return method(m, 'POST', path), { kind: 'infer', selector };
    return notFound();
  }

  if (s[0] === 'v1' && s[1] === 'models' && s.length >= 3) {
    const last = s[s.length - 1] as string;
    const colon = last.indexOf(':');
    const verb = colon >= 0 ? last.slice(colon + 1) : undefined;
    const parts = [...s.slice(2, -1), colon >= 0 ? last.slice(0, colon) : last];
    const selector: ModelSelector = { model: checkModelName(parts[0] as string) };
    if (parts.length === 3 && parts[1] === 'versions') selector.version = parseVersion(parts[2] as string);
    else if (parts.length === 3 && parts[1] === 'labels') selector.label = checkLabel(parts[2] as string);
    else if (parts.length !== 1) return notFound();
    if (verb === 'predict') return method(m, 'POST', path), { kind: 'tfPredict', selector };
    if (verb === undefined) return method(m, 'GET', path), { kind: 'tfStatus', selector };
    throw new NotFoundError(`unsupported TensorFlow Serving verb ":${printable(verb)}"; this server offers :predict`);
  }
  return notFound();
}
